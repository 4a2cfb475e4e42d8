"""Gossip GAN server + worker handlers over an in-process Grid (no Ray).

Checks the relay (who gets which model, both legs of the bytes, the p2p and
FL formulas), the workers' equal-weight averaging, drops, rejection of
malformed models, determinism, evaluation of a worker subset, and learning.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, Context, Message
from flwr.clientapp import ClientApp

from flwr_gan.algorithms import make_settings
from flwr_gan.config import ConfigError, Settings
from flwr_gan.gossip import (
    GENERATOR_TYPE,
    STEP_TYPE,
    GossipServer,
    fl_bytes_per_worker,
    gossip_generator,
    gossip_info,
    gossip_step,
    make_client_app,
    p2p_bytes_per_worker,
    record_nbytes,
)
from flwr_gan.runtime.records import split_arrays
from flwr_gan.runtime.telemetry import content_nbytes
from tests.mdgan_fakes import FakeGrid, set_task_identity

TIMING = ("wall_s", "virtual_s", "compute_s", "wall_total_s", "virtual_total_s",
          "compute_s_total", "compute_s_max", "server_s")


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    set_task_identity(monkeypatch)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared: one thread is faster and steadier
    yield
    torch.set_num_threads(threads)


def _cfg(**kw: Any) -> Settings:
    base: dict[str, Any] = dict(variant="ddl", rounds=2, local_steps=2, batch_size=8,
                                num_clients=3, seed=3, timeout=5.0, eval_workers=0)
    return make_settings("gossip", **(base | kw))


def _apps(n: int) -> list[ClientApp]:
    return [make_client_app() for _ in range(n)]


def _custom_app(step: Any = gossip_step, generator: Any = gossip_generator) -> ClientApp:
    app = ClientApp()
    app.train("gossip_step")(step)
    app.query("gossip_info")(gossip_info)
    app.query("gossip_generator")(generator)
    return app


def _timeless(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def _merge(msg: Message) -> bool:
    return bool(msg.content.config_records["config"]["merge-only"])


def _inputs(msg: Message) -> dict[str, ArrayRecord]:
    return {k: v for k, v in msg.content.array_records.items() if "-in." in k}


@pytest.mark.parametrize("bad, flag", [
    ({"variant": "allreduce"}, "--variant"), ({"rounds": -1}, "--rounds"),
    ({"sync_every": 0}, "--local-steps"), ({"batch_size": 0}, "--batch-size"),
    ({"d_steps": 0}, "--d-steps"), ({"model": "huge"}, "--model"), ({"loss": "l1"}, "--loss"),
    ({"latent_dim": -1}, "--latent-dim"), ({"lr_g": 0.0}, "--lr-g"), ({"beta2": 1.0}, "--beta2"),
    ({"timeout": 0.0}, "--timeout"), ({"eval_workers": -1}, "--eval-workers"),
    ({"num_clients": 0}, "--num-clients"),
])
def test_config_errors_name_the_flag(bad: dict[str, Any], flag: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        make_settings("gossip", **bad)


def test_relay_delivers_each_model_to_its_peer_and_counts_both_legs() -> None:
    grid = FakeGrid(_apps(3))
    replies: dict[str, list[tuple[Message, Message]]] = defaultdict(list)
    grid.on_reply = lambda msg, rep: replies[msg.metadata.group_id].append((msg, rep))
    server = GossipServer(grid, _cfg(rounds=3))
    recs = server.run()
    keys = {101: "partition-0", 102: "partition-1", 103: "partition-2"}
    steps = [m for m in grid.sent if m.metadata.message_type == STEP_TYPE]
    g, d = server.g_nbytes, server.d_nbytes
    assert [r["round"] for r in recs] == [1, 2, 3]
    for rec in recs:
        group = str(rec["round"])
        down = [m for m in steps if m.metadata.group_id == group]
        ups = [rep for _, rep in replies[group]]
        # every byte the server sent or received this round, relayed models included
        assert rec["bytes_down"] == sum(content_nbytes(m.content) for m in down)
        assert rec["bytes_up"] == sum(content_nbytes(r.content) for r in ups)
        assert rec["relayed_down"] == sum(record_nbytes(a) for m in down
                                          for a in _inputs(m).values())
        outs = [a for r in ups for k, a in r.content.array_records.items() if k.endswith("-out")]
        assert rec["relayed_up"] == sum(record_nbytes(a) for a in outs)
        assert rec["relayed_bytes"] == rec["relayed_up"] + rec["relayed_down"]
        assert rec["p2p_bytes"] == rec["relayed_up"] == 3 * p2p_bytes_per_worker(g, d)
        assert rec["fl_bytes"] == 3 * fl_bytes_per_worker(g, d)
        assert rec["exchanged"] == 6 and rec["nodes"] == list(keys.values())
        assert set(rec["compute_s"]) == set(keys.values()) and rec["compute_s_max"] > 0
        assert rec["iteration"] == 2 * rec["round"] and rec["d_loss"] is not None
    # each payload crosses the server twice: every upload is downloaded once, no more
    assert sum(r["relayed_down"] for r in recs) == sum(r["relayed_up"] for r in recs)
    assert recs[0]["relayed_down"] == 0
    # the model a worker uploads in round r reaches exactly the peer drawn for it
    for rec in recs:
        r = rec["round"]
        sent_out = {keys[m.metadata.dst_node_id]: rep for m, rep in replies[str(r)]
                    if not _merge(m)}
        nxt = [m for m in steps if (m.metadata.group_id, _merge(m)) in ((str(r + 1), False),
                                                                        (str(r), True))]
        got = defaultdict(list)
        for m in nxt:
            for k, a in _inputs(m).items():
                got[(keys[m.metadata.dst_node_id], k[0])].append(a)
        for sender, peers in rec["peers"].items():
            assert peers["g"] == peers["d"] != sender  # ddl: one peer, never itself
            for kind in "gd":
                out = sent_out[sender].content.array_records[f"{kind}-out"]
                assert any(a is out for a in got[(peers[kind], kind)])
        assert sum(len(v) for v in got.values()) == 6


def test_workers_average_received_models_with_equal_weights() -> None:
    grid = FakeGrid(_apps(3))
    last: dict[int, Message] = {}
    grid.on_reply = lambda msg, rep: last.__setitem__(msg.metadata.dst_node_id, rep) \
        if msg.metadata.group_id == "2" and not _merge(msg) else None
    server = GossipServer(grid, _cfg(rounds=2, variant="ddl_ind"))
    rec = server.run()[-1]
    keys = {f"partition-{i}": 101 + i for i in range(3)}
    for kind, prefix in (("g", "generator"), ("d", "discriminator")):
        for key, node in keys.items():
            senders = [keys[s] for s, p in rec["peers"].items() if p[kind] == key]
            states = [split_arrays(last[n].content.array_records[f"{kind}-out"], prefix)
                      for n in [node, *senders]]
            stored = split_arrays(grid.contexts[node].state.array_records["gossip.models"],
                                  prefix)
            for name, value in stored.items():
                expect = np.mean([s[name].astype(np.float64) for s in states], axis=0)
                if name.endswith("num_batches_tracked"):
                    expect = np.rint(expect)
                np.testing.assert_allclose(value, expect, rtol=1e-6, atol=1e-7)


def test_isolated_workers_exchange_nothing() -> None:
    grid = FakeGrid(_apps(2))
    recs = GossipServer(grid, _cfg(variant="isolated", num_clients=2)).run()
    assert all(r["relayed_bytes"] == r["p2p_bytes"] == r["exchanged"] == 0 for r in recs)
    assert all(r["peers"] == {} and r["bytes_up"] > 0 for r in recs)
    assert not any(m.content.array_records for m in grid.sent)
    assert len(grid.sent) == 2 + 2 * 2  # handshake + 2 rounds, no final delivery


def test_failing_and_silent_workers_are_dropped_and_the_run_goes_on() -> None:
    def flaky(msg: Message, ctx: Context) -> Message:
        if int(msg.content.config_records["config"]["round"]) >= 2:
            raise RuntimeError("disk full")
        return gossip_step(msg, ctx)

    grid = FakeGrid([make_client_app(), _custom_app(step=flaky), make_client_app(),
                     make_client_app()])

    def silence_after_round_2(rec: dict[str, Any]) -> None:
        if rec["round"] == 2:
            grid.silent.add(104)

    server = GossipServer(grid, _cfg(rounds=4, num_clients=4, timeout=0.5),
                          record_fn=silence_after_round_2)
    recs = server.run()
    assert [r["round"] for r in recs] == [1, 2, 3, 4]
    assert [r["alive"] for r in recs] == [4, 3, 2, 2]
    assert recs[1]["dropped"][0]["node"] == "partition-1"
    assert "disk full" in recs[1]["dropped"][0]["reason"]
    assert recs[2]["dropped"] == [{"node": "partition-3", "reason": "no reply within 0.5 s"}]
    assert recs[3]["nodes"] == ["partition-0", "partition-2"]
    # a dropped worker is never a sender or receiver afterwards
    for rec, gone in ((recs[1], {"partition-1"}), (recs[2], {"partition-1", "partition-3"})):
        assert not gone & set(rec["peers"])
        assert not gone & {p for peers in rec["peers"].values() for p in peers.values()}
    assert not [m for m in grid.sent if m.metadata.group_id == "4"
                and m.metadata.dst_node_id in (102, 104)]
    assert [e["node"] for e in server.events] == ["partition-1", "partition-3"]


def test_silent_worker_at_start_is_left_out() -> None:
    grid = FakeGrid(_apps(3), silent={102})
    server = GossipServer(grid, _cfg(rounds=1, timeout=0.3))
    recs = server.run()
    assert recs[0]["nodes"] == ["partition-0", "partition-2"]
    assert server.events[0]["event"] == "dropped"


def test_malformed_model_is_rejected_and_never_relayed() -> None:
    def poisoned(msg: Message, ctx: Context) -> Message:
        reply = gossip_step(msg, ctx)
        g_out = reply.content.array_records.get("g-out")
        if g_out is not None:
            reply.content.array_records["g-out"] = ArrayRecord({
                k: Array(np.full_like(v.numpy(), np.nan) if v.numpy().dtype.kind == "f"
                         else v.numpy()) for k, v in g_out.items()})
        return reply

    grid = FakeGrid([make_client_app(), _custom_app(step=poisoned), make_client_app()])
    server = GossipServer(grid, _cfg(rounds=3))
    recs = server.run()
    for rec in recs:
        assert [(r["node"], r["what"]) for r in rec["rejected"]] == [("partition-1",
                                                                       "generator")]
        assert "NaN" in rec["rejected"][0]["reason"]
        assert rec["exchanged"] == 5 and rec["alive"] == 3 and not rec["dropped"]
        assert rec["p2p_bytes"] == 2 * server.g_nbytes + 3 * server.d_nbytes
    for msg in grid.sent:
        for arrays in _inputs(msg).values():
            assert all(np.isfinite(a.numpy()).all() for a in arrays.values())
    # the honest workers' own models stay finite
    for node in (101, 103):
        stored = grid.contexts[node].state.array_records["gossip.models"]
        assert all(np.isfinite(a.numpy()).all() for a in stored.values())


def test_same_seed_same_records_different_seed_different_peers() -> None:
    def run(seed: int) -> list[dict[str, Any]]:
        return GossipServer(FakeGrid(_apps(3)), _cfg(variant="ddl_ind", rounds=3,
                                                     seed=seed)).run()

    a, b, c = run(11), run(11), run(12)
    assert _timeless(a) == _timeless(b)
    assert all(r["g_loss"] is not None for r in a)
    assert [r["peers"] for r in a] != [r["peers"] for r in c]
    assert any(p["g"] != p["d"] for r in a for p in r["peers"].values())


def test_evaluation_of_a_fixed_worker_subset_is_not_counted_as_training_traffic() -> None:
    calls: list[tuple[int, list[str]]] = []
    shapes = []

    def evaluate(iteration: int, gens: dict[str, torch.nn.Module]) -> dict[str, Any]:
        calls.append((iteration, sorted(gens)))
        shapes.extend(tuple(gen(torch.zeros(2, gen.latent_dim)).shape) for gen in gens.values())
        return {"fid": float(iteration)}

    grid = FakeGrid(_apps(4))
    server = GossipServer(grid, _cfg(rounds=3, num_clients=4, eval_workers=2),
                          evaluate_fn=evaluate, eval_every=2)
    recs = server.run()
    assert [c[0] for c in calls] == [0, 4, 6]
    assert len(calls[0][1]) == 2 and all(c[1] == calls[0][1] for c in calls)
    assert set(shapes) == {(2, 1, 28, 28)}
    assert [r["round"] for r in recs] == [0, 1, 2, 3]
    evaluated = [r for r in recs if "fid" in r]
    assert [r["round"] for r in evaluated] == [0, 2, 3]
    queries = [m for m in grid.sent if m.metadata.message_type == GENERATOR_TYPE]
    assert len(queries) == 6
    for rec in evaluated:
        assert rec["evaluated"] == calls[0][1] and rec["eval_bytes"] > 2 * server.g_nbytes
    steps = [m for m in grid.sent if m.metadata.message_type == STEP_TYPE]
    assert recs[2]["bytes_down"] == sum(content_nbytes(m.content) for m in steps
                                        if m.metadata.group_id == "2")
    # the subset depends on the seed and device keys only
    other = GossipServer(FakeGrid(_apps(4)), _cfg(num_clients=4, eval_workers=2))
    other.connect()
    assert other.eval_keys == calls[0][1]


def test_worker_dropped_at_evaluation_loses_the_models_queued_for_it() -> None:
    def broken(msg: Message, ctx: Context) -> Message:
        if int(msg.content.config_records["config"]["round"]) >= 1:
            raise RuntimeError("camera unplugged")
        return gossip_generator(msg, ctx)

    grid = FakeGrid([make_client_app(), make_client_app(), _custom_app(generator=broken)])
    recs = GossipServer(grid, _cfg(rounds=2, seed=0), evaluate_fn=lambda it, g: {},
                        eval_every=1).run()
    first = recs[1]
    expected = sum(p[k] == "partition-2" for p in first["peers"].values() for k in "gd")
    assert expected > 0  # this seed sends something to partition-2
    assert first["discarded"] == expected
    assert first["dropped"][0]["node"] == "partition-2" and first["alive"] == 2
    assert not [m for m in grid.sent if m.metadata.dst_node_id == 103
                and m.metadata.group_id == "2"]


@pytest.mark.slow
def test_gossip_learns_fid_drops() -> None:
    from flwr_gan.data import load_dataset
    from flwr_gan.metrics.evaluator import GeneratorEvaluator

    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    evaluator = GeneratorEvaluator.for_dataset(train, test, n_real=500, n_fake=500,
                                               progress=False)
    means: list[float] = []

    def evaluate(iteration: int, gens: dict[str, torch.nn.Module]) -> dict[str, Any]:
        fids = [evaluator.evaluate(g).fid for g in gens.values()]
        means.append(float(np.mean(fids)))
        return {"fid": means[-1], "fid_best": min(fids), "fid_worst": max(fids)}

    cfg = _cfg(variant="ddl", rounds=4, local_steps=30, batch_size=32, num_clients=2, seed=0)
    recs = GossipServer(FakeGrid(_apps(2)), cfg, evaluate_fn=evaluate).run()
    assert [r["round"] for r in recs if "fid" in r] == [0, 4]
    print("gossip FID", means)
    assert means[-1] < 0.7 * means[0], means
