"""MD-GAN's scheduling decisions, as pure functions.

Everything the server decides before it talks to a worker lives here and is
unit-tested without Flower or Ray: how many generated batches per iteration
(``kappa``), which two batches each worker gets (paper §IV-B1), when the
discriminators are swapped (Algorithm 1, line 11) and with whom (a random
permutation without fixed points), which workers crash in the paper's crash
experiment (§V-B3), which workers take part when only a subset is sampled
(§VII-4), and which real images a worker uses at a given iteration.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def kappa_for(num_workers: int, kappa: int | str) -> int:
    """Return the number of generated batches per iteration.

    Parameters
    ----------
    num_workers : int
        Workers taking part in the iteration (``N``).
    kappa : int or str
        An integer, or ``"log"`` for the paper's ``floor(log N)`` (natural
        logarithm; at least 1).

    Returns
    -------
    int
        ``kappa`` clipped to ``[1, N]`` (the paper requires ``kappa <= N``).

    Raises
    ------
    ValueError
        For ``num_workers < 1``, a non-positive integer or an unknown string.
    """
    if num_workers < 1:
        raise ValueError(f"need at least one worker, got {num_workers}")
    if isinstance(kappa, str):
        if kappa == "log":
            return max(1, min(num_workers, int(math.floor(math.log(num_workers)))))
        try:
            kappa = int(kappa)
        except ValueError:
            raise ValueError(f"kappa must be a positive integer or 'log', got {kappa!r}") from None
    if kappa < 1:
        raise ValueError(f"kappa must be >= 1, got {kappa}")
    return min(int(kappa), num_workers)


def assign_batches(num_workers: int, kappa: int) -> list[tuple[int, int]]:
    """Return ``(g, d)`` batch indices (0-based) for workers ``n = 1..N``.

    The paper's rule: ``X_g = X^((n mod kappa) + 1)`` and
    ``X_d = X^(((n + 1) mod kappa) + 1)`` with 1-based batches, i.e. here
    ``g = n mod kappa`` and ``d = (n + 1) mod kappa``. The two batches differ
    whenever ``kappa >= 2``; with ``kappa = 1`` both are the single batch.

    Raises
    ------
    ValueError
        If ``kappa`` is not in ``[1, num_workers]``.
    """
    if not 1 <= kappa <= max(num_workers, 1):
        raise ValueError(f"kappa must be in [1, {num_workers}], got {kappa}")
    return [(n % kappa, (n + 1) % kappa) for n in range(1, num_workers + 1)]


def derangement(n: int, rng: np.random.Generator) -> list[int]:
    """Return a uniformly random permutation of ``range(n)`` without fixed points.

    ``result[i]`` is who receives worker ``i``'s discriminator. Rejection
    sampling: a random permutation is a derangement with probability ~1/e, so
    this takes ~2.7 draws on average.

    Raises
    ------
    ValueError
        For ``n == 1`` (one worker cannot swap) or ``n < 0``.
    """
    if n < 0 or n == 1:
        raise ValueError(f"no derangement of {n} element(s)")
    while True:
        perm = rng.permutation(n)
        if not np.any(perm == np.arange(n)):
            return [int(p) for p in perm]


def swap_period(local_size: int, epochs: float, batch_size: int) -> int:
    """Return the iterations between discriminator swaps: ``m E / b`` (at least 1).

    Parameters
    ----------
    local_size : int
        ``m``, images per worker.
    epochs : float
        ``E``, local epochs between swaps; ``<= 0`` disables swapping (returns 0).
    batch_size : int
        ``b``.
    """
    if epochs <= 0:
        return 0
    if local_size < 1 or batch_size < 1:
        raise ValueError("local_size and batch_size must be >= 1")
    return max(1, int(round(local_size * epochs / batch_size)))


def is_swap_iteration(iteration: int, period: int) -> bool:
    """Algorithm 1, line 11: swap after iteration ``i`` (1-based) when ``i mod period == 0``."""
    return period > 0 and iteration > 0 and iteration % period == 0


def crash_iterations(iterations: int, num_workers: int) -> list[int]:
    """Return the paper's crash schedule: one worker fails every ``I / N`` iterations.

    Returns the (1-based) iterations at whose start one more worker crashes:
    ``k * I / N`` for ``k = 1..N-1`` (rounded down). The paper's last crash
    lands on ``I`` itself, after the final iteration, so it is left out: the
    run always keeps one worker.
    """
    if iterations < 1 or num_workers < 1:
        return []
    step = iterations / num_workers
    return [max(1, int(math.floor(k * step))) for k in range(1, num_workers)]


def sample_workers(
    alive: Sequence[int], k: int, rng: np.random.Generator
) -> list[int]:
    """Pick ``k`` of the alive workers uniformly without replacement (all if ``k <= 0``).

    The result keeps the order of ``alive`` so that batch assignment is stable.
    """
    if k <= 0 or k >= len(alive):
        return list(alive)
    chosen = set(int(i) for i in rng.choice(len(alive), size=k, replace=False))
    return [w for i, w in enumerate(alive) if i in chosen]


def real_batch_indices(
    local_size: int, batch_size: int, iteration: int, seed: int
) -> np.ndarray:
    """Return the indices of a worker's real batch at ``iteration`` (0-based), stateless.

    Epoch ``e`` uses a permutation seeded by ``(seed, e)``; the iteration
    takes the next ``b`` indices of it, so every local image is seen once per
    epoch without keeping an iterator in the node state. When ``b > m`` the
    whole (shuffled) local set is the batch.
    """
    if local_size < 1:
        raise ValueError("the local data set is empty")
    b = min(batch_size, local_size)
    per_epoch = local_size // b
    epoch, slot = divmod(int(iteration), per_epoch)
    perm = np.random.default_rng([int(seed), epoch]).permutation(local_size)
    return perm[slot * b:(slot + 1) * b]
