"""FeGAN at 176, 1,000 and 10,000 simulated devices: what grows with N.

Usage::

    python bench/scale.py [--devices 176 1000 10000] [--per-round 5] [--rounds 3]
    python bench/scale.py --smoke          # 20 and 60 devices, 2 rounds (CI's check)

Each size runs ``flwr-gan simulate --algorithm fegan --model small --partition iid
--num-clients N --fraction K/N`` (K = ``--per-round`` devices train per round,
balanced sampling, KL and load weighting on, ``--eval-every 0``) in Flower's Ray
engine, and records: the whole command's wall time, the rest of it outside the
rounds (Python and Ray start-up, node set-up, shut-down), the metadata round's wall
time (every device answers ``query.metadata``), seconds per training round, and the
peak resident memory of the process tree (the command, Ray's daemons and its
actors). The iid partition gives every device ``60000 / N`` MNIST images (6 at
N = 10,000): the FeGAN engine's disjoint draw cannot fill 10,000 devices.

Results: ``bench/results/scale.json`` (load average before and after each run noted).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

from fegan_common import RESULTS, run_measured

from flwr_gan.runtime.rundir import read_metrics


def command(n: int, per_round: int, rounds: int, out: Path) -> list[str]:
    """Return the ``flwr-gan simulate`` command of ``n`` devices."""
    fraction = per_round / n
    # ceil(C*N) devices per round: nudge C down so that float error cannot add one
    fraction = math.nextafter(fraction, 0.0) if math.ceil(fraction * n) > per_round else fraction
    return [str(Path(sys.executable).parent / "flwr-gan"), "simulate", "--algorithm", "fegan",
            "--model", "small", "--dataset", "mnist", "--partition", "iid",
            "--num-clients", str(n), "--fraction", repr(fraction), "--rounds", str(rounds),
            "--local-steps", "10", "--batch-size", "32", "--eval-every", "0",
            "--timeout", "1800", "--out", str(out), "--overwrite", "--no-progress"]


def measure(n: int, per_round: int, rounds: int, runs: Path) -> dict[str, object]:
    """Run one size; return its figures."""
    out = runs / f"n{n}"
    out.mkdir(parents=True, exist_ok=True)
    cmd = command(n, per_round, rounds, out)
    load_before = os.getloadavg()
    started = time.time()
    m = run_measured(cmd, runs / f"n{n}.log")
    recs = [r for r in read_metrics(out / "metrics.jsonl") if r["round"] > 0] \
        if (out / "metrics.jsonl").exists() else []
    meta_path = out / "metadata.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    per = [r["wall_s"] for r in recs]
    return m | {
        "devices": n, "command": " ".join(cmd[1:]), "rounds_done": len(recs),
        "nodes_per_round": [len(r["nodes"]) for r in recs],
        "metadata_wall_s": meta.get("wall_s"),
        "metadata_devices": meta.get("devices"),
        "s_per_round": per,
        "s_per_round_mean": sum(per) / len(per) if per else None,
        "compute_s_max": [r["compute_s_max"] for r in recs],
        "outside_rounds_s": m["wall_s"] - sum(per) - float(meta.get("wall_s") or 0.0),
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)),
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, nargs="+", default=[176, 1000, 10000])
    parser.add_argument("--per-round", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", default="/tmp/flwr-gan-bench-scale")
    parser.add_argument("--smoke", action="store_true", help="20 and 60 devices, 2 rounds; "
                        "writes nothing to bench/results")
    args = parser.parse_args()
    if args.smoke:
        args.devices, args.rounds = [20, 60], 2
    runs = Path(args.runs)
    target = RESULTS / "scale.json"
    previous = json.loads(target.read_text()).get("runs", {}) if target.exists() else {}
    out: dict[str, object] = {"machine": platform.platform(), "cpus": os.cpu_count(),
                              "runs": previous}
    for n in args.devices:
        entry = measure(n, args.per_round, args.rounds, runs)
        print(json.dumps({k: entry[k] for k in ("devices", "rc", "wall_s", "peak_rss_mb",
                                                "metadata_wall_s", "s_per_round_mean")}),
              flush=True)
        if entry["rc"] != 0:
            sys.exit(f"N={n} failed (exit {entry['rc']}): see {runs / f'n{n}.log'}")
        if not args.smoke:
            out["runs"][str(n)] = entry  # type: ignore[index]
            target.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
