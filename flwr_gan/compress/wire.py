"""AdaComp's wire format: sparse layers as plain arrays of an ArrayRecord, checked on arrival.

A compressed layer ``name`` travels as two :class:`~flwr.app.Array` entries of
the same ArrayRecord:

* ``name#i``: its flat positions, strictly increasing, in the smallest
  unsigned integer type holding ``size - 1`` (uint8 / uint16 / uint32);
* ``name#v``: its values, float32 or float16.

The receiver knows every layer's shape from the model it sent (or the tensor it
asked feedback on), so shapes do not travel. :func:`decode` checks everything a
sender could get wrong or forge (a missing or extra layer, an index out of range
or repeated, lengths that differ, a dtype that is not allowed, NaN / inf) and
raises :class:`MalformedPayload` naming the layer: nothing half-decoded is ever
returned.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from flwr.app import Array, ArrayRecord

from flwr_gan.compress.adacomp import VALUE_DTYPES, Sparse
from flwr_gan.runtime.records import InvalidUpdateError

INDEX_SUFFIX = "#i"
VALUE_SUFFIX = "#v"
_INDEX_DTYPES = {np.dtype(t) for t in (np.uint8, np.uint16, np.uint32, np.uint64)}


class MalformedPayload(InvalidUpdateError):  # noqa: N818 - reads as what arrived
    """A compressed upload that cannot be decoded; it must not be aggregated."""


def is_compressed(arrays: ArrayRecord) -> bool:
    """Whether ``arrays`` holds AdaComp sparse layers (any ``#i`` / ``#v`` key)."""
    return any(k.endswith((INDEX_SUFFIX, VALUE_SUFFIX)) for k in arrays.keys())


def encode(sent: Mapping[str, Sparse]) -> ArrayRecord:
    """Return the ArrayRecord carrying ``sent`` (two arrays per layer, layer order kept)."""
    out: dict[str, Array] = {}
    for key, sparse in sent.items():
        out[key + INDEX_SUFFIX] = Array(np.ascontiguousarray(sparse.indices))
        out[key + VALUE_SUFFIX] = Array(np.ascontiguousarray(sparse.values))
    return ArrayRecord(out)


def payload_nbytes(sent: Mapping[str, Sparse]) -> int:
    """Bytes of indices and values alone (without the record's framing)."""
    return sum(s.nbytes for s in sent.values())


def decode(arrays: ArrayRecord, shapes: Mapping[str, tuple[int, ...]], *,
           what: str = "upload") -> dict[str, Sparse]:
    """Decode and check a compressed ArrayRecord against the expected layer shapes.

    Parameters
    ----------
    arrays : ArrayRecord
        What arrived.
    shapes : mapping
        Layer name -> shape, for every layer that must be present.
    what : str
        Names the sender in error messages.

    Raises
    ------
    MalformedPayload
        Naming the layer and what is wrong with it.
    """
    expected = {k + s for k in shapes for s in (INDEX_SUFFIX, VALUE_SUFFIX)}
    present = set(arrays.keys())
    missing = sorted(expected - present)
    extra = sorted(present - expected)
    if missing or extra:
        raise MalformedPayload(f"{what}: compressed layers do not match the model "
                               f"(missing {missing[:3]}, unexpected {extra[:3]})")
    out: dict[str, Sparse] = {}
    for key, shape in shapes.items():
        out[key] = _decode_layer(arrays[key + INDEX_SUFFIX].numpy(),
                                 arrays[key + VALUE_SUFFIX].numpy(), tuple(shape),
                                 what=f"{what}, layer {key!r}")
    return out


def _decode_layer(indices: np.ndarray, values: np.ndarray, shape: tuple[int, ...], *,
                  what: str) -> Sparse:
    size = int(np.prod(shape, dtype=np.int64))
    if indices.dtype not in _INDEX_DTYPES:
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


__all__ = ["INDEX_SUFFIX", "VALUE_SUFFIX", "MalformedPayload", "decode", "encode",
           "is_compressed", "payload_nbytes"]
