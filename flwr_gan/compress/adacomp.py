"""AdaComp's two pieces as pure functions: gradient selection and staleness modulation.

From Hardy, Le Merrer and Sericola, "Distributed deep learning on edge-devices:
feasibility via adaptive compression" (NCA 2017, arXiv 1702.04683); what is
taken from the paper and where this module deviates is in docs/compression.md.

Selection with error feedback (:func:`compress`)
    A device adds its new update (a model delta, or a feedback tensor) to the
    residual it kept from earlier uploads, and sends, **per layer**, the
    ``ceil(ratio * n)`` entries of largest magnitude of that sum (at least one
    per layer, so no layer ever stops learning). Everything not sent stays in
    the residual and is added to the next update: over a run, what was sent
    plus the final residual equals the sum of all updates. The values may be
    sent as float16; their rounding error stays in the residual too.
Staleness-based learning-rate modulation (:func:`staleness_scale`)
    The server divides the update of each parameter by its staleness
    ``sigma = 1 + (updates the parameter received since the sender's copy)``:
    with sparse uploads most parameters are much fresher than the model as a
    whole, so they keep most of their learning rate.

Nothing here knows Flower: :mod:`flwr_gan.compress.wire` turns a
:class:`Sparse` into arrays and back, :mod:`flwr_gan.compress.mod` and
:mod:`flwr_gan.compress.strategy` put both ends into a ClientApp and a Strategy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

VALUE_DTYPES: dict[str, np.dtype[np.floating]] = {
    "float32": np.dtype(np.float32), "float16": np.dtype(np.float16)}


@dataclass(frozen=True)
class Sparse:
    """The selected entries of one layer.

    Attributes
    ----------
    indices : numpy.ndarray
        Flat positions, strictly increasing, in the smallest unsigned integer
        type that holds ``size - 1``.
    values : numpy.ndarray
        The entries at those positions (float32 or float16).
    shape : tuple of int
        The layer's shape.
    """

    indices: np.ndarray
    values: np.ndarray
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        """Number of entries of the dense layer."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes of the payload (indices + values)."""
        return int(self.indices.nbytes + self.values.nbytes)

    def dense(self) -> np.ndarray:
        """Return the layer with the sent entries and zeros elsewhere (float32)."""
        out = np.zeros(self.size, dtype=np.float32)
        out[self.indices.astype(np.int64)] = self.values.astype(np.float32)
        return out.reshape(self.shape)


def index_dtype(size: int) -> np.dtype[np.unsignedinteger]:
    """Return the smallest unsigned integer dtype holding every index of ``size`` entries."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if size - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def count_selected(size: int, ratio: float) -> int:
    """Entries sent from a layer of ``size`` entries: ``ceil(ratio * size)``, at least 1."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    if size <= 0:
        return 0
    return min(size, max(1, math.ceil(ratio * size)))


def select(accumulated: np.ndarray, ratio: float) -> np.ndarray:
    """Return the sorted flat positions of the ``count_selected`` largest ``|accumulated|``.

    Ties are broken by position (stable), so the choice is deterministic.
    """
    flat = np.abs(np.asarray(accumulated, dtype=np.float32).reshape(-1))
    k = count_selected(flat.size, ratio)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    if k == flat.size:
        return np.arange(flat.size, dtype=np.int64)
    # argpartition is O(n); a stable tie-break needs the k-th value's ties resolved.
    kth = np.partition(flat, flat.size - k)[flat.size - k]
    above = np.flatnonzero(flat > kth)
    ties = np.flatnonzero(flat == kth)[: k - above.size]
    return np.sort(np.concatenate([above, ties])).astype(np.int64)


def compress_layer(update: np.ndarray, residual: np.ndarray | None, ratio: float,
                   value_dtype: str = "float32") -> tuple[Sparse, np.ndarray]:
    """Select one layer's entries; return them and the new residual.

    Parameters
    ----------
    update : numpy.ndarray
        This upload's update of the layer.
    residual : numpy.ndarray or None
        What earlier uploads left unsent (``None``: nothing).
    ratio : float
        Fraction of the layer's entries to send, in (0, 1].
    value_dtype : {"float32", "float16"}
        Dtype of the sent values.

    Returns
    -------
    sparse : Sparse
        The sent entries.
    residual : numpy.ndarray
        ``update + residual - sparse.dense()`` (float32, the layer's shape).

    Raises
    ------
    ValueError
        If the update holds NaN or inf (it must not be sent nor kept), or the
        residual's shape differs.
    """
    acc = np.array(update, dtype=np.float32, copy=True)
    if not np.all(np.isfinite(acc)):
        raise ValueError("the update holds NaN or inf values: nothing is sent")
    if residual is not None:
        if residual.shape != acc.shape:
            raise ValueError(f"residual shape {residual.shape} != update shape {acc.shape}")
        acc += residual
    if value_dtype not in VALUE_DTYPES:
        raise ValueError(f"value_dtype must be one of {sorted(VALUE_DTYPES)}, got "
                         f"{value_dtype!r}")
    flat = acc.reshape(-1)
    positions = select(flat, ratio)
    values = flat[positions].astype(VALUE_DTYPES[value_dtype])
    sparse = Sparse(positions.astype(index_dtype(flat.size)), values, tuple(acc.shape))
    flat[positions] -= values.astype(np.float32)  # float16 rounding stays behind
    return sparse, acc


def compress(update: Mapping[str, np.ndarray], residual: Mapping[str, np.ndarray] | None,
             ratio: float, value_dtype: str = "float32"
             ) -> tuple[dict[str, Sparse], dict[str, np.ndarray]]:
    """Apply :func:`compress_layer` to every layer of ``update`` (keys kept in order).

    A residual for a layer the update lacks is carried over unchanged.
    """
    residual = dict(residual or {})
    sent: dict[str, Sparse] = {}
    for key, value in update.items():
        sent[key], residual[key] = compress_layer(value, residual.get(key), ratio, value_dtype)
    return sent, residual


def decompress(sent: Mapping[str, Sparse]) -> dict[str, np.ndarray]:
    """Return the dense layers of ``sent`` (zeros where nothing was sent)."""
    return {key: sparse.dense() for key, sparse in sent.items()}


def staleness_scale(updates_since: np.ndarray) -> np.ndarray:
    """AdaComp's per-parameter learning-rate factor ``1 / sigma``.

    Parameters
    ----------
    updates_since : numpy.ndarray
        For each parameter, how many updates it received on the server since
        the sender's copy was taken (0: the sender's copy is current).

    Returns
    -------
    numpy.ndarray
        ``1 / (1 + updates_since)`` (float32).
    """
    counts = np.asarray(updates_since)
    if np.any(counts < 0):
        raise ValueError("update counts must be >= 0")
    return (1.0 / (1.0 + counts.astype(np.float32))).astype(np.float32)


__all__ = ["VALUE_DTYPES", "Sparse", "compress", "compress_layer", "count_selected",
           "decompress", "index_dtype", "select", "staleness_scale"]
