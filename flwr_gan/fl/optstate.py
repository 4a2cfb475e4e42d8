"""Adam state that stays on the devices between rounds (``--optimizer-state local``).

FedAvg as the FL-GAN and FeGAN papers run it gives every device a fresh optimizer each
round (``fresh``, the default): the Adam moments built over a round's local steps are
dropped when the weights are sent, so with one epoch or less per round Adam keeps
restarting its bias-corrected warm-up. With ``local`` a device keeps its own generator
and discriminator Adam state (moments and step counts) in ``context.state`` and resumes
it on the freshly averaged weights at its next round (a device's first round starts
fresh). This separates two things a short communication period changes at once: how
often the models are averaged and how often the optimizer is reset.

Only the optimizer state is kept; the weights still come from the server. Stored state
that does not fit the model (another preset) is ignored and the device starts fresh.

Pure helpers; :func:`flwr_gan.fl.client.handle_train` calls them.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from flwr.app import Context

from flwr_gan.runtime.nodestate import (
    load_optimizer_arrays,
    optimizer_arrays_fit,
    optimizer_to_arrays,
)

#: ``--optimizer-state`` values.
OPT_MODES = ("fresh", "local")
#: Train-config key naming the mode (absent: ``fresh``).
OPT_KEY = "optimizer-state"
#: ``context.state`` ArrayRecords of the device's own Adam state, per network.
LOCAL_OPT_KEYS = {"generator": "fl.opt.generator", "discriminator": "fl.opt.discriminator"}


def restore_optimizers(context: Context,
                       optimizers: Mapping[str, torch.optim.Optimizer | None]) -> bool:
    """Load this device's kept Adam state into ``optimizers``; ``False`` if none fits.

    Parameters
    ----------
    context : Context
        The node's context (its ``state`` persists across rounds).
    optimizers : mapping
        ``"generator"`` / ``"discriminator"`` -> the round's fresh optimizer (``None``
        for a network this trainer lacks).

    Returns
    -------
    bool
        Whether every optimizer got its kept state (all or nothing).
    """
    records = {}
    for name, optimizer in optimizers.items():
        if optimizer is None:
            continue
        record = context.state.array_records.get(LOCAL_OPT_KEYS[name])
        if record is None:
            return False
        if not optimizer_arrays_fit(optimizer, record):
            return False
        records[name] = record
    for name, record in records.items():
        optimizer = optimizers[name]
        assert optimizer is not None
        load_optimizer_arrays(optimizer, record)
    return bool(records)


def store_optimizers(context: Context,
                     optimizers: Mapping[str, torch.optim.Optimizer | None]) -> None:
    """Keep ``optimizers``' state in ``context.state`` for the device's next round."""
    for name, optimizer in optimizers.items():
        if optimizer is not None:
            context.state.array_records[LOCAL_OPT_KEYS[name]] = optimizer_to_arrays(optimizer)


__all__ = ["LOCAL_OPT_KEYS", "OPT_KEY", "OPT_MODES", "restore_optimizers", "store_optimizers"]
