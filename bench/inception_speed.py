"""Inception feature speed: channels_last (the default) against the plain memory layout.

Usage::

    python bench/inception_speed.py [--n 200] [--repeats 2]

Scores the same ``--n`` MNIST test images with :class:`flwr_gan.metrics.InceptionFeatures`
in its default channels_last layout and in the contiguous layout (network and inputs),
alternating the two ``--repeats`` times in one process so that drift in the machine's
load hits both alike. Reports images per second for each, their ratio, the largest
feature difference and the FID between the two feature sets (both must be ~0: the
layout changes speed, not the metric). Writes ``bench/results/inception_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from fegan_common import RESULTS

from flwr_gan.data import load_dataset
from flwr_gan.metrics import frechet_distance
from flwr_gan.metrics.inception import InceptionFeatures

LAYOUTS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


def measure(n: int, repeats: int) -> dict[str, object]:
    """Time both layouts on the same images; return the json-ready results."""
    test = load_dataset("mnist", "test")
    images = test.to_tensor(np.arange(n))
    extractors = {name: InceptionFeatures(memory_format=layout)
                  for name, layout in LAYOUTS.items()}
    for extractor in extractors.values():
        extractor(images[: min(n, 8)])  # warm-up: first-call allocations are not the layout's
    seconds: dict[str, list[float]] = {name: [] for name in LAYOUTS}
    features: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for name, extractor in extractors.items():
            start = time.perf_counter()
            features[name] = extractor(images)
            seconds[name].append(time.perf_counter() - start)
    rate = {name: n / min(times) for name, times in seconds.items()}
    a, b = features["channels_last"], features["contiguous"]
    return {
        "n": n, "repeats": repeats, "threads": torch.get_num_threads(),
        "seconds": seconds, "images_per_s": rate,
        "speedup": rate["channels_last"] / rate["contiguous"],
        "max_abs_feature_diff": float(np.abs(a - b).max()),
        "mean_abs_feature": float(np.abs(b).mean()),
        "fid_between_layouts": float(frechet_distance(a, b)) if n > 2 else None,
        "minutes_per_10000": 10_000 / rate["channels_last"] / 60,
    }


def main() -> int:
    """Run the measurement and write the json."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200, help="images per timing (default 200)")
    p.add_argument("--repeats", type=int, default=2, help="timings per layout (default 2)")
    p.add_argument("--out", default=str(RESULTS / "inception_speed.json"))
    args = p.parse_args()
    if args.n < 1 or args.repeats < 1:
        p.error(f"--n {args.n} / --repeats {args.repeats}: both must be >= 1")
    load = os.getloadavg()
    doc = measure(args.n, args.repeats) | {"load_avg_before": load,
                                           "load_avg_after": os.getloadavg()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({k: doc[k] for k in ("images_per_s", "speedup", "max_abs_feature_diff",
                                          "fid_between_layouts", "minutes_per_10000")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
