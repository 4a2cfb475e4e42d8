"""Atomic save / load of the full server state (FeGAN paper §3.4, fault tolerance).

A checkpoint holds the global generator and discriminator (one ArrayRecord's
arrays), the number of completed rounds, the torch RNG state, the strategy's
state (sampling RNG, balanced-sampler queues and counts, device metadata and
capabilities, data seen, the history of participating nodes per round) and
the run's configuration. It is written to a temporary file and renamed over
the old one, so a crash mid-write never leaves a half-written checkpoint.
Loading uses ``torch.load(weights_only=True)`` (no arbitrary code) and any
problem raises :class:`CheckpointError` naming the file; the caller never
silently starts over.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord

FORMAT = "flwr-gan-checkpoint/1"
REQUIRED = ("format", "round", "arrays", "strategy", "config")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used (missing, corrupt, or from another run)."""


def arrays_to_tensors(arrays: ArrayRecord) -> dict[str, torch.Tensor]:
    """Return an ArrayRecord's arrays as CPU tensors (order kept)."""
    return {k: torch.from_numpy(np.array(v.numpy(), copy=True)) for k, v in arrays.items()}


def tensors_to_arrays(tensors: Mapping[str, torch.Tensor]) -> ArrayRecord:
    """Inverse of :func:`arrays_to_tensors`."""
    return ArrayRecord({k: Array(t.numpy()) for k, t in tensors.items()})


def save_checkpoint(path: str | Path, *, round_: int, arrays: ArrayRecord,
                    strategy_state: Mapping[str, Any], config: Mapping[str, Any],
                    extra: Mapping[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically (temp file + ``os.replace``).

    Parameters
    ----------
    path : str or Path
        Target file.
    round_ : int
        Rounds completed.
    arrays : ArrayRecord
        Global model arrays.
    strategy_state : mapping
        ``strategy.state_dict()`` (plain Python types).
    config : mapping
        The run's resolved configuration.
    extra : mapping, optional
        Anything else (plain Python types or tensors).
    """
    path = Path(path)
    payload = {
        "format": FORMAT, "round": int(round_), "arrays": arrays_to_tensors(arrays),
        "strategy": dict(strategy_state), "config": dict(config),
        "torch_rng": torch.get_rng_state(), "extra": dict(extra or {}),
    }
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(payload, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and check a checkpoint.

    Raises
    ------
    CheckpointError
        If the file is missing, unreadable/corrupt, or lacks required entries.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means corrupt
        raise CheckpointError(
            f"checkpoint {path} is corrupt or unreadable ({type(err).__name__}: "
            f"{str(err)[:200]}). Delete it to start over, or restore a backup."
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a flwr-gan checkpoint ({FORMAT})")
    missing = [k for k in REQUIRED if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}")
    if not isinstance(payload["arrays"], dict) or not all(
        isinstance(t, torch.Tensor) for t in payload["arrays"].values()
    ):
        raise CheckpointError(f"checkpoint {path} has malformed model arrays")
    return payload
