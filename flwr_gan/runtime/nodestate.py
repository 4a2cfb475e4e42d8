"""Per-node state that lives across messages in ``context.state``.

Server-mediated protocols keep models and optimizers on the node between
messages (MD-GAN discriminators, gossip workers' G and D). Flower persists
``context.state`` (a RecordDict) per node:

* :func:`optimizer_to_arrays` / :func:`load_optimizer_arrays` put an
  optimizer's state into an ArrayRecord and back (encoded with
  :mod:`flwr_gan.runtime.arraycodec`);
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

import os
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context
from torch import nn

from flwr_gan.runtime.arraycodec import (
    OutOfBandArray,
    array_of,
    array_record,
    load_module_arrays,
    module_arrays,
    tensor_of,
    view_of,
)

TOKEN_KEY = "state-token"


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


def optimizer_arrays_fit(optimizer: torch.optim.Optimizer, arrays: ArrayRecord) -> bool:
    """Whether state saved by :func:`optimizer_to_arrays` fits ``optimizer``'s parameters.

    Every saved entry must name one of its parameters, and every saved tensor other than
    a step count must have that parameter's shape (state of another model does not).
    """
    params = _params(optimizer)
    for idx, entries in _parse_optimizer_arrays(arrays).items():
        if not 0 <= idx < len(params):
            return False
        shape = tuple(params[idx].shape)
        if any(tuple(arr.shape) != shape for name, arr in entries.items() if name != "step"):
            return False
    return True


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


__all__ = ["TOKEN_KEY", "NodeObjects", "NodeStore", "OutOfBandArray", "array_of", "array_record",
           "clear_cache", "load_module_arrays", "load_optimizer_arrays", "module_arrays",
           "optimizer_arrays_fit", "optimizer_to_arrays", "tensor_of", "view_of"]
