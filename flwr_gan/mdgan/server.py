"""MD-GAN server: the generator and a custom Flower ``Grid`` loop.

The server holds the single generator and its Adam optimizer (through a
:class:`~flwr_gan.core.training.GANTrainer` without discriminator). Two modes:

``sync`` (the paper, Algorithm 1)
    Each global iteration generates ``kappa`` batches in one forward pass,
    sends worker ``n`` its ``(X_g, X_d)`` pair (§IV-B1), waits for every
    feedback (or the timeout), drops workers that failed or timed out, rejects
    malformed feedback, and back-propagates the averaged feedback through G.
``pipelined`` (paper §VII-1, asynchronous)
    Workers never wait for each other: as soon as a worker's feedback
    arrives it is sent a fresh batch pair from the current G, and G steps
    whenever ``quorum`` feedbacks (by default one per live worker, as in sync)
    have accumulated. Feedback computed on batches older than
    ``max_staleness`` generator versions is discarded (and reported). This
    hides Flower's fixed per-message latency behind the other workers' work.

Discriminator swaps (Algorithm 1, SWAP) are relayed by the server because
Flower clients cannot talk to each other: at a swap iteration the workers
attach their discriminator to the reply (``disc-out``); the server draws a
permutation without fixed points and hands each one to its new worker with
that worker's next batches (``disc-in``). The bytes therefore cross the
network twice and are counted on both legs.

Use :func:`run_mdgan` from any ``ServerApp`` ``main(grid, context)``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, RecordDict
from flwr.serverapp import Grid

from flwr_gan.config import Settings
from flwr_gan.core.models import build_models
from flwr_gan.core.training import GANTrainer
from flwr_gan.mdgan.aggregation import Feedback, generator_update
from flwr_gan.mdgan.assignment import (
    assign_batches,
    crash_iterations,
    derangement,
    is_swap_iteration,
    kappa_for,
    sample_workers,
    swap_period,
)
from flwr_gan.mdgan.client import INFO_TYPE, STEP_TYPE
from flwr_gan.mdgan.compression import compression_config, dense_feedback_nbytes, read_feedback
from flwr_gan.mdgan.settings import MODES
from flwr_gan.runtime.arraycodec import array_of, array_record
from flwr_gan.runtime.loop import RecordFn, RelayLoop
from flwr_gan.runtime.records import InvalidUpdateError, arrays_nbytes, check_state, split_arrays
from flwr_gan.runtime.relay import Reply
from flwr_gan.runtime.telemetry import LinkModel, NodeCost, content_nbytes, virtual_round_seconds

log = logging.getLogger(__name__)


EvaluateFn = Callable[[int, torch.nn.Module], Mapping[str, Any] | None]


def worker_config(settings: Settings, image_shape: tuple[int, ...]) -> dict[str, Any]:
    """Return the settings every worker needs, as ConfigRecord values."""
    return {
        "model": settings.model.model, "loss": settings.model.resolved_loss(),
        "image-shape": [int(v) for v in image_shape], "disc-steps": settings.d_steps,
        "lr-g": settings.lr_g, "lr-d": settings.lr_d, "beta1": settings.beta1,
        "beta2": settings.beta2, "batch-size": settings.batch_size, "seed": settings.seed,
        **settings.data.to_run_config(), **compression_config(settings),
    }


@dataclass
class _Sent:
    node: int
    wave: int
    batch_g: int
    version: int
    sent_at: float
    bytes_down: int
    payload_down: int
    swap_down: int
    send_disc: bool
    crash: bool


@dataclass
class _Interval:
    """What happened between two generator updates (one telemetry record)."""

    started: float
    bytes_down: int = 0
    bytes_up: int = 0
    payload_down: int = 0
    payload_up: int = 0
    payload_up_dense: int = 0
    swap_bytes_down: int = 0
    swap_bytes_up: int = 0
    messages: int = 0
    costs: dict[int, NodeCost] = field(default_factory=dict)
    d_losses: list[float] = field(default_factory=list)
    g_losses: list[float] = field(default_factory=list)
    staleness: list[int] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    stale: int = 0
    swaps: int = 0
    handler_s: float = 0.0
    server_s: float = 0.0

    def add_cost(self, node: int, compute_s: float, down: int, up: int) -> None:
        old = self.costs.get(node, NodeCost(node, 0.0, 0, 0))
        self.costs[node] = NodeCost(node, old.compute_s + compute_s, old.bytes_down + down,
                                    old.bytes_up + up)


class MDGANServer(RelayLoop):
    """The MD-GAN server loop over a Flower ``Grid``.

    Parameters
    ----------
    grid : flwr.serverapp.Grid
        The grid of the running ServerApp.
    config : Settings
        MD-GAN's settings (:func:`flwr_gan.algorithms.make_settings`).
    image_shape : tuple of int
        ``(C, H, W)`` of the data set.
    evaluate_fn : callable, optional
        ``evaluate_fn(iteration, generator) -> dict`` (e.g. FID), called at
        iteration 0, every ``eval_every`` iterations and at the end; its
        result is merged into that iteration's record. Not counted in ``wall_s``.
    eval_every : int
        Evaluation period (0: only start and end).
    record_fn : callable, optional
        Receives every telemetry record (one per generator update).
    link : LinkModel, optional
        Link of the virtual clock.
    """

    unit = "iteration"

    def __init__(
        self, grid: Grid, config: Settings, *, image_shape: tuple[int, int, int] = (1, 28, 28),
        evaluate_fn: EvaluateFn | None = None, eval_every: int = 0,
        record_fn: RecordFn | None = None, link: LinkModel | None = None,
    ) -> None:
        super().__init__(grid, config, image_shape=image_shape, evaluate_fn=evaluate_fn,
                         eval_every=eval_every, record_fn=record_fn, link=link,
                         poll_interval=config.poll_interval)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            gen, disc = build_models(config.model.model, self.image_shape,
                                     config.latent_dim or None)
        self.reference_disc = disc
        self.trainer = GANTrainer(gen, None, loss=config.model.resolved_loss(),
                                  optim=config.train.optimizer(), seed=config.seed)
        self.generator = gen
        self.rng = np.random.default_rng(config.seed)
        self.local_sizes: dict[int, int] = {}
        self.period = 0
        self.pending_disc: dict[int, ArrayRecord] = {}
        self.crash_plan: list[int] = []
        self.wall_s = 0.0
        self.virtual_s = 0.0
        self.compute_s = 0.0
        #: Iterations already done (a resumed run continues after them).
        self.start = 0

    # -- Flower plumbing (the shared relay) --------------------------------

    def connect(self) -> list[int]:
        """Wait for the workers, ask each for its identity and data-set size.

        Workers are ordered (and, with ``num_clients``, chosen) by device key,
        so which worker gets which batches does not depend on Flower's node ids.
        Returns the live node ids in that order.
        """
        found = self.handshake(INFO_TYPE, worker_config(self.cfg, self.image_shape))
        for _, node, reply in found:
            info: Any = reply.content.metric_records["metrics"]
            self.local_sizes[node] = int(info["num-examples"])
        m = int(np.median(list(self.local_sizes.values())))
        self.period = swap_period(m, self.cfg.swap_epochs, self.cfg.batch_size)
        if self.cfg.crash_schedule:
            self.crash_plan = crash_iterations(self.cfg.iterations, len(self.alive))
        return list(self.alive)

    # -- shared pieces -----------------------------------------------------

    def _step_content(
        self, node: int, iteration: int, x_g: torch.Tensor, x_d: torch.Tensor, *,
        send_disc: bool, crash: bool,
    ) -> tuple[RecordDict, int, int]:
        config = ConfigRecord(worker_config(self.cfg, self.image_shape) | {
            "iteration": iteration, "send-disc": send_disc, "crash": crash})
        batches = array_record({"x_g": array_of(x_g.cpu().numpy()),
                                "x_d": array_of(x_d.cpu().numpy())})
        content = RecordDict({"config": config, "batches": batches})
        swap_down = 0
        disc_in = self.pending_disc.pop(node, None)
        if disc_in is not None:
            content.array_records["disc-in"] = disc_in
            swap_down = arrays_nbytes(disc_in)
        return content, arrays_nbytes(batches), swap_down

    def _take_crash(self, iteration: int) -> int:
        """How many workers the crash schedule fails at ``iteration``."""
        due = [it for it in self.crash_plan if it <= iteration]
        self.crash_plan = [it for it in self.crash_plan if it > iteration]
        return len(due)

    def forget(self, node: int) -> None:
        """Discard the discriminator waiting for a worker that left."""
        self.pending_disc.pop(node, None)

    def _drop(self, node: int, reason: str, iteration: int, interval: _Interval) -> None:
        interval.dropped.append(self.leave(node, reason, iteration))

    def _read_reply(
        self, sent: _Sent, got: Reply, iteration: int, interval: _Interval,
        expected: tuple[int, ...],
    ) -> tuple[torch.Tensor | None, ArrayRecord | None]:
        """Account a reply; return its validated feedback and relayable discriminator."""
        interval.messages += 1
        if not got.ok or got.message is None:
            interval.add_cost(sent.node, 0.0, sent.bytes_down, 0)
            self._drop(sent.node, got.reason, iteration, interval)
            return None, None
        reply = got.message
        up = got.bytes_up
        interval.bytes_up += up
        metrics: Any = reply.content.metric_records.get("metrics")
        compute = float(metrics["compute-s"]) if metrics and "compute-s" in metrics else 0.0
        interval.handler_s += float(metrics["handler-s"]) if metrics and "handler-s" in metrics \
            else 0.0
        interval.add_cost(sent.node, compute, sent.bytes_down, up)
        disc_out = reply.content.array_records.get("disc-out")
        if disc_out is not None:
            interval.swap_bytes_up += arrays_nbytes(disc_out)
            try:
                check_state(self.reference_disc.state_dict(), split_arrays(disc_out,
                            "discriminator"), what=f"worker {sent.node} discriminator")
            except InvalidUpdateError as err:
                interval.rejected.append({"node": self.key(sent.node),
                                          "reason": str(err)[:300], "what": "discriminator"})
                disc_out = None
        try:
            record = reply.content.array_records.get("feedback")
            interval.payload_up += arrays_nbytes(record) if record is not None else 0
            interval.payload_up_dense += dense_feedback_nbytes(expected)
            values = read_feedback(record, expected, worker=f"worker {sent.node}")
        except (InvalidUpdateError, ValueError, TypeError) as err:
            interval.rejected.append({"node": self.key(sent.node), "reason": str(err)[:300],
                                      "what": "feedback"})
            self.events.append({"iteration": iteration, "event": "rejected",
                                "node": self.key(sent.node), "reason": str(err)[:300]})
            log.warning("iteration %d: %s", iteration, err)
            return None, disc_out
        if metrics is not None:
            interval.d_losses.append(float(metrics.get("d-loss", float("nan"))))
            interval.g_losses.append(float(metrics.get("g-loss", float("nan"))))
        return torch.from_numpy(values), disc_out

    def _relay_swaps(self, discs: Mapping[int, ArrayRecord], interval: _Interval) -> None:
        """Draw a permutation without fixed points and queue each D for its new worker."""
        senders = [n for n in discs if n in self.alive]
        if len(senders) < 2:
            return
        perm = derangement(len(senders), self.rng)
        for j, node in enumerate(senders):
            self.pending_disc[senders[perm[j]]] = discs[node]
        interval.swaps += 1

    def _finish(self, iteration: int, interval: _Interval, applied: list[int],
                kappa: int, extra: Mapping[str, Any]) -> dict[str, Any]:
        iter_wall = time.perf_counter() - interval.started
        costs = list(interval.costs.values())
        iter_virtual = virtual_round_seconds(costs, server_s=interval.server_s, link=self.link)
        compute = [c.compute_s for c in costs]
        self.wall_s += iter_wall
        self.virtual_s += iter_virtual
        self.compute_s += sum(compute)
        record: dict[str, Any] = {
            "round": iteration, "iteration": iteration, "nodes": [self.key(n) for n in applied],
            "alive": len(self.alive), "kappa": kappa,
            "bytes_up": interval.bytes_up, "bytes_down": interval.bytes_down,
            "payload_up": interval.payload_up, "payload_down": interval.payload_down,
            "payload_up_dense": interval.payload_up_dense, "compress": self.cfg.compress,
            "swap_bytes_up": interval.swap_bytes_up, "swap_bytes_down": interval.swap_bytes_down,
            "swaps": interval.swaps, "messages": interval.messages,
            "compute_s": {self.key(c.node_id): c.compute_s for c in costs},
            "compute_s_total": float(sum(compute)),
            "compute_s_max": float(max(compute, default=0.0)),
            "server_s": interval.server_s, "handler_s": interval.handler_s,
            "wall_s": iter_wall, "virtual_s": iter_virtual,
            "wall_total_s": self.wall_s, "virtual_total_s": self.virtual_s,
            "d_loss": float(np.nanmean(interval.d_losses)) if interval.d_losses else None,
            "g_loss": float(np.nanmean(interval.g_losses)) if interval.g_losses else None,
            "dropped": interval.dropped, "rejected": interval.rejected,
        } | dict(extra)
        if self.evaluate_fn is not None and (
            iteration == self.cfg.iterations
            or (self.eval_every > 0 and iteration % self.eval_every == 0)
        ):
            record.update(self.evaluate_fn(iteration, self.generator) or {})
        self.emit(record)
        return record

    def _initial_eval(self) -> None:
        if self.evaluate_fn is None:
            return
        record: dict[str, Any] = {"round": 0, "iteration": 0, "nodes": [],
                                  "alive": len(self.alive), "bytes_up": 0, "bytes_down": 0,
                                  "compute_s": {}, "compute_s_max": 0.0, "wall_s": 0.0,
                                  "virtual_s": 0.0}
        record.update(self.evaluate_fn(0, self.generator) or {})
        self.emit(record)

    # -- synchronous MD-GAN (Algorithm 1) ----------------------------------

    def run(self) -> list[dict[str, Any]]:
        """Connect, train for ``iterations`` generator updates, return the records."""
        if not self.alive:
            self.connect()
        if self.start == 0:
            self._initial_eval()
        if self.cfg.mode == "sync":
            self._run_sync()
        else:
            self._run_pipelined()
        return self.records

    def _run_sync(self) -> None:
        cfg, b = self.cfg, self.cfg.batch_size
        self.generator.train()
        for it in range(self.start + 1, cfg.iterations + 1):
            if not self.alive:
                log.warning("every worker has failed: stopping at iteration %d", it)
                break
            interval = _Interval(started=time.perf_counter())
            t0 = time.perf_counter()
            workers = sample_workers(self.alive, cfg.workers_per_iteration, self.rng)
            n_crash = min(self._take_crash(it), len(workers))
            victims = {workers[int(i)] for i in
                       self.rng.choice(len(workers), size=n_crash, replace=False)}
            kappa = kappa_for(len(workers), cfg.kappa)
            z = self.trainer.latent(kappa * b)
            x = self.trainer.generate(kappa * b, z)
            pairs = assign_batches(len(workers), kappa)
            swap_now = is_swap_iteration(it, self.period) and len(self.alive) >= 2
            sent: dict[str, _Sent] = {}
            msgs = []
            interval.server_s += time.perf_counter() - t0
            for node, (g, d) in zip(workers, pairs, strict=True):
                content, payload, swap_down = self._step_content(
                    node, it, x[g * b:(g + 1) * b], x[d * b:(d + 1) * b],
                    send_disc=swap_now, crash=node in victims)
                nbytes = content_nbytes(content)
                interval.bytes_down += nbytes
                interval.payload_down += payload
                interval.swap_bytes_down += swap_down
                msg = self.relay.message(node, STEP_TYPE, content, str(it))
                msgs.append(msg)
                sent[str(len(msgs) - 1)] = _Sent(node, 0, g, it - 1, time.perf_counter(), nbytes,
                                                 payload, swap_down, swap_now, node in victims)
            replies = self.relay.exchange(msgs)
            feedbacks: list[Feedback] = []
            discs: dict[int, ArrayRecord] = {}
            shape = (b, *self.image_shape)
            for j, reply in enumerate(replies):
                s = sent[str(j)]
                values, disc_out = self._read_reply(s, reply, it, interval, shape)
                if values is not None:
                    feedbacks.append(Feedback(s.node, 0, s.batch_g, values))
                if disc_out is not None:
                    discs[s.node] = disc_out
            t1 = time.perf_counter()
            if feedbacks:
                generator_update(self.generator, self.trainer.opt_g,  # type: ignore[arg-type]
                                 [z], b, feedbacks, method=cfg.aggregation,
                                 trim_fraction=cfg.trim_fraction)
            if swap_now:
                self._relay_swaps(discs, interval)
            interval.server_s += time.perf_counter() - t1
            self._finish(it, interval, [f.worker for f in feedbacks], kappa,
                         {"mode": "sync", "updated": bool(feedbacks),
                          "crashed": sorted(self.key(v) for v in victims)})

    # -- pipelined / asynchronous MD-GAN (paper §VII-1) -------------------

    def _run_pipelined(self) -> None:
        from flwr_gan.mdgan.pipelined import run_pipelined

        run_pipelined(self)


def run_mdgan(
    grid: Grid, config: Settings, *, image_shape: tuple[int, int, int] = (1, 28, 28),
    evaluate_fn: EvaluateFn | None = None,
    eval_every: int = 0, record_fn: RecordFn | None = None, link: LinkModel | None = None,
) -> MDGANServer:
    """Run MD-GAN on ``grid`` (call from a ServerApp's ``main(grid, context)``).

    Returns the finished :class:`MDGANServer` (its ``generator``, ``records``
    and ``events``).
    """
    server = MDGANServer(grid, config, image_shape=image_shape, evaluate_fn=evaluate_fn,
                         eval_every=eval_every, record_fn=record_fn, link=link)
    server.run()
    return server


__all__ = ["MDGANServer", "MODES", "run_mdgan", "worker_config"]
