"""AdaComp on the server: a Strategy wrapper that decodes uploads before aggregation.

Shaped like Flower's ``DifferentialPrivacy*`` wrappers: it wraps any Message-API
:class:`~flwr.serverapp.strategy.Strategy` (``FedAvg``, another project's, or
:class:`flwr_gan.strategy.FLGAN` / ``FeGAN``) and changes only what travels::

    from flwr.serverapp.strategy import FedAvg
    from flwr_gan.compress.strategy import AdaComp

    strategy = AdaComp(FedAvg(), ratio=0.01)          # devices: ClientApp(mods=[adacomp_mod])

* ``configure_train`` asks the devices for AdaComp (``compress``,
  ``compress-ratio``, ``compress-dtype`` in the train config, read by
  :func:`flwr_gan.compress.mod.adacomp_mod`) and keeps the round's global arrays;
* ``aggregate_train`` decodes every compressed reply against them (the wrapped
  strategy then sees ordinary models: global + sparse update), turns a malformed
  one into an error reply that the wrapped strategy excludes, writes the bytes
  that really arrived into the reply's MetricRecord (``wire-bytes``), and hands
  everything to the wrapped strategy.

Replies are synchronous within a round (each computed from the round's global
model), so every parameter's staleness is 1 and AdaComp's learning-rate
modulation is the identity here; it applies where staleness exists (MD-GAN's
pipelined mode).
"""

from __future__ import annotations

from collections.abc import Iterable
from logging import INFO, WARNING
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy
from flwr.supercore import log

from flwr_gan.compress.adacomp import VALUE_DTYPES, count_selected
from flwr_gan.compress.mod import ERROR_CODE, KEY_COMPRESS, KEY_DTYPE, KEY_RATIO, float_arrays
from flwr_gan.compress.wire import MalformedPayload, decode, is_compressed, split
from flwr_gan.runtime.records import REJECTED_PREFIX
from flwr_gan.runtime.telemetry import content_nbytes
from flwr_gan.strategy.wrapper import WrapperStrategy

WIRE_BYTES = "wire-bytes"


def as_error(reply: Message, reason: str) -> Message:
    """Turn a content reply into an error reply (same sender, same metadata)."""
    reply.__dict__["_content"] = None
    reply.__dict__["_error"] = Error(code=ERROR_CODE, reason=reason)
    return reply


def decode_arrays(arrays: ArrayRecord, reference: ArrayRecord, *, what: str) -> ArrayRecord:
    """Return the model ``reference + update`` carried by a compressed ArrayRecord.

    Raises
    ------
    MalformedPayload
        If the sparse layers do not decode against ``reference`` or a
        non-float array is missing.
    """
    base = float_arrays(reference)
    sparse, dense = split(arrays)
    layers = decode(sparse, {k: v.shape for k, v in base.items()}, what=what)
    out: dict[str, Array] = {}
    for key in reference.keys():
        if key in base:
            out[key] = Array((base[key].astype(np.float32) + layers[key].dense())
                             .astype(base[key].dtype))
        elif key in dense:
            out[key] = dense[key]
        else:
            raise MalformedPayload(f"{what}: array {key!r} is missing")
    extra = set(dense.keys()) - set(reference.keys())
    if extra:
        raise MalformedPayload(f"{what}: unexpected arrays {sorted(extra)[:3]}")
    return ArrayRecord(out)


class AdaComp(WrapperStrategy):
    """Wrap ``strategy`` so that devices upload AdaComp-compressed updates.

    Parameters
    ----------
    strategy : Strategy
        The strategy that samples nodes and aggregates (it sees decoded models).
    ratio : float (default: 0.01)
        Fraction of each layer's entries a device sends, in (0, 1].
    value_dtype : {"float32", "float16"}
        Dtype of the sent values.
    """

    def __init__(self, strategy: Strategy, ratio: float = 0.01,
                 value_dtype: str = "float32") -> None:
        super().__init__(strategy)
        count_selected(1, ratio)  # validates the ratio
        if value_dtype not in VALUE_DTYPES:
            raise ValueError(f"value_dtype must be one of {sorted(VALUE_DTYPES)}, got "
                             f"{value_dtype!r}")
        self.ratio = float(ratio)
        self.value_dtype = value_dtype
        self._reference: ArrayRecord | None = None
        #: One dict per aggregated round: wire and dense bytes up, rejected nodes.
        self.telemetry: list[dict[str, Any]] = []

    def summary(self) -> None:
        """Log the wrapper, then the wrapped strategy."""
        log(INFO, "\t├──> AdaComp: ratio %g, values %s", self.ratio, self.value_dtype)
        self.strategy.summary()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        """Ask for AdaComp uploads and keep the round's global arrays."""
        config = ConfigRecord(dict(config))
        config[KEY_COMPRESS] = "adacomp"
        config[KEY_RATIO] = self.ratio
        config[KEY_DTYPE] = self.value_dtype
        self._reference = arrays
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Decode the replies, reject malformed ones, then let the wrapped strategy aggregate."""
        replies = list(replies)
        wire = dense = 0
        rejected: dict[int, str] = {}
        for reply in replies:
            if reply.has_error():
                continue
            nid = int(reply.metadata.src_node_id)
            nbytes = content_nbytes(reply.content)
            wire += nbytes
            try:
                self._decode_reply(reply, what=f"node {nid}")
            except MalformedPayload as err:
                rejected[nid] = str(err)
                log(WARNING, "Round %d: AdaComp upload of node %d rejected: %s",
                    server_round, nid, err)
                as_error(reply, REJECTED_PREFIX + str(err))
                continue
            dense += content_nbytes(reply.content)
            for reply_metrics in reply.content.metric_records.values():
                reply_metrics[WIRE_BYTES] = nbytes
        arrays, metrics = self.strategy.aggregate_train(server_round, replies)
        record = {"bytes_up": wire, "bytes_up_dense": dense,
                  "compression": dense / wire if wire else None,
                  "rejected": {str(k): v for k, v in rejected.items()}}
        self.telemetry.append(record)
        if metrics is not None:
            metrics["bytes-up-dense"] = dense
        return arrays, metrics

    def _decode_reply(self, reply: Message, *, what: str) -> None:
        if self._reference is None:
            raise MalformedPayload(f"{what}: a reply arrived before any train message")
        for key, arrays in list(reply.content.array_records.items()):
            if is_compressed(arrays):
                reply.content[key] = decode_arrays(arrays, self._reference, what=what)


__all__ = ["WIRE_BYTES", "AdaComp", "as_error", "decode_arrays"]
