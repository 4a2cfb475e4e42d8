"""Per-node state that lives across messages in ``context.state``.

Server-mediated protocols keep models and optimizers on the node between
messages (MD-GAN discriminators, gossip workers' G and D). Flower persists
``context.state`` (a RecordDict) per node; this module puts torch modules and
optimizer state into ArrayRecords and back, cheaply:

* :func:`array_of` / :func:`view_of` encode and decode an :class:`~flwr.app.Array`
  byte for byte as ``Array(ndarray)`` / ``Array.numpy()`` do, with one copy on
  the way in and none on the way out (the ``.npy`` header is cached per dtype
  and shape instead of being written and ``literal_eval``-ed per array). The
  Arrays it makes hand their bytes to pickle protocol 5 *out of band*: Ray,
  which pickles every message and node Context between the simulation engine
  and its actors, then moves them without copying them into and out of the
  pickle stream (see :class:`OutOfBandArray`);
* :func:`optimizer_to_arrays` / :func:`load_optimizer_arrays` (optimizer state);
* :class:`NodeStore` keeps modules and optimizers in ``context.state`` *and*
  in a per-process cache. Flower's simulation engine may hand a node's next
  message to any Ray actor, and a real SuperNode may run each message in a
  fresh process, so ``context.state`` always holds the full, current state
  (written on every :meth:`NodeStore.save`); the cache only saves rebuilding
  the modules and decoding the arrays when this process wrote the state
  last. That is checked with a random token that every save writes both into
  ``context.state`` and into the cache entry.
"""

from __future__ import annotations

import io
import os
import pickle
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context
from torch import nn

from flwr_gan.runtime.records import check_state, load_arrays

_NUMPY = "numpy.ndarray"
_HEADERS: dict[tuple[str, tuple[int, ...]], bytes] = {}
_LAYOUTS: dict[bytes, tuple[np.dtype[Any], tuple[int, ...], bool]] = {}
TOKEN_KEY = "state-token"


# -- Array codec -----------------------------------------------------------------

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

    @property  # type: ignore[override]
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
        raw = memoryview(arr).cast("B")
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


# -- optimizer state ---------------------------------------------------------------

def _scalar(value: Any) -> np.ndarray:
    tensor = value if torch.is_tensor(value) else torch.tensor(float(value))
    return tensor.detach().cpu().numpy()


def optimizer_to_arrays(optimizer: torch.optim.Optimizer) -> ArrayRecord:
    """Serialize an Adam optimizer's per-parameter state (moments and step counts)."""
    arrays: dict[str, Array] = {}
    for idx, state in optimizer.state_dict()["state"].items():
        for name, value in state.items():
            arrays[f"{idx}.{name}"] = array_of(_scalar(value))
    return array_record(arrays)


def _params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def _parse_optimizer_arrays(arrays: ArrayRecord) -> dict[int, dict[str, Array]]:
    state: dict[int, dict[str, Array]] = {}
    for key, arr in arrays.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = arr
    return state


def load_optimizer_arrays(optimizer: torch.optim.Optimizer, arrays: ArrayRecord) -> None:
    """Restore per-parameter state saved by :func:`optimizer_to_arrays` (in place)."""
    sd = optimizer.state_dict()
    sd["state"] = {idx: {name: tensor_of(arr) for name, arr in entries.items()}
                   for idx, entries in _parse_optimizer_arrays(arrays).items()}
    optimizer.load_state_dict(sd)


def _copy_optimizer_arrays(optimizer: torch.optim.Optimizer, arrays: ArrayRecord) -> None:
    """Overwrite ``optimizer``'s per-parameter state with ``arrays`` (reusing its tensors)."""
    params = _params(optimizer)
    saved = _parse_optimizer_arrays(arrays)
    if any(idx >= len(params) for idx in saved):
        raise ValueError("stored optimizer state names more parameters than the optimizer has")
    for idx, param in enumerate(params):
        if idx not in saved:
            optimizer.state.pop(param, None)
            continue
        old = optimizer.state.get(param, {})
        new: dict[str, Any] = {}
        for name, arr in saved[idx].items():
            value = view_of(arr)
            current = old.get(name)
            if (torch.is_tensor(current) and tuple(current.shape) == value.shape
                    and current.numpy().dtype == value.dtype):
                np.copyto(current.numpy(), value)
                new[name] = current
            else:
                new[name] = torch.from_numpy(np.array(value))
        optimizer.state[param] = new


# -- the store -------------------------------------------------------------------

@dataclass
class NodeObjects:
    """What a node keeps between messages: modules, their optimizers, a caller payload.

    Attributes
    ----------
    modules : dict
        Prefix -> module (stored together, ``<prefix>.<key>`` arrays).
    optimizers : dict
        Prefix of a module -> its optimizer (stored one ArrayRecord each).
    payload : Any
        Whatever the caller built around them (e.g. a trainer); cached, not stored.
    """

    modules: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer] = field(default_factory=dict)
    payload: Any = None

    def nbytes(self) -> int:
        """Bytes of every tensor of the modules and optimizer states."""
        total = sum(t.numel() * t.element_size() for m in self.modules.values()
                    for t in m.state_dict().values())
        for opt in self.optimizers.values():
            for state in opt.state.values():
                total += sum(v.numel() * v.element_size() for v in state.values()
                             if torch.is_tensor(v))
        return total


@dataclass
class _Entry:
    signature: Hashable
    token: str
    objects: NodeObjects
    nbytes: int


