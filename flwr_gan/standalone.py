"""The standalone (centralised) GAN baseline.

One generator and one discriminator trained on the whole training set with
the shared training core, evaluated at step 0, every ``eval_every`` steps and
at the end, writing the standard run directory (:mod:`flwr_gan.runtime.rundir`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flwr_gan.core.models import PRESETS, build_models, count_parameters
from flwr_gan.core.training import GANTrainer, OptimizerConfig, infinite_batches
from flwr_gan.data import load_dataset
from flwr_gan.metrics.fid import GeneratorEvaluator
from flwr_gan.runtime.rundir import RunDirectory

log = logging.getLogger(__name__)


@dataclass
class StandaloneConfig:
    """Every knob of a standalone run (the CLI's flags map one to one).

    Attributes
    ----------
    dataset : str
        ``mnist``, ``fashion-mnist``, ``cifar10``, or a path to an ``.npz`` /
        image folder.
    data_dir : str, optional
        Local folder holding the raw data set.
    model : str
        Model preset (:data:`flwr_gan.core.models.PRESETS`).
    loss : str, optional
        ``bce`` or ``lsgan``; the preset's paper loss when omitted.
    steps : int
        Generator updates.
    batch_size : int
        Real (and fake) batch size.
    d_steps : int
        Discriminator updates per generator update.
    eval_every : int
        Evaluate (FID, score, sample grid) every this many steps; 0 = only at
        start and end.
    fid_backend : str
        ``classifier`` or ``inception``.
    n_eval : int
        Generated and held-out real images per evaluation.
    max_train : int, optional
        Use only the first ``max_train`` training images (a fixed shuffle).
    """

    dataset: str = "mnist"
    data_dir: str | None = None
    model: str = "small"
    loss: str | None = None
    latent_dim: int | None = None
    steps: int = 4000
    batch_size: int = 64
    d_steps: int = 1
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    eval_every: int = 500
    fid_backend: str = "classifier"
    n_eval: int = 2000
    max_train: int | None = None
    seed: int = 0
    out: str = "runs/standalone"
    overwrite: bool = False
    progress: bool = True

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid setting and how to fix it."""
        if self.model not in PRESETS:
            raise ValueError(f"--model {self.model!r} is unknown: choose one of {sorted(PRESETS)}")
        for name in ("steps", "eval_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0")
        for name in ("batch_size", "d_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
        if self.n_eval < 2:
            raise ValueError("--n-eval must be >= 2")
        if self.max_train is not None and self.max_train < 1:
            raise ValueError("--max-train must be >= 1")
        if self.fid_backend not in ("classifier", "inception"):
            raise ValueError("--fid-backend must be 'classifier' or 'inception'")
        OptimizerConfig(self.lr_g, self.lr_d, self.beta1, self.beta2)


@dataclass(frozen=True)
class RunResult:
    """Summary of a finished run."""

    out: Path
    records: list[dict[str, Any]]

    @property
    def fids(self) -> list[float]:
        """FID of every evaluation, in order."""
        return [float(r["fid"]) for r in self.records if r.get("fid") is not None]


def run_standalone(cfg: StandaloneConfig) -> RunResult:
    """Train and evaluate a standalone GAN; return the run's records."""
    cfg.validate()
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    train = load_dataset(cfg.dataset, "train", data_dir=cfg.data_dir)
    test = load_dataset(cfg.dataset, "test", data_dir=cfg.data_dir)
    if cfg.max_train is not None and cfg.max_train < len(train):
        keep = np.sort(np.random.default_rng(cfg.seed).permutation(len(train))[: cfg.max_train])
        train_used = train.subset(keep)
    else:
        train_used = train
    preset = PRESETS[cfg.model]
    loss = cfg.loss or preset.loss
    gen, disc = build_models(cfg.model, train.image_shape, cfg.latent_dim)
    trainer = GANTrainer(
        gen, disc, loss=loss, optim=OptimizerConfig(cfg.lr_g, cfg.lr_d, cfg.beta1, cfg.beta2),
        d_steps=cfg.d_steps, seed=cfg.seed,
    )
    evaluator = GeneratorEvaluator.for_dataset(
        train, test, backend=cfg.fid_backend, n_real=min(cfg.n_eval, len(test)),
        n_fake=cfg.n_eval, progress=cfg.progress,
    )
    resolved = asdict(cfg) | {
        "algorithm": "standalone", "loss": loss, "latent_dim": gen.latent_dim,
        "image_shape": list(train.image_shape), "train_source": train.source,
        "train_size": len(train_used), "generator_params": count_parameters(gen),
        "discriminator_params": count_parameters(disc), "extractor": evaluator.extractor.name,
        "classifier_test_accuracy": evaluator.classifier.test_accuracy
        if evaluator.classifier else None,
    }
    run = RunDirectory(cfg.out, resolved, overwrite=cfg.overwrite)
    batches = infinite_batches(train_used.to_tensor(), cfg.batch_size, seed=cfg.seed)

    compute_s = 0.0
    examples = 0

    def evaluate(step: int, d_loss: float | None, g_loss: float | None) -> dict[str, Any]:
        result, fake = evaluator.evaluate_with_samples(gen)
        run.save_samples(fake[:64], step, prefix="step")
        record = {
            "round": step, "step": step, "fid": result.fid, "score": result.score,
            "extractor": result.extractor, "d_loss": d_loss, "g_loss": g_loss,
            "examples": examples, "compute_s": compute_s,
            "wall_s": time.perf_counter() - started,
        }
        run.log(record)
        return record

    evaluate(0, None, None)
    checkpoints = _eval_points(cfg.steps, cfg.eval_every)
    bar = _progress(cfg.steps, cfg.progress)
    done = 0
    try:
        for target in checkpoints:
            stats = trainer.train(batches, target - done)
            compute_s += stats.compute_s
            examples += stats.examples
            bar.update(target - done)
            done = target
            record = evaluate(done, stats.d_loss, stats.g_loss)
            bar.set_postfix(fid=f"{record['fid']:.2f}", d=f"{stats.d_loss:.3f}",
                            g=f"{stats.g_loss:.3f}")
    finally:
        bar.close()
    torch.save({"generator": gen.state_dict(), "discriminator": disc.state_dict(),
                "opt_g": trainer.opt_g.state_dict() if trainer.opt_g else None,
                "opt_d": trainer.opt_d.state_dict() if trainer.opt_d else None,
                "step": done, "config": resolved}, run.path / "checkpoint.pt")
    run.write_csv()
    run.plot_curves(x_key="step", title=f"standalone {cfg.model} on {train.name}")
    return RunResult(run.path, run.records())


def _eval_points(steps: int, every: int) -> list[int]:
    if steps == 0:
        return []
    points = list(range(every, steps, every)) if every > 0 else []
    return points + [steps]


def _progress(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="standalone", unit="step", disable=not enabled,
                dynamic_ncols=True)
