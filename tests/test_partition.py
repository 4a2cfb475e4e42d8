"""Tests for flwr_gan.data.partition (label arrays only; no data files needed)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

from flwr_gan.data import (
    PARTITION_SCHEMES,
    Partition,
    make_partition,
    partition_dirichlet,
    partition_fegan,
    partition_iid,
)

MNIST_TRAIN_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FLWR_GAN_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def mnist_labels() -> np.ndarray:
    """60k labels with MNIST's training class counts, in a shuffled order."""
    labels = np.repeat(np.arange(10), MNIST_TRAIN_COUNTS)
    return np.random.default_rng(123).permutation(labels)


@pytest.fixture(scope="module")
def small_labels() -> np.ndarray:
    """5996 labels (a tenth of MNIST's class counts), shuffled."""
    labels = np.repeat(np.arange(10), [c // 10 for c in MNIST_TRAIN_COUNTS])
    return np.random.default_rng(7).permutation(labels)


def check_consistent(p: Partition, labels: np.ndarray, num_classes: int,
                     shared: bool = False) -> None:
    """Invariants every partition must satisfy (``shared``: devices may share rows)."""
    assert isinstance(p.indices, tuple)
    assert p.num_clients == len(p.indices)
    assert p.histograms.dtype == np.int64
    assert p.histograms.shape == (p.num_clients, num_classes)
    assert p.sizes.dtype == np.int64
    np.testing.assert_array_equal(p.sizes, [len(i) for i in p.indices])
    np.testing.assert_array_equal(p.histograms.sum(axis=1), p.sizes)
    for idx, hist in zip(p.indices, p.histograms, strict=True):
        assert idx.dtype == np.int64 and idx.ndim == 1
        assert np.all(np.diff(idx) > 0), "indices sorted and unique within a client"
        assert idx.size == 0 or (idx.min() >= 0 and idx.max() < len(labels))
        np.testing.assert_array_equal(np.bincount(labels[idx], minlength=num_classes), hist)
    everything = np.concatenate(p.indices)
    if not shared:
        assert len(np.unique(everything)) == len(everything), "a sample was assigned twice"


def same(a: Partition, b: Partition) -> bool:
    return a.num_clients == b.num_clients and all(
        np.array_equal(x, y) for x, y in zip(a.indices, b.indices, strict=True)
    )


# ---------------------------------------------------------------------------------- iid


def test_iid_assigns_every_sample_exactly_once(mnist_labels):
    p = partition_iid(mnist_labels, 176, seed=0)
    check_consistent(p, mnist_labels, 10)
    assert p.scheme == "iid"
    np.testing.assert_array_equal(np.sort(np.concatenate(p.indices)), np.arange(60000))
    assert p.sizes.max() - p.sizes.min() <= 1
    np.testing.assert_array_equal(p.histograms.sum(axis=0), MNIST_TRAIN_COUNTS)


def test_iid_is_roughly_balanced_in_classes(mnist_labels):
    p = partition_iid(mnist_labels, 10, seed=3)
    fractions = p.histograms / p.sizes[:, None]
    expected = np.array(MNIST_TRAIN_COUNTS) / 60000
    assert np.abs(fractions - expected).max() < 0.02


def test_iid_deterministic_by_seed(small_labels):
    a = partition_iid(small_labels, 7, seed=5)
    b = partition_iid(small_labels, 7, seed=5)
    c = partition_iid(small_labels, 7, seed=6)
    assert same(a, b)
    np.testing.assert_array_equal(a.histograms, b.histograms)
    assert not same(a, c)


def test_iid_edge_sizes():
    labels = np.array([0, 1, 1, 2, 0])
    one = partition_iid(labels, 1)
    np.testing.assert_array_equal(one.indices[0], np.arange(5))
    each = partition_iid(labels, 5)
    assert sorted(p.item() for p in each.indices) == [0, 1, 2, 3, 4]
    check_consistent(each, labels, 3)


def test_num_classes_widens_histograms():
    labels = np.array([0, 1, 1, 0])
    p = partition_iid(labels, 2, num_classes=5)
    assert p.histograms.shape == (2, 5)
    assert p.histograms[:, 2:].sum() == 0


# -------------------------------------------------------------------------------- fegan


def fegan_bounds(i: int, n: int, max_class: int, max_samples: int) -> tuple[int, int]:
    """The paper's caps for device i in [1, n], computed independently with floats."""
    class_cap = max(1, int(np.floor(max_class * i / n)))
    sample_cap = max(1, int(np.floor(min(i**2, max_samples * i / n))))
    return class_cap, sample_cap


@pytest.mark.parametrize(
    ("n", "max_class", "max_samples", "seed"),
    [(176, 10, 300, 0), (176, 10, 300, 1), (176, 3, 50, 2), (20, 10, 2000, 0), (1, 10, 60000, 4)],
)
def test_fegan_engine_bounds(mnist_labels, n, max_class, max_samples, seed):
    p = partition_fegan(mnist_labels, n, max_class=max_class, max_samples=max_samples, seed=seed)
    check_consistent(p, mnist_labels, 10)
    assert p.scheme == "fegan" and p.num_clients == n
    assert p.sizes.min() >= 1
    for k, hist in enumerate(p.histograms):
        class_cap, sample_cap = fegan_bounds(k + 1, n, max_class, max_samples)
        assert np.count_nonzero(hist) <= class_cap, f"device {k + 1} has too many classes"
        assert hist.max() <= sample_cap, f"device {k + 1} has too many samples of a class"


def test_fegan_176_devices_shape_of_the_distribution(mnist_labels):
    p = partition_fegan(mnist_labels, 176, max_class=10, max_samples=300, seed=0)
    # Device 1 can only hold one sample of one class; later devices hold more.
    assert p.sizes[0] == 1
    assert p.sizes[:20].mean() < p.sizes[-20:].mean()
    classes = np.count_nonzero(p.histograms, axis=1)
    assert classes[:17].max() == 1  # floor(10 * i / 176) < 1 for i <= 17
    assert classes[-20:].max() > 5
    # Not every sample is used: the engine does not cover the dataset.
    assert 0 < p.sizes.sum() < 60000
    # Per class, never more than exists.
    assert np.all(p.histograms.sum(axis=0) <= MNIST_TRAIN_COUNTS)


def test_fegan_runs_short_takes_what_is_left():
    # Class 0 has only 3 samples; device 2 may ask for more than what device 1 left.
    labels = np.array([0, 0, 0] + [1] * 50)
    found_short = False
    for seed in range(40):
        try:
            p = partition_fegan(labels, 2, max_class=2, max_samples=100, seed=seed)
        except ValueError:
            continue
        check_consistent(p, labels, 2)
        assert p.histograms[:, 0].sum() <= 3
        found_short |= p.histograms[:, 0].sum() == 3 and p.histograms[1, 0] < 4
    assert found_short


def test_fegan_empty_device_raises_with_advice(mnist_labels):
    with pytest.raises(ValueError, match=r"devices without samples.*--fegan-draw shared.*"
                                         r"lower max_samples"):
        partition_fegan(mnist_labels, 176, max_class=10, max_samples=3000, seed=0)


@pytest.mark.parametrize(("n", "max_class", "max_samples"),
                         [(80, 10, 3000), (176, 10, 3000), (176, 3, 50), (20, 10, 2000)])
def test_fegan_shared_draw_builds_the_papers_table_1_settings(mnist_labels, n, max_class,
                                                              max_samples):
    # (80, 10, 3000) is the reference code's setting, the disjoint draw cannot build it.
    p = partition_fegan(mnist_labels, n, max_class=max_class, max_samples=max_samples, seed=3,
                        draw="shared")
    check_consistent(p, mnist_labels, 10, shared=True)
    assert p.sizes.min() >= 1
    for k, hist in enumerate(p.histograms):
        class_cap, sample_cap = fegan_bounds(k + 1, n, max_class, max_samples)
        assert np.count_nonzero(hist) <= class_cap
        assert hist.max() <= min(sample_cap, max(MNIST_TRAIN_COUNTS))
    if max_samples >= 2000:  # big draws: later devices overlap, unlike the disjoint draw
        everything = np.concatenate(p.indices)
        assert len(np.unique(everything)) < len(everything)
        assert p.sizes.sum() > 60000 or n < 80  # more rows handed out than exist


def test_fegan_disjoint_cannot_build_what_shared_can(mnist_labels):
    with pytest.raises(ValueError, match="devices without samples"):
        partition_fegan(mnist_labels, 80, max_class=10, max_samples=3000, seed=3)
    p = make_partition("fegan", mnist_labels, 80, seed=3, max_class=10, max_samples=3000,
                       draw="shared")
    assert p.num_clients == 80 and p.sizes.min() >= 1


def test_fegan_shared_draw_is_uniform_within_a_class():
    # One class of 10 rows, devices asking for 3 at most: every row equally likely.
    labels = np.zeros(10, dtype=np.int64)
    counts = np.zeros(10)
    for seed in range(300):
        p = partition_fegan(labels, 4, max_class=1, max_samples=12, seed=seed, draw="shared")
        for idx in p.indices:
            counts[idx] += 1
    assert counts.min() > 0.7 * counts.mean() and counts.max() < 1.3 * counts.mean()


def test_fegan_shared_gives_a_small_class_whole():
    labels = np.array([0, 0, 0] + [1] * 50)
    p = partition_fegan(labels, 3, max_class=2, max_samples=100, seed=1, draw="shared")
    check_consistent(p, labels, 2, shared=True)
    assert p.histograms[:, 0].max() <= 3


def test_fegan_bad_draw(small_labels):
    with pytest.raises(ValueError, match=r"draw must be one of \('disjoint', 'shared'\)"):
        partition_fegan(small_labels, 10, max_class=3, max_samples=10, draw="overlap")


def test_fegan_deterministic_by_seed(mnist_labels):
    a = partition_fegan(mnist_labels, 50, max_class=5, max_samples=500, seed=11)
    b = partition_fegan(mnist_labels, 50, max_class=5, max_samples=500, seed=11)
    c = partition_fegan(mnist_labels, 50, max_class=5, max_samples=500, seed=12)
    assert same(a, b)
    assert not same(a, c)


def test_fegan_accepts_numpy_integers(small_labels):
    n: Any = np.int64(10)
    max_class: Any = np.int32(4)
    max_samples: Any = np.int64(9)
    p = partition_fegan(small_labels, n, max_class=max_class, max_samples=max_samples)
    check_consistent(p, small_labels, 10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_clients": 0}, r"num_clients must be in \[1, len\(labels\)=5996\], got 0"),
        ({"num_clients": 6001}, r"num_clients must be in \[1, len\(labels\)=5996\], got 6001"),
        ({"num_clients": 2.5}, r"num_clients must be an integer"),
        ({"num_clients": True}, r"num_clients must be an integer"),
        ({"max_class": 0}, r"max_class must be in \[1, num_classes=10\], got 0"),
        ({"max_class": 11}, r"max_class must be in \[1, num_classes=10\], got 11"),
        ({"max_samples": 0}, r"max_samples must be >= 1, got 0"),
        ({"max_samples": 1.5}, r"max_samples must be an integer"),
        ({"num_classes": 5}, r"num_classes=5 but labels go up to 9"),
    ],
)
def test_fegan_bad_parameters(small_labels, kwargs, message):
    args = {"num_clients": 10, "max_class": 3, "max_samples": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        partition_fegan(small_labels, **args)


# ---------------------------------------------------------------------------- dirichlet


def test_dirichlet_assigns_every_sample_exactly_once(mnist_labels):
    p = partition_dirichlet(mnist_labels, 176, alpha=0.5, seed=0)
    check_consistent(p, mnist_labels, 10)
    assert p.scheme == "dirichlet"
    np.testing.assert_array_equal(np.sort(np.concatenate(p.indices)), np.arange(60000))
    assert p.sizes.min() >= 1
    assert "HF_HUB_OFFLINE" not in os.environ or os.environ["HF_HUB_OFFLINE"] == "1"


def test_dirichlet_small_alpha_is_skewed(small_labels):
    def mean_top_class_share(alpha: float) -> float:
        p = partition_dirichlet(small_labels, 20, alpha=alpha, seed=0)
        check_consistent(p, small_labels, 10)
        return float((p.histograms.max(axis=1) / p.sizes).mean())

    skewed, balanced = mean_top_class_share(0.05), mean_top_class_share(100.0)
    assert skewed > 0.6
    assert balanced < 0.2
    assert skewed > 3 * balanced


def test_dirichlet_deterministic_by_seed(small_labels):
    a = partition_dirichlet(small_labels, 8, alpha=0.3, seed=4)
    b = partition_dirichlet(small_labels, 8, alpha=0.3, seed=4)
    c = partition_dirichlet(small_labels, 8, alpha=0.3, seed=5)
    assert same(a, b)
    assert not same(a, c)


def test_dirichlet_min_partition_size_unreachable(small_labels):
    with pytest.raises(ValueError, match=r"Dirichlet partition failed.*Increase alpha"):
        partition_dirichlet(small_labels, 20, alpha=0.01, seed=0, min_partition_size=250)


def test_dirichlet_respects_min_partition_size(small_labels):
    p = partition_dirichlet(small_labels, 10, alpha=1.0, seed=0, min_partition_size=300)
    assert p.sizes.min() >= 300


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 0.0}, r"alpha must be positive and finite"),
        ({"alpha": -1.0}, r"alpha must be positive and finite"),
        ({"alpha": float("nan")}, r"alpha must be positive and finite"),
        ({"alpha": float("inf")}, r"alpha must be positive and finite"),
        ({"alpha": "1"}, r"alpha must be a positive number"),
        ({"num_clients": 0}, r"num_clients must be in \[1"),
        ({"min_partition_size": -1}, r"min_partition_size must be >= 0"),
        ({"min_partition_size": 700}, r"min_partition_size=700 is impossible"),
    ],
)
def test_dirichlet_bad_parameters(small_labels, kwargs, message):
    args = {"num_clients": 10, "alpha": 1.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        partition_dirichlet(small_labels, **args)


# ------------------------------------------------------------------ labels and dispatch


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.zeros((4, 2), dtype=np.int64), r"labels must be 1-D"),
        (np.array([], dtype=np.int64), r"labels is empty"),
        (np.array([0.0, 1.0]), r"labels must be integers"),
        (np.array([True, False]), r"labels must be integers"),
        (np.array([0, -1, 2]), r"labels must be >= 0"),
    ],
)
@pytest.mark.parametrize("scheme", PARTITION_SCHEMES)
def test_bad_labels(labels, message, scheme):
    params = {"iid": {}, "fegan": {"max_class": 1, "max_samples": 1}, "dirichlet": {"alpha": 1}}
    with pytest.raises(ValueError, match=message):
        make_partition(scheme, labels, 1, **params[scheme])


