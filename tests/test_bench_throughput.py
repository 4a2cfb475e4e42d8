"""The throughput benchmark's smoke run (FeGAN paper Fig. 12): the real script, tiny."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_throughput_bench_smoke(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "throughput.py"), "--smoke",
                           "--runs", str(tmp_path)], capture_output=True, text=True,
                          timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    points = {p["family"]: p for p in lines if "family" in p}
    assert set(points) == {"fegan", "mdgan"}
    fegan, mdgan = points["fegan"], points["mdgan"]
    # FeGAN: ceil(0.025 * 6) = 1 device a round, 30 local steps of 50 images
    assert fegan["devices_per_step"] == [1] and fegan["images"] == 30 * 50
    # MD-GAN: all 6 workers, one batch of 50 each
    assert mdgan["devices_per_step"] == [6] and mdgan["images"] == 6 * 50
    for p in points.values():
        assert p["virtual_s"] > 0 and p["epochs_per_virtual_s"] == \
            p["images"] / 60_000 / p["virtual_s"]
        # the server's own link can only make a round longer
        assert p["virtual_s_server_link"] >= p["virtual_s"] and p["server_bytes"] > 0
    ratios = lines[-1]["fegan_over_mdgan"]
    assert ratios["device_links"]["6"] == \
        fegan["epochs_per_virtual_s"] / mdgan["epochs_per_virtual_s"]
    assert set(ratios["server_link"]) == {"6"}
