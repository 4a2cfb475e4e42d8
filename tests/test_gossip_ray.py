"""Gossip GAN for real: Flower's Ray simulation engine, MNIST, torch training.

One small run (3 workers, ``small`` preset, 3 rounds of 3 local iterations):
Flower's random node ids must not leak into the records, and every relayed
model must be counted on both legs.
"""

from __future__ import annotations

import json
from typing import Any

import torch

from flwr_gan.algorithms import make_settings
from flwr_gan.gossip import GossipServer, make_client_app, run_gossip

KEYS = {"round", "nodes", "bytes_up", "bytes_down", "relayed_bytes", "p2p_bytes", "compute_s",
        "compute_s_max", "wall_s", "virtual_s", "iteration", "d_loss", "g_loss", "dropped",
        "rejected"}


def test_ray_simulation_ddl_ind() -> None:
    from flwr.app import Context
    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation import run_simulation

    cfg = make_settings("gossip", variant="ddl_ind", rounds=3, local_steps=3, batch_size=16,
                        num_clients=3, seed=5, timeout=120.0, eval_workers=0)
    seen: list[tuple[int, list[str]]] = []

    def evaluate(iteration: int, gens: dict[str, torch.nn.Module]) -> dict[str, Any]:
        with torch.no_grad():
            z = torch.randn(4, 32, generator=torch.Generator().manual_seed(0))
            outs = {k: g.eval()(z) for k, g in gens.items()}
        seen.append((iteration, sorted(gens)))
        first = next(iter(outs.values()))
        return {"gens_differ": any(not torch.equal(first, o) for o in outs.values())}

    holder: dict[str, Any] = {}
    app = ServerApp()

    @app.main()
    def _main(grid: Grid, context: Context) -> None:
        try:
            holder["server"] = run_gossip(grid, cfg, evaluate_fn=evaluate, eval_every=0)
        except BaseException as err:  # re-raised below, after Ray stops
            holder["error"] = err
            raise

    run_simulation(server_app=app, client_app=make_client_app(), num_supernodes=3,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}})
    assert "error" not in holder, holder.get("error")
    server: GossipServer = holder["server"]
    recs = server.records
    workers = ["partition-0", "partition-1", "partition-2"]
    assert [r["round"] for r in recs] == [0, 1, 2, 3]
    assert seen == [(0, workers), (9, workers)]
    assert recs[0]["gens_differ"] is False and recs[-1]["gens_differ"] is True
    trained = recs[1:]
    assert all(KEYS <= set(r) for r in trained)
    assert all(r["nodes"] == workers and set(r["compute_s"]) == set(workers) for r in trained)
    assert all(not r["dropped"] and not r["rejected"] and r["exchanged"] == 6 for r in trained)
    assert [r["iteration"] for r in trained] == [3, 6, 9]
    assert all(r["d_loss"] > 0 and r["wall_s"] > 0 and r["virtual_s"] > 0 for r in trained)
    g, d = server.g_nbytes, server.d_nbytes
    assert all(r["p2p_bytes"] == r["relayed_up"] == 3 * (g + d) for r in trained)
    assert sum(r["relayed_down"] for r in trained) == sum(r["relayed_up"] for r in trained)
    assert all(r["bytes_down"] >= r["relayed_down"] and r["bytes_up"] > r["relayed_up"]
               for r in trained)
    # Flower's node ids are random per run: none may appear in what a run records
    text = json.dumps(recs + server.events, default=str)
    assert len(server.keys) == 3
    for node_id in server.keys:
        assert str(node_id) not in text


def test_gossip_through_the_harness_in_ray(tmp_path) -> None:
    """``flwr-gan simulate --algorithm gossip``'s path: harness, device app, run directory."""
    from flwr_gan.runtime.simulation import run

    out = tmp_path / "run"
    outcome = run(make_settings("gossip", variant="ddl", num_clients=3, rounds=2, local_steps=4,
                                batch_size=16, eval_every=2, eval_workers=0, n_eval=200,
                                out=str(out), progress=False))
    recs = outcome.records
    assert [r["round"] for r in recs] == [0, 1, 2]
    last = recs[-1]
    assert set(last["fid_workers"]) == {"partition-0", "partition-1", "partition-2"}
    assert last["fid_best"] <= last["fid"] <= last["fid_worst"]
    assert last["fid_best"] < last["fid_worst"]  # three different generators
    assert recs[0]["fid_best"] == recs[0]["fid_worst"]  # the same initial model everywhere
    # models uploaded in round r ride on round r + 1's messages (the last ones on a merge-only
    # message within round R): counted up from the sender, then down to the receiver
    assert all(r["bytes_up"] > r["relayed_up"] > 0 for r in recs[1:])
    assert recs[-1]["relayed_down"] > 0
    assert sum(r["relayed_down"] for r in recs) == sum(r["relayed_up"] for r in recs)
    for name in ("config.json", "metrics.csv", "fid_curve.png", "summary.json"):
        assert (out / name).exists()
    assert json.loads((out / "config.json").read_text())["variant"] == "ddl"

