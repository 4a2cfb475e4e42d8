"""Flower overhead of MD-GAN: wall time per iteration vs client compute per iteration.

N workers in Flower's Ray simulation engine, MNIST, batches of b=64 images,
the paper's MLP; synchronous (Algorithm 1) and pipelined (paper §VII-1)
modes. For each mode, over the iterations after a warm-up:

* ``wall_per_iter``    = training wall seconds / generator updates,
* ``compute_per_iter`` = sum of the workers' measured compute seconds
  (their D steps + feedback) / generator updates,
* ``ratio`` = wall_per_iter / compute_per_iter, both from the same run;
* ``parallel_ratio`` = wall_per_iter / (compute_per_iter / actors): against
  the best the actors could do in parallel.

The machine's load average is recorded with each run: the ratio is sensitive
to other processes. Writes ``bench/results/mdgan_overhead.json``.

Usage::

    OMP_NUM_THREADS=1 python bench/mdgan_overhead.py --num-clients 10 --iterations 150
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from flwr_gan.mdgan.simulation import MDGANSimulationConfig, run_mdgan_simulation


def measure(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one mode; return the per-iteration wall and compute times.

    ``sync-poll100ms`` is the synchronous loop polling for replies every
    0.1 s, like Flower's ``Grid.send_and_receive`` (the planning baseline).
    """
    load_before = os.getloadavg()
    poll = 0.1 if mode == "sync-poll100ms" else 0.005
    loop_mode = "sync" if mode.startswith("sync") else mode
    with tempfile.TemporaryDirectory() as tmp:
        cfg = MDGANSimulationConfig(
            num_clients=args.num_clients, iterations=args.iterations, kappa="1",
            batch_size=args.batch_size, model=args.model, swap_epochs=0, mode=loop_mode,
            poll_interval=poll,
            fid_backend="none", progress=False, out=str(Path(tmp) / "r"))
        result = run_mdgan_simulation(cfg)
    recs = [r for r in result.records if r["round"] > args.warmup]
    updates = len(recs)
    wall = sum(r["wall_s"] for r in recs)
    compute = sum(r["compute_s_total"] for r in recs)
    return {
        "mode": mode, "poll_interval_s": poll, "updates": updates,
        "parallel_ratio": wall / (compute / args.actors), "wall_per_iter_s": wall / updates,
        "compute_per_iter_s": compute / updates, "ratio": wall / compute,
        "compute_max_per_iter_s": sum(r["compute_s_max"] for r in recs) / updates,
        "server_per_iter_s": sum(r["server_s"] for r in recs) / updates,
        "virtual_per_iter_s": sum(r["virtual_s"] for r in recs) / updates,
        "handler_per_iter_s": sum(r["handler_s"] for r in recs) / updates,
        "messages_per_iter": sum(r["messages"] for r in recs) / updates,
        "staleness_mean": (sum(r.get("staleness_mean", 0.0) for r in recs) / updates),
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
    }


def main() -> int:
    """Measure both modes (``--repeat`` times) and write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-clients", type=int, default=10)
    p.add_argument("--iterations", type=int, default=150)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--model", default="mlp")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--modes", default="sync-poll100ms,sync,pipelined")
    p.add_argument("--actors", type=int, default=2,
                   help="Ray actors running clients in parallel (cores / num_cpus)")
    args = p.parse_args()
    rows = []
    for rep in range(args.repeat):
        for mode in args.modes.split(","):
            row = measure(mode, args) | {"repeat": rep}
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    target = out / "mdgan_overhead.json"
    target.write_text(json.dumps({"settings": vars(args), "cpus": os.cpu_count(),
                                  "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
