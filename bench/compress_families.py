"""AdaComp on MD-GAN's feedback and Gossip GAN's exchanges: bytes and FID per ratio.

Runs, through Flower's simulation engine on MNIST, MD-GAN (``--num-clients``
workers, default 10) and Gossip GAN (DDL) with ``--compress none`` and
``--compress adacomp`` at each ``--ratios`` value, and writes, per run, the
upload bytes measured on the wire (``bytes_up``, summed over the run), what the
same uploads weigh dense (MD-GAN: ``payload_up_dense``; gossip:
``bytes_up_dense``), the reduction factor, and the FID curve, to
``bench/results/compress_families.json`` (run directories under ``--runs``).

Usage::

    python bench/compress_families.py               # the full version (hours on a laptop)
    python bench/compress_families.py --quick       # a smoke run: N=3, a few steps
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from flwr_gan.algorithms import make_settings
from flwr_gan.runtime.rundir import read_metrics
from flwr_gan.runtime.simulation import run


def plan(args: argparse.Namespace) -> dict[str, tuple[str, dict[str, Any]]]:
    """The runs to make: label -> (algorithm, settings)."""
    common: dict[str, Any] = dict(num_clients=args.num_clients, batch_size=args.batch_size,
                                  model=args.model, n_eval=args.n_eval, seed=args.seed,
                                  progress=False, overwrite=True)
    mdgan = common | dict(iterations=args.iterations, eval_every=args.eval_every,
                          checkpoint_every=0)
    gossip = common | dict(variant="ddl", rounds=args.rounds, local_steps=args.local_steps,
                           eval_every=max(1, args.eval_every // args.local_steps),
                           eval_workers=args.eval_workers)
    runs: dict[str, tuple[str, dict[str, Any]]] = {}
    for family, values in (("mdgan", mdgan), ("gossip", gossip)):
        if family not in args.families.split(","):
            continue
        runs[f"{family} none"] = (family, values | dict(compress="none"))
        for ratio in args.ratios:
            runs[f"{family} adacomp {ratio:g}"] = (family, values | dict(
                compress="adacomp", compress_ratio=ratio, compress_dtype=args.dtype))
    return runs


def summarise(algorithm: str, recs: list[dict[str, Any]]) -> dict[str, Any]:
    """Bytes (wire and dense-equivalent uploads) and FID of one run's records."""
    trained = [r for r in recs if int(r["round"]) > 0]
    up = sum(int(r["bytes_up"]) for r in trained)
    if algorithm == "mdgan":  # dense feedback = wire bytes with the dense payload instead
        dense = sum(int(r["bytes_up"]) - int(r["payload_up"]) + int(r["payload_up_dense"])
                    for r in trained)
    else:
        dense = sum(int(r.get("bytes_up_dense", r["bytes_up"])) for r in trained)
    fids = [(int(r["round"]), float(r["fid"])) for r in recs if r.get("fid") is not None]
    return {"bytes_up": up, "bytes_up_dense": dense,
            "bytes_down": sum(int(r["bytes_down"]) for r in trained),
            "upload_reduction": dense / up if up else None,
            "bytes_up_per_step": up / max(1, len(trained)), "fid": fids,
            "initial_fid": fids[0][1] if fids else None,
            "final_fid": fids[-1][1] if fids else None}


def main() -> int:
    """Run every configuration and write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a smoke run (N=3, a few steps)")
    p.add_argument("--families", default="mdgan,gossip", help="comma-separated")
    p.add_argument("--num-clients", type=int, default=10)
    p.add_argument("--iterations", type=int, default=1000, help="MD-GAN iterations")
    p.add_argument("--rounds", type=int, default=40, help="gossip exchanges")
    p.add_argument("--local-steps", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--model", default="small")
    p.add_argument("--eval-every", type=int, default=100, help="in iterations")
    p.add_argument("--eval-workers", type=int, default=4)
    p.add_argument("--n-eval", type=int, default=1000)
    p.add_argument("--ratios", type=float, nargs="+", default=[0.1, 0.01, 0.001])
    p.add_argument("--dtype", default="float32", choices=("float32", "float16"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", default="/tmp/flwr-gan-compress-runs")
    p.add_argument("--out", default="bench/results/compress_families.json")
    args = p.parse_args()
    if args.quick:
        args.num_clients, args.iterations, args.rounds, args.local_steps = 3, 4, 2, 2
        args.eval_every, args.n_eval, args.eval_workers = 4, 100, 2
        args.batch_size, args.ratios = 16, [0.01]
    results: dict[str, Any] = {}
    for label, (algorithm, values) in plan(args).items():
        out_dir = Path(args.runs) / label.replace(" ", "_")
        print(f"running {label} -> {out_dir}", flush=True)
        started = time.perf_counter()
        run(make_settings(algorithm, out=str(out_dir), **values))
        entry = summarise(algorithm, read_metrics(out_dir / "metrics.jsonl"))
        entry |= {"algorithm": algorithm, "out": str(out_dir),
                  "run_s": time.perf_counter() - started,
                  "compress": values["compress"], "ratio": values.get("compress_ratio")}
        results[label] = entry
        print(f"{label}: up {entry['bytes_up']} B (dense {entry['bytes_up_dense']} B, "
              f"x{entry['upload_reduction']:.1f}), FID {entry['initial_fid']} -> "
              f"{entry['final_fid']}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": vars(args), "runs": results}, indent=2,
                              default=str) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
