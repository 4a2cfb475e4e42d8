"""Table III traffic benchmarks (MD-GAN paper): the real scripts on real Flower payloads, tiny.

``bench/flgan_comm.py`` and ``bench/mdgan_comm.py`` measure what crosses Flower per
worker and set it beside the paper's formulas; the published rows are within 1 % of
them. Here each runs the paper's MLP on 2 workers for the fewest rounds / iterations
that carry every kind of traffic.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _bench(script: str, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, str(REPO / "bench" / script), *args],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == expect, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


def test_flgan_comm_matches_table_iii(tmp_path: Path) -> None:
    out = tmp_path / "flgan_comm.json"
    _bench("flgan_comm.py", "--num-clients", "2", "--rounds", "1", "--batch-sizes", "10",
           "--models", "mlp", "--out", str(out))
    (row,) = json.loads(out.read_text())["rows"]
    assert (row["model"], row["b"], row["N"], row["rounds_measured"]) == ("mlp", 10, 2, 1)
    # the paper's MLP: G 100-512-512-784 and D 784-512-512-1, float32, no buffers
    assert row["generator_params"] == 100 * 512 + 512 + 512 * 512 + 512 + 512 * 784 + 784
    assert row["discriminator_params"] == 784 * 512 + 512 + 512 * 512 + 512 + 512 + 1
    assert row["formula_bytes"] == 4 * (row["generator_params"] + row["discriminator_params"])
    # each leg carries both models: the payload plus at most 0.1 % of message framing
    for leg in ("message_down_bytes", "message_up_bytes"):
        assert row["payload_expected_bytes"] <= row[leg] <= 1.001 * row["payload_expected_bytes"]
    assert row["breakeven_b_worker_ingress"] == row["formula_bytes"] / (2 * 784 * 4)


def test_mdgan_comm_matches_table_iii(tmp_path: Path) -> None:
    out = tmp_path / "mdgan_comm.json"
    _bench("mdgan_comm.py", "--num-clients", "2", "--iterations", "2", "--batch-sizes", "10",
           "--models", "mlp", "--out", str(out))
    (row,) = json.loads(out.read_text())["rows"]
    assert (row["model"], row["b"], row["N"], row["iterations_measured"]) == ("mlp", 10, 2, 1)
    assert row["formula_down_bytes"] == 2 * 10 * 784 * 4  # 2bd floats to each worker
    assert row["formula_up_bytes"] == 10 * 784 * 4  # bd floats of feedback back
    for measured, formula in (("payload_down_bytes", "formula_down_bytes"),
                              ("payload_up_bytes", "formula_up_bytes"),
                              ("swap_up_bytes", "formula_swap_bytes"),
                              ("swap_down_bytes", "formula_swap_bytes")):
        assert row[formula] <= row[measured] <= 1.01 * row[formula], measured
    # the message adds framing to the payload, never less than it
    assert row["message_down_bytes"] >= row["payload_down_bytes"]
    assert row["message_up_bytes"] >= row["payload_up_bytes"]


def test_mdgan_comm_needs_a_swap_iteration(tmp_path: Path) -> None:
    proc = _bench("mdgan_comm.py", "--iterations", "1", "--out", str(tmp_path / "x.json"),
                  expect=2)
    assert "--iterations must be >= 2" in proc.stderr
    assert not (tmp_path / "x.json").exists()
