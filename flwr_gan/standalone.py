"""The standalone (centralised) GAN baseline.

One generator and one discriminator trained on the whole training set with the
shared training core, evaluated at step 0, every ``eval_every`` steps and at
the end, writing the standard run directory through the experiment harness.

Every ``--checkpoint-every`` steps (and at the end) the whole learning state is
written atomically to ``checkpoint.pt``: both networks, both Adam states, the
latent stream's RNG, how many real batches were drawn (the data order derives
from the seed), and the losses and totals of the record in progress.
``--resume`` continues from it and writes the records an uninterrupted run
would have written. ``generator.pt`` holds the final generator.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from flwr_gan.config import Settings, knob
from flwr_gan.core.models import build_models
from flwr_gan.core.training import GANTrainer, infinite_batches
from flwr_gan.runtime.checkpoint import CheckpointError
from flwr_gan.runtime.experiment import Experiment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StandaloneSettings:
    """The knobs only the standalone baseline has."""

    steps: int = knob(4000, "generator updates", ge=0)
    max_train: int = knob(0, "use only this many training images, a fixed random subset "
                          "(0: all)", ge=0)


@dataclass
class _Progress:
    """Counters of a standalone run (saved in its checkpoints)."""

    done: int = 0
    batches: int = 0
    examples: int = 0
    compute_s: float = 0.0
    d_losses: list[float] = field(default_factory=list)  # since the last record
    g_losses: list[float] = field(default_factory=list)


def _counted(batches: Iterator[torch.Tensor], progress: _Progress) -> Iterator[torch.Tensor]:
    for batch in batches:
        progress.batches += 1
        yield batch


def _state(trainer: GANTrainer, progress: _Progress) -> dict[str, Any]:
    (gen, opt_g), (disc, opt_d) = trainer._need_g(), trainer._need_d()
    return {"generator": gen.state_dict(), "discriminator": disc.state_dict(),
            "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
            "latent_rng": trainer._rng.get_state(), "batches": progress.batches,
            "examples": progress.examples, "compute_s": progress.compute_s,
            "d_losses": list(progress.d_losses), "g_losses": list(progress.g_losses)}


def _restore(trainer: GANTrainer, state: dict[str, Any], step: int) -> _Progress:
    (gen, opt_g), (disc, opt_d) = trainer._need_g(), trainer._need_d()
    try:
        gen.load_state_dict(state["generator"])
        disc.load_state_dict(state["discriminator"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        trainer._rng.set_state(state["latent_rng"])
        return _Progress(done=step, batches=int(state["batches"]),
                         examples=int(state["examples"]), compute_s=float(state["compute_s"]),
                         d_losses=[float(v) for v in state["d_losses"]],
                         g_losses=[float(v) for v in state["g_losses"]])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"bad standalone state ({type(err).__name__}: "
                              f"{str(err)[:200]})") from err


def run_standalone_experiment(grid: Any, exp: Experiment) -> list[dict[str, Any]]:
    """Train and evaluate a standalone GAN in ``exp`` (``grid`` is unused); return its records."""
    s: Settings = exp.settings
    seed = s.run.seed
    torch.manual_seed(seed)
    train = exp.train
    cap = s.standalone.max_train
    if 0 < cap < len(train):
        train = train.subset(np.sort(np.random.default_rng(seed).permutation(len(train))[:cap]))
    gen, disc = build_models(s.model.model, exp.image_shape, s.model.latent_dim or None)
    trainer = GANTrainer(gen, disc, loss=s.model.resolved_loss(), optim=s.train.optimizer(),
                         d_steps=s.train.d_steps, seed=seed)
    if exp.evaluating:
        ev = exp.evaluator()
        exp.resolved |= {"extractor": ev.extractor.name, "classifier_test_accuracy":
                         ev.classifier.test_accuracy if ev.classifier else None}
    run = exp.open()
    progress = _Progress()
    if exp.checkpoint is not None:
        with exp.restoring():
            progress = _restore(trainer, exp.checkpoint["state"], exp.start)
        log.info("resuming standalone at step %d", exp.start)
    else:
        exp.log({"round": 0, "step": 0, "d_loss": None, "g_loss": None, "examples": 0,
                 "compute_s": 0.0} | exp.evaluate(0, {"generator": gen}))
    batches = _counted(infinite_batches(train.to_tensor(), s.train.batch_size, seed=seed,
                                        skip=progress.batches), progress)
    stops = [p for p in range(progress.done + 1, exp.total + 1)
             if exp.due(p) or exp.checkpoint_due(p)]
    for target in stops:
        stats = trainer.train(batches, target - progress.done)
        progress.done = target
        progress.compute_s += stats.compute_s
        progress.examples += stats.examples
        progress.d_losses += stats.d_losses
        progress.g_losses += stats.g_losses
        if exp.due(target):
            exp.log({"round": target, "step": target,
                     "d_loss": float(np.mean(progress.d_losses)) if progress.d_losses else None,
                     "g_loss": float(np.mean(progress.g_losses)) if progress.g_losses else None,
                     "examples": progress.examples, "compute_s": progress.compute_s}
                    | exp.evaluate(target, {"generator": gen}))
            progress.d_losses, progress.g_losses = [], []
        if exp.checkpoint_due(target):
            exp.save_checkpoint(target, _state(trainer, progress))
    torch.save({"generator": gen.state_dict(), "config": exp.resolved},
               run.path / "generator.pt")
    return exp.finish(x_key="step", title=f"standalone {s.model.model} on {exp.train.name}")
