"""Gossip GAN against its competitors of the Gossiping GANs slides, on the same budget.

N workers on MNIST, every worker the same number of local iterations
(``--rounds`` x ``--local-steps``):

* ``isolated``: N standalone workers, no communication (``gossip --variant isolated``);
* ``FL-GAN``: FedAvg of G and D with every worker every round (``flgan --fraction 1``);
* ``DDL``: gossip, G and D to one random peer every K iterations;
* ``DDL_ind``: gossip, G and D to independently drawn peers;
* and DDL again on non-iid data (the FeGAN engine) when ``--noniid`` is given.

Scores: FID in the classifier's feature space; for gossip the mean over a fixed
random subset of ``--eval-workers`` workers (with best and worst), for FL-GAN
the global model's. Writes ``bench/results/gossip_compare.json``, the FID
curves ``bench/results/gossip_compare.png`` and the runs under
``bench/results/gossip_runs/``; the bytes per worker per exchange are measured
from the real payloads and put next to the slides' formulas.

Usage::

    python bench/gossip_compare.py --num-clients 10 --rounds 40 --local-steps 10
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from flwr_gan.algorithms import make_settings
from flwr_gan.runtime.rundir import read_metrics
from flwr_gan.runtime.simulation import run


def plan(args: argparse.Namespace) -> dict[str, tuple[str, dict[str, Any]]]:
    """The runs to make: label -> (algorithm, settings)."""
    common: dict[str, Any] = dict(
        num_clients=args.num_clients, rounds=args.rounds, local_steps=args.local_steps,
        batch_size=args.batch_size, model=args.model, eval_every=args.eval_every,
        n_eval=args.n_eval, seed=args.seed, partition="iid", progress=False, overwrite=True)
    gossip = common | dict(eval_workers=args.eval_workers)
    runs: dict[str, tuple[str, dict[str, Any]]] = {
        "isolated": ("gossip", gossip | dict(variant="isolated")),
        "FL-GAN": ("flgan", common | dict(fraction=1.0, collect_metadata=False,
                                          checkpoint_every=0)),
        "DDL": ("gossip", gossip | dict(variant="ddl")),
        "DDL_ind": ("gossip", gossip | dict(variant="ddl_ind")),
    }
    if args.noniid:
        runs["DDL non-iid"] = ("gossip", gossip | dict(variant="ddl", partition="fegan",
                                                       max_class=3, max_samples=2000))
        runs["isolated non-iid"] = ("gossip", gossip | dict(variant="isolated",
                                                            partition="fegan", max_class=3,
                                                            max_samples=2000))
    return runs


def plot(curves: dict[str, list[dict[str, Any]]], local_steps: int, target: Path) -> None:
    """FID against local iterations per worker, with best-worst bands for gossip."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, recs in curves.items():
        pts = [r for r in recs if r.get("fid") is not None]
        x = [int(r["round"]) * local_steps for r in pts]
        (line,) = ax.plot(x, [r["fid"] for r in pts], marker="o", ms=3, label=label)
        if all("fid_best" in r for r in pts[1:]) and len(pts) > 1:
            ax.fill_between(x, [r.get("fid_best", r["fid"]) for r in pts],
                            [r.get("fid_worst", r["fid"]) for r in pts],
                            color=line.get_color(), alpha=0.15)
    ax.set_xlabel("local iterations per worker")
    ax.set_ylabel("FID (classifier features; gossip: mean, band = best..worst)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(target, dpi=120)
    plt.close(fig)


def main() -> int:
    """Run (or reuse) every configuration, plot, and write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-clients", type=int, default=10)
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--local-steps", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--model", default="small")
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--eval-workers", type=int, default=4)
    p.add_argument("--n-eval", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noniid", action="store_true", help="add the non-iid runs")
    p.add_argument("--only", default="", help="comma-separated labels to (re)run")
    p.add_argument("--runs", default="bench/results/gossip_runs")
    p.add_argument("--out", default="bench/results")
    args = p.parse_args()
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    results: dict[str, Any] = {}
    curves: dict[str, list[dict[str, Any]]] = {}
    for label, (algorithm, values) in plan(args).items():
        slug = "".join(c if c.isalnum() else "_" for c in label).strip("_")
        out_dir = Path(args.runs) / slug
        took = None
        if not (out_dir / "metrics.jsonl").exists() or label in only:
            print(f"running {label} -> {out_dir}", flush=True)
            load = os.getloadavg()
            started = time.perf_counter()
            run(make_settings(algorithm, out=str(out_dir), **values))
            took = time.perf_counter() - started
        recs = read_metrics(out_dir / "metrics.jsonl")
        curves[label] = recs
        trained = [r for r in recs if int(r["round"]) > 0]
        fids = [(int(r["round"]) * args.local_steps, r["fid"], r.get("fid_best"),
                 r.get("fid_worst")) for r in recs if r.get("fid") is not None]
        config = json.loads((out_dir / "config.json").read_text())
        # worker-exchanges: every live worker sends its G and D once per round
        exchanged = sum(len(r["nodes"]) for r in trained if int(r.get("exchanged", 0)) > 0)
        entry: dict[str, Any] = {
            "algorithm": algorithm, "out": str(out_dir), "fid": fids,
            "initial_fid": fids[0][1], "final_fid": fids[-1][1],
            "best_fid": min(f[1] for f in fids), "run_s": took,
            "load_before": load if took is not None else None,
            "bytes_up": sum(int(r["bytes_up"]) for r in trained),
            "bytes_down": sum(int(r["bytes_down"]) for r in trained),
        }
        if algorithm == "gossip" and exchanged:
            g, d = int(config["generator_bytes"]), int(config["discriminator_bytes"])
            entry |= {
                "generator_bytes": g, "discriminator_bytes": d,
                "p2p_bytes_per_worker_exchange": sum(int(r["p2p_bytes"]) for r in trained)
                / exchanged,
                "relayed_up_per_worker_exchange": sum(int(r["relayed_up"]) for r in trained)
                / exchanged,
                "relayed_down_per_worker_exchange": sum(int(r["relayed_down"])
                                                        for r in trained) / exchanged,
                "formula_p2p": g + d, "formula_fl": 2 * (g + d),
            }
        if algorithm == "flgan":
            entry["bytes_per_worker_round"] = (entry["bytes_up"] + entry["bytes_down"]) / max(
                1, sum(len(r["nodes"]) for r in trained))
        results[label] = entry
        print(f"{label}: FID {fids[0][1]:.1f} -> {fids[-1][1]:.1f} (best {entry['best_fid']:.1f})",
              flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(curves, args.local_steps, out / "gossip_compare.png")
    (out / "gossip_compare.json").write_text(json.dumps(
        {"settings": vars(args), "runs": results}, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
