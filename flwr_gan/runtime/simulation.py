"""The one way every family runs: :func:`run` (simulation or local) and its outcome.

Flower 1.41 has no ``flower-simulation`` command; :func:`run` starts Flower's
Ray-based simulation (:func:`flwr.simulation.run_simulation`) with
``num_clients`` SuperNodes, each given ``partition-id`` / ``num-partitions``,
the device ClientApp (:func:`flwr_gan.apps.device_app`, every family's
handlers) and a ServerApp running the family's server function. Since
``run_simulation`` hands apps an empty run config, a client mod gives every
node the run's settings as its run config: nodes read them exactly as they do
under ``flwr run`` or on a real device.

Everything a user can get wrong is checked by :func:`flwr_gan.runtime.experiment.prepare`
before Ray starts; an exception of the server loop is re-raised here, after the
simulation has shut down, as the original exception.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from flwr_gan.algorithms import get_algorithm
from flwr_gan.config import Settings
from flwr_gan.runtime.experiment import Experiment, prepare

log = logging.getLogger(__name__)

#: How long the server thread waits for Ray to start before it goes on anyway.
RAY_START_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class RunOutcome:
    """A finished run.

    Attributes
    ----------
    experiment : Experiment
        The run (settings, data, run directory).
    records : list of dict
        Every record of ``metrics.jsonl``.
    wall_s : float
        Seconds of the whole command (Ray start included).
    """

    experiment: Experiment
    records: list[dict[str, Any]]
    wall_s: float

    @property
    def fids(self) -> list[float]:
        """FID of every evaluation, in order."""
        return [float(r["fid"]) for r in self.records if r.get("fid") is not None]


def run(settings: Settings, *, verbose: bool = False) -> RunOutcome:
    """Run ``settings`` (its family from the registry) and return the outcome.

    Raises
    ------
    flwr_gan.config.ConfigError, flwr_gan.data.DataNotFoundError
        Usage errors, raised before Ray starts.
    flwr_gan.runtime.checkpoint.CheckpointError
        A checkpoint that cannot be resumed (before Ray starts) or written.
    Exception
        Whatever the server loop raised (e.g. a diverging model), after shutdown.
    """
    started = time.perf_counter()
    algo = get_algorithm(settings.algorithm)
    exp = prepare(settings, unit=algo.unit, total=int(settings.get(algo.total)),
                  federated=algo.federated)
    server_fn = algo.load("server")
    if not algo.federated:
        try:
            records = server_fn(None, exp)
        finally:
            exp.close()
        return RunOutcome(exp, records, time.perf_counter() - started)

    from flwr.app import Context
    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation import run_simulation

    from flwr_gan.apps import device_app

    fed = settings.federation
    # One torch thread per client process unless the user says otherwise.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, fed.client_threads)))
    if not verbose:  # Flower logs every round at INFO; the progress bar replaces it
        logging.getLogger("flwr").setLevel(logging.WARNING)
    holder: dict[str, Any] = {}
    server = ServerApp()

    @server.main()
    def _main(grid: Grid, context: Context) -> None:
        try:
            wait_for_ray()
            holder["records"] = server_fn(grid, exp)
        except BaseException as err:  # re-raised after the simulation shut down
            holder["error"] = err
            log.debug("server loop failed", exc_info=True)

    # client failures reach the server as error replies; what the actors print
    # (colour-coded shutdown notices) only with -v
    init_args: dict[str, Any] = {"log_to_driver": verbose}
    if fed.ray_address:  # join a cluster started with `ray start` (docs/deployment.md)
        init_args["address"] = fed.ray_address
    try:
        run_simulation(
            server_app=server, client_app=device_app(settings.to_run_config()),
            num_supernodes=fed.num_clients,
            backend_config={"client_resources": {"num_cpus": fed.client_cpus, "num_gpus": 0.0},
                            "init_args": init_args},
            verbose_logging=verbose,
        )
    finally:
        exp.close()
    if "error" in holder:
        raise holder["error"]
    if "records" not in holder:
        raise RuntimeError("the simulation ended without running the server (run with "
                           "--verbose to see Flower's log)")
    return RunOutcome(exp, holder["records"], time.perf_counter() - started)


def wait_for_ray(timeout: float = RAY_START_TIMEOUT_S, poll: float = 0.05) -> bool:
    """Block the server thread until ``ray.init`` has started Ray's processes.

    Flower starts the ServerApp thread before it starts Ray in the main thread, so
    the server's round-0 evaluation (numpy / torch BLAS) used to run while
    ``ray.init`` forked its helper processes. OpenBLAS's fork handler waits for its
    busy worker threads, and the worker threads for the forking thread: a benchmark
    hung 23 minutes in ``blas_thread_shutdown_``. Ray forks only while it starts, so
    the server starts its work once Ray is up (or after ``timeout`` seconds, leaving a
    failed start to Flower's own error path).

    Returns
    -------
    bool
        Whether Ray was up before the timeout.
    """
    import ray

    deadline = time.monotonic() + timeout
    while not ray.is_initialized():
        if time.monotonic() >= deadline:
            log.warning("Ray did not start within %.0f s; the server goes on", timeout)
            return False
        time.sleep(poll)
    return True


__all__ = ["RunOutcome", "run", "wait_for_ray"]
