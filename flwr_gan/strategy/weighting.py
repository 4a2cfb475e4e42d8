"""KL scores and FeGAN's aggregation weights (pure numpy).

* :func:`kl_divergence` -- ``KL(P || Q) = sum_x P(x) log(P(x) / Q(x))``, natural log.
* :func:`kl_scores` -- FeGAN paper §3.2: ``s_k = (n_k / n) * KL(P_k || Q)`` with
  ``P_k`` the device's class distribution, ``Q`` the global one, ``n_k`` the
  device's samples and ``n`` all samples.
* :func:`kl_weights` -- the schemes of the reference code, applied to the scores
  of the round's participants:

  ``exp`` (reference default)
      ``w_k = exp(s_k) / sum_j exp(s_j)``, a softmax of the positive scores.
  ``linear``
      ``w_k = s_k / sum_j s_j``.
  ``dirac``
      linear weights; those below ``threshold`` (0.5) are zeroed and the rest
      renormalised. When every weight falls below the threshold we keep the
      largest one(s) (the reference would divide by zero).
  ``none``
      uniform weights (KL weighting off, the paper's ``w = 0``).

* :func:`combine_weights` -- paper §3.4: KL weights multiplied by each device's
  load (what it trained on, :meth:`flwr_gan.strategy.load.Load.processed`),
  renormalised.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SCHEMES = ("exp", "linear", "dirac", "none")


def _distribution(counts: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(counts, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{what} must be a non-empty 1-D vector of counts")
    if not np.all(np.isfinite(arr)) or (arr < 0).any():
        raise ValueError(f"{what} must hold finite non-negative counts, got {arr.tolist()}")
    total = arr.sum()
    if total <= 0:
        raise ValueError(f"{what} is empty (all counts are zero)")
    return arr / total


def kl_divergence(p_counts: Sequence[float] | np.ndarray,
                  q_counts: Sequence[float] | np.ndarray) -> float:
    """Return ``KL(P || Q)`` in nats between two count (or probability) vectors.

    Both are normalised first. Terms with ``P(x) = 0`` contribute 0; a class
    with ``P(x) > 0`` and ``Q(x) = 0`` makes the divergence infinite.

    Raises
    ------
    ValueError
        On lengths that differ, negative / non-finite values, or an all-zero vector.
    """
    p = _distribution(p_counts, "P")
    q = _distribution(q_counts, "Q")
    if p.shape != q.shape:
        raise ValueError(f"P has {p.size} classes but Q has {q.size}")
    support = p > 0
    if np.any(q[support] == 0):
        return float("inf")
    return float(np.sum(p[support] * np.log(p[support] / q[support])))


def kl_scores(class_counts: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
    """Return every device's score ``s_k = (n_k / n) * KL(P_k || Q)``.

    ``Q`` is the class distribution of all devices together.

    Parameters
    ----------
    class_counts : array-like, shape (N, K)
        Per-device class counts (non-empty rows).
    """
    counts = np.asarray(class_counts, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] == 0:
        raise ValueError(f"class_counts must be a non-empty (N, K) matrix, got {counts.shape}")
    global_counts = counts.sum(axis=0)
    n = global_counts.sum()
    return np.array([row.sum() / n * kl_divergence(row, global_counts) for row in counts])


def kl_weights(scores: Sequence[float] | np.ndarray, scheme: str = "exp", *,
               threshold: float = 0.5) -> np.ndarray:
    """Return the normalised aggregation weights of a round's participants.

    Parameters
    ----------
    scores : array-like
        The participants' KL scores ``s_k`` (>= 0).
    scheme : str
        ``exp``, ``linear``, ``dirac`` or ``none`` (module docstring).
    threshold : float
        ``dirac``'s cut-off on the linear weights.

    Returns
    -------
    numpy.ndarray
        Non-negative weights summing to 1 (empty for no participants).
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown weighting scheme {scheme!r}: choose one of {SCHEMES}")
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return s
    if not np.all(np.isfinite(s)) or (s < 0).any():
        raise ValueError(f"KL scores must be finite and >= 0, got {s.tolist()}")
    if scheme == "none":
        return np.full(s.size, 1.0 / s.size)
    if scheme == "exp":
        e = np.exp(s - s.max())  # same softmax, no overflow
        return e / e.sum()
    total = s.sum()
    w = s / total if total > 0 else np.full(s.size, 1.0 / s.size)
    if scheme == "dirac":
        kept = np.where(w >= threshold, w, 0.0)
        if kept.sum() == 0:
            kept = np.where(w == w.max(), w, 0.0)
        w = kept / kept.sum()
    return w


def combine_weights(kl_w: Sequence[float] | np.ndarray,
                    loads: Sequence[float] | np.ndarray) -> np.ndarray:
    """Multiply KL weights by loads (images trained on per D step) and renormalise."""
    a = np.asarray(kl_w, dtype=np.float64)
    b = np.asarray(loads, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"{a.size} weights but {b.size} loads")
    if (b < 0).any():
        raise ValueError("loads must be >= 0")
    w = a * b
    total = w.sum()
    if a.size and total <= 0:
        raise ValueError("all combined weights are zero: nothing to aggregate")
    return w / total if a.size else w
