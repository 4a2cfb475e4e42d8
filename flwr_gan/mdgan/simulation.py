"""Run MD-GAN in Flower's simulation engine and write the standard run directory.

The ServerApp and ClientApp are built here, in a closure over the
configuration (``run_simulation`` passes an empty run config), and run with
``flwr.simulation.run_simulation`` on Ray: one SuperNode per worker, each
holding partition ``partition-id`` of the training set. The server loop
(:func:`flwr_gan.mdgan.server.run_mdgan`) runs in this process, so it logs
straight into the run directory:

* ``metrics.jsonl`` / ``metrics.csv`` — one record per global iteration
  (``round`` = iteration, ``nodes``, ``bytes_up``, ``bytes_down``,
  ``compute_s`` (per node), ``compute_s_max``, ``wall_s`` and ``virtual_s``
  (this iteration), and ``fid``, ``score``, ``extractor`` at evaluations; plus
  MD-GAN's own keys);
* ``samples/``, ``fid_curve.png``, ``config.json``, ``generator.pt`` and
  ``summary.json`` (drops, rejections, swap period, totals).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from flwr_gan.core.models import count_parameters
from flwr_gan.data import load_dataset
from flwr_gan.data.node import DataConfig
from flwr_gan.mdgan.client import make_client_app
from flwr_gan.mdgan.server import MDGANConfig, MDGANServer, run_mdgan
from flwr_gan.runtime.rundir import RunDirectory

log = logging.getLogger(__name__)


@dataclass
class MDGANSimulationConfig:
    """Every knob of ``flwr-gan simulate --algorithm mdgan`` (flags map one to one).

    Attributes
    ----------
    num_clients : int
        ``N``, simulated workers (SuperNodes).
    iterations : int
        ``I``, global iterations (generator updates).
    kappa : str
        ``"1"``, any integer, or ``"log"`` for ``floor(ln N)``.
    eval_every : int
        Evaluate FID every this many iterations (0: start and end only).
    num_cpus : float
        Ray CPUs per simulated client (1 gives one actor per core).
    Other attributes : see :class:`flwr_gan.mdgan.server.MDGANConfig`.
    """

    dataset: str = "mnist"
    data_dir: str = ""
    partition: str = "iid"
    partition_seed: int = 0
    num_clients: int = 10
    iterations: int = 1000
    kappa: str = "1"
    disc_steps: int = 1
    swap_epochs: float = 1.0
    batch_size: int = 64
    model: str = "small"
    loss: str | None = None
    latent_dim: int | None = None
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    mode: str = "sync"
    max_staleness: int = 2
    aggregation: str = "mean"
    trim_fraction: float = 0.2
    workers_per_iteration: int = 0
    crash_schedule: bool = False
    timeout: float = 120.0
    poll_interval: float = 0.005
    eval_every: int = 100
    fid_backend: str = "classifier"
    n_eval: int = 2000
    seed: int = 0
    num_cpus: float = 1.0
    out: str = "runs/mdgan"
    overwrite: bool = False
    progress: bool = True

    def server_config(self, image_shape: tuple[int, int, int]) -> MDGANConfig:
        """Return the server settings (validates them)."""
        return MDGANConfig(
            iterations=self.iterations, num_workers=self.num_clients, kappa=str(self.kappa),
            batch_size=self.batch_size, disc_steps=self.disc_steps,
            swap_epochs=self.swap_epochs, model=self.model, loss=self.loss,
            latent_dim=self.latent_dim, image_shape=image_shape, lr_g=self.lr_g,
            lr_d=self.lr_d, beta1=self.beta1, beta2=self.beta2, seed=self.seed,
            timeout=self.timeout, crash_schedule=self.crash_schedule,
            workers_per_iteration=self.workers_per_iteration, mode=self.mode,
            max_staleness=self.max_staleness, aggregation=self.aggregation,
            trim_fraction=self.trim_fraction, poll_interval=self.poll_interval,
            data=DataConfig(dataset=self.dataset, data_dir=self.data_dir,
                            partition=self.partition, partition_seed=self.partition_seed),
        )

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid setting."""
        if self.num_clients < 1:
            raise ValueError("--num-clients must be >= 1")
        if self.eval_every < 0:
            raise ValueError("--eval-every must be >= 0")
        if self.fid_backend not in ("classifier", "inception", "none"):
            raise ValueError("--fid-backend must be classifier, inception or none")
        if self.num_cpus <= 0:
            raise ValueError("--num-cpus must be > 0")
        self.server_config((1, 28, 28))


