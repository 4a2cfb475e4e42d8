"""Learning comparison: MD-GAN (kappa=1, kappa=floor(ln N), with crashes) vs standalone.

MNIST iid over N workers, equal generator updates, FID in the cached MNIST
classifier's feature space (the paper's "MNIST FID"). Every run writes its
run directory under ``--runs``; runs already finished there are reused. The
curves go to ``bench/results/mdgan_learning.png`` and the numbers to
``bench/results/mdgan_learning.json``.

Usage::

    OMP_NUM_THREADS=1 python bench/mdgan_learning.py --iterations 1500 --num-clients 10
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from fegan_common import finished

from flwr_gan.algorithms import make_settings
from flwr_gan.runtime.rundir import plot_fid_curves, read_metrics
from flwr_gan.runtime.simulation import run


def main() -> int:
    """Run (or reuse) every configuration and plot them together."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=1500)
    p.add_argument("--num-clients", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--model", default="mlp")
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--n-eval", type=int, default=1000)
    p.add_argument("--swap-epochs", type=float, default=1.0)
    p.add_argument("--runs", default="bench/results/mdgan_runs")
    p.add_argument("--only", default="", help="comma-separated run labels to (re)run")
    p.add_argument("--big-standalone", action="store_true",
                   help="also run standalone with batch N*b (slow on CPU)")
    args = p.parse_args()
    torch.set_num_threads(1)
    n, b, it = args.num_clients, args.batch_size, args.iterations
    kappa_log = max(1, int(math.floor(math.log(n))))
    runs_dir = Path(args.runs)
    common: dict[str, Any] = dict(model=args.model, eval_every=args.eval_every,
                                  n_eval=args.n_eval, progress=False, overwrite=True)
    mdgan_common: dict[str, Any] = common | dict(
        num_clients=n, iterations=it, batch_size=b, swap_epochs=args.swap_epochs)
    plan: dict[str, tuple[str, dict[str, Any]]] = {
        f"standalone b={b}": ("standalone", common | dict(steps=it, batch_size=b)),
        "MD-GAN kappa=1": ("mdgan", mdgan_common | dict(kappa="1")),
        f"MD-GAN kappa={kappa_log}": ("mdgan", mdgan_common | dict(kappa="log")),
        f"MD-GAN kappa={kappa_log}, crash every I/N": (
            "mdgan", mdgan_common | dict(kappa="log", crash_schedule=True)),
    }
    if args.big_standalone:
        plan[f"standalone b={n * b}"] = ("standalone", common | dict(steps=it,
                                                                      batch_size=n * b))
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    results: dict[str, Any] = {}
    curves: dict[str, list[dict[str, Any]]] = {}
    for label, (algorithm, values) in plan.items():
        slug = "".join(c if c.isalnum() else "_" for c in label).strip("_")
        out_dir = str(runs_dir / slug)
        metrics = Path(out_dir) / "metrics.jsonl"
        started = time.perf_counter()
        if not finished(Path(out_dir), it) or (only and label in only) or (only and slug in only):
            print(f"running {label} -> {out_dir}", flush=True)
            run(make_settings(algorithm, out=out_dir, **values))
            took = time.perf_counter() - started
        else:
            took = None
        # equal generator updates: a reused longer run is cut at --iterations
        records = [r for r in read_metrics(metrics) if r["round"] <= it]
        curves[label] = records
        fids = [(r["round"], r["fid"]) for r in records if r.get("fid") is not None]
        results[label] = {"out": out_dir, "fid": fids, "final_fid": fids[-1][1],
                          "initial_fid": fids[0][1], "run_s": took}
        print(f"{label}: FID {fids[0][1]:.1f} -> {fids[-1][1]:.1f}", flush=True)
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    plot_fid_curves(curves, out / "mdgan_learning.png")
    (out / "mdgan_learning.json").write_text(json.dumps(
        {"settings": vars(args), "kappa_log": kappa_log, "runs": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
