"""Atomic save / load of the full server state (FeGAN paper §3.4, fault tolerance).

A checkpoint holds the number of completed rounds (or iterations), the run's
resolved configuration and the family's learning state: for FL-GAN/FeGAN the
global generator and discriminator, the torch RNG state and the strategy's
state (sampling RNG, balanced-sampler queues and counts, device metadata and
capabilities, data seen, the history of participating nodes per round); for
MD-GAN the generator, its Adam state, the server's RNG and schedule state and
every worker's discriminator and Adam state. It is written to a temporary file and renamed over
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

FORMAT = "flwr-gan-checkpoint/2"
REQUIRED = ("format", "round", "state", "config")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used (missing, corrupt, or from another run)."""


def arrays_to_tensors(arrays: ArrayRecord) -> dict[str, torch.Tensor]:
    """Return an ArrayRecord's arrays as CPU tensors (order kept)."""
    return {k: torch.from_numpy(np.array(v.numpy(), copy=True)) for k, v in arrays.items()}


def tensors_to_arrays(tensors: Mapping[str, torch.Tensor]) -> ArrayRecord:
    """Inverse of :func:`arrays_to_tensors`."""
    return ArrayRecord({k: Array(t.numpy()) for k, t in tensors.items()})


def numpy_global_state() -> dict[str, Any]:
    """Return numpy's legacy global RNG state (what ``np.random.seed`` sets) as tensors.

    Flower's DP wrappers draw their noise from it; a checkpoint keeps it so a
    resumed run draws the noise an uninterrupted one would have drawn.
    """
    name, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002
    return {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)}


def set_numpy_global_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`numpy_global_state`."""
    keys = np.asarray(state["keys"].numpy(), dtype=np.uint32)
    np.random.set_state((str(state["name"]), keys, int(state["pos"]),  # noqa: NPY002
                         int(state["has_gauss"]), float(state["gauss"])))


def save_state(path: str | Path, *, round_: int, state: Mapping[str, Any],
               config: Mapping[str, Any]) -> Path:
    """Write a checkpoint atomically (temp file, fsync, ``os.replace``).

    Parameters
    ----------
    path : str or Path
        Target file.
    round_ : int
        Rounds / iterations completed.
    state : mapping
        The family's learning state: tensors, numpy-free plain Python values.
    config : mapping
        The run's resolved configuration (checked on resume).
    """
    path = Path(path)
    payload = {"format": FORMAT, "round": int(round_), "state": dict(state),
               "config": dict(config)}
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
    if not isinstance(payload["state"], dict):
        raise CheckpointError(f"checkpoint {path} has a malformed state")
    return payload
