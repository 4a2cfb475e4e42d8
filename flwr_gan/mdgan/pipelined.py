"""Pipelined (asynchronous) MD-GAN, the paper's §VII-1: workers never wait for each other.

As soon as a worker's feedback arrives it is sent a fresh batch pair from the
current generator, and the generator steps whenever ``quorum`` feedbacks (by
default one per live worker, as in sync mode) have accumulated. Feedback
computed on batches older than ``max_staleness`` generator versions is
discarded (and reported). This hides Flower's fixed per-message latency behind
the other workers' work. With ``--compress adacomp`` the feedback kept is
scaled by ``1 / (1 + staleness)`` (AdaComp's learning-rate modulation, see
:mod:`flwr_gan.mdgan.compression`). Replies still in flight at the end are abandoned.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from flwr.app import ArrayRecord

from flwr_gan.mdgan.aggregation import Feedback, generator_update
from flwr_gan.mdgan.assignment import (
    assign_batches,
    is_swap_iteration,
    kappa_for,
    sample_workers,
)
from flwr_gan.mdgan.client import STEP_TYPE
from flwr_gan.mdgan.compression import modulate_stale
from flwr_gan.mdgan.server import MDGANServer, _Interval, _Sent
from flwr_gan.runtime.relay import read_reply
from flwr_gan.runtime.telemetry import content_nbytes

log = logging.getLogger(__name__)


def run_pipelined(server: MDGANServer) -> None:
    """Run ``server``'s remaining generator updates in pipelined mode."""
    cfg, b = server.cfg, server.cfg.batch_size
    server.generator.train()
    shape = (b, *server.image_shape)
    version = server.start
    outstanding: dict[str, _Sent] = {}
    waves: dict[int, torch.Tensor] = {}
    next_wave = 0
    shared: tuple[int, int, int, torch.Tensor] | None = None  # (version, kappa, wave, x)
    acc: list[Feedback] = []
    swap_wanted: set[int] = set()
    swap_pool: dict[int, ArrayRecord] = {}
    interval = _Interval(started=time.perf_counter())
    crash_due = 0
    crash_checked = 0
    order = list(server.alive)
    compressed = cfg.compress == "adacomp"  # AdaComp's 1/(1+staleness) modulation
    while version < cfg.iterations and server.alive:
        quorum = len(server.alive) if cfg.workers_per_iteration <= 0 else min(
            cfg.workers_per_iteration, len(server.alive))
        # crash schedule and swap triggers for the upcoming version
        if crash_checked < version + 1:
            crash_due += server._take_crash(version + 1)
            if is_swap_iteration(version + 1, server.period) and len(server.alive) >= 2:
                swap_wanted = set(server.alive)
                swap_pool = {}
            crash_checked = version + 1
        busy = {s.node for s in outstanding.values()}
        idle = [n for n in server.alive if n not in busy]
        room = quorum - len(busy)
        if idle and room > 0:
            t0 = time.perf_counter()
            chosen = sample_workers(idle, room, server.rng) if room < len(idle) else idle
            kappa = min(kappa_for(len(server.alive), cfg.kappa), len(order))
            pairs = {n: assign_batches(len(order), kappa)[order.index(n)] for n in chosen}
            if shared is None or shared[:2] != (version, kappa):
                # one set of kappa batches per generator version, as in sync mode
                z = server.trainer.latent(kappa * b)
                shared = (version, kappa, next_wave, server.trainer.generate(kappa * b, z))
                waves[next_wave] = z
                next_wave += 1
            wave, x = shared[2], shared[3]
            interval.server_s += time.perf_counter() - t0
            msgs, meta = [], []
            for node in chosen:
                g, d = pairs[node]
                crash = crash_due > 0
                crash_due -= int(crash)
                send_disc = node in swap_wanted and node not in swap_pool
                content, payload, swap_down = server._step_content(
                    node, version + 1, x[g * b:(g + 1) * b], x[d * b:(d + 1) * b],
                    send_disc=send_disc, crash=crash)
                nbytes = content_nbytes(content)
                interval.bytes_down += nbytes
                interval.payload_down += payload
                interval.swap_bytes_down += swap_down
                msgs.append(server.relay.message(node, STEP_TYPE, content, str(version + 1)))
                meta.append(_Sent(node, wave, g, version, time.perf_counter(), nbytes,
                                  payload, swap_down, send_disc, crash))
            for mid, s in zip(server.relay.push(msgs), meta, strict=True):
                outstanding[mid] = s
        progressed = False
        for reply in server.relay.pull(sorted(outstanding)):
            mid = reply.metadata.reply_to_message_id
            if mid not in outstanding:
                continue
            s = outstanding.pop(mid)
            progressed = True
            values, disc_out = server._read_reply(
                s, read_reply(s.node, reply, cfg.timeout), version + 1, interval, shape)
            if disc_out is not None and s.node in swap_wanted:
                swap_pool[s.node] = disc_out
            if values is None:
                continue
            staleness = version - s.version
            if staleness > cfg.max_staleness:
                interval.stale += 1
                continue
            interval.staleness.append(staleness)
            values = modulate_stale(values, staleness, enabled=compressed)
            acc.append(Feedback(s.node, s.wave, s.batch_g, values))
        now = time.perf_counter()
        for mid, s in list(outstanding.items()):
            if now - s.sent_at > cfg.timeout:
                outstanding.pop(mid)
                interval.messages += 1
                server._drop(s.node, f"no reply within {cfg.timeout:g} s", version + 1,
                           interval)
                progressed = True
        if swap_wanted and set(server.alive) & swap_wanted <= set(swap_pool):
            t1 = time.perf_counter()
            server._relay_swaps(swap_pool, interval)
            interval.server_s += time.perf_counter() - t1
            swap_wanted, swap_pool = set(), {}
        if len(acc) >= quorum or (acc and len(acc) >= len(server.alive)):
            t1 = time.perf_counter()
            used = sorted({f.wave for f in acc})
            remap = {w: i for i, w in enumerate(used)}
            fbs = [Feedback(f.worker, remap[f.wave], f.batch, f.values) for f in acc]
            generator_update(server.generator, server.trainer.opt_g,  # type: ignore[arg-type]
                             [waves[w] for w in used], b, fbs, method=cfg.aggregation,
                             trim_fraction=cfg.trim_fraction)
            version += 1
            live = {s.wave for s in outstanding.values()}
            waves = {w: zz for w, zz in waves.items() if w in live}
            interval.server_s += time.perf_counter() - t1
            st = interval.staleness
            server._finish(version, interval, [f.worker for f in acc],
                         kappa_for(len(server.alive) or 1, cfg.kappa),
                         {"mode": "pipelined", "updated": True,
                          "staleness_mean": float(np.mean(st)) if st else 0.0,
                          "staleness_max": int(max(st, default=0)),
                          "stale_discarded": interval.stale})
            acc = []
            interval = _Interval(started=time.perf_counter())
            progressed = True
        if not progressed:
            time.sleep(cfg.poll_interval)
    if not server.alive:
        log.warning("every worker has failed: stopping at version %d", version)
    # Replies still in flight are abandoned; their workers simply idle.
