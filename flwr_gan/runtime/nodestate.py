"""Per-node state that lives across messages in ``context.state``.

Server-mediated protocols keep models and optimizers on the node between
messages (MD-GAN discriminators, gossip workers' G and D). Flower persists
``context.state`` (a RecordDict) per node; these helpers put torch optimizer
state into ArrayRecords and back.
"""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import Array, ArrayRecord


def optimizer_to_arrays(optimizer: torch.optim.Optimizer) -> ArrayRecord:
    """Serialize an Adam optimizer's per-parameter state (moments and step counts)."""
    arrays: dict[str, Array] = {}
    for idx, state in optimizer.state_dict()["state"].items():
        for name, value in state.items():
            tensor = value if torch.is_tensor(value) else torch.tensor(float(value))
            arrays[f"{idx}.{name}"] = Array(tensor.detach().cpu().numpy())
    return ArrayRecord(arrays)


def load_optimizer_arrays(optimizer: torch.optim.Optimizer, arrays: ArrayRecord) -> None:
    """Restore per-parameter state saved by :func:`optimizer_to_arrays` (in place)."""
    sd = optimizer.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, arr in arrays.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = torch.as_tensor(np.array(arr.numpy()))
    sd["state"] = state
    optimizer.load_state_dict(sd)
