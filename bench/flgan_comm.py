"""FL-GAN traffic per communication from real Flower payloads vs MD-GAN paper Table III.

FL-GAN's row of Table III: every communication (once per E local epochs) each worker
receives the generator and the discriminator, ``|w| + |theta|`` values, and sends both
back. This runs FL-GAN in Flower's Ray simulation (N workers, every worker every round)
for the paper's MNIST MLP and CNN and two batch sizes, and compares the measured bytes
with the formula; with MD-GAN's measured per-iteration bytes (``mdgan_comm.json``,
``2bd`` down and ``bd`` up per worker) it gives the batch size where a worker's ingress
per communication is the same for both, the paper's "MD-GAN is competitive for b under
about 550 (MNIST)". Writes ``bench/results/flgan_comm.json``::

    OMP_NUM_THREADS=1 python bench/flgan_comm.py --num-clients 10     # ~2 min
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
NPY_HEADER = 128  # bytes Flower's Array adds to every tensor (the .npy header)


def state_values(model: str) -> tuple[int, int, int]:
    """Values in G's and D's state dicts (parameters and buffers) and the tensor count."""
    gen, disc = build_models(model, SHAPE)
    states = [gen.state_dict(), disc.state_dict()]
    values = [sum(t.numel() for t in s.values()) for s in states]
    return values[0], values[1], sum(len(s) for s in states)


def measure(model: str, b: int, n: int, rounds: int) -> dict[str, Any]:
    """Run ``rounds`` FL-GAN rounds with every worker; return per-worker bytes vs Table III."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_settings(
            "flgan", num_clients=n, rounds=rounds, fraction=1.0, local_steps=1, batch_size=b,
            model=model, fid_backend="none", progress=False, checkpoint_every=0,
            out=str(Path(tmp) / "r"))
        result = run(settings)
    recs = [r for r in result.records if r["round"] >= 1]
    gen, disc = build_models(model, SHAPE)
    w, theta = count_parameters(gen), count_parameters(disc)
    g_values, d_values, tensors = state_values(model)

    def per_worker(key: str) -> float:
        return sum(r[key] for r in recs) / sum(len(r["nodes"]) for r in recs)

    d = math.prod(SHAPE)
    formula = (w + theta) * 4
    down = per_worker("bytes_down")
    return {
        "model": model, "b": b, "N": n, "rounds_measured": len(recs),
        "generator_params": w, "discriminator_params": theta,
        "state_values": g_values + d_values, "tensors": tensors,
        "formula_bytes": formula, "formula_with_buffers_bytes": (g_values + d_values) * 4,
        "payload_expected_bytes": (g_values + d_values) * 4 + NPY_HEADER * tensors,
        "message_down_bytes": down, "message_up_bytes": per_worker("bytes_up"),
        "mdgan_worker_ingress_per_iteration_bytes": 2 * b * d * 4,
        "breakeven_b_worker_ingress": formula / (2 * d * 4),
    }


def main() -> int:
    """Measure every setting and write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-clients", type=int, default=10)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--batch-sizes", default="10,100")
    p.add_argument("--models", default="mlp,mdgan-cnn", help="comma-separated presets")
    p.add_argument("--out", default=str(RESULTS / "flgan_comm.json"))
    args = p.parse_args()
    rows = []
    for model in args.models.split(","):
        for b in (int(v) for v in args.batch_sizes.split(",")):
            row = measure(model, b, args.num_clients, args.rounds)
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
