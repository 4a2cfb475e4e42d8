"""MD-GAN traffic per iteration, measured from real Flower payloads vs the paper's Table III.

Runs a few iterations of MD-GAN in Flower's Ray simulation engine (N workers,
a discriminator swap at every iteration so each iteration carries all three
kinds of traffic) for the paper's MNIST MLP and CNN and two batch sizes, and
compares the measured bytes with Table III: server->worker ``2bd`` per
worker, worker->server ``bd`` per worker, one ``|theta|`` per swap and worker
(crossing the server twice here, since Flower clients cannot talk directly).
Writes ``bench/results/mdgan_comm.json``.

Usage::

    OMP_NUM_THREADS=1 python bench/mdgan_comm.py --num-clients 10
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path
from typing import Any

from fegan_common import RESULTS

from flwr_gan.algorithms import make_settings
from flwr_gan.core.models import build_models, count_parameters
from flwr_gan.runtime.simulation import run

SHAPE = (1, 28, 28)


def measure(model: str, b: int, n: int, iterations: int) -> dict[str, Any]:
    """Run ``iterations`` iterations and return per-worker bytes vs Table III."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_settings(
            "mdgan", num_clients=n, iterations=iterations, kappa="log", batch_size=b,
            model=model, swap_epochs=1e-9, fid_backend="none", progress=False,
            checkpoint_every=0, out=str(Path(tmp) / "r"))
        result = run(settings)
    recs = [r for r in result.records if r["round"] >= 2]  # swaps relayed in every one
    d = math.prod(SHAPE)
    _, disc = build_models(model, SHAPE)
    theta = count_parameters(disc)
    gen, _ = build_models(model, SHAPE)

    def per_worker(key: str) -> float:
        return sum(r[key] for r in recs) / (len(recs) * n)

    return {
        "model": model, "b": b, "N": n, "d": d, "theta": theta,
        "generator_params": count_parameters(gen), "iterations_measured": len(recs),
        "formula_down_bytes": 2 * b * d * 4, "payload_down_bytes": per_worker("payload_down"),
        "message_down_bytes": per_worker("bytes_down") - per_worker("swap_bytes_down"),
        "formula_up_bytes": b * d * 4, "payload_up_bytes": per_worker("payload_up"),
        "message_up_bytes": per_worker("bytes_up") - per_worker("swap_bytes_up"),
        "formula_swap_bytes": theta * 4, "swap_up_bytes": per_worker("swap_bytes_up"),
        "swap_down_bytes": per_worker("swap_bytes_down"),
    }


def main() -> int:
    """Measure every setting and write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-clients", type=int, default=10)
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--batch-sizes", default="10,100")
    p.add_argument("--models", default="mlp,mdgan-cnn", help="comma-separated presets")
    p.add_argument("--out", default=str(RESULTS / "mdgan_comm.json"))
    args = p.parse_args()
    if args.iterations < 2:
        p.error(f"--iterations must be >= 2 (the first carries no swap), got {args.iterations}")
    rows = []
    for model in args.models.split(","):
        for b in (int(v) for v in args.batch_sizes.split(",")):
            row = measure(model, b, args.num_clients, args.iterations)
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
