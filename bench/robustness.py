"""Failing and hostile devices: FeGAN's FID with 30 % failures, and under attack.

Every run is one ``flwr-gan simulate --algorithm fegan`` job on Flower's Ray engine
(MNIST split iid over 10 devices, the ``small`` preset, classifier FID every 5
rounds) with one setting changed:

* ``failures``: 5 of 10 devices a round; ``clean`` against ``fail-30`` (each sampled
  device fails its round with probability 0.3, ``--fail-prob 0.3``);
* ``attack``: all 10 devices every round; three of them hostile
  (``--attack partition-0=nan,partition-1=shape,partition-2=scale``: NaN weights, a
  wrong shape, ``global + 1000 x update``). Validation always rejects the first two;
  the scaled update is valid in form. ``attack-fedavg`` is the contrast without
  protection; ``attack-median``, ``attack-krum`` (Flower's FedMedian / Krum, f = 1)
  and ``attack-normbound`` (``--max-update-norm``) are the protections;
  ``noattack`` and ``noattack-seed1`` give the no-attack FID and its seed-to-seed noise.

Writes ``bench/results/robustness.json`` (per run: FID per evaluation, the final one,
devices failed / rejected per round, whether the model stayed finite, wall time,
load average) and ``bench/results/robustness_fid.png``::

    python bench/robustness.py                     # both groups, ~20 min on 2 cores
    python bench/robustness.py --smoke             # 2 rounds each, into /tmp only
    python bench/robustness.py --groups attack --only attack-fedavg attack-median
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fegan_common import RESULTS

BASE = ["simulate", "--algorithm", "fegan", "--partition", "iid", "--num-clients", "10",
        "--model", "small", "--local-steps", "20", "--batch-size", "32", "--eval-every", "5",
        "--n-eval", "1000", "--timeout", "120"]
ATTACK = ["--fraction", "1.0", "--attack", "partition-0=nan,partition-1=shape,partition-2=scale"]
GROUPS: dict[str, dict[str, list[str]]] = {
    "failures": {
        "clean": ["--fraction", "0.5"],
        "fail-30": ["--fraction", "0.5", "--fail-prob", "0.3"],
    },
    "attack": {
        "noattack": ["--fraction", "1.0"],
        "noattack-seed1": ["--fraction", "1.0", "--seed", "1"],
        "attack-fedavg": ATTACK,
        "attack-median": [*ATTACK, "--aggregator", "median"],
        "attack-krum": [*ATTACK, "--aggregator", "krum", "--num-malicious", "1"],
        "attack-normbound": [*ATTACK, "--max-update-norm", "100"],
    },
}


def run_one(name: str, extra: list[str], rounds: int, runs: Path) -> dict[str, Any]:
    """Run one configuration; return its summary."""
    out = runs / name
    cmd = [str(Path(sys.executable).parent / "flwr-gan"), *BASE, "--rounds", str(rounds),
           *extra, "--out", str(out), "--overwrite", "--no-progress"]
    load = os.getloadavg()
    t0 = time.perf_counter()
    runs.mkdir(parents=True, exist_ok=True)
    with open(runs / f"{name}.log", "w") as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT,
                             env=dict(os.environ, OMP_NUM_THREADS="1"))
    wall = time.perf_counter() - t0
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()] \
        if (out / "metrics.jsonl").exists() else []
    fids = [(r["round"], r["fid"]) for r in recs if r.get("fid") is not None]
    lines = (runs / f"{name}.log").read_text(errors="replace").strip().splitlines()
    error = lines[-1] if rc != 0 and lines else None
    train = [r for r in recs if r["round"] > 0]
    return {
        "name": name, "command": " ".join(cmd[1:]), "rc": rc, "error": error, "wall_s": wall,
        "loadavg_before": load, "rounds_done": len(train),
        "fid": fids, "fid_final": fids[-1][1] if fids else None,
        "finite": bool(fids) and all(math.isfinite(f) for _, f in fids),
        "failed_per_round": [len(r.get("failed", {})) for r in train],
        "rejected_per_round": [len(r.get("rejected", {})) for r in train],
        "nodes_per_round": [len(r.get("nodes", [])) for r in train],
        "skipped_rounds": [r["round"] for r in train if r.get("skipped")],
        "rejected_reasons": sorted({v.split(":")[-1].strip()[:60]
                                    for r in train for v in r.get("rejected", {}).values()}),
    }


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """FID curves of both groups, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, group in zip(axes, GROUPS, strict=True):
        for res in results:
            if res["name"] in GROUPS[group] and res["fid"]:
                xs, ys = zip(*res["fid"], strict=True)
                ax.plot(xs, ys, marker="o", label=res["name"])
        ax.set_title(group)
        ax.set_xlabel("round")
        ax.set_ylabel("classifier FID")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen configurations and write the results."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", nargs="+", choices=list(GROUPS), default=list(GROUPS))
    parser.add_argument("--only", nargs="+", default=None, help="run only these names")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--runs", default="/tmp/flwr-gan-bench-robustness")
    parser.add_argument("--smoke", action="store_true",
                        help="2 rounds of each, nothing written to bench/results")
    args = parser.parse_args(argv)
    rounds = 2 if args.smoke else args.rounds
    results = []
    for group in args.groups:
        for name, extra in GROUPS[group].items():
            if args.only and name not in args.only:
                continue
            res = run_one(name, extra, rounds, Path(args.runs))
            results.append(res)
            print(json.dumps({k: res[k] for k in ("name", "rc", "error", "wall_s", "fid_final",
                                                  "finite", "failed_per_round",
                                                  "rejected_per_round")}), flush=True)
    if args.smoke:
        return 0 if all(r["rc"] == 0 for r in results) else 1
    target = RESULTS / "robustness.json"
    previous = {r["name"]: r for r in json.loads(target.read_text())["runs"]} \
        if target.exists() else {}
    merged = previous | {r["name"]: r for r in results}
    target.write_text(json.dumps({"cpus": os.cpu_count(), "rounds": rounds,
                                  "runs": list(merged.values())}, indent=1) + "\n")
    plot(list(merged.values()), RESULTS / "robustness_fid.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
