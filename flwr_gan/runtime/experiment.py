"""The experiment harness every family runs in.

:func:`prepare` does, in the calling process and before any Flower or Ray
machinery starts, everything a user can get wrong: it checks the settings,
loads the data (a missing data set or ``--data-dir`` is reported here), builds
the partition (an impossible one fails here), refuses an ``--out`` that holds a
run unless ``--overwrite`` or ``--resume``, and on ``--resume`` loads and checks
the checkpoint. The :class:`Experiment` it returns then gives the family's
server loop the rest: the run directory (:meth:`Experiment.open`), evaluation
of one generator or many (:meth:`Experiment.evaluate`), records with a
progress bar (:meth:`Experiment.log`), atomic checkpoints
(:meth:`Experiment.save_checkpoint`) and the final CSV and curves
(:meth:`Experiment.finish`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from flwr_gan.config import ConfigError, Settings
from flwr_gan.data import ImageDataset, load_dataset
from flwr_gan.runtime.checkpoint import CheckpointError, load_checkpoint, save_state
from flwr_gan.runtime.rundir import RunDirectory, read_metrics

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"

#: Knobs that may differ between a run and its resumption.
RESUMABLE = frozenset({"rounds", "iterations", "steps", "resume", "overwrite", "out", "timeout",
                       "eval_every", "client_threads", "client_cpus", "progress",
                       "checkpoint_every"})


@dataclass
class Experiment:
    """A prepared run (see :func:`prepare`).

    Attributes
    ----------
    settings : Settings
        The checked settings.
    train, test : ImageDataset
        The data set's splits.
    resolved : dict
        What ``config.json`` holds: every knob plus resolved values.
    checkpoint : dict or None
        The loaded checkpoint when resuming.
    unit : str
        What one record counts (``round``, ``iteration``, ``step``).
    total : int
        Records to reach the end (for the progress bar).
    """

    settings: Settings
    train: ImageDataset
    test: ImageDataset
    resolved: dict[str, Any]
    checkpoint: dict[str, Any] | None = None
    unit: str = "round"
    total: int = 0
    run: RunDirectory | None = None
    started: float = field(default_factory=time.perf_counter)
    _evaluator: Any = None
    _bar: Any = None
    _last_fid: float | None = None

    @property
    def out(self) -> Path:
        """The run directory's path."""
        return Path(self.settings.run.out)

    @property
    def start(self) -> int:
        """The round / iteration the run continues from (0 for a new run)."""
        return int(self.checkpoint["round"]) if self.checkpoint else 0

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the data set."""
        return self.train.image_shape

    def open(self) -> RunDirectory:
        """Create (or reopen, when resuming) the run directory and the progress bar."""
        run = self.settings.run
        self.run = RunDirectory(self.out, self.resolved, overwrite=run.overwrite,
                                resume=run.resume)
        if self.checkpoint is not None:
            _truncate_metrics(self.run, self.start)
        from flwr_gan.runtime.console import Progress

        self._bar = Progress(self.total, initial=self.start, desc=self.settings.algorithm,
                             unit=self.unit, enabled=run.progress)
        return self.run

    # -- evaluation ---------------------------------------------------------

    @property
    def evaluating(self) -> bool:
        """Whether this run evaluates at all (``--fid-backend none`` does not)."""
        return self.settings.eval.fid_backend != "none"

    def evaluator(self) -> Any:
        """Return the FID / score evaluator (built on first use: it may train the classifier)."""
        if self._evaluator is None:
            from flwr_gan.metrics.evaluator import GeneratorEvaluator

            ev = self.settings.eval
            with torch.random.fork_rng(devices=[]):  # building extractors draws from torch's RNG
                self._evaluator = GeneratorEvaluator.for_dataset(
                    self.train, self.test, backend=ev.fid_backend,
                    n_real=min(ev.n_eval, len(self.test)), n_fake=ev.n_eval,
                    seeds=ev.eval_seeds, mode=ev.eval_mode, progress=self.settings.run.progress)
        return self._evaluator

    def due(self, step: int) -> bool:
        """Whether ``step`` is an evaluation point (0, every ``eval_every``, the last)."""
        every = self.settings.eval.eval_every
        return step == 0 or step == self.total or (every > 0 and step % every == 0)

    def evaluate(self, step: int, generators: Mapping[str, nn.Module]) -> dict[str, Any]:
        """Score generators and save a sample grid; return the record's fields.

        One generator gives the fields of
        :meth:`flwr_gan.metrics.evaluator.EvalResult.record` (``fid``, its spread over
        latent seeds ``fid_seed_std``, ``kid``, ``kid_std``, ``precision``, ``recall``,
        ``class_fractions``, ``class_tv``, ``classes_missing``, ``score``,
        ``extractor``, ``eval_s``). Several (one per gossip worker) give the same
        fields averaged over the generators (``class_fractions`` element-wise;
        ``classes_missing`` lists the classes missing from at least one generator),
        plus ``fid_best``, ``fid_worst``,
        ``fid_std`` (over workers) and ``fid_workers`` (device key -> FID); the
        grid shows the first generator's samples.

        Scoring leaves torch's global random state as it found it: how often a run
        evaluates never changes what it trains, and a resumed run (whose evaluator is
        built later) draws what an uninterrupted one draws.
        """
        if not self.evaluating or not generators:
            return {}
        with torch.random.fork_rng(devices=[]):
            return self._evaluate(step, generators)

    def _evaluate(self, step: int, generators: Mapping[str, nn.Module]) -> dict[str, Any]:
        ev = self.evaluator()
        results, first = {}, None
        for key, gen in generators.items():
            result, fake = ev.evaluate_with_samples(gen)
            results[key] = result.record()
            if first is None:
                first = fake
        assert self.run is not None and first is not None
        self.run.save_samples(first[:64], step, prefix="step" if self.unit == "step" else "round")
        out: dict[str, Any] = dict(next(iter(results.values())))
        if len(results) > 1:
            for name, value in out.items():
                if isinstance(value, float):
                    out[name] = float(np.mean([r[name] for r in results.values()]))
            out["eval_s"] = float(sum(r["eval_s"] for r in results.values()))
            if all(r.get("class_fractions") for r in results.values()):
                out["class_fractions"] = [float(f) for f in np.mean(
                    [r["class_fractions"] for r in results.values()], axis=0)]
                out["classes_missing"] = sorted({c for r in results.values()
                                                 for c in r["classes_missing"]})
            fids = np.array([r["fid"] for r in results.values()])
            out |= {"fid_best": float(fids.min()), "fid_worst": float(fids.max()),
                    "fid_std": float(fids.std()),
                    "fid_workers": {k: float(r["fid"]) for k, r in results.items()}}
        self._last_fid = out["fid"]
        return out

    # -- records, checkpoints, the end --------------------------------------

    def log(self, record: Mapping[str, Any]) -> None:
        """Append a record to ``metrics.jsonl`` and move the progress bar."""
        assert self.run is not None, "call open() first"
        record = {"elapsed_s": time.perf_counter() - self.started} | dict(record)
        self.run.log(record)
        if self._bar is None:
            return
        post: dict[str, str] = {}
        if self._last_fid is not None:
            post["fid"] = f"{self._last_fid:.2f}"
        for key in ("kl_seen", "alive"):
            if record.get(key) is not None:
                post[key] = f"{record[key]:.4g}"
        self._bar.update(int(record.get("round", 0)), post,
                         milestone=record.get("fid") is not None)

    def checkpoint_due(self, step: int) -> bool:
        """Whether to write the checkpoint after ``step`` (every k, and at the end)."""
        every = self.settings.run.checkpoint_every
        return step == self.total or (every > 0 and step % every == 0)

    @contextlib.contextmanager
    def restoring(self) -> Iterator[None]:
        """Name the checkpoint file in a :class:`CheckpointError` raised while restoring it."""
        try:
            yield
        except CheckpointError as err:
            raise CheckpointError(f"{self.out / CHECKPOINT}: {err}") from err

    def save_checkpoint(self, step: int, state: Mapping[str, Any]) -> Path:
        """Write the learning state after ``step`` atomically to ``checkpoint.pt``."""
        return save_state(self.out / CHECKPOINT, round_=step, state=state, config=self.resolved)

    def finish(self, *, x_key: str = "round", title: str | None = None) -> list[dict[str, Any]]:
        """Close the progress bar, write ``metrics.csv`` and ``fid_curve.png``; return records."""
        if self._bar is not None:
            self._bar.close()
        assert self.run is not None
        self.run.write_csv()
        records = self.run.records()
        if any(r.get("fid") is not None for r in records):
            self.run.plot_curves(x_key=x_key, title=title or f"{self.settings.algorithm} "
                                 f"{self.settings.model.model} on {self.train.name}")
        return records

    def close(self) -> None:
        """Close the progress bar (also after a failure)."""
        if self._bar is not None:
            self._bar.close()


def prepare(settings: Settings, *, unit: str, total: int, federated: bool,
            extra: Mapping[str, Any] | None = None) -> Experiment:
    """Check everything a user can get wrong and return the :class:`Experiment`.

    Parameters
    ----------
    settings : Settings
        The run's settings.
    unit : str
        What a record counts (``round``, ``iteration``, ``step``).
    total : int
        Rounds / iterations / steps of the whole run.
    federated : bool
        Whether the data set is partitioned over ``num_clients`` devices.
    extra : mapping, optional
        More entries for ``config.json`` (the family's resolved values).

    Raises
    ------
    ConfigError
        On bad settings, a missing ``--data-dir``, an impossible partition, an
        ``--out`` holding a run, or ``--resume`` with nothing to resume.
    flwr_gan.data.DataNotFoundError
        When the data set cannot be found.
    CheckpointError
        When the checkpoint to resume is corrupt or from other settings.
    """
    settings.check()
    data = settings.data
    if data.data_dir and not Path(data.data_dir).is_dir():
        raise ConfigError(f"--data-dir {data.data_dir!r} does not exist or is not a folder: "
                          "give the folder holding the raw data set, or leave it empty to use "
                          "the cache and offline sources")
    from flwr_gan.core.models import build_models, count_parameters
    from flwr_gan.data.node import dataset_partition, load_training_set

    try:
        train = load_training_set(data.dataset, data.data_dir)
        test = load_dataset(data.dataset, "test", data_dir=data.data_dir or None)
    except ValueError as err:  # an unknown data set name or an unreadable file
        raise ConfigError(f"--dataset {data.dataset!r}: {err}") from None
    if federated:
        try:
            dataset_partition(data, settings.federation.num_clients)
        except ValueError as err:
            raise ConfigError(f"--partition {data.partition}: {err}") from None
    model = settings.model
    gen, disc = build_models(model.model, train.image_shape, model.latent_dim or None)
    resolved: dict[str, Any] = {"algorithm": settings.algorithm} | settings.to_dict() | {
        "loss": model.resolved_loss(), "latent_dim": gen.latent_dim,
        "image_shape": list(train.image_shape), "num_classes": train.num_classes,
        "train_source": train.source, "train_size": _train_size(settings, len(train)),
        "generator_params": count_parameters(gen),
        "discriminator_params": count_parameters(disc),
    } | dict(extra or {})
    out = Path(settings.run.out)
    ckpt_path = out / CHECKPOINT
    checkpoint = None
    if settings.run.resume:
        if not ckpt_path.exists():
            what = "holds a run but no checkpoint.pt" if (out / "metrics.jsonl").exists() \
                else "holds no run"
            raise ConfigError(f"--resume: {out} {what}; nothing to resume (drop --resume to "
                              "start a new run)")
        checkpoint = load_checkpoint(ckpt_path)
        check_same_run(checkpoint["config"], resolved, ckpt_path)
    elif (out / "metrics.jsonl").exists() and not settings.run.overwrite:
        raise ConfigError(f"--out {out} already holds a run (metrics.jsonl): choose another "
                          "--out, pass --overwrite to replace it, or --resume to continue it")
    return Experiment(settings, train, test, resolved, checkpoint, unit=unit, total=total)


def check_same_run(saved: Mapping[str, Any], now: Mapping[str, Any], path: Path) -> None:
    """Raise :class:`CheckpointError` if a checkpoint's settings differ from the run's.

    Every entry of the prepared configuration ``now`` (knobs and what they
    resolve to) must match, except the knobs in :data:`RESUMABLE`.
    """
    diff = sorted(k for k in now if k not in RESUMABLE and saved.get(k) != now[k]
                  and not _both_nan(saved.get(k), now[k]))
    if diff:
        shown = ", ".join(f"{k}: {saved.get(k)!r} then, {now.get(k)!r} now" for k in diff[:4])
        raise CheckpointError(f"checkpoint {path} was written with other settings ({shown}); "
                              "resume with the same flags or choose another --out")


def _train_size(settings: Settings, available: int) -> int:
    """Images the run trains on: all, or the standalone baseline's ``--max-train`` subset."""
    cap = int(settings.get("max_train")) if settings.has("max_train") else 0
    return cap if 0 < cap < available else available


def _both_nan(a: Any, b: Any) -> bool:
    return isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)


def _truncate_metrics(run: RunDirectory, last: int) -> None:
    """Drop records newer than the checkpoint (a crash after logging, before saving)."""
    records = read_metrics(run.metrics_path) if run.metrics_path.exists() else []
    keep = [r for r in records if int(r.get("round", 0)) <= last]  # every family logs "round"
    if len(keep) != len(records):  # rewrite atomically: a crash now must lose nothing
        path = run.metrics_path
        tmp = path.with_suffix(f".jsonl.tmp{os.getpid()}")
        tmp.write_text("".join(line + "\n" for line in path.read_text().splitlines()
                               if line.strip() and int(json.loads(line).get("round", 0))
                               <= last))
        os.replace(tmp, path)


__all__ = ["CHECKPOINT", "CheckpointError", "Experiment", "check_same_run", "prepare"]
