"""The 176-client FeGAN / FL-GAN command with the paper's defaults: seconds per round, peak memory.

Usage::

    python bench/fegan_scale.py [--rounds 3] [--algorithms fegan flgan]

Runs ``flwr-gan simulate --algorithm A --dataset mnist --num-clients 176
--partition fegan --rounds R`` (everything else at its default: C=0.025, E=30,
B=50, Adam 2e-4 (0.5, 0.999), LSGAN preset and loss) and writes
``bench/results/fegan_scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

from fegan_common import RESULTS, run_measured

from flwr_gan.runtime.rundir import read_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--algorithms", nargs="+", default=["fegan", "flgan"])
    parser.add_argument("--runs", default="runs/bench-fegan-scale")
    args = parser.parse_args()
    target = RESULTS / "fegan_scale.json"
    previous = json.loads(target.read_text())["runs"] if target.exists() else {}
    out: dict[str, object] = {"machine": platform.platform(), "cpus": os.cpu_count(),
                              "runs": previous}
    for algo in args.algorithms:
        run_dir = Path(args.runs) / algo
        cmd = ["flwr-gan", "simulate", "--algorithm", algo, "--dataset", "mnist",
               "--num-clients", "176", "--partition", "fegan", "--rounds", str(args.rounds),
               "--out", str(run_dir), "--overwrite", "--no-progress", "--eval-every", "0"]
        run_dir.mkdir(parents=True, exist_ok=True)
        m = run_measured(cmd, run_dir.parent / f"{algo}.log")
        recs = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["round"] > 0] \
            if (run_dir / "metrics.jsonl").exists() else []
        per_round = [r["wall_s"] for r in recs]
        entry = m | {
            "command": " ".join(cmd), "rounds_done": len(recs),
            "s_per_round": per_round,
            "s_per_round_mean": sum(per_round) / len(per_round) if per_round else None,
            "virtual_s_per_round": [r["virtual_s"] for r in recs],
            "compute_s_max": [r["compute_s_max"] for r in recs],
            "nodes_per_round": [len(r["nodes"]) for r in recs],
            "bytes_up": [r["bytes_up"] for r in recs],
            "bytes_down": [r["bytes_down"] for r in recs],
            "eval_s_last": recs[-1].get("eval_s") if recs else None,
        }
        out["runs"][algo] = entry  # type: ignore[index]
        print(json.dumps({algo: {k: entry[k] for k in ("rc", "wall_s", "peak_rss_mb",
                                                       "s_per_round_mean")}}), flush=True)
    target.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {target}")
    sys.exit(0)


if __name__ == "__main__":
    main()
