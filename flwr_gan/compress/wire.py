"""AdaComp's wire format: every sparse layer packed into a few arrays, checked on arrival.

An upload's compressed layers travel as at most five :class:`~flwr.app.Array`
entries of its ArrayRecord, whatever the number of layers (Flower frames every
Array with its own header and key: one pair per layer cost about 7 kB per
upload of a 40-tensor GAN, more than the payload at 1 %):

* ``adacomp#n``: uint32, how many entries each layer sends, in layer order;
* ``adacomp#i1`` / ``adacomp#i2`` / ``adacomp#i4``: the flat positions of the
  layers whose index fits in uint8 / uint16 / uint32 (the smallest unsigned
  type that holds ``size - 1``), concatenated in layer order, strictly
  increasing within each layer;
* ``adacomp#v``: the values of every layer, concatenated, float32 or float16.

The receiver knows every layer's name, order and shape from what it sent (or
the tensor it asked feedback on), so none of them travel. :func:`decode` checks
everything a sender could get wrong or forge (counts that do not add up, an
index out of range or repeated, a dtype that is not allowed, NaN / inf) and
raises :class:`MalformedPayload` naming the layer: nothing half-decoded is ever
returned.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord

from flwr_gan.compress.adacomp import VALUE_DTYPES, Sparse, index_dtype
from flwr_gan.runtime.records import InvalidUpdateError

PREFIX = "adacomp#"
COUNTS = PREFIX + "n"
VALUES = PREFIX + "v"
_INDEX_DTYPES: dict[int, np.dtype[Any]] = {
    1: np.dtype(np.uint8), 2: np.dtype(np.uint16), 4: np.dtype(np.uint32)}
INDEX_KEYS = {size: f"{PREFIX}i{size}" for size in _INDEX_DTYPES}


class MalformedPayload(InvalidUpdateError):  # noqa: N818 - reads as what arrived
    """A compressed upload that cannot be decoded; it must not be aggregated."""


def is_compressed(arrays: ArrayRecord) -> bool:
    """Whether ``arrays`` holds AdaComp sparse layers (any ``adacomp#`` key)."""
    return any(k.startswith(PREFIX) for k in arrays.keys())


def split(arrays: ArrayRecord) -> tuple[ArrayRecord, ArrayRecord]:
    """Return ``(sparse part, dense rest)`` of an upload."""
    sparse = ArrayRecord({k: arrays[k] for k in arrays.keys() if k.startswith(PREFIX)})
    dense = ArrayRecord({k: arrays[k] for k in arrays.keys() if not k.startswith(PREFIX)})
    return sparse, dense


def encode(sent: Mapping[str, Sparse]) -> ArrayRecord:
    """Return the ArrayRecord carrying ``sent`` (layer order is the receiver's order)."""
    counts = np.array([s.indices.size for s in sent.values()], dtype=np.uint32)
    groups: dict[int, list[np.ndarray]] = {size: [] for size in _INDEX_DTYPES}
    for sparse in sent.values():
        width = index_dtype(sparse.size).itemsize
        groups[width].append(sparse.indices.astype(_INDEX_DTYPES[width], copy=False))
    dtypes = {s.values.dtype for s in sent.values()}
    value_dtype = dtypes.pop() if len(dtypes) == 1 else np.dtype(np.float32)
    values = (np.concatenate([s.values.astype(value_dtype, copy=False) for s in sent.values()])
              if sent else np.zeros(0, dtype=value_dtype))
    out: dict[str, Array] = {COUNTS: Array(counts)}
    for width, parts in groups.items():
        if parts:
            out[INDEX_KEYS[width]] = Array(np.ascontiguousarray(np.concatenate(parts)))
    out[VALUES] = Array(np.ascontiguousarray(values))
    return ArrayRecord(out)


def decode(arrays: ArrayRecord, shapes: Mapping[str, tuple[int, ...]], *,
           what: str = "upload") -> dict[str, Sparse]:
    """Decode and check a compressed ArrayRecord against the expected layer shapes.

    Parameters
    ----------
    arrays : ArrayRecord
        What arrived (its ``adacomp#`` entries; other keys are ignored).
    shapes : mapping
        Layer name -> shape, for every layer, in the order the sender used.
    what : str
        Names the sender in error messages.

    Raises
    ------
    MalformedPayload
        Naming the layer and what is wrong with it.
    """
    sparse, _ = split(arrays)
    allowed = {COUNTS, VALUES, *INDEX_KEYS.values()}
    extra = sorted(set(sparse.keys()) - allowed)
    if extra or COUNTS not in sparse or VALUES not in sparse:
        raise MalformedPayload(f"{what}: compressed payload needs {COUNTS!r} and {VALUES!r} "
                               f"(unexpected {extra[:3]}, present {sorted(sparse.keys())[:6]})")
    counts = sparse[COUNTS].numpy()
    values = sparse[VALUES].numpy()
    if counts.dtype != np.uint32 or counts.ndim != 1 or counts.size != len(shapes):
        raise MalformedPayload(f"{what}: {COUNTS!r} must be {len(shapes)} uint32 counts, one "
                               f"per layer (got {counts.size} of {counts.dtype})")
    if values.dtype not in set(VALUE_DTYPES.values()) or values.ndim != 1:
        raise MalformedPayload(f"{what}: values have dtype {values.dtype}, expected one of "
                               f"{sorted(VALUE_DTYPES)}")
    if int(counts.sum(dtype=np.int64)) != values.size:
        raise MalformedPayload(f"{what}: {values.size} values for {int(counts.sum())} "
                               "counted entries")
    if not np.all(np.isfinite(values)):
        raise MalformedPayload(f"{what}: values hold NaN or inf")
    indices = {}
    for width, key in INDEX_KEYS.items():
        part = sparse[key].numpy() if key in sparse else np.zeros(0, _INDEX_DTYPES[width])
        if part.dtype != _INDEX_DTYPES[width] or part.ndim != 1:
            raise MalformedPayload(f"{what}: {key!r} must hold {_INDEX_DTYPES[width]} indices, "
                                   f"got {part.dtype}")
        indices[width] = part
    taken = dict.fromkeys(INDEX_KEYS, 0)
    out: dict[str, Sparse] = {}
    start = 0
    for (name, shape), count in zip(shapes.items(), counts.tolist(), strict=True):
        shape = tuple(int(v) for v in shape)
        width = index_dtype(int(np.prod(shape, dtype=np.int64))).itemsize
        pos = indices[width][taken[width]:taken[width] + count]
        if pos.size != count:
            raise MalformedPayload(f"{what}, layer {name!r}: {count} entries counted, only "
                                   f"{pos.size} indices left")
        taken[width] += count
        out[name] = _decode_layer(pos, values[start:start + count], shape,
                                  what=f"{what}, layer {name!r}")
        start += count
    left = {INDEX_KEYS[w]: indices[w].size - taken[w] for w in INDEX_KEYS
            if indices[w].size != taken[w]}
    if left:
        raise MalformedPayload(f"{what}: indices left over after the last layer {left}")
    return out


def _decode_layer(indices: np.ndarray, values: np.ndarray, shape: tuple[int, ...], *,
                  what: str) -> Sparse:
    size = int(np.prod(shape, dtype=np.int64))
    if indices.dtype not in set(_INDEX_DTYPES.values()):
        raise MalformedPayload(f"{what}: indices have dtype {indices.dtype}, expected an "
                               "unsigned integer type")
    if values.dtype not in set(VALUE_DTYPES.values()):
        raise MalformedPayload(f"{what}: values have dtype {values.dtype}, expected one of "
                               f"{sorted(VALUE_DTYPES)}")
    if indices.ndim != 1 or values.ndim != 1 or indices.size != values.size:
        raise MalformedPayload(f"{what}: {indices.size} indices (ndim {indices.ndim}) for "
                               f"{values.size} values (ndim {values.ndim})")
    if indices.size > size:
        raise MalformedPayload(f"{what}: {indices.size} entries for a layer of {size}")
    if indices.size:
        wide = indices.astype(np.int64)
        if int(wide[-1]) >= size or np.any(np.diff(wide) <= 0):
            raise MalformedPayload(f"{what}: indices must be strictly increasing and below "
                                   f"{size} (max {int(wide.max())})")
    if not np.all(np.isfinite(values)):
        raise MalformedPayload(f"{what}: values hold NaN or inf")
    return Sparse(indices, values, shape)


__all__ = ["COUNTS", "INDEX_KEYS", "PREFIX", "VALUES", "MalformedPayload", "decode", "encode",
           "is_compressed", "split"]