_CACHE: OrderedDict[tuple[str, int, int], _Entry] = OrderedDict()
_CACHE_BYTES = int(float(os.environ.get("FLWR_GAN_STATE_CACHE_MB", "512")) * 2**20)
_PROCESS = uuid.uuid4().hex[:12]
_counter = 0


def _new_token() -> str:
    global _counter
    _counter += 1
    return f"{_PROCESS}-{_counter}"


class NodeStore:
    """Modules and optimizers of a node, kept in ``context.state`` and cached per process.

    Parameters
    ----------
    name : str
        Names the store in the cache (one per protocol).
    modules_key : str
        ``context.state`` ArrayRecord of the modules (``<prefix>.<key>`` arrays,
        the :func:`flwr_gan.runtime.records.models_to_arrays` layout).
    optimizer_keys : mapping
        Module prefix -> ``context.state`` ArrayRecord of its optimizer
        (the :func:`optimizer_to_arrays` layout).
    meta_key : str
        ``context.state`` ConfigRecord that receives the token (``state-token``).
    """

    def __init__(self, name: str, *, modules_key: str, optimizer_keys: Mapping[str, str],
                 meta_key: str) -> None:
        self.name = name
        self.modules_key = modules_key
        self.optimizer_keys = dict(optimizer_keys)
        self.meta_key = meta_key

    def _key(self, context: Context) -> tuple[str, int, int]:
        return (self.name, int(context.run_id), int(context.node_id))

    def _token(self, context: Context) -> str:
        meta: Any = context.state.config_records.get(self.meta_key)
        return str(meta.get(TOKEN_KEY, "")) if meta is not None else ""

    def has_state(self, context: Context) -> bool:
        """Whether ``context.state`` holds stored modules."""
        return self.modules_key in context.state.array_records

    def load(self, context: Context, signature: Hashable,
             build: Callable[[], NodeObjects]) -> tuple[NodeObjects, bool]:
        """Return the node's objects and whether they came from the cache as they were.

        ``build()`` makes fresh (initial) objects; ``signature`` says which
        objects fit (model, shapes): a cache entry with another signature is
        rebuilt. Stored state is validated and copied into reused objects.

        Raises
        ------
        flwr_gan.runtime.records.InvalidUpdateError
            When the stored modules are malformed.
        """
        key = self._key(context)
        token = self._token(context)
        entry = _CACHE.get(key)
        stored = self.has_state(context)
        if entry is not None and entry.signature == signature:
            _CACHE.move_to_end(key)
            if stored and token and entry.token == token:
                return entry.objects, True
        else:
            entry = None
        objects = entry.objects if entry is not None and stored else build()
        if stored:
            self._restore(context, objects)
        self._remember(key, _Entry(signature, token if stored else "", objects,
                                   objects.nbytes()))
        return objects, False

    def _restore(self, context: Context, objects: NodeObjects) -> None:
        try:
            record = context.state.array_records[self.modules_key]
            for prefix, module in objects.modules.items():
                load_module_arrays(module, record, prefix, what=f"stored {prefix}")
            for prefix, opt in objects.optimizers.items():
                arrays = context.state.array_records.get(self.optimizer_keys.get(prefix, ""))
                if arrays is None:
                    opt.state.clear()
                else:
                    _copy_optimizer_arrays(opt, arrays)
        except BaseException:
            _CACHE.pop(self._key(context), None)
            raise

    def save(self, context: Context, objects: NodeObjects) -> None:
        """Write the objects into ``context.state`` (always) and mark the cache current."""
        state = context.state
        state.array_records[self.modules_key] = module_arrays(objects.modules)
        for prefix, opt in objects.optimizers.items():
            if prefix in self.optimizer_keys:
                state.array_records[self.optimizer_keys[prefix]] = optimizer_to_arrays(opt)
        token = _new_token()
        if self.meta_key not in state.config_records:
            state.config_records[self.meta_key] = ConfigRecord()
        state.config_records[self.meta_key][TOKEN_KEY] = token
        key = self._key(context)
        entry = _CACHE.get(key)
        if entry is not None and entry.objects is objects:  # objects from load(): cache them
            self._remember(key, _Entry(entry.signature, token, objects, objects.nbytes()))

    @staticmethod
    def _remember(key: tuple[str, int, int], entry: _Entry) -> None:
        _CACHE[key] = entry
        _CACHE.move_to_end(key)
        while len(_CACHE) > 1 and sum(e.nbytes for e in _CACHE.values()) > _CACHE_BYTES:
            _CACHE.popitem(last=False)

    def forget(self, context: Context, *, stored: bool = True) -> None:
        """Drop this node's cache entry (in this process).

        With ``stored`` (default) also remove the token from ``context.state``,
        so no process trusts its cache for the state now there (call this after
        replacing the stored arrays, e.g. when restoring a checkpoint).
        """
        _CACHE.pop(self._key(context), None)
        meta: Any = context.state.config_records.get(self.meta_key)
        if stored and meta is not None and TOKEN_KEY in meta:
            del meta[TOKEN_KEY]


def clear_cache() -> None:
    """Empty this process's cache of node objects."""
    _CACHE.clear()


__all__ = ["NodeObjects", "NodeStore", "OutOfBandArray", "TOKEN_KEY", "array_of", "array_record", "clear_cache",
           "load_module_arrays", "load_optimizer_arrays", "module_arrays",
           "optimizer_to_arrays", "tensor_of", "view_of"]
