"""``flwr-gan simulate``: one command that runs FL-GAN or FeGAN in Flower's simulation engine.

Flower 1.41 has no ``flower-simulation`` command; this runner starts Flower's
Ray-based simulation (:func:`flwr.simulation.run_simulation`) with ``N``
SuperNodes, each given ``partition-id``/``num-partitions`` so it trains on its
share of the data set, our ClientApp (:mod:`flwr_gan.client_app`) and a
ServerApp running :func:`flwr_gan.server_app.run_server`. Since
``run_simulation`` hands apps an empty run config, the settings travel in the
app objects themselves (:func:`make_server_app` / :func:`make_client_app`).

The partition is computed before Ray starts, so an impossible one (e.g. the
FeGAN engine leaving devices empty) fails in a second with a clear message.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from flwr_gan.client_app import ClientSettings, make_client_app
from flwr_gan.data.node import dataset_partition
from flwr_gan.server_app import FL_ALGORITHMS, FederatedConfig, ServerOutcome, make_server_app

log = logging.getLogger(__name__)

#: Algorithms ``flwr-gan simulate --algorithm`` accepts. Other packages'
#: runners (e.g. MD-GAN) are added by the CLI's dispatch table.
ALGORITHMS: tuple[str, ...] = FL_ALGORITHMS


@dataclass
class SimulationResult:
    """A finished simulation.

    Attributes
    ----------
    outcome : ServerOutcome
        What the server did (records, rounds).
    wall_s : float
        Seconds of the whole command, Ray start included.
    """

    outcome: ServerOutcome
    wall_s: float

    @property
    def records(self) -> list[dict[str, Any]]:
        """``metrics.jsonl`` records."""
        return self.outcome.records or []


class _Progress:
    """A tqdm bar over rounds showing the last FID and kl_seen (ETA from tqdm)."""

    def __init__(self, total: int, algorithm: str, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=algorithm, unit="round", disable=not enabled,
                        dynamic_ncols=True)
        self.fid: float | None = None

    def __call__(self, record: dict[str, Any]) -> None:
        if record.get("fid") is not None:
            self.fid = float(record["fid"])
        post: dict[str, str] = {}
        if self.fid is not None:
            post["fid"] = f"{self.fid:.2f}"
        if record.get("kl_seen") is not None:
            post["kl_seen"] = f"{record['kl_seen']:.4f}"
        if record.get("wall_s") is not None:
            post["s/round"] = f"{record['wall_s']:.1f}"
        self.bar.set_postfix(post)
        if int(record.get("round", 0)) > 0:
            self.bar.update(int(record["round"]) - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def run_simulation_command(cfg: FederatedConfig, *, progress: bool = True,
                           client_cpus: float = 1.0, verbose: bool = False) -> SimulationResult:
    """Run ``cfg`` in Flower's simulation engine and return the outcome.

    Parameters
    ----------
    cfg : FederatedConfig
        Settings (``cfg.num_clients`` SuperNodes).
    progress : bool
        Show a progress bar (rounds, FID, ETA).
    client_cpus : float
        CPUs Ray reserves per client (1: as many parallel clients as cores).
    verbose : bool
        Keep Flower's per-round INFO logs.

    Raises
    ------
    ValueError
        On invalid settings or an impossible partition (before Ray starts).
    RuntimeError
        If the server loop failed (the original exception is chained).
    """
    cfg.validate()
    started = time.perf_counter()
    # Fail fast, before Ray: the partition must exist and leave no device empty.
    dataset_partition(cfg.data_config(), cfg.num_clients)
    # One torch thread per client process unless the user says otherwise.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cfg.client_threads)))
    from flwr.simulation import run_simulation

    if not verbose:  # Flower logs every round at INFO; the progress bar replaces it
        logging.getLogger("flwr").setLevel(logging.WARNING)
    holder: list[ServerOutcome] = []
    bar = _Progress(cfg.rounds, cfg.algorithm, progress)
    server = make_server_app(cfg, num_nodes=cfg.num_clients, progress=bar, outcome_holder=holder)
    client = make_client_app(ClientSettings(data=cfg.data_config(),
                                            weak_fraction=cfg.weak_fraction,
                                            weak_seed=cfg.seed))
    try:
        run_simulation(
            server_app=server, client_app=client, num_supernodes=cfg.num_clients,
            backend_config={"client_resources": {"num_cpus": client_cpus, "num_gpus": 0.0}},
            verbose_logging=verbose,
        )
    finally:
        bar.close()
    if not holder:
        raise RuntimeError("the simulation ended without running the server (see Flower's log)")
    outcome = holder[0]
    if outcome.error is not None:
        raise RuntimeError(f"the server failed: {outcome.error}") from outcome.error
    return SimulationResult(outcome, time.perf_counter() - started)
