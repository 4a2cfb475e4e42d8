"""MD-GAN for real: Flower's Ray simulation engine, MNIST, torch training.

Kept tiny (3 workers, ``small`` preset, tens of iterations); a learning test
over the in-process grid checks that FID actually drops.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flwr_gan.algorithms import Algorithm
from flwr_gan.data import load_dataset
from flwr_gan.mdgan import MDGANServer, make_client_app
from flwr_gan.metrics.evaluator import GeneratorEvaluator
from flwr_gan.runtime.simulation import run
from tests.mdgan_fakes import FakeGrid, mdgan, set_task_identity

KEYS = {"round", "nodes", "bytes_up", "bytes_down", "compute_s", "compute_s_max", "wall_s",
        "virtual_s"}


def test_ray_simulation_sync_with_swaps_and_crashes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = mdgan(num_clients=3, iterations=12, kappa="log", batch_size=16, model="small",
                     swap_epochs=32 / 20000, crash_schedule=True, eval_every=6, n_eval=200,
                     checkpoint_every=0, progress=False, out=str(tmp_path / "run"))
    # the server loop (and its round-0 evaluation) starts only once Ray is up: BLAS
    # work during ray.init's forks can deadlock in OpenBLAS's fork handler
    ray_up_at_start: list[bool] = []
    load = Algorithm.load

    def recording_load(self: Algorithm, which: str) -> Any:
        fn = load(self, which)
        if which != "server":
            return fn

        def server(grid: Any, exp: Any) -> Any:
            import ray

            ray_up_at_start.append(ray.is_initialized())
            return fn(grid, exp)
        return server

    monkeypatch.setattr(Algorithm, "load", recording_load)
    outcome = run(settings)
    assert ray_up_at_start == [True]
    out = outcome.experiment.out
    assert [r["round"] for r in outcome.records if "fid" in r] == [0, 6, 12]
    assert (out / "fid_curve.png").exists()
    assert list((out / "samples").glob("*.png"))
    recs = [r for r in outcome.records if r["round"] > 0]
    assert [r["round"] for r in recs] == list(range(1, 13))
    assert all(KEYS <= set(r) for r in recs)
    assert [r["alive"] for r in recs] == [3] * 3 + [2] * 4 + [1] * 5  # crashes at 4 and 8
    assert all(r["bytes_down"] > r["payload_down"] > 0 and r["bytes_up"] > 0 for r in recs)
    assert sum(r["swaps"] for r in recs) >= 2  # swap every 2 iterations while >= 2 alive
    assert recs[-1]["wall_total_s"] > recs[0]["wall_total_s"] > 0
    assert all(r["wall_s"] > 0 and len(r["compute_s"]) == r["alive"] + len(r["dropped"])
               for r in recs)
    assert all(set(r["compute_s"]) <= {"partition-0", "partition-1", "partition-2"}
               for r in recs)  # device keys, never Flower's random node ids
    summary = json.loads((out / "summary.json").read_text())
    assert summary["swap_period"] == 2
    dropped = [e for e in summary["events"] if e["event"] == "dropped"]
    assert len(dropped) == 2 and all("crash" in e["reason"] for e in dropped)
    for name in ("config.json", "metrics.jsonl", "metrics.csv", "generator.pt", "checkpoint.pt"):
        assert (out / name).exists()


def test_mdgan_learns_fid_drops(monkeypatch: pytest.MonkeyPatch) -> None:
    set_task_identity(monkeypatch)
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    evaluator = GeneratorEvaluator.for_dataset(train, test, n_real=500, n_fake=500,
                                               progress=False)
    fids: list[float] = []

    def evaluate(it: int, gen):  # type: ignore[no-untyped-def]
        fids.append(evaluator.evaluate(gen).fid)
        return {"fid": fids[-1]}

    cfg = mdgan(iterations=150, num_clients=2, batch_size=32, kappa="2", model="small",
                      swap_epochs=0.05, seed=0)
    server = MDGANServer(FakeGrid([make_client_app(), make_client_app()]), cfg,
                         evaluate_fn=evaluate)
    server.run()
    assert len(fids) == 2
    print("FID", fids)
    assert fids[-1] < 0.6 * fids[0], fids


def test_wait_for_ray_gives_up_after_its_timeout(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    from flwr_gan.runtime.simulation import wait_for_ray

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # a Ray that never comes up
    with caplog.at_level("WARNING"):
        assert wait_for_ray(timeout=0.2, poll=0.01) is False
    assert "did not start within" in caplog.text
