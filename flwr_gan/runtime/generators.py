"""A finished run's generators, rebuilt from its ``checkpoint.pt``, whatever the family.

Every family writes its learning state to ``checkpoint.pt`` at the end of a run
(:mod:`flwr_gan.runtime.checkpoint`); where the generator sits in that state
differs:

========================  ===============================================
family                    generator(s)
========================  ===============================================
``standalone``            ``state["generator"]``
``flgan``, ``fegan``      ``state["arrays"]["generator.<name>"]`` (the global model)
``mdgan``                 ``state["server"]["generator"]``
``gossip``                ``state["workers"][key]["gossip.models"]["generator.<name>"]``,
                          one per live worker (there is no global model)
========================  ===============================================

:func:`final_generators` hides that: it returns ``{name: generator}`` in
evaluation mode, ``"generator"`` for one global model and the device keys for
gossip workers, so that final-quality scores (``bench/final_quality.py``) treat
every family alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flwr_gan.core.models import build_models
from flwr_gan.runtime.checkpoint import CheckpointError, load_checkpoint
from flwr_gan.runtime.experiment import CHECKPOINT
from flwr_gan.runtime.records import GENERATOR

_GOSSIP_MODELS = "gossip.models"
FAMILIES = ("standalone", "flgan", "fegan", "mdgan", "gossip")


def final_generators(run_dir: str | Path) -> tuple[dict[str, nn.Module], dict[str, Any]]:
    """Rebuild the generators a finished run ended with.

    Parameters
    ----------
    run_dir : str or Path
        A run directory holding ``checkpoint.pt`` (written by every family at the
        end of a run).

    Returns
    -------
    generators : dict of str to nn.Module
        ``{"generator": G}`` for the families with one generator, ``{device key:
        G}`` for gossip; every module in ``eval`` mode.
    config : dict
        The run's resolved configuration (``algorithm``, ``model``, ``dataset``,
        ``round`` (the checkpoint's step) added).

    Raises
    ------
    CheckpointError
        If the checkpoint is missing or corrupt, belongs to an unknown family, holds
        no generator (FL-GAN with ``--sync discriminator`` keeps generators on the
        devices), or its tensors do not fit the configured model preset.
    """
    path = Path(run_dir) / CHECKPOINT
    ckpt = load_checkpoint(path)
    config = dict(ckpt["config"]) | {"round": int(ckpt["round"])}
    algorithm = str(config.get("algorithm", ""))
    state = ckpt["state"]
    if algorithm not in FAMILIES:
        raise CheckpointError(f"{path}: unknown algorithm {algorithm!r}; this reads "
                              f"checkpoints of {', '.join(FAMILIES)}")
    states: dict[str, Mapping[str, torch.Tensor]]
    try:
        if algorithm == "standalone":
            states = {GENERATOR: state["generator"]}
        elif algorithm == "mdgan":
            states = {GENERATOR: state["server"]["generator"]}
        elif algorithm == "gossip":
            states = {key: _prefixed(worker[_GOSSIP_MODELS], GENERATOR)
                      for key, worker in sorted(state["workers"].items())}
        else:
            states = {GENERATOR: _prefixed(state["arrays"], GENERATOR)}
    except (KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: no {err} entry where a {algorithm} checkpoint keeps "
                              "its generator") from err
    if not states or not all(states.values()):
        raise CheckpointError(
            f"{path}: the checkpoint holds no generator (a run with --sync discriminator "
            "keeps the generators on the devices; a gossip run with no live worker has none)")
    return {name: _build(config, s, path) for name, s in states.items()}, config


def _prefixed(arrays: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Return the entries of ``arrays`` under ``<prefix>.``, without the prefix."""
    head = prefix + "."
    return {k[len(head):]: v for k, v in arrays.items() if k.startswith(head)}


def _build(config: Mapping[str, Any], state: Mapping[str, torch.Tensor], path: Path) -> nn.Module:
    try:
        gen, _ = build_models(str(config["model"]), tuple(config["image_shape"]),
                              config.get("latent_dim"))
        reference = gen.state_dict()
        extra = sorted(set(state) - set(reference))
        if extra:
            raise KeyError(f"unexpected entries {extra[:3]}")
        gen.load_state_dict({k: torch.as_tensor(state[k]).to(v.dtype)
                             for k, v in reference.items()})
    except (KeyError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"{path}: the saved generator does not fit model preset "
                              f"{config.get('model')!r}: {err}") from err
    return gen.eval()


__all__ = ["FAMILIES", "final_generators"]
