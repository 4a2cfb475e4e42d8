"""The ready ServerApp for FL-GAN and FeGAN, and the server loop both commands share.

* ``flwr run examples/fegan`` uses :data:`app`, which reads every knob from
  ``context.run_config`` (``[tool.flwr.app.config]`` / ``--run-config``,
  kebab-case keys, defaults for all of them: :class:`FederatedConfig`).
* ``flwr-gan simulate`` builds the same server with :func:`make_server_app`
  from its parsed flags (``run_simulation`` passes an empty run config).

Per round the server logs one record to ``DIR/metrics.jsonl`` (the strategy's
telemetry: ``round``, ``nodes``, ``bytes_up``, ``bytes_down``, ``compute_s``,
``compute_s_max``, ``wall_s``, ``virtual_s``, ``kl_seen`` (vs the devices' data),
``kl_seen_reference`` (vs the whole training set), ``coverage``, losses;
plus ``fid`` / ``score`` every ``eval_every`` rounds and at the last round),
saves a sample grid when it evaluates, and checkpoints the full server state
atomically (``DIR/checkpoint.pt``), from which ``resume=True`` continues.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp

from flwr_gan.core.models import PRESETS, build_models, count_parameters
from flwr_gan.core.training import OptimizerConfig
from flwr_gan.data import load_dataset
from flwr_gan.data.node import ConfigValue, DataConfig, load_training_set
from flwr_gan.runconfig import run_config_kwargs
from flwr_gan.runtime.checkpoint import (
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
    tensors_to_arrays,
)
from flwr_gan.runtime.records import DISCRIMINATOR, GENERATOR, load_arrays, models_to_arrays
from flwr_gan.runtime.rundir import RunDirectory, read_metrics
from flwr_gan.runtime.telemetry import LinkModel
from flwr_gan.strategy import FLGAN, SAMPLINGS, SCHEMES, FeGAN

log = logging.getLogger(__name__)

FL_ALGORITHMS = ("flgan", "fegan")


@dataclass
class FederatedConfig:
    """Every knob of an FL-GAN / FeGAN run (FeGAN paper defaults).

    Attributes
    ----------
    algorithm : str
        ``fegan`` or ``flgan``.
    dataset, data_dir, partition, partition_seed, max_class, max_samples, alpha
        Data settings (:class:`flwr_gan.data.node.DataConfig`); the FeGAN
        engine with ``max_class=3, max_samples=500`` fills 176 MNIST devices.
    num_clients : int
        Simulated devices (``simulate`` only; ``flwr run`` uses the federation's).
    rounds : int
        FL rounds.
    fraction : float
        ``C``, fraction of devices per round (0.025).
    min_nodes : int
        Devices per round at least.
    local_steps, batch_size : int
        ``E`` = 30 local iterations, ``B`` = 50.
    model : str
        Model preset (``lsgan``: the paper's MNIST network).
    loss : str
        ``""`` = the preset's paper loss (LSGAN/MSE for ``lsgan``), or ``bce`` / ``lsgan``.
    latent_dim : int
        0 = the preset's.
    lr_g, lr_d, beta1, beta2 : float
        Adam (2e-4, 0.5, 0.999).
    d_steps : int
        Discriminator updates per generator update.
    sampling : str
        FeGAN: ``balanced`` or ``random``.
    weighting : str
        FeGAN: ``exp``, ``linear``, ``dirac`` or ``none``.
    dirac_threshold : float
        ``dirac`` cut-off (0.5).
    load_weighting : bool
        FeGAN: multiply weights by assigned load.
    min_load_fraction : float
        Weakest devices get at least this fraction of ``B`` and ``E`` (0.5).
    weak_fraction : float
        Simulation: fraction of devices that report half the memory/compute.
    collect_metadata : bool
        FL-GAN: query class counts too, only to report ``kl_seen``.
    eval_every : int
        Evaluate FID/score every k rounds (and at the last); 0 = only at the end.
    fid_backend : str
        ``classifier`` (fast) or ``inception``.
    n_eval : int
        Generated and held-out real images per evaluation.
    bandwidth_gbps, latency_ms : float
        Virtual-clock link (2 Gbit/s as in the FeGAN testbed).
    seed : int
        Seed of model init, sampling and client training.
    out : str
        Run directory.
    overwrite, resume : bool
        Replace / continue a run in ``out``.
    timeout : float
        Seconds to wait for a round's replies.
    client_threads : int
        torch threads per client (0 = torch's default).
    """

    algorithm: str = "fegan"
    dataset: str = "mnist"
    data_dir: str = ""
    partition: str = "fegan"
    partition_seed: int = 0
    max_class: int = 3
    max_samples: int = 500
    alpha: float = 0.5
    num_clients: int = 176
    rounds: int = 100
    fraction: float = 0.025
    min_nodes: int = 1
    local_steps: int = 30
    batch_size: int = 50
    model: str = "lsgan"
    loss: str = ""
    latent_dim: int = 0
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    d_steps: int = 1
    sampling: str = "balanced"
    weighting: str = "exp"
    dirac_threshold: float = 0.5
    load_weighting: bool = True
    min_load_fraction: float = 0.5
    weak_fraction: float = 0.0
    collect_metadata: bool = True
    eval_every: int = 10
    fid_backend: str = "classifier"
    n_eval: int = 2000
    bandwidth_gbps: float = 2.0
    latency_ms: float = 0.0
    seed: int = 0
    out: str = "runs/fl"
    overwrite: bool = False
    resume: bool = False
    timeout: float = 3600.0
    client_threads: int = 1

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid setting and how to fix it."""
        if self.algorithm not in FL_ALGORITHMS:
            raise ValueError(f"--algorithm {self.algorithm!r}: choose one of {FL_ALGORITHMS}")
        if self.model not in PRESETS:
            raise ValueError(f"--model {self.model!r} is unknown: choose one of {sorted(PRESETS)}")
        if self.loss not in ("", "bce", "lsgan"):
            raise ValueError("--loss must be bce or lsgan (or empty for the preset's)")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"--sampling must be one of {SAMPLINGS}")
        if self.weighting not in SCHEMES:
            raise ValueError(f"--weighting must be one of {SCHEMES}")
        if self.partition not in ("iid", "fegan", "dirichlet"):
            raise ValueError("--partition must be iid, fegan or dirichlet")
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"--fraction must be in (0, 1], got {self.fraction}")
        for name in ("num_clients", "local_steps", "batch_size", "d_steps", "min_nodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
        for name in ("rounds", "eval_every", "latent_dim", "client_threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0")
        if not 0.0 <= self.weak_fraction <= 1.0:
            raise ValueError("--weak-fraction must be in [0, 1]")
        if not 0.0 < self.min_load_fraction <= 1.0:
            raise ValueError("--min-load-fraction must be in (0, 1]")
        if self.n_eval < 2:
            raise ValueError("--n-eval must be >= 2")
        if self.fid_backend not in ("classifier", "inception"):
            raise ValueError("--fid-backend must be classifier or inception")
        if self.timeout <= 0:
            raise ValueError("--timeout must be > 0")
        self.link()
        OptimizerConfig(self.lr_g, self.lr_d, self.beta1, self.beta2)

    def link(self) -> LinkModel:
        """Return the virtual-clock link (validated)."""
        return LinkModel(self.bandwidth_gbps * 1e9, self.latency_ms / 1e3)

    def data_config(self) -> DataConfig:
        """Return the data settings."""
        return DataConfig(dataset=self.dataset, data_dir=self.data_dir, partition=self.partition,
                          partition_seed=self.partition_seed, max_class=self.max_class,
                          max_samples=self.max_samples, alpha=self.alpha)

    def resolved_loss(self) -> str:
        """Return the loss in use (the preset's paper loss unless set)."""
        return self.loss or PRESETS[self.model].loss

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, ConfigValue]) -> FederatedConfig:
        """Read kebab-case run-config keys (defaults for missing ones).

        Raises
        ------
        ValueError
            On a value of the wrong type.
        """
        return cls(**run_config_kwargs(cls, run_config))

    def to_run_config(self) -> dict[str, ConfigValue]:
        """Return these settings as kebab-case run-config entries."""
        return {k.replace("_", "-"): v for k, v in asdict(self).items()}

    def train_config(self) -> ConfigRecord:
        """Return the ConfigRecord every train message carries (model and optimizer)."""
        return ConfigRecord({
            "model": self.model, "loss": self.resolved_loss(), "latent-dim": self.latent_dim,
            "lr-g": self.lr_g, "lr-d": self.lr_d, "beta1": self.beta1, "beta2": self.beta2,
            "d-steps": self.d_steps, "seed": self.seed, "num-threads": self.client_threads,
            "local-steps": self.local_steps, "batch-size": self.batch_size,
        })


