"""Validation and weighted averaging of model updates (pure, no Flower grid).

Every reply is checked against the global arrays that were sent (same keys,
same shapes, finite values) before it is averaged; a reply that fails is
excluded from the round and reported, never averaged in. Averages are
computed in float64 and cast back to each array's original dtype (integer
buffers such as BatchNorm's ``num_batches_tracked`` are rounded), so the
global model keeps its dtypes round after round.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from flwr.app import Array, ArrayRecord

from flwr_gan.runtime.records import InvalidUpdateError


def check_update(reference: ArrayRecord, update: ArrayRecord, *, what: str) -> None:
    """Raise :class:`InvalidUpdateError` unless ``update`` fits ``reference``.

    Checks: identical key sets, identical shapes, only finite values.
    """
    missing = sorted(set(reference.keys()) - set(update.keys()))
    extra = sorted(set(update.keys()) - set(reference.keys()))
    if missing or extra:
        raise InvalidUpdateError(
            f"{what}: arrays do not match the global model (missing {missing[:3]}, "
            f"unexpected {extra[:3]})"
        )
    for key, ref in reference.items():
        arr = update[key].numpy()
        if tuple(arr.shape) != tuple(ref.shape):
            raise InvalidUpdateError(
                f"{what}: {key} has shape {tuple(arr.shape)}, expected {tuple(ref.shape)}"
            )
        if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
            raise InvalidUpdateError(f"{what}: {key} contains NaN or infinite values")


def weighted_average(reference: ArrayRecord, updates: Sequence[ArrayRecord],
                     weights: Sequence[float] | np.ndarray) -> ArrayRecord:
    """Return ``sum_k w_k * update_k`` (weights renormalised to sum to 1).

    Parameters
    ----------
    reference : ArrayRecord
        The global arrays (gives key order and dtypes).
    updates : sequence of ArrayRecord
        Validated updates (:func:`check_update`).
    weights : array-like
        Non-negative weights, one per update, not all zero.
    """
    w = np.asarray(weights, dtype=np.float64)
    if len(updates) == 0 or w.shape != (len(updates),):
        raise ValueError(f"need one weight per update, got {w.shape} for {len(updates)}")
    if not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be finite, >= 0 and not all zero: {w.tolist()}")
    w = w / w.sum()
    out: dict[str, Array] = {}
    for key, ref in reference.items():
        dtype = ref.numpy().dtype
        acc = np.zeros(tuple(ref.shape), dtype=np.float64)
        for wk, upd in zip(w, updates, strict=True):
            if wk:
                acc += wk * upd[key].numpy().astype(np.float64)
        if dtype.kind in "iub":
            acc = np.rint(acc)
        out[key] = Array(np.asarray(acc.astype(dtype)))
    return ArrayRecord(out)
