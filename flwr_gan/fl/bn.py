"""BatchNorm running statistics that stay on the devices (``--bn-buffers local``).

FedAvg over a whole ``state_dict`` (our default, ``averaged``) also averages
BatchNorm's running mean and variance: the global model's statistics are then a
mix of the devices' data. The FeGAN reference averages parameters only and keeps
each device's buffers local (FedBN-style). With ``local``:

* a device loads the global weights, then puts back *its own* buffers (kept in
  ``context.state``, ArrayRecord :data:`LOCAL_BUFFERS_KEY`; on its first round it
  starts from the global ones, the run's initial values);
* after training it stores its buffers and replies with the buffers it *received*,
  so every reply carries the global values and any aggregation (weighted mean,
  median, Krum, DP clipping of deltas, AdaComp deltas) leaves them as they are:
  they are not data any more, only placeholders that keep the wire format;
* the server's generator therefore has no running statistics of its own, so it is
  scored with ``--eval-mode recalibrate`` (statistics re-estimated from its own
  samples) or ``train`` (batch statistics); ``eval`` is refused up front.

Pure helpers; :func:`flwr_gan.fl.client.handle_train` calls them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from flwr.app import Array, ArrayRecord, Context
from torch import nn

#: ``--bn-buffers`` values.
BN_MODES = ("averaged", "local")
#: Train-config key naming the mode (absent: ``averaged``).
BN_KEY = "bn-buffers"
#: ``context.state`` ArrayRecord of the device's own buffers (``<network>.<key>``).
LOCAL_BUFFERS_KEY = "fl.bn"


def buffer_keys(models: Mapping[str, nn.Module]) -> list[str]:
    """Return the ``<network>.<key>`` names of every buffer (running stats, counters).

    >>> import torch
    >>> buffer_keys({"generator": torch.nn.Sequential(torch.nn.BatchNorm1d(2))})
    ['generator.0.running_mean', 'generator.0.running_var', 'generator.0.num_batches_tracked']
    """
    return [f"{prefix}.{name}" for prefix, module in models.items()
            for name, _ in module.named_buffers()]


def restore_local_buffers(context: Context, models: Mapping[str, nn.Module]) -> bool:
    """Load this device's own buffers into ``models``; ``False`` if it has none yet.

    Stored buffers that do not fit (another model) are ignored: the device then
    starts again from the global values.
    """
    record = context.state.array_records.get(LOCAL_BUFFERS_KEY)
    if record is None:
        return False
    wanted = {}
    for prefix, module in models.items():
        for name, buf in module.named_buffers():
            key = f"{prefix}.{name}"
            if key not in record or tuple(record[key].shape) != tuple(buf.shape):
                return False
            wanted[(prefix, name)] = record[key].numpy()
    for (prefix, name), value in wanted.items():
        buf = dict(models[prefix].named_buffers())[name]
        buf.copy_(buf.new_tensor(value))
    return True


def store_local_buffers(context: Context, models: Mapping[str, nn.Module]) -> None:
    """Keep ``models``' current buffers in ``context.state`` for the next round."""
    context.state[LOCAL_BUFFERS_KEY] = ArrayRecord({
        f"{prefix}.{name}": Array(np.array(buf.detach().cpu().numpy(), order="C"))
        for prefix, module in models.items() for name, buf in module.named_buffers()})


def echo_global_buffers(reply: ArrayRecord, received: ArrayRecord,
                        keys: list[str]) -> ArrayRecord:
    """Return ``reply`` with the buffers ``keys`` replaced by the values ``received``."""
    out = ArrayRecord({k: received[k] if k in keys else reply[k] for k in reply.keys()})
    return out


__all__ = ["BN_KEY", "BN_MODES", "LOCAL_BUFFERS_KEY", "buffer_keys", "echo_global_buffers",
           "restore_local_buffers", "store_local_buffers"]