def make_strategy(cfg: FederatedConfig, *, num_nodes: int, num_classes: int,
                  kl_reference: list[int] | None = None) -> FLGAN:
    """Build the strategy of ``cfg.algorithm``.

    Parameters
    ----------
    cfg : FederatedConfig
        Run settings.
    num_nodes : int
        Nodes to wait for before the first round.
    num_classes : int
        Classes of the data set (validates reported metadata).
    kl_reference : list of int, optional
        Class counts of the whole training set (``kl_seen_reference``).
    """
    common: dict[str, Any] = {
        "fraction_train": cfg.fraction, "min_train_nodes": cfg.min_nodes,
        "min_available_nodes": num_nodes, "local_steps": cfg.local_steps,
        "batch_size": cfg.batch_size, "num_classes": num_classes, "link": cfg.link(),
        "metadata_timeout": cfg.timeout, "seed": cfg.seed, "kl_reference": kl_reference,
    }
    if cfg.algorithm == "fegan":
        return FeGAN(**common, sampling=cfg.sampling, weighting=cfg.weighting,
                     dirac_threshold=cfg.dirac_threshold, load_weighting=cfg.load_weighting,
                     min_load_fraction=cfg.min_load_fraction)
    return FLGAN(**common, collect_metadata=cfg.collect_metadata)


