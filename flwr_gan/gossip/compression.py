"""AdaComp on Gossip GAN's uploads, and partial synchronisation (``--compress``, ``--sync``).

A peer's model goes to *another* peer, which does not hold the sender's base
model, so AdaComp's "update relative to the model you received" has no
counterpart. The relay supplies one: for every peer and network the sender and
the server keep the same **reference** ``ref``, the reconstruction of all the
peer has sent so far, starting from the run's common initial model (every
worker and the server build it from the run seed, :func:`initial_models
<flwr_gan.gossip.client.initial_models>`), so the first upload is already a
sparse delta. An upload is

    ``sent = top-k(model - ref)`` per layer (:func:`flwr_gan.compress.adacomp.compress`),
    ``ref += dense(sent)`` on both sides,

and the server forwards the reconstructed ``ref`` as a full, dense model to
the receiving peer (download legs are not compressed). The gap ``model - ref``
*is* AdaComp's residual (what was left unsent, float16 rounding included), so
no separate residual is kept: adding one to ``model - ref`` would count the
unsent part twice. Batch-norm running statistics and integer counters travel
dense (:func:`flwr_gan.compress.mod.float_arrays`) and replace the reference's.

Should the server reject an upload (it does not decode, or the reconstruction
is not finite), its reference no longer matches the peer's: the next message
to that peer asks for a dense upload of that network (``upload-resync``) and
both sides restart from it.

Settings travel under ``upload-*`` config keys, never under ``compress``
(the key :func:`flwr_gan.compress.mod.adacomp_mod` reads on plain ``train``
messages; gossip's steps are ``train.gossip_step``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, Context
from torch import nn

from flwr_gan.compress.adacomp import compress
from flwr_gan.compress.mod import float_arrays
from flwr_gan.compress.wire import decode, encode, is_compressed, split
from flwr_gan.runtime.records import (
    DISCRIMINATOR,
    GENERATOR,
    InvalidUpdateError,
    models_to_arrays,
    validate_arrays,
)

KEY_COMPRESS = "upload-compress"
KEY_RATIO = "upload-ratio"
KEY_DTYPE = "upload-dtype"
KEY_RESYNC = "upload-resync"
STATE_REF = "gossip.adacomp.ref"
#: Network kind (``"g"`` / ``"d"``) -> its ArrayRecord key prefix.
PREFIXES = {"g": GENERATOR, "d": DISCRIMINATOR}
#: ``--sync`` -> the kinds that travel.
SYNC_KINDS = {"both": "gd", "generator": "g", "discriminator": "d"}

Reference = dict[str, np.ndarray]


def sent_kinds(variant: str, sync: str) -> str:
    """Return the networks a worker uploads (``"gd"``, ``"g"``, ``"d"``; ``""`` for isolated)."""
    if sync not in SYNC_KINDS:
        raise ValueError(f"sync must be one of {sorted(SYNC_KINDS)}, got {sync!r}")
    return "" if variant == "isolated" else SYNC_KINDS[sync]


def compression_config(settings: Any) -> dict[str, Any]:
    """Return the ConfigRecord entries telling workers how to upload (``upload-*``)."""
    return {KEY_COMPRESS: str(settings.compress), KEY_RATIO: float(settings.compress_ratio),
            KEY_DTYPE: str(settings.compress_dtype)}


def compressing(config: Mapping[str, Any]) -> bool:
    """Whether a worker config asks for AdaComp uploads."""
    return str(config.get(KEY_COMPRESS, "none")) == "adacomp"


def reference_of(arrays: ArrayRecord) -> Reference:
    """Return the compressible layers of ``arrays`` as float32 copies (a fresh reference)."""
    return {k: np.array(v, dtype=np.float32) for k, v in float_arrays(arrays).items()}


def encode_upload(model: ArrayRecord, ref: Mapping[str, np.ndarray], ratio: float,
                  value_dtype: str) -> tuple[ArrayRecord, Reference]:
    """Sender side: return the upload of ``model`` relative to ``ref`` and the new reference.

    Layers of ``ref`` are sent as AdaComp sparse deltas; the others (running
    statistics, counters) as they are. A model that is not finite cannot be
    compressed: it is sent dense (the server rejects it and asks for a resync)
    and becomes the reference.
    """
    floats = float_arrays(model)
    if set(floats) != set(ref):
        raise ValueError("the model's layers differ from the reference's")
    if not all(np.all(np.isfinite(v)) for v in floats.values()):
        return model, reference_of(model)
    update = {k: floats[k].astype(np.float32) - ref[k] for k in floats}
    sent, _ = compress(update, None, ratio, value_dtype)
    out = encode(sent)
    for key in model.keys():
        if key not in floats:
            out[key] = model[key]
    return out, {k: ref[k] + sent[k].dense() for k in floats}


def decode_upload(record: ArrayRecord, ref: Mapping[str, np.ndarray], *,
                  what: str) -> tuple[ArrayRecord, Reference]:
    """Receiver side: return the full model an upload reconstructs and the new reference.

    Raises
    ------
    flwr_gan.compress.wire.MalformedPayload
        If the sparse part does not decode against ``ref``'s shapes.
    """
    sparse, dense = split(record)
    sent = decode(sparse, {k: v.shape for k, v in ref.items()}, what=what)
    new_ref = {k: ref[k] + sent[k].dense() for k in ref}
    full = ArrayRecord({k: Array(v) for k, v in new_ref.items()})
    for key in dense.keys():
        full[key] = dense[key]
    return full, new_ref


def worker_uploads(context: Context, config: Mapping[str, Any],
                   models: Mapping[str, nn.Module], send: str,
                   initial: Callable[[], ArrayRecord]) -> dict[str, ArrayRecord]:
    """Return a worker's ``g-out`` / ``d-out`` records (dense, or AdaComp uploads).

    Parameters
    ----------
    context : Context
        The node's context: ``context.state`` keeps the references (``gossip.adacomp.ref``).
    config : mapping
        The message's config (``upload-*`` keys).
    models : mapping
        ``{"g": generator, "d": discriminator}``.
    send : str
        Kinds to upload.
    initial : callable
        Returns both initial networks as one ArrayRecord (the first reference).
    """
    out: dict[str, ArrayRecord] = {}
    records = {k: models_to_arrays({PREFIXES[k]: models[k]}) for k in "gd" if k in send}
    if not compressing(config):
        return {f"{k}-out": r for k, r in records.items()}
    stored = context.state.array_records.get(STATE_REF)
    ref = reference_of(stored if stored is not None else initial())
    resync = str(config.get(KEY_RESYNC, ""))
    ratio, dtype = float(config.get(KEY_RATIO, 0.01)), str(config.get(KEY_DTYPE, "float32"))
    for kind, record in records.items():
        head = f"{PREFIXES[kind]}."
        mine = {k: v for k, v in ref.items() if k.startswith(head)}
        if kind in resync:
            upload, new = record, reference_of(record)
        else:
            upload, new = encode_upload(record, mine, ratio, dtype)
        ref.update(new)
        out[f"{kind}-out"] = upload
    context.state.array_records[STATE_REF] = ArrayRecord(
        {k: Array(np.array(v, order="C")) for k, v in ref.items()})  # keeps 0-d arrays 0-d
    return out


class UploadReceiver:
    """Server side: check each upload, rebuild compressed ones, keep the peers' references.

    Parameters
    ----------
    modules : mapping
        ``{"g": generator, "d": discriminator}`` as initialised (the first
        reference of every peer, and the shapes uploads are checked against).
    compressed : bool
        Whether the run uses AdaComp uploads.
    """

    def __init__(self, modules: Mapping[str, nn.Module], *, compressed: bool) -> None:
        self.modules = dict(modules)
        self.compressed = compressed
        self._initial = {k: reference_of(models_to_arrays({PREFIXES[k]: m}))
                         for k, m in self.modules.items()}
        self._refs: dict[tuple[int, str], Reference] = {}
        self._resync: dict[int, set[str]] = {}

    def accept(self, node: int, kind: str, record: ArrayRecord | None, *,
               what: str) -> ArrayRecord:
        """Return the full model ``node`` uploaded for network ``kind``, checked.

        Raises
        ------
        flwr_gan.runtime.records.InvalidUpdateError
            If it is missing, does not decode or is malformed (a compressed
            run then asks that peer for a dense upload next time).
        """
        name = PREFIXES[kind]
        try:
            if record is None:
                raise InvalidUpdateError(f"the reply holds no {name}")
            new_ref: Reference | None = None
            full = record
            if self.compressed and is_compressed(record):
                ref = self._refs.get((node, kind), self._initial[kind])
                full, new_ref = decode_upload(record, ref, what=f"{what} {name}")
            elif self.compressed:  # a dense upload (a resync): both sides restart from it
                new_ref = reference_of(record)
            validate_arrays({name: self.modules[kind]}, full, what=what)
        except InvalidUpdateError:
            if self.compressed:
                self._resync.setdefault(node, set()).add(kind)
            raise
        if new_ref is not None:
            self._refs[(node, kind)] = new_ref
            if full is record:
                self._resync.get(node, set()).discard(kind)
        return full

    def config_for(self, node: int) -> dict[str, Any]:
        """Return the ``upload-resync`` entry of ``node``'s next message (empty if plain)."""
        if not self.compressed:
            return {}
        return {KEY_RESYNC: "".join(sorted(self._resync.get(node, set())))}

    def state(self, key: Callable[[int], str]) -> dict[str, Any]:
        """Return the peers' references and pending resyncs, keyed by device key ``key(node)``."""
        refs: dict[str, dict[str, dict[str, np.ndarray]]] = {}
        for (node, kind), ref in self._refs.items():
            refs.setdefault(key(node), {})[kind] = {k: v.copy() for k, v in ref.items()}
        resync = {key(n): "".join(sorted(kinds)) for n, kinds in self._resync.items() if kinds}
        return {"refs": refs, "resync": resync}

    def load_state(self, state: Mapping[str, Any], node_of: Mapping[str, int]) -> None:
        """Put back what :meth:`state` returned; ``node_of`` maps device keys to new node ids.

        Raises
        ------
        ValueError
            If a saved reference does not fit the networks (other model settings).
        """
        refs: dict[tuple[int, str], Reference] = {}
        for key, kinds in state["refs"].items():
            for kind, ref in kinds.items():
                arrays = {k: np.asarray(v, dtype=np.float32) for k, v in ref.items()}
                initial = self._initial[kind]
                if {k: v.shape for k, v in arrays.items()} != {k: v.shape
                                                               for k, v in initial.items()}:
                    raise ValueError(f"the saved {PREFIXES[kind]} reference of {key} does "
                                     "not fit the model")
                if key in node_of:
                    refs[(node_of[key], kind)] = arrays
        self._refs = refs
        self._resync = {node_of[k]: set(v) for k, v in state["resync"].items() if k in node_of}

    def forget(self, node: int) -> None:
        """Drop a node's references (it left the run)."""
        self._resync.pop(node, None)
        for kind in PREFIXES:
            self._refs.pop((node, kind), None)


__all__ = ["KEY_COMPRESS", "KEY_DTYPE", "KEY_RATIO", "KEY_RESYNC", "PREFIXES", "STATE_REF",
           "SYNC_KINDS", "UploadReceiver", "compressing", "compression_config",
           "decode_upload", "encode_upload", "reference_of", "sent_kinds", "worker_uploads"]
