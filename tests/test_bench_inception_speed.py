"""Smoke run of bench/inception_speed.py: both layouts timed on real images, same features."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_inception_speed_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "speed.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "inception_speed.py"), "--n", "3",
         "--repeats", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert set(doc["images_per_s"]) == {"channels_last", "contiguous"}
    assert all(len(t) == 1 and t[0] > 0 for t in doc["seconds"].values())
    assert doc["speedup"] > 0 and doc["minutes_per_10000"] > 0
    # the layout changes speed, not the features (which are real, not all zero)
    assert doc["mean_abs_feature"] > 0.05 and doc["max_abs_feature_diff"] < 1e-3
    # ...but the two layouts really ran different kernels (not the same code twice)
    assert doc["max_abs_feature_diff"] > 0
    assert abs(doc["fid_between_layouts"]) < 1e-2
    bad = subprocess.run([sys.executable, str(REPO / "bench" / "inception_speed.py"), "--n", "0"],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert bad.returncode == 2 and "--n 0" in bad.stderr
