"""FID sanity numbers on real data, for both feature extractors.

Usage::

    python bench/fid_sanity.py [--n-classifier 2000] [--n-inception 500]

Computes, for the cached MNIST classifier and for pytorch-fid's InceptionV3 (when its
weights exist; `flwr-gan fid-weights`): FID(MNIST test, itself), FID(MNIST train, MNIST
test) and FID(MNIST test, Fashion-MNIST test); also the classifiers' test accuracies.
Writes ``bench/results/fid_sanity.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from flwr_gan.data import load_dataset
from flwr_gan.metrics import ClassifierFeatures, frechet_distance, load_or_train_classifier
from flwr_gan.metrics.features import FeatureExtractor


def _pairs(extractor: FeatureExtractor, n: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    fashion = load_dataset("fashion-mnist", "test")
    t0 = time.perf_counter()
    f_train = extractor(train.to_tensor(np.sort(rng.choice(len(train), n, replace=False))))
    f_test = extractor(test.to_tensor(np.sort(rng.choice(len(test), n, replace=False))))
    f_fashion = extractor(fashion.to_tensor(np.sort(rng.choice(len(fashion), n, replace=False))))
    return {
        "n": n,
        "mnist_test_vs_itself": frechet_distance(f_test, f_test),
        "mnist_train_vs_mnist_test": frechet_distance(f_train, f_test),
        "mnist_test_vs_fashion_test": frechet_distance(f_test, f_fashion),
        "seconds": time.perf_counter() - t0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-classifier", type=int, default=2000)
    parser.add_argument("--n-inception", type=int, default=500)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" /
                                             "fid_sanity.json"))
    args = parser.parse_args()
    mnist = load_dataset("mnist"), load_dataset("mnist", "test")
    fashion = load_dataset("fashion-mnist"), load_dataset("fashion-mnist", "test")
    clf = load_or_train_classifier(*mnist, progress=False)
    fclf = load_or_train_classifier(*fashion, progress=False)
    result: dict[str, object] = {
        "command": "python bench/fid_sanity.py",
        "classifier_test_accuracy": {"mnist": clf.test_accuracy,
                                     "fashion-mnist": fclf.test_accuracy},
        "classifier:mnist": _pairs(ClassifierFeatures(clf), args.n_classifier),
    }
    print(json.dumps(result, indent=2), flush=True)
    from flwr_gan.metrics.inception import InceptionFeatures, inception_weights_available

    if inception_weights_available() and args.n_inception > 0:
        result["inception-v3-pool3"] = _pairs(InceptionFeatures(), args.n_inception)
    result["load_avg"] = os.getloadavg()  # the seconds above are only as quiet as this
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
