"""Final quality of finished runs: Inception-FID beside the classifier's FID and score.

Each ``LABEL=RUN_DIR`` names a finished run of any family; its final generator(s)
come from ``checkpoint.pt`` (:func:`flwr_gan.runtime.generators.final_generators`)
and are scored on ``--n`` generated images against ``--n`` held-out test images of
the run's data set (the same fixed shuffle as during training):

* ``inception``: pytorch-fid's InceptionV3 pool3 features (the standard FID; build
  the weights once with ``flwr-gan fid-weights``). About 13 images a second on two
  CPU cores: 10,000 images per side take ~13 minutes for the real set (once) and
  as long again per generator.
* ``classifier``: the cached data-set classifier's features (the papers' "MNIST
  FID") and its Inception-Score-style score.

A gossip run has no global model: every worker is scored with the classifier and
the ``--inception-workers`` workers nearest the median classifier FID with
Inception (reported as ``scored``). Absolute values are not comparable with the
papers': they used 100-500 samples and other networks.

Labels of the form ``GROUP/NAME`` (``mdgan/seed1``) are also summarised per group:
mean and sample standard deviation over the group's runs (training-seed spread, as
:func:`flwr_gan.report.groups.stat` and ``flwr-gan compare --group``). ``--reuse
FILE.json`` copies the scores of an earlier output for every run whose directory,
checkpoint (by SHA-256) and scoring settings are unchanged, under whatever label it had,
so adding seeds does not rescore the old ones.

Usage::

    python bench/final_quality.py standalone=runs/sa flgan=runs/fl --n 10000
    # -> bench/results/final_quality.{json,md}
"""

from __future__ import annotations

import argparse
import hashlib
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
from flwr_gan.report.groups import stat
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


def checkpoint_digest(run_dir: str | Path) -> str:
    """SHA-256 of a run's ``checkpoint.pt`` (what a reused score must still describe)."""
    return hashlib.sha256((Path(run_dir) / "checkpoint.pt").read_bytes()).hexdigest()


#: Settings a reused score must share with this invocation.
SCORE_SETTINGS = ("n", "inception_workers", "eval_seeds")


def reusable(previous: dict[str, Any], run_dir: str, digest: str,
             settings: dict[str, Any]) -> dict[str, Any] | None:
    """An earlier row (under any label) that scored this checkpoint the same way."""
    if any(previous.get("settings", {}).get(k) != settings[k] for k in SCORE_SETTINGS):
        return None
    for row in previous.get("runs", {}).values():
        if row.get("checkpoint_sha256") == digest and Path(row.get("run", "")) == Path(run_dir):
            return dict(row)
    return None


def groups(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean and sample std per ``GROUP/NAME`` label group (groups of one run are kept)."""
    members: dict[str, list[dict[str, Any]]] = {}
    for label, row in rows.items():
        if "/" in label:
            members.setdefault(label.split("/", 1)[0], []).append(row)
    out: dict[str, dict[str, Any]] = {}
    for name, group in members.items():
        summary: dict[str, Any] = {"runs": len(group)}
        for field, values in (
                ("inception_fid", [r["inception"]["fid"] for r in group]),
                ("classifier_fid", [r["classifier"]["fid"] for r in group]),
                ("classifier_score", [r["classifier"]["score"] for r in group])):
            if all(v is not None for v in values):
                spread = stat(values)
                assert spread is not None  # a group has at least one run
                summary[field], summary[field + "_std"] = spread.mean, spread.std
        out[name] = summary
    return out


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
    summary = groups(rows)
    if summary:
        lines += ["", "| group | runs | Inception FID | classifier FID | classifier score |",
                  "| --- | ---: | --- | --- | --- |"]
        for name, g in summary.items():
            cells = [f"{g[f]:.1f} ± {g[f + '_std']:.1f}" if f in g else "-"
                     for f in ("inception_fid", "classifier_fid")]
            cells.append(f"{g['classifier_score']:.2f} ± {g['classifier_score_std']:.2f}"
                         if "classifier_score" in g else "-")
            lines.append(f"| {name} | {g['runs']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _scored(row: dict[str, Any]) -> bool:
    """Tell whether a row has both backends' scores (scored now or reused)."""
    return all(backend in row for backend in BACKENDS)


def write(out: Path, settings: dict[str, Any], rows: dict[str, dict[str, Any]],
          complete: bool) -> str:
    """Write ``<out>.json`` (atomically) and ``<out>.md``; return the markdown table.

    ``complete`` is ``False`` while runs are still being scored.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"settings": settings, "complete": complete, "load_avg": os.getloadavg(),
           "runs": rows, "groups": groups(rows)}
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(out.with_suffix(".json"))
    table = markdown(rows)
    out.with_suffix(".md").write_text(table)
    return table


def main() -> int:
    """Score every run with both backends; write ``<out>.json`` and ``<out>.md``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", metavar="LABEL=RUN_DIR")
    p.add_argument("--n", type=int, default=10_000, help="images per side (default 10000)")
    p.add_argument("--inception-workers", type=int, default=1,
                   help="gossip workers scored with Inception (nearest the median)")
    p.add_argument("--eval-seeds", type=int, default=1,
                   help="latent seeds per generator: FID is their mean, fid_seed_std the spread")
    p.add_argument("--reuse", metavar="FILE.json",
                   help="copy unchanged runs' scores from an earlier output")
    p.add_argument("--out", default=str(RESULTS / "final_quality"))
    args = p.parse_args()
    if args.n < 2 or args.inception_workers < 1 or args.eval_seeds < 1:
        p.error("--n must be >= 2, --inception-workers and --eval-seeds >= 1")
    previous: dict[str, Any] = {}
    if args.reuse:
        try:
            previous = json.loads(Path(args.reuse).read_text())
        except (OSError, ValueError) as err:
            p.error(f"--reuse {args.reuse}: not a readable final_quality output ({err})")
    runs: dict[str, tuple[dict[str, nn.Module], dict[str, Any]]] = {}
    rows: dict[str, dict[str, Any]] = {}
    for item in args.runs:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            p.error(f"run {item!r}: expected LABEL=RUN_DIR")
        try:
            runs[label] = final_generators(path)
            digest = checkpoint_digest(path)
        except (CheckpointError, OSError) as err:
            print(f"final_quality.py: error: run {label!r}: {err}", file=sys.stderr)
            return 2
        old = reusable(previous, path, digest, vars(args))
        if old is None:
            rows[label] = {"run": path, "checkpoint_sha256": digest}
        else:
            rows[label] = old | {"reused": args.reuse}
            print(json.dumps({"run": label, "reused": args.reuse}), flush=True)
    evaluators: dict[tuple[str, str, str], GeneratorEvaluator] = {}
    data: dict[tuple[str, ...], tuple[Any, Any]] = {}
    for label, (gens, config) in runs.items():
        row = rows[label]
        if "reused" in row:
            continue
        row |= {"algorithm": config["algorithm"], "step": config["round"],
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
        # Written after every run: a long --n 10000 job keeps what it scored if stopped.
        write(Path(args.out), vars(args), {k: r for k, r in rows.items() if _scored(r)},
              complete=False)
    table = write(Path(args.out), vars(args), rows, complete=True)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
