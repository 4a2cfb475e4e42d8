"""DP on the device: Flower's clipping mods, run only where a DP server asks for them.

One ClientApp serves every family (FL-GAN / FeGAN ``train``, ``query.metadata``,
MD-GAN and gossip messages), while Flower's :func:`~flwr.clientapp.mod.fixedclipping_mod`
and :func:`~flwr.clientapp.mod.adaptiveclipping_mod` answer an error to any
message without the clipping norm in a single ConfigRecord. :func:`only_when_asked`
gates such a mod: it runs on ``train`` messages whose ConfigRecord carries Flower's
``clipping_norm`` key (sent by the ``DifferentialPrivacyClientSide*`` wrappers)
and passes every other message through untouched::

    from flwr.clientapp import ClientApp
    from flwr_gan.compress.mod import adacomp_mod
    from flwr_gan.privacy.mods import dp_adaptiveclipping_mod, dp_fixedclipping_mod

    app = ClientApp(mods=[adacomp_mod, dp_fixedclipping_mod, dp_adaptiveclipping_mod])

:class:`flwr_gan.privacy.strategy.DPGuard` adds ``dp-clipping = "fixed"`` or
``"adaptive"`` to the train config, so exactly one of the two gated mods runs;
without that key (a plain Flower ServerApp) the adaptive mod runs, whose
clipping is the fixed one's plus a ``norm_bit`` metric that a fixed-clipping
server ignores.

Integer arrays (BatchNorm's ``num_batches_tracked``: step counters, not data)
cannot be scaled in place by Flower's clipping, and would dominate the update
norm; the gate hides them from the wrapped mod (their update looks zero) and
puts the handler's values back afterwards, so only floating-point arrays are
clipped.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message
from flwr.clientapp.mod import adaptiveclipping_mod, fixedclipping_mod
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM

#: Config key naming the clipping flavour a DP server expects ("fixed" / "adaptive").
KEY_DP_CLIPPING = "dp-clipping"

CallNext = Callable[[Message, Context], Message]
Mod = Callable[[Message, Context, CallNext], Message]


def clipping_requested(msg: Message) -> ConfigRecord | None:
    """Return the ``train`` message's ConfigRecord if it carries a clipping norm, else ``None``."""
    if msg.metadata.message_type != "train" or msg.has_error():
        return None
    for record in msg.content.config_records.values():
        if KEY_CLIPPING_NORM in record:
            return record
    return None


def integer_keys(arrays: ArrayRecord) -> list[str]:
    """Return the keys of the non-floating-point arrays of ``arrays`` (counters)."""
    return [k for k in arrays.keys() if np.dtype(arrays[k].dtype).kind in "biu"]


def only_when_asked(mod: Mod, kind: str | None = None) -> Mod:
    """Return ``mod`` gated to the train messages that ask for DP clipping.

    Parameters
    ----------
    mod : callable
        A Flower client mod (``fixedclipping_mod``, ``adaptiveclipping_mod``).
    kind : {"fixed", "adaptive"}, optional
        Run only when the config's ``dp-clipping`` value is ``kind``
        (``"adaptive"`` also runs when the key is absent); default: whenever
        the clipping norm is present.
    """

    def gated(msg: Message, context: Context, call_next: CallNext) -> Message:
        config = clipping_requested(msg)
        if config is None or not _kind_matches(config, kind):
            return call_next(msg, context)
        if len(msg.content.array_records) != 1:
            return mod(msg, context, call_next)  # Flower's own one-line error
        received = next(iter(msg.content.array_records.values()))
        counters = integer_keys(received)
        if not counters:
            return mod(msg, context, call_next)
        kept: dict[str, Array] = {}

        def hide_counters(inner: Message, ctx: Context) -> Message:
            reply = call_next(inner, ctx)
            if reply.has_error() or len(reply.content.array_records) != 1:
                return reply
            key, arrays = next(iter(reply.content.array_records.items()))
            if list(arrays.keys()) != list(received.keys()):
                return reply  # the mod reports the mismatch
            out: dict[str, Array] = {}
            for name in arrays.keys():
                if name in counters:
                    kept[name] = arrays[name]
                    out[name] = Array(received[name].numpy().astype(np.float64))
                else:
                    out[name] = arrays[name]
            reply.content.array_records[key] = ArrayRecord(out)
            return reply

        reply = mod(msg, context, hide_counters)
        if kept and not reply.has_error() and len(reply.content.array_records) == 1:
            key, arrays = next(iter(reply.content.array_records.items()))
            reply.content.array_records[key] = ArrayRecord(
                {name: kept.get(name, arrays[name]) for name in arrays.keys()})
        return reply

    gated.__name__ = f"only_when_asked({getattr(mod, '__name__', 'mod')})"
    return gated


def _kind_matches(config: ConfigRecord, kind: str | None) -> bool:
    if kind is None:
        return True
    asked = config.get(KEY_DP_CLIPPING)
    if asked is None:
        return kind == "adaptive"
    return asked == kind


#: Flower's ``fixedclipping_mod``, run only for ``dp-clipping = "fixed"``.
dp_fixedclipping_mod = only_when_asked(fixedclipping_mod, "fixed")
#: Flower's ``adaptiveclipping_mod``, run for ``dp-clipping = "adaptive"`` (or unnamed).
dp_adaptiveclipping_mod = only_when_asked(adaptiveclipping_mod, "adaptive")

__all__ = ["KEY_DP_CLIPPING", "clipping_requested", "dp_adaptiveclipping_mod",
           "dp_fixedclipping_mod", "integer_keys", "only_when_asked"]
