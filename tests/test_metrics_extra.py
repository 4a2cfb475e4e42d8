"""KID, improved precision / recall and class coverage on synthetic data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from flwr_gan.metrics import prc as prc_module
from flwr_gan.metrics.coverage import KL_EPSILON, class_coverage, class_mix
from flwr_gan.metrics.kid import KIDResult, kernel_inception_distance
from flwr_gan.metrics.prc import PrecisionRecall, precision_recall

DIM = 16


def _gauss(n: int, seed: int, shift: float = 0.0, dim: int = DIM) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)) + shift


def _clusters(n: int, seed: int, only: int | None = None) -> np.ndarray:
    """Samples from 5 well-separated Gaussian clusters (or from cluster ``only``)."""
    centers = np.random.default_rng(123).normal(size=(5, DIM)) * 10
    rng = np.random.default_rng(seed)
    which = np.full(n, only) if only is not None else rng.integers(0, 5, n)
    return centers[which] + rng.normal(size=(n, DIM))


# ---------------------------------------------------------------------------- KID


def test_kid_same_distribution_is_about_zero():
    for seed in range(3):
        r = kernel_inception_distance(_gauss(300, seed), _gauss(300, 100 + seed),
                                      subsets=10, subset_size=150)
        assert isinstance(r, KIDResult)
        assert r.subsets == 10 and r.subset_size == 150
        assert r.std > 0
        assert abs(r.mean) < 3 * r.std
        assert abs(r.mean) < 0.05


def test_kid_grows_with_the_shift():
    real = _gauss(300, 0)
    results = [kernel_inception_distance(_gauss(300, 1, shift), real, subsets=10,
                                         subset_size=150) for shift in (0.0, 0.25, 0.5, 1.0)]
    kids = [r.mean for r in results]
    assert kids == sorted(kids)
    assert results[-1].mean > 10 * results[-1].std  # clearly non-zero
    assert kids[-1] > 100 * abs(kids[0])


def test_kid_is_not_clamped():
    # An unbiased estimate of 0 is negative for some draws; find one and keep it.
    means = [kernel_inception_distance(_gauss(300, s), _gauss(300, 50 + s), subsets=5,
                                       subset_size=150).mean for s in range(6)]
    assert min(means) < 0 < max(means)


def test_kid_deterministic_per_seed():
    a, b = _gauss(300, 0), _gauss(300, 1, 0.2)
    first = kernel_inception_distance(a, b, subsets=10, subset_size=100, seed=7)
    assert kernel_inception_distance(a, b, subsets=10, subset_size=100, seed=7) == first
    other = kernel_inception_distance(a, b, subsets=10, subset_size=100, seed=8)
    assert other.mean != first.mean


def test_kid_is_torch_fidelitys():
    from torch_fidelity.metric_kid import kid_features_to_metric

    a, b = _gauss(120, 0), _gauss(90, 1, 0.2)
    ours = kernel_inception_distance(a, b, subsets=7, subset_size=50, seed=3)
    theirs = kid_features_to_metric(torch.from_numpy(a), torch.from_numpy(b), kid_subsets=7,
                                    kid_subset_size=50, rng_seed=3, verbose=False)
    assert ours.mean == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-12)
    assert ours.std == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-9)
    # and with the evaluator's feature size, unequal sets and many subsets
    a, b = _gauss(700, 0, dim=128), _gauss(600, 1, 0.05, dim=128)
    ours = kernel_inception_distance(a, b, subsets=30, subset_size=300, seed=0)
    theirs = kid_features_to_metric(torch.from_numpy(a), torch.from_numpy(b), kid_subsets=30,
                                    kid_subset_size=300, rng_seed=0, verbose=False)
    assert ours.mean == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-9)
    assert ours.std == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-7)


def test_kid_subset_size_clipped_to_smaller_set():
    r = kernel_inception_distance(_gauss(50, 0), _gauss(80, 1), subsets=5)
    assert r.subset_size == 50 and r.subsets == 5
    assert r.std > 0  # the larger side is still subsampled
    # Equal sizes <= subset_size: every subset is the whole of both sets, so one is
    # computed, there is no spread, and the value is the same as with many subsets.
    a, b = _gauss(60, 0), _gauss(60, 1, 0.3)
    same = kernel_inception_distance(a, b, subsets=5)
    assert same.subset_size == 60 and same.subsets == 1 and same.std == 0.0
    from torch_fidelity.metric_kid import kid_features_to_metric

    direct = kid_features_to_metric(torch.from_numpy(a), torch.from_numpy(b), kid_subsets=5,
                                    kid_subset_size=60, verbose=False)
    assert same.mean == pytest.approx(direct["kernel_inception_distance_mean"], rel=1e-9)


def test_kid_as_dict_is_json_friendly():
    r = kernel_inception_distance(_gauss(40, 0), _gauss(40, 1), subsets=3, subset_size=20)
    d = json.loads(json.dumps(r.as_dict()))
    assert d == {"mean": r.mean, "std": r.std, "subsets": 3, "subset_size": 20}


# ---------------------------------------------------------------------------- precision / recall


def test_prc_same_distribution_is_high():
    r = precision_recall(_gauss(400, 0), _gauss(400, 1))
    assert isinstance(r, PrecisionRecall) and r.neighborhood == 3
    assert r.precision > 0.6 and r.recall > 0.6


def test_prc_mode_collapse_keeps_precision_loses_recall():
    real = _clusters(500, 0)
    fake = _clusters(500, 1, only=0)  # one of the five clusters
    r = precision_recall(fake, real)
    assert r.precision > 0.6
    assert r.recall < 0.25  # about a fifth of the real samples, at most


def test_prc_disjoint_is_zero():
    r = precision_recall(_gauss(200, 0, 100.0), _gauss(200, 1))
    assert r.precision == 0.0 and r.recall == 0.0


def test_prc_values_are_exact_fractions():
    r = precision_recall(_gauss(123, 0), _gauss(77, 1, 0.5))
    assert r.precision * 123 == pytest.approx(round(r.precision * 123), abs=1e-9)
    assert r.recall * 77 == pytest.approx(round(r.recall * 77), abs=1e-9)
    assert json.loads(json.dumps(r.as_dict())) == {
        "precision": r.precision, "recall": r.recall, "neighborhood": 3}


def test_prc_blocked_path_matches_full(monkeypatch):
    fake, real = _gauss(200, 0, 0.3), _gauss(150, 1)
    full = precision_recall(fake, real, neighborhood=5)
    monkeypatch.setattr(prc_module, "_FULL_MATRIX_LIMIT", 0)
    monkeypatch.setattr(prc_module, "_BLOCK_ROWS", 80)  # 3 and 2 row blocks
    assert precision_recall(fake, real, neighborhood=5) == full


def test_prc_neighborhood_one_is_allowed_at_two_samples():
    r = precision_recall(_gauss(2, 0), _gauss(2, 1), neighborhood=1)
    assert 0.0 <= r.precision <= 1.0 and 0.0 <= r.recall <= 1.0


# ---------------------------------------------------------------------------- class coverage


def test_class_mix_exact():
    mix = class_mix(np.array([0, 0, 1, 3]), 4)
    assert mix.dtype == np.float64
    np.testing.assert_array_equal(mix, [0.5, 0.25, 0.0, 0.25])


def test_coverage_exact_fractions_on_handmade_labels():
    c = class_coverage(np.array([0, 0, 0, 1]), np.array([0, 1, 2, 2]), 3)
    assert c.fractions == (0.75, 0.25, 0.0)
    assert c.real_fractions == (0.25, 0.25, 0.5)
    assert c.tv == pytest.approx(0.5)
    assert c.missing == (2,)
    # KL(real || smoothed generated), written out.
    smoothed = (np.array([0.75, 0.25, 0.0]) + KL_EPSILON) / (1 + 3 * KL_EPSILON)
    real = np.array([0.25, 0.25, 0.5])
    assert c.kl == pytest.approx(float(np.sum(real * np.log(real / smoothed))))


def test_coverage_identical_and_disjoint_mixes():
    labels = np.arange(100) % 10
    same = class_coverage(labels, labels[::-1].copy(), 10)
    assert same.tv == 0.0 and same.missing == ()
    assert same.kl == pytest.approx(0.0, abs=1e-9)
    disjoint = class_coverage(np.array([0, 1, 0, 1]), np.array([2, 3, 3]), 4)
    assert disjoint.tv == 1.0
    assert disjoint.missing == (2, 3)
    assert np.isfinite(disjoint.kl) and disjoint.kl > 10  # large but finite


def test_coverage_three_classes_against_ten_uniform():
    fake = np.arange(300) % 3
    real = np.arange(1000) % 10
    c = class_coverage(fake, real, 10)
    assert c.missing == (3, 4, 5, 6, 7, 8, 9)
    assert c.tv == pytest.approx(0.7)
    # each missing class costs 0.1 * log(0.1 / eps) nats, roughly
    assert c.kl == pytest.approx(7 * 0.1 * np.log(0.1 / KL_EPSILON) + 0.3 * np.log(0.3),
                                 rel=1e-3)


def test_coverage_missing_below_threshold():
    real = np.arange(100) % 2                      # 50 / 50
    fake = np.array([0] * 96 + [1] * 4)            # class 1 at 0.04 = 0.08 * its share
    assert class_coverage(fake, real, 2).missing == (1,)
    assert class_coverage(fake, real, 2, missing_below=0.05).missing == ()
    assert class_coverage(fake, real, 2, missing_below=0.0).missing == ()


def test_coverage_as_dict_is_json_friendly():
    c = class_coverage(np.array([0, 1]), np.array([0, 2]), 3)
    d = c.as_dict()
    assert d["missing"] == [2] and isinstance(d["fractions"], list)
    assert json.loads(json.dumps(d)) == d


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("fake", "real", "match"),
    [
        (np.zeros((1, 4)), np.zeros((5, 4)), "at least 2 fake samples"),
        (np.zeros((5, 4)), np.zeros((1, 4)), "at least 2 real samples"),
        (np.zeros((5, 4)), np.zeros((5, 3)), "feature dimensions differ"),
        (np.zeros(5), np.zeros((5, 4)), r"2-D \(N, D\)"),
        (np.zeros((5, 0)), np.zeros((5, 0)), "no columns"),
        (np.full((5, 4), np.nan), np.zeros((5, 4)), "generator may have diverged"),
        (np.zeros((5, 4)), np.full((5, 4), np.inf), "real feature rows contain NaN or inf"),
    ],
)
def test_feature_errors(fake, real, match):
    with pytest.raises(ValueError, match=f"KID: .*{match}"):
        kernel_inception_distance(fake, real)
    with pytest.raises(ValueError, match=f"precision/recall: .*{match}"):
        precision_recall(fake, real)


def test_kid_argument_errors():
    a, b = _gauss(10, 0), _gauss(10, 1)
    with pytest.raises(ValueError, match="KID subsets must be >= 1, got 0"):
        kernel_inception_distance(a, b, subsets=0)
    with pytest.raises(ValueError, match="KID subsets must be an integer"):
        kernel_inception_distance(a, b, subsets=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="KID subset_size must be >= 2"):
        kernel_inception_distance(a, b, subset_size=1)
    with pytest.raises(ValueError, match="KID seed must be >= 0"):
        kernel_inception_distance(a, b, seed=-1)
    with pytest.raises(ValueError, match="KID seed must be < 2"):
        kernel_inception_distance(a, b, seed=2**32)


def test_prc_neighborhood_errors():
    a, b = _gauss(4, 0), _gauss(10, 1)
    with pytest.raises(ValueError, match=r"k=4 must be smaller .* \(fake 4, real 10\)"):
        precision_recall(a, b, neighborhood=4)
    with pytest.raises(ValueError, match="k=10 must be smaller"):
        precision_recall(b, b, neighborhood=10)
    with pytest.raises(ValueError, match="neighborhood must be >= 1"):
        precision_recall(a, b, neighborhood=0)
    with pytest.raises(ValueError, match="neighborhood must be an integer"):
        precision_recall(a, b, neighborhood=True)


def test_coverage_errors():
    ok = np.array([0, 1, 2])
    with pytest.raises(ValueError, match=r"fake_labels must lie in \[0, 3\), found .*\[0, 3\]"):
        class_coverage(np.array([0, 3]), ok, 3)
    with pytest.raises(ValueError, match=r"real_labels must lie in \[0, 3\), found .*\[-1, 2\]"):
        class_coverage(ok, np.array([-1, 2]), 3)
    with pytest.raises(ValueError, match="fake_labels is empty"):
        class_coverage(np.array([], dtype=np.int64), ok, 3)
    with pytest.raises(ValueError, match="real_labels is empty"):
        class_coverage(ok, np.array([], dtype=np.int64), 3)
    with pytest.raises(ValueError, match="num_classes must be >= 2"):
        class_coverage(np.array([0]), np.array([0]), 1)
    with pytest.raises(ValueError, match="num_classes must be >= 2"):
        class_mix(np.array([0]), 1)
    with pytest.raises(ValueError, match=r"probs.argmax\(axis=1\)"):
        class_coverage(np.eye(3), ok, 3)
    with pytest.raises(ValueError, match="integer class indices, got dtype float64"):
        class_coverage(np.array([0.0, 1.0]), ok, 3)
    with pytest.raises(ValueError, match=r"missing_below must be a number in \[0, 1\]"):
        class_coverage(ok, ok, 3, missing_below=1.5)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        class_mix(np.array([2]), 2)
