"""MD-GAN vs FL-GAN at equal generator updates (the MD-GAN paper's Fig. 3 setting, scaled).

MNIST split i.i.d. over ``--num-clients`` workers, the same preset and batch size
for both, evaluated with the same protocol (FID and score in the cached MNIST
classifier's feature space, ``--n-eval`` samples, 3 latent seeds):

* **MD-GAN** (Algorithm 1, kappa = 1 by default): ``--iterations`` generator
  updates on the server, discriminators swapped every epoch (E = 1).
* **FL-GAN**: every worker trains its own G and D for one epoch of its shard
  (``m / b`` local steps, rounded so that the rounds cover ``--iterations``
  updates), then the server averages them (C = 1, the paper's E = 1). Its
  ``round r`` is ``r * local_steps`` generator updates.

The x axis is generator updates, as in the paper (each FL-GAN worker's
generator is updated that many times). Bytes per generator update come from the
runs' own telemetry. Each run directory goes under ``--runs``; finished runs
are reused (a run cut off part-way is run again). Writes ``<out>.json`` and ``<out>.png``,
rewritten after every run so that an invocation cut off part-way keeps what it
finished (``"complete": false`` until the last run). The summary gives each run's
load average when it ended, and per family the mean and sample standard deviation
over seeds of the final, best and mean FID (the last on a grid common to the families,
see :func:`across_seeds`) and the paired differences to FL-GAN.

Usage::

    python bench/mdgan_vs_flgan.py --iterations 1000 --batch-size 32 --seeds 0
    python bench/mdgan_vs_flgan.py --smoke --runs /tmp/r --out /tmp/m   # CI size
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from fegan_common import RESULTS, finished

from flwr_gan.algorithms import make_settings
from flwr_gan.report.groups import stat
from flwr_gan.runtime.rundir import plot_fid_curves, read_metrics
from flwr_gan.runtime.simulation import run

TRAIN_SIZE = 60_000  # MNIST's training split, shared equally by the workers


def plan(args: argparse.Namespace, seed: int) -> dict[str, tuple[str, dict[str, Any], int]]:
    """Return label -> (algorithm, settings, generator updates per record step)."""
    n, b, it = args.num_clients, args.batch_size, args.iterations
    shard = TRAIN_SIZE // n
    steps = max(1, round(shard / b))  # one epoch of a worker's shard
    rounds = max(1, math.ceil(it / steps))
    steps = math.ceil(it / rounds)  # spread I updates evenly over the rounds
    common: dict[str, Any] = dict(model=args.model, n_eval=args.n_eval, progress=False,
                                  overwrite=True, seed=seed, num_clients=n, batch_size=b,
                                  partition="iid")
    every = max(1, it // args.evals)
    return {
        f"MD-GAN kappa={args.kappa}": ("mdgan", common | dict(
            iterations=it, kappa=args.kappa, swap_epochs=1.0, eval_every=every), 1),
        "FL-GAN": ("flgan", common | dict(rounds=rounds, local_steps=steps, fraction=1.0,
                                          eval_every=1), steps),
    }


def main() -> int:
    """Run (or reuse) both families over the seeds; write the curves and a summary."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=1000, help="generator updates")
    p.add_argument("--num-clients", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--model", default="small")
    p.add_argument("--kappa", default="1", help="MD-GAN's kappa: an integer or 'log'")
    p.add_argument("--evals", type=int, default=5, help="MD-GAN evaluations over the run")
    p.add_argument("--n-eval", type=int, default=1000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--runs", default="runs/bench-mdgan-vs-flgan")
    p.add_argument("--out", default=str(RESULTS / "mdgan_vs_flgan"))
    p.add_argument("--smoke", action="store_true",
                   help="tiny CI version: 2 workers, 6 updates, 100 FID samples")
    args = p.parse_args()
    if args.smoke:
        args.num_clients, args.iterations, args.n_eval, args.evals = 2, 6, 100, 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    curves: dict[str, list[dict[str, Any]]] = {}
    summary: dict[str, Any] = {}
    previous = _read_summary(out.with_suffix(".json"))
    before = _timings(previous)  # a reused run keeps its measured time and load
    load_avg = previous.get("load_avg")  # kept if every run is reused
    for seed in args.seeds:
        for label, (algorithm, values, per_step) in plan(args, seed).items():
            slug = "".join(c if c.isalnum() else "_" for c in label).strip("_")
            run_dir = Path(args.runs) / f"{slug}_seed{seed}"
            metrics = run_dir / "metrics.jsonl"
            started, took = time.perf_counter(), None
            load = before.get((label, seed), {}).get("load_avg")
            if not finished(run_dir, -(-args.iterations // per_step)):
                print(f"running {label} seed {seed} -> {run_dir}", flush=True)
                run(make_settings(algorithm, out=str(run_dir), **values))
                took = time.perf_counter() - started
                load = load_avg = [round(x, 2) for x in os.getloadavg()]
            records = read_metrics(metrics)
            for r in records:
                r["generator_updates"] = r["round"] * per_step
            curves[f"{label} seed {seed}"] = records
            fids = [(r["generator_updates"], r["fid"]) for r in records
                    if r.get("fid") is not None]
            sent = sum(int(r.get("bytes_up") or 0) + int(r.get("bytes_down") or 0)
                       for r in records)
            updates = records[-1]["generator_updates"]
            best = min(fids[1:] or fids, key=lambda x: x[1])
            summary.setdefault(label, []).append({
                "seed": seed, "run": str(run_dir), "fid": fids, "best_fid": best[1],
                "best_at": best[0], "final_fid": fids[-1][1],
                "score_final": next((r["score"] for r in reversed(records)
                                     if r.get("score") is not None), None),
                "generator_updates": updates,
                "bytes_per_update": sent / max(1, updates),
                "run_s": _run_seconds(took, before.get((label, seed), {}).get("run_s"),
                                      records),
                "load_avg": load})
            print(json.dumps({"label": label, "seed": seed, "best_fid": round(best[1], 1),
                              "final_fid": round(fids[-1][1], 1),
                              "bytes_per_update": round(sent / max(1, updates))}), flush=True)
            _write(out, args, curves, summary, load_avg, complete=False)
    _write(out, args, curves, summary, load_avg, complete=True)
    return 0


def _write(out: Path, args: argparse.Namespace, curves: dict[str, list[dict[str, Any]]],
           summary: dict[str, Any], load_avg: list[float] | None, complete: bool) -> None:
    """Write ``<out>.png`` (the curves so far) and ``<out>.json`` (the summary so far).

    ``load_avg`` is the load average after the last run this invocation trained, or
    the earlier summary's when it trained none (regenerating a summary from reused
    runs says nothing about the load they ran under).
    """
    plot_fid_curves(curves, out.with_suffix(".png"), x_key="generator_updates")
    doc = {"settings": vars(args), "complete": complete,
           "load_avg": load_avg,
           "across_seeds": across_seeds(summary), "runs": summary}
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(out.with_suffix(".json"))


def across_seeds(summary: dict[str, list[dict[str, Any]]],
                 baseline: str = "FL-GAN") -> dict[str, dict[str, Any]]:
    """Per family: final, best and mean FID over its seeds, and paired differences.

    ``final_fid``, ``best_fid`` and ``mean_fid`` are :func:`flwr_gan.report.groups.stat`
    dicts (mean, sample standard deviation, min, max, n). ``mean_fid`` is the FID
    averaged over the evaluation points of the family evaluated least often in that
    seed (after the untrained one), the others' curves linearly interpolated there
    (:func:`mean_fid_on_common_grid`), so that a family evaluated more often is not
    favoured. ``final_minus_baseline`` and ``mean_minus_baseline`` list, for each seed
    that both this family and ``baseline`` ran, this family's value minus the
    baseline's (negative: this family did better), in seed order.
    """
    means = mean_fid_on_common_grid(summary)
    base = {r["seed"]: r["final_fid"] for r in summary.get(baseline, [])}
    doc: dict[str, dict[str, Any]] = {}
    for label, rows in summary.items():
        entry: dict[str, Any] = {"seeds": [r["seed"] for r in rows]}
        for key, values in (("final_fid", [r["final_fid"] for r in rows]),
                            ("best_fid", [r["best_fid"] for r in rows]),
                            ("mean_fid", [means[label, r["seed"]] for r in rows])):
            spread = stat(values)
            entry[key] = asdict(spread) if spread else None
        if label != baseline:
            paired = [r["seed"] for r in sorted(rows, key=lambda r: r["seed"])
                      if r["seed"] in base]
            final = {r["seed"]: r["final_fid"] for r in rows}
            entry["final_minus_baseline"] = [
                {"seed": k, "diff": final[k] - base[k]} for k in paired]
            entry["mean_minus_baseline"] = [
                {"seed": k, "diff": means[label, k] - means[baseline, k]} for k in paired]
        doc[label] = entry
    return doc


def mean_fid_on_common_grid(summary: dict[str, list[dict[str, Any]]]
                            ) -> dict[tuple[str, int], float]:
    """``(label, seed) -> mean FID`` at the sparsest family's evaluation points of that seed.

    Each row's ``fid`` is its ``[generator_updates, fid]`` curve. For every seed the
    grid is the updates (> 0) at which the family with the fewest such evaluations
    was scored; every family's curve is interpolated linearly there (held flat past
    its ends) and averaged. A family evaluated only at 0 is averaged at 0.
    """
    by_seed: dict[int, dict[str, list[tuple[float, float]]]] = {}
    for label, rows in summary.items():
        for r in rows:
            by_seed.setdefault(r["seed"], {})[label] = [(float(u), float(f)) for u, f in r["fid"]]
    out: dict[tuple[str, int], float] = {}
    for seed, curves in by_seed.items():
        sparsest = min(curves.values(), key=lambda c: len([u for u, _ in c if u > 0]))
        grid = [u for u, _ in sparsest if u > 0] or [sparsest[0][0]]
        for label, curve in curves.items():
            xs, ys = [u for u, _ in curve], [f for _, f in curve]
            out[label, seed] = float(np.mean(np.interp(grid, xs, ys)))
    return out


def _run_seconds(took: float | None, before: float | None,
                 records: list[dict[str, Any]]) -> float | None:
    """A run's wall time: measured now, else an earlier summary's, else its own clock.

    A run reused from a cut-off invocation has no summary entry; its last record's
    ``elapsed_s`` (seconds since the run started, a few seconds short of the
    invocation's time) stands in.
    """
    if took is not None:
        return took
    if before is not None:
        return before
    elapsed = records[-1].get("elapsed_s") if records else None
    return float(elapsed) if elapsed is not None else None


def _read_summary(path: Path) -> dict[str, Any]:
    """An earlier invocation's summary at ``path`` (empty if there is none)."""
    return json.loads(path.read_text()) if path.exists() else {}


def _timings(previous: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    """``(label, seed) -> {"run_s", "load_avg"}`` from an earlier summary."""
    runs = previous.get("runs", {})
    return {(label, int(r["seed"])): {"run_s": r.get("run_s"), "load_avg": r.get("load_avg")}
            for label, rs in runs.items() for r in rs}


if __name__ == "__main__":
    raise SystemExit(main())
