"""How noisy is one evaluation, what does it cost, and which batch-norm mode to score in.

Runs the README's federated main job in three stages (``--rounds`` early, then
``--resume`` to the middle and to the end), keeping the checkpoint of each
stage, so the three generators come from one real federated run. For each:

* FID and KID with 5 latent seeds at 1,000 / 2,000 / 5,000 generated samples
  (as many held-out real ones, from MNIST's 10,000 test images), in ``eval``
  mode: mean, spread over seeds, KID's own subset spread, seconds per seed;
* FID and KID with 5 seeds at 2,000 samples in each batch-norm mode
  (``eval``, ``train``, ``recalibrate``).

Writes ``bench/results/eval_noise.json`` and ``bench/results/eval_noise.md``::

    python bench/eval_noise.py                 # ~12 min on 2 cores
    python bench/eval_noise.py --stages 2,6,12 --out /tmp/noise
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
#: The README's main job, minus --rounds / --out (kept in step with README.md).
MAIN_JOB = ["simulate", "--algorithm", "fegan", "--num-clients", "176", "--partition", "iid",
            "--fraction", "0.01", "--local-steps", "100", "--model", "small"]
SAMPLES = (1000, 2000, 5000)
MODES = ("eval", "train", "recalibrate")
SEEDS = 5


def stage_checkpoints(stages: list[int], work: Path) -> list[Path]:
    """Run the main job to each stage's round, copying its checkpoint; return the copies."""
    run = work / "run"
    kept = []
    for i, rounds in enumerate(stages):
        cmd = [sys.executable, "-m", "flwr_gan.cli", *MAIN_JOB, "--rounds", str(rounds),
               "--eval-every", "0", "--n-eval", "500", "--eval-seeds", "1", "--out", str(run),
               "--no-progress"] + (["--resume"] if i else ["--overwrite"])
        print("$", " ".join(cmd[2:]), flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT)
        target = work / f"round_{rounds:03d}.pt"
        shutil.copy(run / "checkpoint.pt", target)
        kept.append(target)
    return kept


def load_generator(path: Path) -> Any:
    """The generator of an FL-GAN / FeGAN checkpoint."""
    from flwr_gan.core.models import build_models
    from flwr_gan.runtime.checkpoint import load_checkpoint, tensors_to_arrays
    from flwr_gan.runtime.records import GENERATOR, load_arrays

    ckpt = load_checkpoint(path)
    cfg = ckpt["config"]
    gen, _ = build_models(cfg["model"], tuple(cfg["image_shape"]), cfg["latent_dim"])
    load_arrays(gen, tensors_to_arrays(ckpt["state"]["arrays"]), GENERATOR)
    return gen


def score(gen: Any, n: int, mode: str) -> dict[str, Any]:
    """Five-seed FID / KID of ``gen`` with ``n`` samples per side in ``mode``."""
    from flwr_gan.data import load_dataset
    from flwr_gan.metrics.evaluator import GeneratorEvaluator

    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    ev = GeneratorEvaluator.for_dataset(train, test, n_real=n, n_fake=n, seeds=1, mode=mode,
                                        progress=False)
    per_seed = []
    for s in range(SEEDS):
        ev.seed = 12345 + s
        t = time.perf_counter()
        r = ev.evaluate(gen)
        per_seed.append({"fid": r.fid, "kid": r.kid, "kid_std": r.kid_std,
                         "precision": r.precision, "recall": r.recall,
                         "seconds": time.perf_counter() - t})
    fid = np.array([p["fid"] for p in per_seed])
    kid = np.array([p["kid"] for p in per_seed])
    return {"n": n, "mode": mode, "fid_mean": float(fid.mean()), "fid_std": float(fid.std()),
            "fid_range": float(np.ptp(fid)), "kid_mean": float(kid.mean()),
            "kid_std_seeds": float(kid.std()),
            "kid_std_subsets": float(np.mean([p["kid_std"] for p in per_seed])),
            "seconds_per_seed": float(np.mean([p["seconds"] for p in per_seed])),
            "per_seed": per_seed}


def markdown(rows: list[dict[str, Any]], load: tuple[float, ...]) -> str:
    """The two tables of the results page."""
    out = [f"Load average at start: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}.", "",
           "| checkpoint | samples | mode | FID mean | FID std (5 seeds) | FID range | "
           "KID mean | KID std (seeds) | KID std (subsets) | s per seed |",
           "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['checkpoint']} | {r['n']} | {r['mode']} | {r['fid_mean']:.1f} | "
                   f"{r['fid_std']:.2f} | {r['fid_range']:.2f} | {r['kid_mean']:.4f} | "
                   f"{r['kid_std_seeds']:.4f} | {r['kid_std_subsets']:.4f} | "
                   f"{r['seconds_per_seed']:.2f} |")
    return "\n".join(out) + "\n"


def main() -> None:
    """Run the stages and the evaluations; write the JSON and Markdown results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default="5,15,25", help="rounds of the three checkpoints")
    parser.add_argument("--work", default="/tmp/flwr-gan-eval-noise")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--reuse", action="store_true", help="reuse the stage checkpoints")
    args = parser.parse_args()
    load = os.getloadavg()
    stages = [int(s) for s in args.stages.split(",")]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    ckpts = [work / f"round_{r:03d}.pt" for r in stages]
    if not (args.reuse and all(p.exists() for p in ckpts)):
        ckpts = stage_checkpoints(stages, work)
    rows = []
    for rounds, path in zip(stages, ckpts, strict=True):
        gen = load_generator(path)
        for n, mode in [(n, "eval") for n in SAMPLES] + [(2000, m) for m in MODES[1:]]:
            row = {"checkpoint": f"round {rounds}"} | score(gen, n, mode)
            print(f"round {rounds:3d} n={n} {mode:11s} FID {row['fid_mean']:.1f} "
                  f"+- {row['fid_std']:.2f}  KID {row['kid_mean']:.4f} +- "
                  f"{row['kid_std_seeds']:.4f}  {row['seconds_per_seed']:.1f} s/seed", flush=True)
            rows.append(row)
    out = Path(args.out)
    (out / "eval_noise.json").write_text(json.dumps(
        {"main_job": MAIN_JOB, "stages": stages, "seeds": SEEDS, "load_average": load,
         "rows": rows}, indent=1))
    (out / "eval_noise.md").write_text(markdown(rows, load))
    print(markdown(rows, load))


if __name__ == "__main__":
    main()
