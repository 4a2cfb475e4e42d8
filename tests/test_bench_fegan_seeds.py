"""The FeGAN-vs-FL-GAN seeds benchmark's smoke run: the real script, tiny, grouped compare."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_fegan_seeds_bench_smoke(tmp_path: Path) -> None:
    # The suite's first test: on a fresh machine its first run also trains the FID
    # classifier (a minute when quiet, 10 under a load of 4): a hang guard, not a time limit.
    out = tmp_path / "cmp"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "fegan_seeds.py"), "--smoke",
                           "--runs", str(tmp_path / "runs"), "--out", str(out),
                           "--partition-seed", "seed"],
                          capture_output=True, text=True, timeout=1200, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    groups = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [g["label"] for g in groups] == ["FL-GAN", "FeGAN s=1 w=1"]
    fl, fe = groups
    # two seeds per configuration, each FeGAN run paired with FL-GAN's run of its seed
    assert fl["gains"] == [] and [g["seed"] for g in fe["gains"]] == [0, 1]
    config = json.loads((tmp_path / "runs" / "FeGAN_s1_w1_seed0" / "config.json").read_text())
    # the paper's engine with its own draw, on the smoke's tiny federation
    assert config["partition"] == "fegan" and config["fegan_draw"] == "shared"
    assert config["algorithm"] == "fegan" and config["loss"] == "lsgan"
    # --partition-seed seed: each training seed draws its own devices' data
    assert config["partition_seed"] == 0
    seed1 = json.loads((tmp_path / "runs" / "FL-GAN_seed1_p1" / "config.json").read_text())
    assert seed1["partition_seed"] == 1 and seed1["seed"] == 1
    doc = json.loads((out / "compare.json").read_text())
    assert doc["baseline"] == "FL-GAN" and len(doc["runs"]) == 4
    assert (out / "groups.png").stat().st_size > 10_000
    assert "## Over seeds" in (out / "compare.md").read_text()


def test_finished_reuses_only_runs_that_reached_their_last_round(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    common = importlib.import_module("fegan_common")
    run = tmp_path / "run"
    assert not common.finished(run, 3)  # never started
    run.mkdir()
    metrics = run / "metrics.jsonl"
    metrics.write_text("")
    assert not common.finished(run, 3)  # started, nothing recorded
    metrics.write_text('{"round": 0, "fid": 1.0}\n{"round": 2, "fid": 0.5}\n')
    assert not common.finished(run, 3)  # cut off before its last round
    metrics.write_text(metrics.read_text() + '{"round": 3, "fid": 0.4}\n')
    assert common.finished(run, 3)
    metrics.write_text(metrics.read_text() + '{"round": 4, "fi')  # killed mid-write
    assert not common.finished(run, 3)


def test_partition_seed_is_fixed_or_follows_the_training_seed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    bench = importlib.import_module("fegan_seeds")
    assert bench.partition_seed("0", 2) == 0 and bench.partition_seed("7", 2) == 7
    assert bench.partition_seed("seed", 2) == 2
    for bad in ("-1", "x", "1.5", ""):
        with pytest.raises(ValueError, match="--partition-seed"):
            bench.partition_seed(bad, 0)
    assert bench.run_name("FeGAN s=1 w=1", 2, 0) == "FeGAN_s1_w1_seed2"  # the old names
    assert bench.run_name("FL-GAN", 2, 2) == "FL-GAN_seed2_p2"
