"""The standalone (centralised) GAN baseline.

One generator and one discriminator trained on the whole training set with the
shared training core, evaluated at step 0, every ``eval_every`` steps and at
the end, writing the standard run directory through the experiment harness.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from flwr_gan.config import Settings, knob
from flwr_gan.core.models import build_models
from flwr_gan.core.training import GANTrainer, infinite_batches
from flwr_gan.runtime.experiment import Experiment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StandaloneSettings:
    """The knobs only the standalone baseline has."""

    steps: int = knob(4000, "generator updates", ge=0)
    max_train: int = knob(0, "use only this many training images, a fixed random subset "
                          "(0: all)", ge=0)


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
    exp.resolved["train_size"] = len(train)
    run = exp.open()
    batches = infinite_batches(train.to_tensor(), s.train.batch_size, seed=seed)
    compute_s, examples, done = 0.0, 0, 0
    d_loss: float | None = None
    g_loss: float | None = None
    points = [p for p in range(1, exp.total + 1) if exp.due(p)]
    exp.log({"round": 0, "step": 0, "d_loss": None, "g_loss": None, "examples": 0,
             "compute_s": 0.0}
            | exp.evaluate(0, {"generator": gen}))
    for target in points:
        stats = trainer.train(batches, target - done)
        compute_s += stats.compute_s
        examples += stats.examples
        done, d_loss, g_loss = target, stats.d_loss, stats.g_loss
        exp.log({"round": done, "step": done, "d_loss": d_loss, "g_loss": g_loss,
                 "examples": examples, "compute_s": compute_s}
                | exp.evaluate(done, {"generator": gen}))
    torch.save({"generator": gen.state_dict(), "discriminator": disc.state_dict(),
                "opt_g": trainer.opt_g.state_dict() if trainer.opt_g else None,
                "opt_d": trainer.opt_d.state_dict() if trainer.opt_d else None,
                "step": done, "config": exp.resolved}, run.path / "checkpoint.pt")
    return exp.finish(x_key="step", title=f"standalone {s.model.model} on {exp.train.name}")
