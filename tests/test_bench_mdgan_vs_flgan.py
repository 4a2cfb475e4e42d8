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
    # the reused FL-GAN run keeps the time measured when it ran
    redo_fl = json.loads(out.with_suffix(".json").read_text())["runs"]["FL-GAN"][0]
    assert fl["run_s"] is not None and redo_fl["run_s"] == fl["run_s"]


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