ProgressFn = Callable[[dict[str, Any]], None]


@dataclass
class ServerOutcome:
    """What :func:`run_server` did (filled in as it goes).

    Attributes
    ----------
    rounds_done : int
        Rounds completed (including those before a resume).
    records : list of dict
        Every record in ``metrics.jsonl``.
    error : BaseException or None
        Set when the server loop failed.
    """

    rounds_done: int = 0
    records: list[dict[str, Any]] | None = None
    error: BaseException | None = None


def run_server(grid: Grid, cfg: FederatedConfig, *, num_nodes: int,
               progress: ProgressFn | None = None,
               extra_config: Mapping[str, Any] | None = None) -> ServerOutcome:
    """Run ``cfg.rounds`` FL rounds on ``grid`` and write the run directory.

    Parameters
    ----------
    grid : Grid
        Flower's grid (from the ServerApp main).
    cfg : FederatedConfig
        Settings (validated here).
    num_nodes : int
        Nodes to wait for before the first round.
    progress : callable, optional
        Called with each round's record (the CLI's progress bar).
    extra_config : mapping, optional
        Extra entries for ``config.json``.

    Raises
    ------
    CheckpointError
        If ``cfg.resume`` and the checkpoint is missing, corrupt or from a
        different configuration.
    """
    cfg.validate()
    torch.manual_seed(cfg.seed)
    data = cfg.data_config()
    train = load_training_set(data.dataset, data.data_dir)
    test = load_dataset(data.dataset, "test", data_dir=data.data_dir or None)
    gen, disc = build_models(cfg.model, train.image_shape, cfg.latent_dim or None)
    strategy = make_strategy(cfg, num_nodes=num_nodes, num_classes=train.num_classes,
                             kl_reference=[int(c) for c in train.class_counts()])
    out = Path(cfg.out)
    ckpt_path = out / "checkpoint.pt"
    resolved = asdict(cfg) | {
        "loss": cfg.resolved_loss(), "latent_dim": gen.latent_dim, "num_nodes": num_nodes,
        "image_shape": list(train.image_shape), "num_classes": train.num_classes,
        "generator_params": count_parameters(gen),
        "discriminator_params": count_parameters(disc),
        "strategy": type(strategy).__name__,
    } | dict(extra_config or {})
    arrays = models_to_arrays({GENERATOR: gen, DISCRIMINATOR: disc})
    start_round = 0
    if cfg.resume and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        _check_same_run(ckpt["config"], resolved, ckpt_path)
        arrays = tensors_to_arrays(ckpt["arrays"])
        try:
            strategy.load_state_dict(ckpt["strategy"])
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"checkpoint {ckpt_path}: bad strategy state ({err})") from err
        torch.set_rng_state(ckpt["torch_rng"])
        start_round = int(ckpt["round"])
        log.info("Resuming from %s at round %d", ckpt_path, start_round)
    elif cfg.resume and (out / "metrics.jsonl").exists():
        raise CheckpointError(
            f"--resume: {out} holds a run but no checkpoint.pt; refusing to start over silently"
        )
    run = RunDirectory(out, resolved, overwrite=cfg.overwrite, resume=cfg.resume)
    if start_round:
        _truncate_metrics(run, start_round)
    from flwr_gan.metrics.fid import GeneratorEvaluator

    evaluator = GeneratorEvaluator.for_dataset(
        train, test, backend=cfg.fid_backend, n_real=min(cfg.n_eval, len(test)),
        n_fake=cfg.n_eval, progress=False,
    )
    outcome = ServerOutcome(rounds_done=start_round)
    started = time.perf_counter()

    def evaluate(r: int, current: ArrayRecord) -> dict[str, Any]:
        load_arrays(gen, current, GENERATOR)
        result, fake = evaluator.evaluate_with_samples(gen)
        run.save_samples(fake[:64], r)
        return {"fid": result.fid, "score": result.score, "extractor": result.extractor}

    def on_round(server_round: int, current: ArrayRecord) -> MetricRecord | None:
        r = strategy.rounds_done
        if server_round == 0:
            if r == 0:
                record = {"round": 0, "wall_s": 0.0, "virtual_s": 0.0} | evaluate(0, current)
                run.log(record)
                if progress:
                    progress(record)
            return None
        t0 = time.perf_counter()
        record = dict(strategy.history[-1])
        if (cfg.eval_every and r % cfg.eval_every == 0) or r == cfg.rounds:
            record |= evaluate(r, current)
            record["eval_s"] = time.perf_counter() - t0
        record["elapsed_s"] = time.perf_counter() - started
        run.log(record)
        save_checkpoint(ckpt_path, round_=r, arrays=current,
                        strategy_state=strategy.state_dict(), config=resolved)
        outcome.rounds_done = r
        if progress:
            progress(record)
        if record.get("fid") is not None:
            return MetricRecord({"fid": float(record["fid"])})
        return None

    remaining = cfg.rounds - start_round
    if remaining > 0:
        strategy.start(grid=grid, initial_arrays=arrays, num_rounds=remaining,
                       timeout=cfg.timeout, train_config=cfg.train_config(),
                       evaluate_fn=on_round)
    if strategy.metadata_telemetry:
        run.write_json("metadata.json", strategy.metadata_telemetry
                       | {"devices_info": [d.to_dict() for d in strategy.devices or []]})
    run.write_csv()
    run.plot_curves(title=f"{cfg.algorithm} {cfg.model} on {train.name}")
    outcome.records = run.records()
    return outcome


