"""Balanced vs random sampling on the real FeGAN partition of MNIST (pure, no training).

Usage::

    python bench/fegan_coverage.py [--num-clients 176] [--fraction 0.025] [--seeds 20]

For the partition ``flwr-gan simulate`` uses by default (FeGAN engine,
``max_class=3``, ``max_samples=500``, partition seed 0) this replays the
strategies' own samplers (:class:`flwr_gan.strategy.BalancedSampler`,
:func:`flwr_gan.strategy.random_sample`) with :class:`flwr_gan.strategy.SeenData`
and reports ``kl_seen`` per round (FeGAN Fig. 10) and the rounds until every
sample has been seen at least once. Writes ``bench/results/fegan_coverage.json``
and ``fegan_kl_seen.png``.
"""

from __future__ import annotations

import argparse
import json

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--num-clients", type=int, default=176)
    parser.add_argument("--fraction", type=float, default=0.025)
    parser.add_argument("--max-class", type=int, default=3)
    parser.add_argument("--max-samples", type=int, default=500)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3000)
    args = parser.parse_args()
    cfg = DataConfig(dataset="mnist", partition="fegan", max_class=args.max_class,
                     max_samples=args.max_samples)
    counts = dataset_partition(cfg, args.num_clients).histograms
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
    (RESULTS / "fegan_coverage.json").write_text(json.dumps(result, indent=2) + "\n")
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
    fig.savefig(RESULTS / "fegan_kl_seen.png", dpi=110)
    print(json.dumps({k: result[k] for k in (
        "partition", "kl_seen_round20", "kl_seen_round200", "kl_vs_whole_trainset_round20",
        "kl_vs_whole_trainset_round200", "kl_uniform_vs_federation",
        "federation_class_distribution")}, indent=1))
    print("rounds to see every sample:", bal_full, "balanced;",
          result["rounds_to_see_every_sample"]["random_median"], "random (median)")


if __name__ == "__main__":
    main()
