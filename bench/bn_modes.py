"""Averaged vs local BatchNorm statistics: score finished FL runs' generators both ways.

Usage::

    python bench/bn_modes.py runs/bench-fegan-seeds/*_seed*     # the fegan_seeds runs

Training never reads BatchNorm running statistics (both networks train in train
mode, with batch statistics: ``tests/test_bn_buffers.py`` shows the weights are
bit-identical with ``--bn-buffers averaged`` and ``local``). What the choice
changes is the generator the server samples from: with ``averaged`` its running
statistics are the devices' average (``--eval-mode eval`` uses them); with
``local`` it has none and must re-estimate them from its own samples
(``recalibrate``) or use each batch's (``train``). So this script loads each
run's final checkpoint and scores its generator in the three modes, 5 latent
seeds x ``--n`` samples, in the cached MNIST classifier's feature space.
Writes ``bench/results/bn_modes.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from eval_noise import MODES, load_generator, score
from fegan_common import RESULTS


def main() -> int:
    """Score every run's final generator in each batch-norm mode."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="FL-GAN / FeGAN run directories")
    p.add_argument("--n", type=int, default=1000, help="samples per seed and side")
    p.add_argument("--out", default=str(RESULTS / "bn_modes.json"))
    args = p.parse_args()
    rows = []
    load = os.getloadavg()
    for run in map(Path, args.runs):
        config = json.loads((run / "config.json").read_text())
        gen = load_generator(run / "checkpoint.pt")
        row = {"run": run.name, "algorithm": config["algorithm"], "seed": config["seed"],
               "round": json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
               ["round"]}
        for mode in MODES:
            s = score(gen, args.n, mode)
            row[mode] = {"fid_mean": s["fid_mean"], "fid_std": s["fid_std"],
                         "kid_mean": s["kid_mean"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    Path(args.out).write_text(json.dumps({"n": args.n, "seeds": 5, "load_avg": load,
                                          "rows": rows}, indent=1) + "\n")
    print("| run | round | " + " | ".join(f"FID {m}" for m in MODES) + " |")
    print("|---|---:|" + "---:|" * len(MODES))
    for r in rows:
        print(f"| {r['run']} | {r['round']} | " + " | ".join(
            f"{r[m]['fid_mean']:.1f} ± {r[m]['fid_std']:.1f}" for m in MODES) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