def test_make_partition_dispatches(small_labels):
    assert same(
        make_partition("IID", small_labels, 4, seed=1), partition_iid(small_labels, 4, seed=1)
    )
    assert same(
        make_partition("fegan", small_labels, 4, seed=1, max_class=2, max_samples=5),
        partition_fegan(small_labels, 4, max_class=2, max_samples=5, seed=1),
    )
    assert same(
        make_partition("dirichlet", small_labels, 4, seed=1, alpha=0.5, min_partition_size=2),
        partition_dirichlet(small_labels, 4, alpha=0.5, seed=1, min_partition_size=2),
    )
    p = make_partition("iid", small_labels, 3, num_classes=12)
    assert p.histograms.shape == (3, 12)


@pytest.mark.parametrize(
    ("scheme", "params", "message"),
    [
        ("noniid", {}, r"unknown partition scheme 'noniid'; choose one of"),
        ("fegan", {"max_class": 2}, r"'fegan': missing \['max_samples'\]"),
        ("dirichlet", {}, r"'dirichlet': missing \['alpha'\]"),
        ("iid", {"alpha": 1.0}, r"'iid': unexpected \['alpha'\] parameters \(it takes no param"),
        ("dirichlet", {"alpha": 1.0, "beta": 2}, r"unexpected \['beta'\]"),
    ],
)
def test_make_partition_bad_arguments(small_labels, scheme, params, message):
    with pytest.raises(ValueError, match=message):
        make_partition(scheme, small_labels, 4, **params)


def test_partition_repr_is_short(small_labels):
    text = repr(partition_iid(small_labels, 4))
    assert text.startswith("Partition(scheme='iid', num_clients=4") and len(text) < 200