def _check_same_run(saved: Mapping[str, Any], now: Mapping[str, Any], path: Path) -> None:
    ignore = {"rounds", "resume", "overwrite", "out", "timeout", "eval_every", "client_threads"}
    diff = sorted(k for k in set(saved) | set(now) if k not in ignore
                  and saved.get(k) != now.get(k) and not _both_nan(saved.get(k), now.get(k)))
    if diff:
        shown = {k: (saved.get(k), now.get(k)) for k in diff[:5]}
        raise CheckpointError(
            f"checkpoint {path} was written with different settings {shown} (saved, now); "
            "resume with the same flags or choose another --out"
        )


def _both_nan(a: Any, b: Any) -> bool:
    return isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)


def _truncate_metrics(run: RunDirectory, last_round: int) -> None:
    """Drop records newer than the checkpoint (a crash after logging, before saving)."""
    records = read_metrics(run.metrics_path) if run.metrics_path.exists() else []
    keep = [r for r in records if int(r.get("round", 0)) <= last_round]
    if len(keep) != len(records):
        run.metrics_path.unlink()
        for r in keep:
            run.log(r)


def make_server_app(cfg: FederatedConfig | None = None, *, num_nodes: int | None = None,
                    progress: ProgressFn | None = None,
                    outcome_holder: list[ServerOutcome] | None = None) -> ServerApp:
    """Return a ServerApp running :func:`run_server`.

    Parameters
    ----------
    cfg : FederatedConfig, optional
        Fixed settings; ``None`` reads ``context.run_config`` at run time.
    num_nodes : int, optional
        Nodes to wait for; default ``cfg.num_clients`` when ``cfg`` is given,
        else the ``num-nodes`` run-config key (default 2).
    progress : callable, optional
        Per-round callback.
    outcome_holder : list, optional
        The run's :class:`ServerOutcome` is appended here (also on failure,
        with ``error`` set), so a caller of ``run_simulation`` learns how it went.
    """
    server = ServerApp()

    @server.main()
    def _main(grid: Grid, context: Context) -> None:
        outcome = ServerOutcome()
        try:
            run_cfg = cfg or FederatedConfig.from_run_config(context.run_config)
            nodes = num_nodes or (run_cfg.num_clients if cfg is not None
                                  else int(context.run_config.get("num-nodes", 2)))
            outcome = run_server(grid, run_cfg, num_nodes=nodes, progress=progress)
        except BaseException as err:
            outcome.error = err
            log.exception("flwr-gan server failed: %s", err)
            raise
        finally:
            if outcome_holder is not None:
                outcome_holder.append(outcome)

    return server


#: The ready ServerApp for ``flwr run`` (``serverapp = "flwr_gan.server_app:app"``).
app = make_server_app()
