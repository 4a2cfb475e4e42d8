"""BatchNorm statistics benchmark (averaged vs local, FeGAN reference): the real script, tiny.

``bench/bn_modes.py`` scores an FL run's final generator in the three batch-norm modes;
here on a 2-device FL-GAN run of one round, with 200 samples per side.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FLWR_GAN = str(Path(sys.executable).parent / "flwr-gan")


def test_bn_modes_scores_each_mode(tmp_path: Path) -> None:
    run = tmp_path / "flgan_seed4"
    env = dict(os.environ, FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1")
    train = subprocess.run(
        [FLWR_GAN, "simulate", "--algorithm", "flgan", "--num-clients", "2", "--rounds", "1",
         "--fraction", "1.0", "--local-steps", "30", "--model", "small", "--batch-size", "16",
         "--fid-backend", "none", "--seed", "4", "--no-progress", "--out", str(run)],
        capture_output=True, text=True, timeout=600, cwd=REPO, env=env)
    assert train.returncode == 0, train.stdout[-2000:] + train.stderr[-2000:]
    out = tmp_path / "bn.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "bn_modes.py"), str(run),
                           "--n", "200", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["n"] == 200 and doc["seeds"] == 5
    (row,) = doc["rows"]
    assert (row["run"], row["algorithm"], row["seed"], row["round"]) == \
        ("flgan_seed4", "flgan", 4, 1)
    fids = {mode: row[mode]["fid_mean"] for mode in ("eval", "train", "recalibrate")}
    for mode, fid in fids.items():
        assert math.isfinite(fid) and fid > 0, mode
        assert row[mode]["fid_std"] >= 0
    # the modes really use different normalisation statistics for the same generator
    assert len({round(f, 6) for f in fids.values()}) == 3
    # the Markdown table names the run once
    assert proc.stdout.count("| flgan_seed4 | 1 |") == 1
