"""FeGAN Fig. 10 / Table 1 coverage benchmark: the real script on the real partition, fast.

The replay is pure (no training), so the smoke runs use the paper's own settings
with fewer random seeds and rounds; they check what the published figures rest on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = str(REPO / "bench" / "fegan_coverage.py")


def _run(*args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert proc.returncode == expect, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


def test_kl_seen_balanced_vs_random(tmp_path: Path) -> None:
    _run("--num-clients", "40", "--seeds", "3", "--rounds", "200", "--out", str(tmp_path))
    result = json.loads((tmp_path / "fegan_coverage.json").read_text())
    assert (tmp_path / "fegan_kl_seen.png").stat().st_size > 0
    assert result["partition"]["devices_per_round"] == 1  # ceil(0.025 * 40)
    early = result["kl_seen_round20"]
    # Fig. 10: balanced sampling sees a class mix far closer to the federation's
    assert early["balanced"] < early["random_min"]
    assert early["ratio_balanced_over_random_mean"] == \
        early["balanced"] / early["random_mean"]
    assert result["kl_vs_whole_trainset_round200"]["balanced"] < \
        result["kl_vs_whole_trainset_round200"]["random_mean"]
    assert len(result["kl_seen_balanced"]) == len(result["kl_seen_random_mean"]) == 200
    sweep = result["rounds_to_see_every_sample"]
    assert len(sweep["random_all"]) == 3
    assert sweep["balanced"] is not None and sweep["balanced"] <= sweep["random_median"]


def test_table1_setting_coverage(tmp_path: Path) -> None:
    _run("--num-clients", "80", "--max-class", "5", "--max-samples", "3000",
         "--fegan-draw", "shared", "--rounds", "300", "--seeds", "3", "--tag", "t",
         "--out", str(tmp_path))
    result = json.loads((tmp_path / "fegan_coverage_t.json").read_text())
    part = result["partition"]
    assert part["empty_devices"] == 0 and part["devices_per_round"] == 2
    bal = result["balanced"]
    # the published reading: balanced sees half the data sooner than random sampling,
    # but leaves devices it never samples, so it never finishes a sweep
    assert bal["rounds_to_coverage"]["0.5"] < result["random_median_rounds_to_coverage"]["0.5"]
    assert bal["never_sampled"] > 0 and bal["never_sampled_samples"] > 0
    assert bal["rounds_to_coverage"]["1"] is None and bal["sweeps"] == 0
    assert result["random_never_sampled_max"] == 0
    levels = [result["random_median_rounds_to_coverage"][k] for k in ("0.5", "0.9", "0.99", "1")]
    assert levels == sorted(levels)


def test_too_few_rounds_is_a_usage_error(tmp_path: Path) -> None:
    proc = _run("--rounds", "50", "--out", str(tmp_path), expect=2)
    assert "--rounds must be >= 200" in proc.stderr
    assert not any(tmp_path.iterdir())
