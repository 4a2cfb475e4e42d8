"""Balanced vs random sampling on the real FeGAN partition of MNIST (pure, no training).

Usage::

    python bench/fegan_coverage.py [--num-clients 176] [--fraction 0.025] [--seeds 20]

For the partition ``flwr-gan simulate`` uses by default (FeGAN engine,
``max_class=3``, ``max_samples=500``, partition seed 0) this replays the
strategies' own samplers (:class:`flwr_gan.strategy.BalancedSampler`,
:func:`flwr_gan.strategy.random_sample`) with :class:`flwr_gan.strategy.SeenData`
and reports ``kl_seen`` per round (FeGAN Fig. 10) and the rounds until every
sample has been seen at least once. Writes ``bench/results/fegan_coverage.json``
and ``fegan_kl_seen.png`` (``--out DIR`` elsewhere).

``--tag NAME`` (FeGAN Table 1's settings, e.g. ``--num-clients 80 --max-class 5
--max-samples 3000 --fegan-draw shared --tag t1_5_3000``) replays instead how
fast each sampler sweeps the distributed data: the rounds until 50 / 90 / 99 /
100 % of the devices' samples have been seen, the devices never sampled in
``--rounds`` rounds, and the random sampler's complete sweeps (every non-empty
device sampled since the previous sweep); written to ``fegan_coverage_<tag>.json``.
With equal loads every round moves the same bytes and takes the same virtual
time, so rounds stand for time and bandwidth.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from fegan_common import RESULTS

from flwr_gan.data.node import DataConfig, dataset_partition, load_training_set
from flwr_gan.strategy import (
    BalancedSampler,
    SeenData,
    kl_divergence,
    random_sample,
    round_size,
)


def replay(counts: np.ndarray, size: int, rounds: int, mode: str, seed: int,
           dataset_counts: np.ndarray) -> tuple[list[float], int | None, list[float]]:
    """Return kl_seen per round (vs the devices' union), full-coverage round, and
    KL(seen || whole training set) per round (the paper's reference distribution)."""
    seen = SeenData(counts)
    sampler = BalancedSampler(counts)
    rng = np.random.default_rng(seed)
    kls: list[float] = []
    kls_ds: list[float] = []
    full = None
    for r in range(1, rounds + 1):
        picked = sampler.sample(size) if mode == "balanced" else \
            random_sample(rng, len(counts), size)
        seen.add(picked)
        kls.append(float(seen.kl_seen or 0.0))
        kls_ds.append(kl_divergence(seen.seen_counts, dataset_counts))
        if full is None and seen.coverage >= 1.0:
            full = r
    return kls, full, kls_ds


LEVELS = (0.5, 0.9, 0.99, 1.0)


def coverage_run(counts: np.ndarray, size: int, rounds: int, mode: str, seed: int
                 ) -> dict[str, object]:
    """Replay ``rounds`` rounds; return when each coverage level was reached, and more."""
    seen = SeenData(counts)
    sampler = BalancedSampler(counts)
    rng = np.random.default_rng(seed)
    holders = set(np.flatnonzero(counts.sum(axis=1) > 0).tolist())
    reach: dict[str, int | None] = {f"{level:g}": None for level in LEVELS}
    sampled: set[int] = set()
    pending, start, sweeps = set(holders), 0, []
    for r in range(1, rounds + 1):
        picked = sampler.sample(size) if mode == "balanced" else \
            random_sample(rng, len(counts), size)
        seen.add(picked)
        sampled.update(picked)
        for level in LEVELS:
            if reach[f"{level:g}"] is None and seen.coverage >= level - 1e-12:
                reach[f"{level:g}"] = r
        pending.difference_update(picked)
        if not pending:
            sweeps.append(r - start)
            pending, start = set(holders), r
    never = sorted(holders - sampled)
    return {"rounds_to_coverage": reach, "never_sampled": len(never),
            "never_sampled_samples": int(counts[never].sum()) if never else 0,
            "sweeps": len(sweeps),
            "rounds_per_sweep": float(np.mean(sweeps)) if sweeps else None}


def table1_main(args: argparse.Namespace, counts: np.ndarray, size: int) -> None:
    """``--tag``: how fast balanced and random sampling sweep the distributed data."""
    bal = coverage_run(counts, size, args.rounds, "balanced", 0)
    rand = [coverage_run(counts, size, args.rounds, "random", s) for s in range(args.seeds)]

    def median(level: str) -> float:
        vals = [r["rounds_to_coverage"][level] for r in rand]  # type: ignore[index]
        return float(np.median([np.inf if v is None else v for v in vals]))

    result = {
        "partition": {"num_clients": args.num_clients, "max_class": args.max_class,
                      "max_samples": args.max_samples, "draw": args.fegan_draw,
                      "samples": int(counts.sum()),
                      "empty_devices": int((counts.sum(axis=1) == 0).sum()),
                      "devices_per_round": size},
        "rounds": args.rounds, "balanced": bal,
        "random_median_rounds_to_coverage": {f"{lv:g}": median(f"{lv:g}") for lv in LEVELS},
        "random_rounds_per_sweep_mean": float(np.mean(
            [r["rounds_per_sweep"] for r in rand if r["rounds_per_sweep"] is not None])),
        "random_never_sampled_max": max(int(r["never_sampled"]) for r in rand),  # type: ignore[call-overload]
        "random_seeds": args.seeds,
    }
    (args.out / f"fegan_coverage_{args.tag}.json").write_text(json.dumps(result, indent=2)
                                                              + "\n")
    print(json.dumps(result, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--num-clients", type=int, default=176)
    parser.add_argument("--fraction", type=float, default=0.025)
    parser.add_argument("--max-class", type=int, default=3)
    parser.add_argument("--max-samples", type=int, default=500)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3000)
    parser.add_argument("--fegan-draw", default="disjoint", choices=("disjoint", "shared"))
    parser.add_argument("--tag", default="", help="Table 1 mode: write "
                        "fegan_coverage_<tag>.json (rounds to each coverage level)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the outputs")
    args = parser.parse_args()
    if not args.tag and args.rounds < 200:
        parser.error(f"--rounds must be >= 200 without --tag (rounds 20 and 200 are "
                     f"reported), got {args.rounds}")
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = DataConfig(dataset="mnist", partition="fegan", max_class=args.max_class,
                     max_samples=args.max_samples, fegan_draw=args.fegan_draw)
    counts = dataset_partition(cfg, args.num_clients).histograms
    if args.tag:
        table1_main(args, counts, round_size(args.fraction, args.num_clients))
        return
    dataset_counts = load_training_set("mnist").class_counts()
    size = round_size(args.fraction, args.num_clients)
    bal_kl, bal_full, bal_ds = replay(counts, size, args.rounds, "balanced", 0, dataset_counts)
    rand = [replay(counts, size, args.rounds, "random", s, dataset_counts)
            for s in range(args.seeds)]
    rand_kl = np.array([k for k, _, _ in rand])
    rand_ds = np.array([d for _, _, d in rand])
    rand_full = [f for _, f, _ in rand]
    union = counts.sum(axis=0)
    result = {
        "partition": {"num_clients": args.num_clients, "max_class": args.max_class,
                      "max_samples": args.max_samples, "samples": int(counts.sum()),
                      "devices_per_round": size},
        "kl_seen_round20": {"balanced": bal_kl[19],
                            "random_mean": float(rand_kl[:, 19].mean()),
                            "random_min": float(rand_kl[:, 19].min()),
                            "random_max": float(rand_kl[:, 19].max()),
                            "ratio_balanced_over_random_mean":
                                bal_kl[19] / float(rand_kl[:, 19].mean())},
        "rounds_to_see_every_sample": {
            "balanced": bal_full,
            "random_median": float(np.median([f if f is not None else np.inf
                                              for f in rand_full])),
            "random_all": rand_full,
        },
        "federation_class_distribution": (union / union.sum()).tolist(),
        "kl_uniform_vs_federation": kl_divergence(np.ones_like(union), union),
        "kl_vs_whole_trainset_round20": {"balanced": bal_ds[19],
                                         "random_mean": float(rand_ds[:, 19].mean())},
        "kl_vs_whole_trainset_round200": {"balanced": bal_ds[199],
                                          "random_mean": float(rand_ds[:, 199].mean())},
        "kl_seen_round200": {"balanced": bal_kl[199],
                             "random_mean": float(rand_kl[:, 199].mean())},
        "kl_seen_balanced": bal_kl[:200],
        "kl_seen_random_mean": rand_kl.mean(axis=0)[:200].tolist(),
        "random_seeds": args.seeds,
    }
    (args.out / "fegan_coverage.json").write_text(json.dumps(result, indent=2) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    x = np.arange(1, 201)
    for ax, b, r, ref in ((axes[0], bal_kl, rand_kl, "all devices' data"),
                          (axes[1], bal_ds, rand_ds, "whole MNIST train set")):
        ax.plot(x, b[:200], label="balanced sampling (FeGAN)")
        ax.plot(x, r.mean(axis=0)[:200], label=f"random sampling (mean of {args.seeds} seeds)")
        ax.set(xlabel="round", ylabel="KL(seen || reference)", yscale="log",
               title=f"reference: {ref}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"Class distribution seen by the server, MNIST, {args.num_clients} devices")
    fig.tight_layout()
    fig.savefig(args.out / "fegan_kl_seen.png", dpi=110)
    print(json.dumps({k: result[k] for k in (
        "partition", "kl_seen_round20", "kl_seen_round200", "kl_vs_whole_trainset_round20",
        "kl_vs_whole_trainset_round200", "kl_uniform_vs_federation",
        "federation_class_distribution")}, indent=1))
    print("rounds to see every sample:", bal_full, "balanced;",
          result["rounds_to_see_every_sample"]["random_median"], "random (median)")


if __name__ == "__main__":
    main()
