"""The MD-GAN-vs-FL-GAN benchmark's smoke run: both families, equal updates, bytes per update."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from flwr_gan.core.models import build_models

REPO = Path(__file__).resolve().parents[1]


def test_mdgan_vs_flgan_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "mdgan_vs_flgan.py"), "--smoke",
                           "--runs", str(tmp_path / "runs"), "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    doc = json.loads(out.with_suffix(".json").read_text())
    md, fl = doc["runs"]["MD-GAN kappa=1"][0], doc["runs"]["FL-GAN"][0]
    # equal generator updates: 6 on the server for MD-GAN, 6 local steps per FL-GAN worker
    assert md["generator_updates"] == fl["generator_updates"] == 6
    assert [u for u, _ in md["fid"]] == [0, 3, 6] and [u for u, _ in fl["fid"]] == [0, 6]
    # MD-GAN's traffic per iteration is Table III's: 2 batches of b images down and
    # one of b error feedbacks up, per worker (N = 2, b = 32, d = 784 float32)
    table3 = 2 * 3 * 32 * 784 * 4
    assert table3 <= md["bytes_per_update"] < 1.02 * table3
    # FL-GAN's is G and D down and up per worker per round, shared by its 6 updates
    g, d = build_models("small", (1, 28, 28))
    weights = 4 * sum(t.numel() for m in (g, d) for t in m.state_dict().values())
    per_round = 2 * 2 * weights
    assert per_round <= fl["bytes_per_update"] * 6 < 1.02 * per_round
    # both scored from an untrained generator's FID downwards by the same protocol
    assert md["fid"][0][1] == fl["fid"][0][1]
    assert out.with_suffix(".png").stat().st_size > 10_000
    # the summary is whole, each run says the load it ran under, the seed statistics match
    assert doc["complete"] is True and not out.with_suffix(".json.tmp").exists()
    assert len(md["load_avg"]) == 3 and len(fl["load_avg"]) == 3
    agg = doc["across_seeds"]
    assert agg["FL-GAN"]["final_fid"]["mean"] == fl["final_fid"]
    assert agg["MD-GAN kappa=1"]["final_minus_baseline"] == [
        {"seed": 0, "diff": md["final_fid"] - fl["final_fid"]}]
    # a run cut off part-way is run again, a finished one is reused
    md_metrics = Path(md["run"]) / "metrics.jsonl"
    md_metrics.write_text(md_metrics.read_text().splitlines()[0] + "\n")
    again = subprocess.run([sys.executable, str(REPO / "bench" / "mdgan_vs_flgan.py"), "--smoke",
                            "--runs", str(tmp_path / "runs"), "--out", str(out)],
                           capture_output=True, text=True, timeout=600, cwd=REPO)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "running MD-GAN kappa=1 seed 0" in again.stdout
    assert "running FL-GAN" not in again.stdout
    redo = json.loads(out.with_suffix(".json").read_text())["runs"]["MD-GAN kappa=1"][0]
    assert redo["generator_updates"] == 6 and redo["fid"] == md["fid"]
    # the reused FL-GAN run keeps the time and load measured when it ran
    redo_fl = json.loads(out.with_suffix(".json").read_text())["runs"]["FL-GAN"][0]
    assert fl["run_s"] is not None and redo_fl["run_s"] == fl["run_s"]
    assert redo_fl["load_avg"] == fl["load_avg"]
    # regenerating the summary from reused runs keeps the load they ran under
    written = json.loads(out.with_suffix(".json").read_text())
    third = subprocess.run([sys.executable, str(REPO / "bench" / "mdgan_vs_flgan.py"), "--smoke",
                            "--runs", str(tmp_path / "runs"), "--out", str(out)],
                           capture_output=True, text=True, timeout=600, cwd=REPO)
    assert third.returncode == 0 and "running" not in third.stdout
    regenerated = json.loads(out.with_suffix(".json").read_text())
    assert regenerated["load_avg"] == written["load_avg"] is not None
    assert regenerated["runs"] == written["runs"]


def test_seed_statistics_are_sample_spread_and_pair_by_seed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    bench = importlib.import_module("mdgan_vs_flgan")
    summary = {
        "MD-GAN kappa=1": [{"seed": 2, "final_fid": 376.0, "best_fid": 330.0},
                           {"seed": 0, "final_fid": 335.9, "best_fid": 320.0},
                           {"seed": 1, "final_fid": 325.2, "best_fid": 325.2}],
        "FL-GAN": [{"seed": 0, "final_fid": 347.9, "best_fid": 340.0},
                   {"seed": 1, "final_fid": 357.2, "best_fid": 350.0}],
    }
    for rows in summary.values():
        for r in rows:
            r["fid"] = [[0, 900.0], [10, r["final_fid"]]]
    agg = bench.across_seeds(summary)
    md = agg["MD-GAN kappa=1"]
    assert md["seeds"] == [2, 0, 1] and md["final_fid"]["n"] == 3
    assert md["final_fid"]["mean"] == pytest.approx(345.7, abs=0.05)
    # sample (n - 1) standard deviation, as everywhere else in the reports: 26.8, not 21.9
    assert md["final_fid"]["std"] == pytest.approx(26.78, abs=0.01)
    assert md["best_fid"]["min"] == 320.0 and md["best_fid"]["max"] == 330.0
    # only the seeds both ran are paired, in seed order; the baseline has no pairing
    assert [d["seed"] for d in md["final_minus_baseline"]] == [0, 1]
    assert md["final_minus_baseline"][0]["diff"] == pytest.approx(-12.0)
    assert md["final_minus_baseline"][1]["diff"] == pytest.approx(-32.0)
    assert "final_minus_baseline" not in agg["FL-GAN"]
    assert agg["FL-GAN"]["final_fid"]["std"] == pytest.approx(6.58, abs=0.01)
    # one evaluation after 0: the mean FID is that evaluation's
    assert md["mean_fid"]["mean"] == pytest.approx(345.7, abs=0.05)
    assert md["mean_minus_baseline"] == md["final_minus_baseline"]


def test_run_time_of_a_reused_run_falls_back_to_its_own_clock(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    bench = importlib.import_module("mdgan_vs_flgan")
    records = [{"round": 0, "elapsed_s": 3.0}, {"round": 5, "elapsed_s": 420.5}]
    assert bench._run_seconds(431.0, 400.0, records) == 431.0  # measured by this invocation
    assert bench._run_seconds(None, 400.0, records) == 400.0  # an earlier summary's
    # reused from an invocation that never wrote its summary: the run's own clock
    assert bench._run_seconds(None, None, records) == 420.5
    assert bench._run_seconds(None, None, [{"round": 5}]) is None
    assert bench._run_seconds(None, None, []) is None


def test_mean_fid_is_taken_on_the_sparsest_familys_evaluation_points(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    bench = importlib.import_module("mdgan_vs_flgan")
    md = {"seed": 0, "final_fid": 300.0, "best_fid": 300.0,
          "fid": [[0, 1000.0], [200, 400.0], [400, 300.0]]}
    fl = {"seed": 0, "final_fid": 320.0, "best_fid": 320.0,
          "fid": [[0, 1000.0], [167, 500.0], [334, 350.0], [501, 320.0]]}
    means = bench.mean_fid_on_common_grid({"MD-GAN kappa=1": [md], "FL-GAN": [fl]})
    # MD-GAN has fewer evaluations: both are read at 200 and 400, FL-GAN interpolated
    assert means["MD-GAN kappa=1", 0] == pytest.approx(350.0)
    at200 = 500.0 + (350.0 - 500.0) * 33 / 167
    at400 = 350.0 + (320.0 - 350.0) * 66 / 167
    assert means["FL-GAN", 0] == pytest.approx((at200 + at400) / 2)
    # an evaluation at 0 is left out: it would count the untrained generator twice
    agg = bench.across_seeds({"MD-GAN kappa=1": [md], "FL-GAN": [fl]})
    diff = agg["MD-GAN kappa=1"]["mean_minus_baseline"]
    assert diff == [{"seed": 0, "diff": pytest.approx(350.0 - (at200 + at400) / 2)}]
    # a sparser FL-GAN (one evaluation after 0) moves the grid to its point
    fl_sparse = fl | {"fid": [[0, 1000.0], [400, 330.0]]}
    means = bench.mean_fid_on_common_grid({"MD-GAN kappa=1": [md], "FL-GAN": [fl_sparse]})
    assert means["MD-GAN kappa=1", 0] == pytest.approx(300.0)
    assert means["FL-GAN", 0] == pytest.approx(330.0)
