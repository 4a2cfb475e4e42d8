"""Final quality of finished runs: Inception-FID beside the classifier's FID and score.

Each ``LABEL=RUN_DIR`` names a finished run of any family; its final generator(s)
come from ``checkpoint.pt`` (:func:`flwr_gan.runtime.generators.final_generators`)
and are scored on ``--n`` generated images against ``--n`` held-out test images of
the run's data set (the same fixed shuffle as during training):

* ``inception``: pytorch-fid's InceptionV3 pool3 features (the standard FID; build
  the weights once with ``flwr-gan fid-weights``). About 6 images a second on two
  CPU cores: 10,000 images per side take ~27 minutes for the real set (once) and
  as long again per generator.
* ``classifier``: the cached data-set classifier's features (the papers' "MNIST
  FID") and its Inception-Score-style score.

A gossip run has no global model: every worker is scored with the classifier and
the ``--inception-workers`` workers nearest the median classifier FID with
Inception (reported as ``scored``). Absolute values are not comparable with the
papers': they used 100-500 samples and other networks.

Usage::

    python bench/final_quality.py standalone=runs/sa flgan=runs/fl --n 10000
    # -> bench/results/final_quality.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from fegan_common import RESULTS
from torch import nn

from flwr_gan.data.datasets import load_dataset
from flwr_gan.metrics.evaluator import GeneratorEvaluator
from flwr_gan.runtime.checkpoint import CheckpointError
from flwr_gan.runtime.generators import final_generators

BACKENDS = ("inception", "classifier")


def score(evaluator: GeneratorEvaluator, gens: dict[str, nn.Module]) -> dict[str, Any]:
    """Score each generator; return the mean fields plus per-generator FIDs."""
    started = time.perf_counter()
    results = {key: evaluator.evaluate(g) for key, g in gens.items()}
    fids = {key: float(r.fid) for key, r in results.items()}
    first = next(iter(results.values()))
    out: dict[str, Any] = {
        "n": evaluator.n_fake, "fid": float(np.mean(list(fids.values()))),
        "kid": _mean([r.kid for r in results.values()]),
        "score": _mean([r.score for r in results.values()]),
        "seeds": evaluator.seeds,
        "fid_seed_std": _mean([r.fid_seed_std for r in results.values()]),
        "extractor": first.extractor, "scored": sorted(gens),
        "seconds": round(time.perf_counter() - started, 1)}
    if len(fids) > 1:
        out |= {"fid_workers": fids, "fid_std": float(np.std(list(fids.values())))}
    return out


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def typical(fid_workers: dict[str, float], k: int) -> list[str]:
    """The ``k`` device keys whose FID is nearest the median (ties by key)."""
    med = float(np.median(list(fid_workers.values())))
    return sorted(sorted(fid_workers), key=lambda key: abs(fid_workers[key] - med))[:k]


def markdown(rows: dict[str, dict[str, Any]]) -> str:
    """The results as a markdown table."""
    lines = ["| run | family | step | Inception FID | classifier FID | classifier score |"
             " n per side |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for label, row in rows.items():
        inc, clf = row["inception"], row["classifier"]
        note = f" ({len(inc['scored'])} of {len(clf['scored'])} workers)" \
            if len(clf["scored"]) > 1 else ""
        score_txt = "-" if clf["score"] is None else f"{clf['score']:.2f}"
        lines.append(f"| {label} | {row['algorithm']} | {row['step']} | {inc['fid']:.1f}{note} "
                     f"| {clf['fid']:.1f} | {score_txt} | {inc['n']} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    """Score every run with both backends; write ``<out>.json`` and ``<out>.md``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", metavar="LABEL=RUN_DIR")
    p.add_argument("--n", type=int, default=10_000, help="images per side (default 10000)")
    p.add_argument("--inception-workers", type=int, default=1,
                   help="gossip workers scored with Inception (nearest the median)")
    p.add_argument("--eval-seeds", type=int, default=1,
                   help="latent seeds per generator: FID is their mean, fid_seed_std the spread")
    p.add_argument("--out", default=str(RESULTS / "final_quality"))
    args = p.parse_args()
    if args.n < 2 or args.inception_workers < 1 or args.eval_seeds < 1:
        p.error("--n must be >= 2, --inception-workers and --eval-seeds >= 1")
    runs: dict[str, tuple[dict[str, nn.Module], dict[str, Any]]] = {}
    for item in args.runs:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            p.error(f"run {item!r}: expected LABEL=RUN_DIR")
        try:
            runs[label] = final_generators(path)
        except CheckpointError as err:
            print(f"final_quality.py: error: run {label!r}: {err}", file=sys.stderr)
            return 2
    evaluators: dict[tuple[str, str, str], GeneratorEvaluator] = {}
    data: dict[tuple[str, ...], tuple[Any, Any]] = {}
    rows: dict[str, dict[str, Any]] = {}
    for label, (gens, config) in runs.items():
        row: dict[str, Any] = {"algorithm": config["algorithm"], "step": config["round"],
                               "model": config["model"], "dataset": config["dataset"]}
        for backend in reversed(BACKENDS):  # classifier first: it picks gossip's workers
            key = (str(config["dataset"]), str(config.get("data_dir") or ""), backend)
            if key not in evaluators:
                if key[:2] not in data:  # both backends score against the same data
                    data_dir = key[1] or None
                    data[key[:2]] = (load_dataset(key[0], data_dir=data_dir),
                                     load_dataset(key[0], "test", data_dir=data_dir))
                train, test = data[key[:2]]
                evaluators[key] = GeneratorEvaluator.for_dataset(
                    train, test, backend=backend, n_real=min(args.n, len(test)), n_fake=args.n,
                    seeds=args.eval_seeds, progress=False)
            chosen = gens
            if backend == "inception" and len(gens) > 1:
                pick = typical(row["classifier"]["fid_workers"], args.inception_workers)
                chosen = {k: gens[k] for k in pick}
            row[backend] = result = score(evaluators[key], chosen)
            print(json.dumps({"run": label, "backend": backend, "fid": round(result["fid"], 2),
                              "seconds": result["seconds"]}), flush=True)
        rows[label] = row
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"settings": vars(args), "load_avg": os.getloadavg(), "runs": rows}
    out.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    table = markdown(rows)
    out.with_suffix(".md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
