"""AdaComp on the device: a Flower ClientApp mod that compresses train replies.

Register it outermost, so it compresses what every other mod produced (a DP
clipping mod included)::

    from flwr.clientapp import ClientApp
    from flwr_gan.compress.mod import adacomp_mod

    app = ClientApp(mods=[adacomp_mod])

It acts only on ``train`` messages whose ConfigRecord asks for it
(``compress = "adacomp"``, set by :class:`flwr_gan.compress.strategy.AdaComp`
on the server), so one ``flower-supernode`` serves compressed and plain runs,
and every other message passes untouched. For such a message it

1. keeps the received ArrayRecord (the global model of the round);
2. lets the handler train and reply;
3. replaces the reply's ArrayRecord with the AdaComp encoding of the update
   (reply minus received, per float layer, plus the residual kept in
   ``context.state``), and stores the new residual there. Batch-norm running
   statistics and counters travel as they are (see :func:`float_arrays`).

A reply whose arrays do not match what was received (keys, shapes) or hold
NaN / inf becomes an error reply: nothing is compressed into the residual.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Error, Message

from flwr_gan.compress.adacomp import compress
from flwr_gan.compress.wire import encode

KEY_COMPRESS = "compress"
KEY_RATIO = "compress-ratio"
KEY_DTYPE = "compress-dtype"
RESIDUAL_KEY = "adacomp.residual"
#: Error code of a reply the mod could not compress (Flower's own codes are < 1000).
ERROR_CODE = 4201

CallNext = Callable[[Message, Context], Message]


def requested(msg: Message) -> ConfigRecord | None:
    """Return the message's ConfigRecord if it asks for AdaComp, else ``None``."""
    if msg.metadata.message_type != "train":
        return None
    for record in msg.content.config_records.values():
        if record.get(KEY_COMPRESS) == "adacomp":
            return record
    return None


#: Key endings of normalisation statistics (PyTorch's batch norm): they travel dense.
STATISTICS = ("running_mean", "running_var")


def float_arrays(arrays: ArrayRecord) -> dict[str, np.ndarray]:
    """Return the arrays AdaComp compresses: floating-point, not running statistics.

    A running variance is not an update that can wait: re-sending a residual of
    old statistics on top of a newer global value can make it negative (NaN
    samples). Statistics and integer counters therefore travel as they are.
    """
    out = {}
    for key in arrays.keys():
        value = arrays[key].numpy()
        if np.issubdtype(value.dtype, np.floating) and not key.endswith(STATISTICS):
            out[key] = value
    return out


def load_residual(context: Context, shapes: dict[str, tuple[int, ...]]
                  ) -> dict[str, np.ndarray]:
    """Return this node's residual for the layers ``shapes`` (empty if none fits)."""
    record = context.state.array_records.get(RESIDUAL_KEY)
    if record is None:
        return {}
    residual = {k: record[k].numpy() for k in record.keys()}
    if any(k in residual and residual[k].shape != s for k, s in shapes.items()):
        return {}  # another model: start afresh rather than add mismatched tensors
    return residual


def store_residual(context: Context, residual: dict[str, np.ndarray]) -> None:
    """Keep ``residual`` in ``context.state`` for the next upload."""
    context.state[RESIDUAL_KEY] = ArrayRecord(
        {k: Array(np.array(v, dtype=np.float32, order="C")) for k, v in residual.items()})


def compress_reply(reply: Message, sent: ArrayRecord, context: Context, ratio: float,
                   value_dtype: str) -> Message:
    """Replace ``reply``'s ArrayRecord by its AdaComp encoding relative to ``sent``."""
    if len(reply.content.array_records) != 1:
        raise ValueError("a train reply needs exactly one ArrayRecord to compress, got "
                         f"{len(reply.content.array_records)}")
    key, arrays = next(iter(reply.content.array_records.items()))
    if list(arrays.keys()) != list(sent.keys()):
        raise ValueError("the reply's arrays differ from the received ones: cannot compress "
                         "an update of another model")
    base = float_arrays(sent)
    new = float_arrays(arrays)
    update = {}
    for name, value in base.items():
        if new[name].shape != value.shape:
            raise ValueError(f"array {name!r} changed shape {value.shape} -> "
                             f"{new[name].shape}")
        update[name] = new[name].astype(np.float32) - value.astype(np.float32)
    residual = load_residual(context, {k: v.shape for k, v in update.items()})
    sparse, residual = compress(update, residual, ratio, value_dtype)
    out = encode(sparse)
    for name in arrays.keys():
        if name not in base:
            out[name] = arrays[name]
    store_residual(context, residual)
    reply.content[key] = out
    return reply


def adacomp_mod(msg: Message, context: Context, call_next: CallNext) -> Message:
    """Compress the reply of a ``train`` message that asks for AdaComp (see the module)."""
    config = requested(msg)
    if config is None:
        return call_next(msg, context)
    if len(msg.content.array_records) != 1:
        return _error(msg, "adacomp_mod needs exactly one ArrayRecord in a train message")
    sent = next(iter(msg.content.array_records.values()))
    ratio = float(config.get(KEY_RATIO, 0.01))  # type: ignore[arg-type]
    value_dtype = str(config.get(KEY_DTYPE, "float32"))
    reply = call_next(msg, context)
    if reply.has_error():
        return reply
    try:
        return compress_reply(reply, sent, context, ratio, value_dtype)
    except ValueError as err:
        return _error(msg, f"adacomp_mod: {err}")


def _error(msg: Message, reason: str) -> Message:
    return Message(Error(code=ERROR_CODE, reason=reason), reply_to=msg)


__all__ = ["KEY_COMPRESS", "KEY_DTYPE", "KEY_RATIO", "RESIDUAL_KEY", "adacomp_mod",
           "compress_reply", "requested"]
