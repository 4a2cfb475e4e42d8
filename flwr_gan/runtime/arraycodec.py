"""Fast, exact Flower :class:`~flwr.app.Array` encoding for node state and payloads.

* :func:`array_of` / :func:`view_of` encode and decode an Array byte for byte as
  ``Array(ndarray)`` / ``Array.numpy()`` do, with one copy on the way in and
  none on the way out: the ``.npy`` header is cached per dtype and shape
  instead of being written by ``np.save`` and parsed by ``ast.literal_eval``
  for every array (that parsing alone cost more than a millisecond per
  MD-GAN step).
* The Arrays :func:`array_of` makes are :class:`OutOfBandArray`: they hand their
  bytes to pickle protocol 5 *out of band*. Ray, which pickles every message
  and every node Context between Flower's simulation engine and its actors,
  then moves them through its shared object store without copying them into
  and out of the pickle stream.
* :func:`array_record` keeps such Arrays in an ArrayRecord (``ArrayRecord(dict)``
  would rebuild them as plain Arrays); :func:`module_arrays` /
  :func:`load_module_arrays` pack and load networks like
  :func:`flwr_gan.runtime.records.models_to_arrays` / ``load_arrays``.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord
from torch import nn

from flwr_gan.runtime.records import check_state, load_arrays

_NUMPY = "numpy.ndarray"
_HEADERS: dict[tuple[str, tuple[int, ...]], bytes] = {}
_LAYOUTS: dict[bytes, tuple[np.dtype[Any], tuple[int, ...], bool]] = {}


class OutOfBandArray(Array):
    """An :class:`~flwr.app.Array` whose bytes pickle protocol 5 passes out of band.

    Flower's simulation engine sends every message and the node's Context to
    a Ray actor and back, pickled; Ray keeps out-of-band buffers in its shared
    object store and unpickles them as read-only views. A plain Array's
    ``bytes`` are instead copied into the pickle stream, into the object store
    and out again, on both legs: for a node state of megabytes that copying
    cost more than the worker's training step. Here ``data`` may hold such a
    view; it becomes ``bytes`` (one copy) only when read through ``data``, and
    :func:`view_of` reads the view in place. Anything else sees an Array: equal
    to a plain Array with the same fields, and named ``Array`` on the wire
    (Flower's object headers carry the class name), so a receiver inflates a
    plain Array. Without out-of-band support the bytes are pickled in band.
    """

    def __reduce_ex__(self, protocol: Any) -> Any:
        """Pickle with the raw buffer out of band (protocol 5) or as bytes."""
        raw = self.raw
        buffer: Any = pickle.PickleBuffer(raw) if int(protocol) >= 5 else bytes(raw)
        return _rebuild_array, (self.dtype, tuple(self.shape), self.stype, buffer)

    @property
    def data(self) -> bytes:
        """The serialized array as ``bytes`` (copied once from a shared view)."""
        raw = self.raw
        if not isinstance(raw, bytes):
            raw = bytes(raw)
            self.__dict__["_raw"] = raw
        return raw

    @data.setter
    def data(self, value: bytes) -> None:
        self.__dict__["_raw"] = value

    @property
    def raw(self) -> Any:
        """``data`` as stored: ``bytes`` or a read-only buffer (no copy)."""
        return self.__dict__.get("_raw", self.__dict__.get("data", b""))

    def __eq__(self, other: object) -> bool:
        """Equal to any Array with the same dtype, shape, stype and bytes."""
        if not isinstance(other, Array):
            return NotImplemented
        return (self.dtype, tuple(self.shape), self.stype) == (
            other.dtype, tuple(other.shape), other.stype) and bytes(self.raw) == bytes(
            other.raw if isinstance(other, OutOfBandArray) else other.data)

    __hash__ = None  # type: ignore[assignment]


OutOfBandArray.__qualname__ = "Array"  # what Flower writes into (and reads from) object headers


def _rebuild_array(dtype: str, shape: tuple[int, ...], stype: str, buffer: Any) -> Array:
    """Unpickle an :class:`OutOfBandArray` (``buffer``: bytes or a shared read-only view)."""
    arr = OutOfBandArray.__new__(OutOfBandArray)
    arr.__dict__.update(dtype=dtype, shape=tuple(shape), stype=stype)
    raw = buffer.raw() if isinstance(buffer, pickle.PickleBuffer) else buffer
    arr.__dict__["_raw"] = raw if isinstance(raw, bytes | memoryview) else memoryview(raw)
    return arr


def _raw(array: Array) -> Any:
    return array.raw if isinstance(array, OutOfBandArray) else array.data


def array_of(arr: np.ndarray) -> Array:
    """Return ``Array(arr)`` (same bytes as ``np.save``), copying the data once.

    The result is an :class:`OutOfBandArray` (an Array to every reader).
    """
    arr = np.asarray(arr)
    if (arr.dtype.hasobject or arr.dtype.names is not None or not arr.flags.c_contiguous
            or arr.size == 0):
        return Array(arr)
    key = (arr.dtype.str, tuple(arr.shape))
    header = _HEADERS.get(key)
    if header is None:  # let numpy write the first one: the header is np.save's exactly
        reference = Array(arr).data
        header = reference[:len(reference) - arr.nbytes]
        _HEADERS[key] = header
    try:
        raw = arr.data.cast("B")
    except (TypeError, ValueError):  # a dtype without a buffer format
        return Array(arr)
    return OutOfBandArray(dtype=str(arr.dtype), shape=tuple(int(s) for s in arr.shape),
                          stype=_NUMPY, data=b"".join((header, raw)))


def _layout(data: Any) -> tuple[int, tuple[np.dtype[Any], tuple[int, ...], bool]] | None:
    """Return ``(offset, (dtype, shape, fortran))`` of a ``.npy`` buffer, or None."""
    if len(data) < 10 or bytes(data[:6]) != b"\x93NUMPY":
        return None
    if data[6] == 1:
        start = 10 + int.from_bytes(data[8:10], "little")
    elif data[6] in (2, 3):
        start = 12 + int.from_bytes(data[8:12], "little")
    else:
        return None
    header = bytes(data[:start])
    layout = _LAYOUTS.get(header)
    if layout is None:
        fp = io.BytesIO(header)
        version = np.lib.format.read_magic(fp)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read(fp)
        if dtype.hasobject:
            return None
        layout = (dtype, tuple(int(s) for s in shape), bool(fortran))
        _LAYOUTS[header] = layout
    return start, layout


def view_of(array: Array) -> np.ndarray:
    """Return ``array.numpy()`` as a read-only view of its bytes (no copy when possible)."""
    raw = _raw(array)
    found = _layout(raw) if array.stype == _NUMPY else None
    if found is None:
        return array.numpy()
    start, (dtype, shape, fortran) = found
    count = int(np.prod(shape, dtype=np.int64))
    if len(raw) - start != count * dtype.itemsize:
        return array.numpy()
    flat = np.frombuffer(raw, dtype=dtype, count=count, offset=start)
    return flat.reshape(shape, order="F" if fortran else "C")


def tensor_of(array: Array) -> torch.Tensor:
    """Return a new (writable) tensor holding ``array``'s values."""
    return torch.from_numpy(np.array(view_of(array)))


def array_record(arrays: Mapping[str, Array]) -> ArrayRecord:
    """Return an ArrayRecord holding these Array objects themselves.

    ``ArrayRecord(dict)`` rebuilds every value as a plain Array, which would
    turn an :class:`OutOfBandArray` back into one pickled in band.
    """
    record = ArrayRecord()
    for key, arr in arrays.items():
        record[key] = arr
    return record


def module_arrays(modules: Mapping[str, nn.Module]) -> ArrayRecord:
    """Pack networks like :func:`flwr_gan.runtime.records.models_to_arrays`, faster."""
    return array_record({f"{prefix}.{key}": array_of(t.detach().cpu().numpy())
                         for prefix, module in modules.items()
                         for key, t in module.state_dict().items()})


def load_module_arrays(module: nn.Module, arrays: ArrayRecord, prefix: str, *,
                       what: str) -> None:
    """Validate and copy one network's arrays into ``module`` (in place).

    Like :func:`flwr_gan.runtime.records.load_arrays` (same checks), copying
    each array straight into the module's tensors.

    Raises
    ------
    flwr_gan.runtime.records.InvalidUpdateError
        On missing or unexpected keys, wrong shapes or non-finite values.
    """
    head = f"{prefix}."
    incoming = {k[len(head):]: view_of(v) for k, v in arrays.items() if k.startswith(head)}
    reference = module.state_dict()
    check_state(reference, incoming, what=what)
    if any(incoming[k].dtype != t.numpy().dtype for k, t in reference.items()):
        load_arrays(module, arrays, prefix, what=what)  # casts (e.g. averaged int buffers)
        return
    for key, tensor in reference.items():
        np.copyto(tensor.numpy(), incoming[key])


__all__ = ["OutOfBandArray", "array_of", "array_record", "load_module_arrays", "module_arrays",
           "tensor_of", "view_of"]
