"""KID, precision / recall and class coverage sanity numbers on real data (plus FID).

Usage::

    python bench/metric_sanity.py [--n 2000 1000] [--n-inception 500]
                                  [--inception-budget-s 180]

Three cases, each a "fake" set scored against a random MNIST test sample (the real set):

* ``mnist-train``: MNIST training images (the same distribution: KID ~0, P and R high);
* ``fashion-test``: Fashion-MNIST test images (another domain: large KID, low P and R);
* ``mnist-test-012``: MNIST test images of classes 0, 1, 2 only, none of them in the real
  sample (a generator restricted to 3 classes: 7 missing classes, recall drops, precision
  stays high).

Features are the cached MNIST classifier's (128-d); the largest ``--n`` is drawn once and
the smaller ones are its first rows. Coverage uses the classifier's predicted labels for
the fake set and the true labels of the real sample. With InceptionV3 weights
(``flwr-gan fid-weights``) the same cases run on Inception pool3 features at
``--n-inception`` per side, unless a timed probe projects more than
``--inception-budget-s`` seconds of feature extraction: then they are skipped and the
JSON says why. Writes ``bench/results/metric_sanity.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flwr_gan.data import ImageDataset, load_dataset
from flwr_gan.metrics import frechet_distance, load_or_train_classifier
from flwr_gan.metrics.coverage import class_coverage
from flwr_gan.metrics.features import FeatureExtractor
from flwr_gan.metrics.kid import kernel_inception_distance
from flwr_gan.metrics.prc import precision_recall

CASES = {
    "mnist-train": "MNIST train vs MNIST test",
    "fashion-test": "Fashion-MNIST test vs MNIST test",
    "mnist-test-012": "MNIST test classes 0-2 vs MNIST test",
}


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0


def _indices(test: ImageDataset, train: ImageDataset, fashion: ImageDataset,
             n: int) -> dict[str, np.ndarray]:
    """Random rows of each set (in random order, so any prefix is a random subset)."""
    rng = np.random.default_rng(0)
    real = rng.choice(len(test), n, replace=False)
    rest = np.setdiff1d(np.arange(len(test)), real)
    rest012 = rest[test.labels[rest] < 3]
    if len(rest012) < n:
        raise SystemExit(f"Only {len(rest012)} MNIST test images of classes 0-2 are left "
                         f"outside the real sample; use a smaller --n than {n}.")
    return {
        "real": real,
        "mnist-train": rng.choice(len(train), n, replace=False),
        "fashion-test": rng.choice(len(fashion), n, replace=False),
        "mnist-test-012": rng.choice(rest012, n, replace=False),
    }


def _row(extractor: str, case: str, n: int, fake: np.ndarray, real: np.ndarray,
         fake_labels: np.ndarray | None, real_labels: np.ndarray | None) -> dict[str, Any]:
    fid, t_fid = _timed(lambda: frechet_distance(fake, real))
    kid, t_kid = _timed(lambda: kernel_inception_distance(fake, real))
    prc, t_prc = _timed(lambda: precision_recall(fake, real))
    row: dict[str, Any] = {
        "extractor": extractor, "case": case, "n_per_side": n, "fid": fid,
        "kid": kid.as_dict(), "prc": prc.as_dict(),
        "seconds": {"fid": t_fid, "kid": t_kid, "prc": t_prc},
    }
    if fake_labels is not None and real_labels is not None:
        cov, t_cov = _timed(lambda: class_coverage(fake_labels, real_labels, 10))
        row["coverage"] = cov.as_dict()
        row["seconds"]["coverage"] = t_cov
    print(json.dumps({k: row[k] for k in ("extractor", "case", "n_per_side", "fid",
                                          "kid", "prc", "seconds")}), flush=True)
    return row


def _inception_rows(sets: dict[str, ImageDataset], idx: dict[str, np.ndarray], n: int,
                    budget_s: float) -> dict[str, Any]:
    from flwr_gan.metrics.inception import InceptionFeatures, inception_weights_available

    if not inception_weights_available():
        return {"skipped": "no Inception weights (run `flwr-gan fid-weights`)"}
    extractor: FeatureExtractor = InceptionFeatures()
    probe_n = 50
    _, probe_s = _timed(lambda: extractor(sets["real"].to_tensor(idx["real"][:probe_n])))
    projected = probe_s / probe_n * n * len(idx)
    info: dict[str, Any] = {"probe_images": probe_n, "probe_seconds": probe_s,
                            "seconds_per_100_images": 100 * probe_s / probe_n,
                            "projected_extraction_seconds": projected, "budget_seconds": budget_s,
                            "loadavg": os.getloadavg()}
    if projected > budget_s:
        info["skipped"] = (f"feature extraction for {len(idx)} x {n} images projected at "
                           f"{projected:.0f} s > budget {budget_s:.0f} s")
        return info
    feats, t_feat = _timed(lambda: {k: extractor(sets[k].to_tensor(v[:n]))
                                    for k, v in idx.items()})
    info["extraction_seconds"] = t_feat
    info["rows"] = [_row(extractor.name, case, n, feats[case], feats["real"], None, None)
                    for case in CASES]
    return info


def _markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| features | images per side | case | FID | KID (mean ± std) | precision | "
             "recall | coverage TV | missing classes | seconds FID / KID / P&R |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        cov = r.get("coverage")
        s = r["seconds"]
        tv = "" if cov is None else f"{cov['tv']:.3f}"
        missing = "" if cov is None else ", ".join(map(str, cov["missing"])) or "none"
        lines.append(
            f"| `{r['extractor']}` | {r['n_per_side']:,} | {CASES[r['case']]} | {r['fid']:.1f} "
            f"| {r['kid']['mean']:.4f} ± {r['kid']['std']:.4f} | {r['prc']['precision']:.3f} "
            f"| {r['prc']['recall']:.3f} | {tv} | {missing} "
            f"| {s['fid']:.2f} / {s['kid']:.2f} / {s['prc']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[2000, 1000],
                        help="images per side with classifier features")
    parser.add_argument("--n-inception", type=int, default=500,
                        help="images per side with Inception features (0: skip)")
    parser.add_argument("--inception-budget-s", type=float, default=180.0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" /
                                             "metric_sanity.json"))
    args = parser.parse_args()
    if args.n_inception > max(args.n):
        parser.error("--n-inception cannot exceed the largest --n (its rows are a prefix)")
    result: dict[str, Any] = {
        "command": "python bench/metric_sanity.py",
        "loadavg_start": os.getloadavg(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "kid_settings": "subsets=100, subset_size=1000 (clipped to n), cubic polynomial kernel",
        "prc_settings": "neighborhood=3",
        "cases": CASES,
    }
    train, test = load_dataset("mnist"), load_dataset("mnist", "test")
    fashion = load_dataset("fashion-mnist", "test")
    clf = load_or_train_classifier(train, test, progress=False)
    result["classifier_test_accuracy"] = clf.test_accuracy
    sets = {"real": test, "mnist-train": train, "fashion-test": fashion, "mnist-test-012": test}
    n_max = max(args.n)
    idx = _indices(test, train, fashion, n_max)
    t0 = time.perf_counter()
    out = {k: clf.features_and_probs(sets[k].to_tensor(v)) for k, v in idx.items()}
    result["classifier_extraction_seconds"] = time.perf_counter() - t0
    real_labels = test.labels[idx["real"]]
    rows = []
    for n in sorted(args.n, reverse=True):
        for case in CASES:
            (f_fake, p_fake), (f_real, _) = out[case], out["real"]
            rows.append(_row(f"classifier:{clf.dataset}", case, n, f_fake[:n], f_real[:n],
                             p_fake[:n].argmax(axis=1), real_labels[:n]))
    result["rows"] = rows
    if args.n_inception > 0:
        result["inception"] = _inception_rows(sets, idx, args.n_inception,
                                              args.inception_budget_s)
        rows = rows + result["inception"].get("rows", [])
    result["loadavg_end"] = os.getloadavg()
    result["markdown"] = _markdown(rows)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(result["markdown"])
    if "skipped" in result.get("inception", {}):
        print(f"Inception rows skipped: {result['inception']['skipped']}")


if __name__ == "__main__":
    main()
