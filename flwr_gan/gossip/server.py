"""Gossip GAN server: a relay loop over a Flower ``Grid`` (it never aggregates).

Every worker hosts its own G_i and D_i (Gossiping GANs slides). Flower clients
cannot message each other, so the ServerApp carries the gossip. Round ``r``
(= exchange ``r``, ``r = 1..R``):

1. every live worker gets ``train.gossip_step`` with the models relayed to it
   from exchange ``r - 1``; it averages them into its own (equal weights),
   trains K local iterations and sends back its G and D (none for ``isolated``);
2. failed or timed-out workers are dropped (recorded with the reason; the run
   goes on); models addressed to them are discarded, none of theirs is relayed;
3. received models are validated (keys, shapes, finite values) and invalid ones
   rejected and reported, never relayed;
4. peers are drawn with ``numpy.random.default_rng(seed)`` over the live workers
   in device-key order (:func:`~flwr_gan.gossip.peers.choose_peers`) and each
   model is queued for its peer, to ride on that peer's next message. After the
   last round a ``merge-only`` message delivers exchange ``R``.

Relayed models cross the network twice (up from the sender, down to the
receiver) and are counted on both legs in ``bytes_up`` / ``bytes_down``;
``p2p_bytes`` says what a peer-to-peer deployment would have sent.
``--sync generator`` / ``discriminator`` exchanges one network only (the
other stays on each worker); ``--compress adacomp`` turns uploads into sparse
deltas the server rebuilds before relaying them dense
(:mod:`flwr_gan.gossip.compression`; ``bytes_up_dense`` is what the uploads
would have weighed uncompressed).

Use :func:`run_gossip` from any ``ServerApp`` ``main(grid, context)``.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, RecordDict
from flwr.common.serde import array_record_to_proto
from flwr.serverapp import Grid
from torch import nn

from flwr_gan.config import Settings
from flwr_gan.gossip.client import GENERATOR_TYPE, INFO_TYPE, STEP_TYPE, initial_models
from flwr_gan.gossip.compression import (
    SYNC_KINDS,
    UploadReceiver,
    compression_config,
    sent_kinds,
)
from flwr_gan.gossip.peers import choose_peers
from flwr_gan.runtime.loop import RecordFn, RelayLoop
from flwr_gan.runtime.records import (
    DISCRIMINATOR,
    GENERATOR,
    InvalidUpdateError,
    load_arrays,
    models_to_arrays,
)
from flwr_gan.runtime.relay import Reply, Traffic
from flwr_gan.runtime.telemetry import LinkModel, content_nbytes, virtual_round_seconds

log = logging.getLogger(__name__)

EvaluateFn = Callable[[int, dict[str, nn.Module]], Mapping[str, Any] | None]

_EVAL_STREAM = 0x6576616C  # separates the evaluation subset's draw from the peer stream


def record_nbytes(record: ArrayRecord) -> int:
    """Return the serialized size of one model (an ArrayRecord), the same on either leg."""
    return int(array_record_to_proto(record).ByteSize())


def worker_config(settings: Settings, image_shape: tuple[int, ...]) -> dict[str, Any]:
    """Return the settings every worker needs, as ConfigRecord values."""
    return {
        "model": settings.model.model, "loss": settings.model.resolved_loss(),
        "latent-dim": settings.latent_dim, "image-shape": [int(v) for v in image_shape],
        "lr-g": settings.lr_g, "lr-d": settings.lr_d, "beta1": settings.beta1,
        "beta2": settings.beta2, "d-steps": settings.d_steps, "batch-size": settings.batch_size,
        "seed": settings.seed, "sync-every": settings.local_steps,
        **settings.data.to_run_config(), **compression_config(settings),
    }


@dataclass
class _Round:
    """What happened in one round (one telemetry record)."""

    started: float
    traffic: Traffic = field(default_factory=Traffic)
    nodes: list[str] = field(default_factory=list)
    d_losses: list[float] = field(default_factory=list)
    g_losses: list[float] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    peers: dict[str, dict[str, str]] = field(default_factory=dict)
    p2p_bytes: int = 0
    uploaded: dict[tuple[int, str], int] = field(default_factory=dict)
    saved_up: int = 0
    exchanged: int = 0
    discarded: int = 0
    server_s: float = 0.0


class GossipServer(RelayLoop):
    """The Gossip GAN relay loop over a Flower ``Grid``.

    Parameters
    ----------
    grid : flwr.serverapp.Grid
        The grid of the running ServerApp.
    config : Settings
        Settings.
    evaluate_fn : callable, optional
        ``evaluate_fn(iteration, {device_key: generator}) -> dict``, called at
        round 0, every ``eval_every`` rounds and at the end with the evaluated
        subset's generators; its result is merged into that round's record.
        Neither its time nor its traffic (``eval_bytes``) is in the round's figures.
    eval_every : int
        Evaluation period in rounds (0: only start and end).
    record_fn : callable, optional
        Receives every record (round 0 when evaluating, then one per round).
    link : LinkModel, optional
        Link of the virtual clock.
    """

    def __init__(
        self, grid: Grid, config: Settings, *, image_shape: tuple[int, int, int] = (1, 28, 28),
        evaluate_fn: EvaluateFn | None = None, eval_every: int = 0,
        record_fn: RecordFn | None = None, link: LinkModel | None = None,
    ) -> None:
        super().__init__(grid, config, image_shape=image_shape, evaluate_fn=evaluate_fn,
                         eval_every=eval_every, record_fn=record_fn, link=link)
        self.generator, self.discriminator = initial_models(
            config.model.model, self.image_shape, config.latent_dim or None, config.seed)
        self.g_nbytes = record_nbytes(models_to_arrays({GENERATOR: self.generator}))
        self.d_nbytes = record_nbytes(models_to_arrays({DISCRIMINATOR: self.discriminator}))
        self.rng = np.random.default_rng(config.seed)
        #: Networks that travel (``--sync``) and the checker / AdaComp decoder of uploads.
        self.send = sent_kinds(config.variant, config.sync)
        self.uploads = UploadReceiver({"g": self.generator, "d": self.discriminator},
                                      compressed=config.compress == "adacomp")
        self.local_sizes: dict[str, int] = {}
        self.eval_keys: list[str] = []
        self.pending: dict[int, list[tuple[str, ArrayRecord]]] = {}
        self.wall_s = 0.0
        self.virtual_s = 0.0
        #: The last completed round (set when resuming from a checkpoint).
        self.start = 0

    # -- handshake -----------------------------------------------------------

    def connect(self) -> list[int]:
        """Wait for the workers and ask each for its identity; return live nodes by device key.

        Also fixes the evaluated subset (``eval_workers``), drawn from the seed
        over the device keys.
        """
        found = self.handshake(INFO_TYPE, worker_config(self.cfg, self.image_shape))
        for key, _, reply in found:
            info: Any = reply.content.metric_records["metrics"]
            self.local_sizes[key] = int(info["num-examples"])
        keys = [self.key(n) for n in self.alive]
        k = self.cfg.eval_workers
        if k == 0 or k >= len(keys):
            self.eval_keys = keys
        else:
            pick = np.random.default_rng([self.cfg.seed, _EVAL_STREAM]).choice(
                len(keys), size=k, replace=False)
            self.eval_keys = [keys[int(i)] for i in sorted(pick)]
        return list(self.alive)

    # -- one round -----------------------------------------------------------

    def forget(self, node: int) -> None:
        """Discard the models queued for a worker that left, and its AdaComp references."""
        self.pending.pop(node, None)
        self.uploads.forget(node)

    def _drop(self, node: int, reason: str, round_: int, rnd: _Round) -> None:
        rnd.discarded += len(self.pending.get(node, []))
        rnd.dropped.append(self.leave(node, reason, round_))

    def _wave(self, round_: int, nodes: list[int], rnd: _Round, *, send: str,
              merge_only: bool) -> list[Reply]:
        """Send ``gossip_step`` (with the models queued for each node); return the replies."""
        msgs = []
        for node in nodes:
            config = worker_config(self.cfg, self.image_shape) | {"round": round_, "send": send,
                                                 "merge-only": merge_only}
            config |= self.uploads.config_for(node)
            content = RecordDict({"config": ConfigRecord(config)})
            relayed = 0
            for k, (kind, record) in enumerate(self.pending.pop(node, [])):
                content.array_records[f"{kind}-in.{k}"] = record
                relayed += record_nbytes(record)
            rnd.traffic.sent(node, content_nbytes(content), relayed=relayed)
            msgs.append(self.relay.message(node, STEP_TYPE, content, str(round_)))
        return self.relay.exchange(msgs)

    def _outgoing(self, reply: Reply, send: str, rnd: _Round) -> dict[str, ArrayRecord]:
        """Return the valid models a worker sent back (``"g"`` / ``"d"``); reject the rest."""
        out: dict[str, ArrayRecord] = {}
        for kind, name in (("g", GENERATOR), ("d", DISCRIMINATOR)):
            if kind not in send:
                continue
            record = reply.content.array_records.get(f"{kind}-out")
            try:
                full = self.uploads.accept(reply.node, kind, record, what=self.key(reply.node))
            except InvalidUpdateError as err:
                rnd.rejected.append({"node": self.key(reply.node), "what": name,
                                     "reason": str(err)[:300]})
                log.warning("%s rejected: %s", name, err)
                continue
            assert record is not None
            rnd.uploaded[(reply.node, kind)] = record_nbytes(record)
            rnd.saved_up += record_nbytes(full) - rnd.uploaded[(reply.node, kind)]
            out[kind] = full
        return out

    def _queue(self, outgoing: dict[int, dict[str, ArrayRecord]], rnd: _Round) -> dict[int, int]:
        """Draw peers over the live workers; queue each model for its peer.

        Returns the relayed bytes queued per sender.
        """
        live = list(self.alive)
        choice = choose_peers(len(live), self.rng, self.cfg.variant)
        queued: dict[int, int] = {}
        if not choice.exchanges:
            return queued
        for i, node in enumerate(live):
            targets = {"g": live[choice.generator[i]], "d": live[choice.discriminator[i]]}
            rnd.peers[self.key(node)] = {k: self.key(v) for k, v in targets.items()
                                         if k in self.send}
            for kind, record in outgoing.get(node, {}).items():
                self.pending.setdefault(targets[kind], []).append((kind, record))
                nbytes = rnd.uploaded[(node, kind)]  # what crossed the sender's link
                queued[node] = queued.get(node, 0) + nbytes
                rnd.p2p_bytes += nbytes
                rnd.exchanged += 1
        return queued

    def _train_wave(self, round_: int, rnd: _Round) -> None:
        send = self.send
        nodes = list(self.alive)
        replies = self._wave(round_, nodes, rnd, send=send, merge_only=False)
        t0 = time.perf_counter()
        outgoing: dict[int, dict[str, ArrayRecord]] = {}
        done: list[tuple[Reply, float]] = []
        for reply in replies:
            if not reply.ok:
                self._drop(reply.node, reply.reason, round_, rnd)
                continue
            metrics: Any = reply.content.metric_records.get("metrics", {})
            rnd.nodes.append(self.key(reply.node))
            for name, values in (("d-loss", rnd.d_losses), ("g-loss", rnd.g_losses)):
                if name in metrics:
                    values.append(float(metrics[name]))
            outgoing[reply.node] = self._outgoing(reply, send, rnd)
            done.append((reply, float(metrics.get("compute-s", 0.0))))
        queued = self._queue(outgoing, rnd)
        for reply, compute_s in done:
            rnd.traffic.received(reply.node, reply.bytes_up, compute_s=compute_s,
                                 relayed=queued.get(reply.node, 0))
        rnd.server_s += time.perf_counter() - t0

    def _deliver(self, round_: int, rnd: _Round) -> None:
        """After the last round: hand every queued model to its receiver (merge only)."""
        nodes = [n for n in self.alive if self.pending.get(n)]
        for reply in self._wave(round_, nodes, rnd, send="", merge_only=True):
            if not reply.ok:
                self._drop(reply.node, reply.reason, round_, rnd)
                continue
            metrics: Any = reply.content.metric_records.get("metrics", {})
            rnd.traffic.received(reply.node, reply.bytes_up,
                                 compute_s=float(metrics.get("compute-s", 0.0)))

    def _record(self, round_: int, rnd: _Round) -> dict[str, Any]:
        wall = time.perf_counter() - rnd.started
        traffic = rnd.traffic
        costs = traffic.costs()
        virtual = virtual_round_seconds(costs, server_s=rnd.server_s, link=self.link)
        self.wall_s += wall
        self.virtual_s += virtual
        compute = [c.compute_s for c in costs]
        return {
            "round": round_, "iteration": round_ * self.cfg.local_steps,
            "variant": self.cfg.variant, "nodes": rnd.nodes, "alive": len(self.alive),
            "bytes_up": traffic.bytes_up, "bytes_down": traffic.bytes_down,
            "bytes_up_dense": traffic.bytes_up + rnd.saved_up, "compress": self.cfg.compress,
            "sync": self.cfg.sync, "relayed_up": traffic.relayed_up,
            "relayed_down": traffic.relayed_down,
            "relayed_bytes": traffic.relayed_up + traffic.relayed_down,
            "p2p_bytes": rnd.p2p_bytes,
            "fl_bytes": 2 * self.synced_nbytes * len(rnd.nodes),
            "exchanged": rnd.exchanged, "discarded": rnd.discarded, "peers": rnd.peers,
            "messages": traffic.messages,
            "compute_s": {self.key(c.node_id): c.compute_s for c in costs},
            "compute_s_total": float(sum(compute)),
            "compute_s_max": float(max(compute, default=0.0)),
            "server_s": rnd.server_s, "wall_s": wall, "virtual_s": virtual,
            "wall_total_s": self.wall_s, "virtual_total_s": self.virtual_s,
            "d_loss": float(np.mean(rnd.d_losses)) if rnd.d_losses else None,
            "g_loss": float(np.mean(rnd.g_losses)) if rnd.g_losses else None,
            "dropped": rnd.dropped, "rejected": rnd.rejected,
        }

    @property
    def synced_nbytes(self) -> int:
        """Dense bytes of the networks ``--sync`` exchanges (FL's per-leg cost)."""
        kinds = SYNC_KINDS[self.cfg.sync]
        return int("g" in kinds) * self.g_nbytes + int("d" in kinds) * self.d_nbytes

    # -- evaluation ----------------------------------------------------------

    def fetch_generators(self, round_: int, rnd: _Round) -> tuple[dict[str, nn.Module], int]:
        """Ask the evaluated subset for their generators; return them and the bytes moved."""
        nodes = [n for n in self.alive if self.key(n) in self.eval_keys]
        config = ConfigRecord(worker_config(self.cfg, self.image_shape) | {"round": round_})
        msgs = [self.relay.message(n, GENERATOR_TYPE, RecordDict({"config": config}),
                                   f"eval-{round_}") for n in nodes]
        nbytes = sum(content_nbytes(m.content) for m in msgs)
        gens: dict[str, nn.Module] = {}
        for reply in self.relay.exchange(msgs):
            if not reply.ok:
                self._drop(reply.node, reply.reason, round_, rnd)
                continue
            nbytes += reply.bytes_up
            gen = copy.deepcopy(self.generator)
            try:
                load_arrays(gen, reply.content.array_records[GENERATOR], GENERATOR,
                            what=f"{self.key(reply.node)} generator")
            except (InvalidUpdateError, KeyError) as err:
                rnd.rejected.append({"node": self.key(reply.node), "what": "eval-generator",
                                     "reason": str(err)[:300]})
                continue
            gens[self.key(reply.node)] = gen
        return gens, nbytes

    def _maybe_evaluate(self, round_: int, rnd: _Round, record: dict[str, Any]) -> None:
        if self.evaluate_fn is None:
            return
        due = round_ in (0, self.cfg.rounds) or (self.eval_every > 0
                                                 and round_ % self.eval_every == 0)
        if not due:
            return
        gens, nbytes = self.fetch_generators(round_, rnd)
        record.update({"evaluated": sorted(gens), "eval_bytes": nbytes,
                       "alive": len(self.alive), "dropped": rnd.dropped,
                       "rejected": rnd.rejected, "discarded": rnd.discarded})
        if gens:
            record.update(self.evaluate_fn(round_ * self.cfg.local_steps, gens) or {})
        else:
            log.warning("round %d: no generator to evaluate", round_)

    # -- the loop ------------------------------------------------------------

    def run(self) -> list[dict[str, Any]]:
        """Connect, run ``rounds`` exchanges of ``sync_every`` local iterations; return records.

        A resumed server (``start`` > 0, state restored) continues at round ``start + 1``.
        """
        if not self.alive:
            self.connect()
        if self.evaluate_fn is not None and self.start == 0:
            rnd = _Round(started=time.perf_counter())
            record = self._record(0, rnd)
            self._maybe_evaluate(0, rnd, record)
            self.emit(record)
        for round_ in range(self.start + 1, self.cfg.rounds + 1):
            if not self.alive:
                log.warning("every worker has failed: stopping at round %d", round_)
                break
            rnd = _Round(started=time.perf_counter())
            self._train_wave(round_, rnd)
            if round_ == self.cfg.rounds and self.pending:
                self._deliver(round_, rnd)
            record = self._record(round_, rnd)
            self._maybe_evaluate(round_, rnd, record)
            self.emit(record)
        return self.records


def run_gossip(
    grid: Grid, config: Settings, *, image_shape: tuple[int, int, int] = (1, 28, 28),
    evaluate_fn: EvaluateFn | None = None, eval_every: int = 0,
    record_fn: RecordFn | None = None, link: LinkModel | None = None,
) -> GossipServer:
    """Run Gossip GAN on ``grid`` (call from a ServerApp's ``main(grid, context)``).

    Returns the finished :class:`GossipServer` (its ``records`` and ``events``).
    """
    server = GossipServer(grid, config, image_shape=image_shape, evaluate_fn=evaluate_fn,
                          eval_every=eval_every, record_fn=record_fn, link=link)
    server.run()
    return server


__all__ = ["GossipServer", "record_nbytes", "run_gossip", "worker_config"]
