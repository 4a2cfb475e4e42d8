"""MD-GAN's pure scheduling rules (no Flower, no Ray)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flwr_gan.mdgan.assignment import (
    assign_batches,
    crash_iterations,
    derangement,
    is_swap_iteration,
    kappa_for,
    real_batch_indices,
    sample_workers,
    swap_period,
)


def test_kappa_values() -> None:
    assert kappa_for(10, "log") == 2 == math.floor(math.log(10))
    assert kappa_for(50, "log") == 3
    assert kappa_for(1, "log") == 1 and kappa_for(2, "log") == 1
    assert kappa_for(10, 1) == 1 and kappa_for(10, "4") == 4
    assert kappa_for(3, 7) == 3  # kappa <= N
    for bad in (0, "zero", -2):
        with pytest.raises(ValueError):
            kappa_for(10, bad)


def test_assignment_is_the_papers_rule() -> None:
    # 1-based paper: X_g = X^((n mod k)+1), X_d = X^(((n+1) mod k)+1), n = 1..N.
    n_workers, kappa = 7, 3
    pairs = assign_batches(n_workers, kappa)
    for n, (g, d) in enumerate(pairs, start=1):
        assert g + 1 == (n % kappa) + 1
        assert d + 1 == ((n + 1) % kappa) + 1
        assert g != d
    assert {g for g, _ in pairs} == set(range(kappa))  # every batch is someone's X_g
    assert all(g == d == 0 for g, d in assign_batches(5, 1))
    with pytest.raises(ValueError):
        assign_batches(3, 4)


def test_derangement_has_no_fixed_point_and_is_uniformish() -> None:
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(300):
        perm = derangement(4, rng)
        assert sorted(perm) == [0, 1, 2, 3]
        assert all(p != i for i, p in enumerate(perm))
        seen.add(tuple(perm))
    assert len(seen) == 9  # !4 = 9 derangements, all reached
    assert derangement(2, rng) == [1, 0]
    with pytest.raises(ValueError):
        derangement(1, rng)


def test_swap_schedule_is_i_mod_m_e_over_b() -> None:
    assert swap_period(6000, 1.0, 32) == 188  # m E / b rounded
    assert swap_period(100, 0.01, 32) == 1
    assert swap_period(6000, 0.0, 32) == 0
    swaps = [i for i in range(1, 400) if is_swap_iteration(i, 188)]
    assert swaps == [188, 376]
    assert not any(is_swap_iteration(i, 0) for i in range(10))


def test_crash_schedule_one_worker_every_i_over_n() -> None:
    assert crash_iterations(50_000, 10) == [5000 * k for k in range(1, 10)]
    assert crash_iterations(20, 3) == [6, 13]
    assert crash_iterations(0, 3) == []


def test_sample_workers_keeps_order_and_size() -> None:
    rng = np.random.default_rng(1)
    alive = [11, 22, 33, 44, 55]
    picked = sample_workers(alive, 3, rng)
    assert len(picked) == 3 and picked == [w for w in alive if w in picked]
    assert sample_workers(alive, 0, rng) == alive
    counts = {w: 0 for w in alive}
    for _ in range(2000):
        for w in sample_workers(alive, 2, rng):
            counts[w] += 1
    assert all(700 < c < 900 for c in counts.values())  # 2/5 of 2000 = 800 each


def test_real_batches_cover_each_epoch_once() -> None:
    m, b = 50, 8  # 6 full batches per epoch, 2 images dropped per epoch
    first_epoch = np.concatenate([real_batch_indices(m, b, i, seed=3) for i in range(6)])
    assert len(set(first_epoch.tolist())) == 48
    again = real_batch_indices(m, b, 2, seed=3)
    assert np.array_equal(again, first_epoch[16:24])  # stateless: same call, same batch
    assert not np.array_equal(real_batch_indices(m, b, 6, seed=3), first_epoch[:8])
    assert len(real_batch_indices(5, 8, 0, seed=0)) == 5
