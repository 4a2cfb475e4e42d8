import numpy as np
import pytest

from flwr_gan.strategy import BalancedSampler, random_sample, round_size

# A hand-worked example (see the module docstring of flwr_gan.strategy.sampling).
#            class:  0  1  2
COUNTS = np.array([[5, 0, 0],   # device 0
                   [0, 3, 0],   # device 1
                   [2, 0, 4],   # device 2
                   [0, 1, 1]])  # device 3


def test_queues_hold_owners_in_descending_index():
    s = BalancedSampler(COUNTS)
    assert [list(q) for q in s.queues] == [[2, 0], [3, 1], [3, 2]]


def test_balanced_sampler_hand_worked_rounds():
    s = BalancedSampler(COUNTS)
    # Round 1: taken = [0,0,0] -> class 0 (tie, lowest index) -> queue0 pops 2;
    # taken = [2,0,4] -> class 1 -> queue1 pops 3; taken = [2,1,5].
    assert s.sample(2) == [2, 3]
    assert s.taken.tolist() == [2, 1, 5]
    # Round 2: class 1 (1) -> pops 1, taken [2,4,5]; class 0 (2) -> queue0 = [0,2] pops 0.
    assert s.sample(2) == [1, 0]
    assert s.taken.tolist() == [7, 4, 5]
    # Round 3: class 1 (4) -> queue1 = [3,1] pops 3, taken [7,5,6]; class 1 again -> pops 1.
    assert s.sample(2) == [3, 1]
    assert s.taken.tolist() == [7, 8, 6]


def test_balanced_sampler_four_slots_and_distinct_devices():
    s = BalancedSampler(COUNTS)
    assert s.sample(4) == [2, 3, 1, 0]
    assert s.sample(0) == []
    assert sorted(s.sample(10)) == [0, 1, 2, 3]  # never more than the devices, all distinct


def test_exhausted_class_falls_back_to_next_least_taken():
    counts = np.array([[1, 0], [0, 1], [0, 1]])
    s = BalancedSampler(counts)
    # slot 1: class 0 -> device 0; slot 2: class 1 -> device 2 (descending queue);
    # slot 3: classes tie at 1 -> class 0 has only device 0 (already in) -> class 1 -> device 1.
    assert s.sample(3) == [0, 2, 1]


def test_class_owned_by_nobody_is_ignored():
    s = BalancedSampler(np.array([[3, 0], [2, 0]]))
    assert s.sample(2) == [1, 0]


def test_sampler_state_roundtrip():
    a = BalancedSampler(COUNTS)
    a.sample(2)
    b = BalancedSampler(COUNTS)
    b.load_state_dict(a.state_dict())
    assert a.sample(3) == b.sample(3)
    with pytest.raises(ValueError, match="different devices"):
        BalancedSampler(COUNTS[:3]).load_state_dict(a.state_dict())


def test_balanced_sees_a_closer_distribution_than_random_on_skewed_devices():
    from flwr_gan.strategy import SeenData

    rng = np.random.default_rng(0)
    counts = np.zeros((40, 10), dtype=int)
    for i in range(40):
        counts[i, rng.choice(10, 2, replace=False)] = rng.integers(1, 50, 2)

    def kl_after(rounds, pick):
        seen = SeenData(counts)
        for _ in range(rounds):
            seen.add(pick())
        return seen.kl_seen

    bal = BalancedSampler(counts)
    kl_bal = kl_after(6, lambda: bal.sample(5))
    rngs = [np.random.default_rng(s) for s in range(20)]
    kl_rand = np.mean([kl_after(6, lambda r=r: random_sample(r, 40, 5)) for r in rngs])
    assert kl_bal < 0.5 * kl_rand


def test_round_size_and_random_sample():
    assert round_size(0.025, 176) == 5  # ceil(4.4)
    assert round_size(0.025, 40) == 1
    assert round_size(0.01, 10, min_devices=2) == 2
    assert round_size(1.0, 3) == 3
    with pytest.raises(ValueError):
        round_size(0.0, 10)
    picks = random_sample(np.random.default_rng(1), 10, 4)
    assert len(set(picks)) == 4 and all(0 <= p < 10 for p in picks)
    with pytest.raises(ValueError):
        random_sample(np.random.default_rng(1), 3, 4)
