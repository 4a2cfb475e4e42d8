"""Time one GAN training step (one D update + one G update) per model preset.

Usage::

    python bench/step_time.py [--batch-size 64] [--steps 20] [--threads 2]

Writes ``bench/results/step_time.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from flwr_gan.core.models import PRESETS, build_models, count_parameters
from flwr_gan.core.training import GANTrainer, infinite_batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "step_time.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name, spec in PRESETS.items():
        for shape in ((1, 28, 28), (3, 32, 32)):
            torch.manual_seed(0)
            gen, disc = build_models(name, shape)
            trainer = GANTrainer(gen, disc, loss=spec.loss, seed=0)
            data = torch.rand(args.batch_size * 4, *shape) * 2 - 1
            batches = infinite_batches(data, args.batch_size)
            trainer.train(batches, args.warmup)
            times = []
            for _ in range(args.steps):
                t0 = time.perf_counter()
                trainer.train(batches, 1)
                times.append(time.perf_counter() - t0)
            times.sort()
            rows.append({
                "preset": name, "shape": "x".join(map(str, shape)), "loss": spec.loss,
                "g_params": count_parameters(gen), "d_params": count_parameters(disc),
                "median_ms": 1000 * times[len(times) // 2], "min_ms": 1000 * times[0],
            })
            print(f"| {name} | {rows[-1]['shape']} | {rows[-1]['g_params']:,} | "
                  f"{rows[-1]['d_params']:,} | {rows[-1]['median_ms']:.1f} |", flush=True)
    result = {
        "batch_size": args.batch_size, "steps": args.steps, "threads": args.threads,
        "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        "cpu_count": torch.get_num_threads(), "rows": rows,
        "command": "python bench/step_time.py",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