@dataclass(frozen=True)
class MDGANRunResult:
    """A finished simulation: its directory, records and server."""

    out: Path
    records: list[dict[str, Any]]
    server: MDGANServer

    @property
    def fids(self) -> list[float]:
        """FID of every evaluation, in order."""
        return [float(r["fid"]) for r in self.records if r.get("fid") is not None]


def run_mdgan_simulation(cfg: MDGANSimulationConfig) -> MDGANRunResult:
    """Run MD-GAN on Flower's simulation engine; write and return the run.

    Raises
    ------
    ValueError
        For invalid settings (before anything starts).
    RuntimeError
        If the server loop failed inside the simulation.
    """
    from flwr.app import Context
    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation import run_simulation
    from tqdm.auto import tqdm

    cfg.validate()
    started = time.perf_counter()
    train = load_dataset(cfg.dataset, "train", data_dir=cfg.data_dir or None)
    server_cfg = cfg.server_config(train.image_shape)
    evaluator = None
    if cfg.fid_backend != "none":
        from flwr_gan.metrics.fid import GeneratorEvaluator

        test = load_dataset(cfg.dataset, "test", data_dir=cfg.data_dir or None)
        evaluator = GeneratorEvaluator.for_dataset(
            train, test, backend=cfg.fid_backend, n_real=min(cfg.n_eval, len(test)),
            n_fake=cfg.n_eval, progress=cfg.progress)
    resolved = asdict(cfg) | {
        "algorithm": "mdgan", "server": server_cfg.to_dict(), "loss": server_cfg.resolved_loss,
        "image_shape": list(train.image_shape), "train_source": train.source,
        "train_size": len(train),
        "extractor": evaluator.extractor.name if evaluator else None,
    }
    run = RunDirectory(cfg.out, resolved, overwrite=cfg.overwrite)
    bar = tqdm(total=cfg.iterations, desc="mdgan", unit="it", disable=not cfg.progress,
               dynamic_ncols=True)
    last_fid: dict[str, float] = {}

    def evaluate(iteration: int, generator: torch.nn.Module) -> dict[str, Any]:
        assert evaluator is not None
        result, fake = evaluator.evaluate_with_samples(generator)
        run.save_samples(fake[:64], iteration)
        last_fid["fid"] = result.fid
        return {"fid": result.fid, "score": result.score, "extractor": result.extractor}

    def on_record(record: dict[str, Any]) -> None:
        run.log(record)
        if record["round"] > 0:
            bar.update(record["round"] - bar.n)
        post = {"alive": record.get("alive")}
        if "fid" in last_fid:
            post["fid"] = f"{last_fid['fid']:.2f}"
        if record.get("g_loss") is not None:
            post["g"] = f"{record['g_loss']:.3f}"
        bar.set_postfix(post)

    holder: dict[str, Any] = {}
    server_app = ServerApp()

    @server_app.main()
    def _main(grid: Grid, context: Context) -> None:
        try:
            holder["server"] = run_mdgan(
                grid, server_cfg, evaluate_fn=evaluate if evaluator else None,
                eval_every=cfg.eval_every, record_fn=on_record)
        except BaseException as err:  # reported after the simulation stops
            holder["error"] = err
            raise

    try:
        run_simulation(
            server_app=server_app, client_app=make_client_app(),
            num_supernodes=cfg.num_clients,
            backend_config={"client_resources": {"num_cpus": cfg.num_cpus, "num_gpus": 0.0}},
        )
    finally:
        bar.close()
    if "error" in holder:
        raise RuntimeError(f"MD-GAN server failed: {holder['error']}") from holder["error"]
    if "server" not in holder:
        raise RuntimeError("the simulation ended before the MD-GAN server finished")
    server: MDGANServer = holder["server"]
    torch.save({"generator": server.generator.state_dict(), "config": resolved,
                "iterations": len([r for r in server.records if r["round"] > 0])},
               run.path / "generator.pt")
    total = [r for r in server.records if r["round"] > 0]
    run.write_json("summary.json", {
        "events": server.events, "local_sizes": {str(k): v for k, v in server.local_sizes.items()},
        "swap_period": server.period, "alive_at_end": server.alive,
        "generator_params": count_parameters(server.generator),
        "discriminator_params": count_parameters(server.reference_disc),
        "iterations_done": len(total),
        "bytes_up": sum(r["bytes_up"] for r in total),
        "bytes_down": sum(r["bytes_down"] for r in total),
        "train_wall_s": server.wall_s, "virtual_s": server.virtual_s,
        "compute_s": server.compute_s, "total_wall_s": time.perf_counter() - started,
    })
    run.write_csv()
    if evaluator is not None:
        run.plot_curves(title=f"MD-GAN {cfg.model} N={cfg.num_clients} kappa={cfg.kappa}")
    return MDGANRunResult(run.path, run.records(), server)
