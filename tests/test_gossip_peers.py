"""Gossip GAN's pure rules: peer choice, equal-weight averaging, byte formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flwr_gan.gossip.peers import (
    VARIANTS,
    allreduce_bytes_per_worker,
    average_states,
    choose_peers,
    fl_bytes_per_worker,
    p2p_bytes_per_worker,
    random_others,
    relayed_bytes,
)


def test_average_is_exact_equal_weight_mean() -> None:
    own = {"w": np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32),
           "n": np.array(3, dtype=np.int64)}
    a = {"w": np.array([[3.0, 0.0], [0.0, 8.0]], dtype=np.float32),
         "n": np.array(4, dtype=np.int64)}
    b = {"w": np.array([[5.0, 1.0], [6.0, 0.0]], dtype=np.float32),
         "n": np.array(8, dtype=np.int64)}
    out = average_states([own, a, b])
    np.testing.assert_array_equal(out["w"], np.array([[3.0, 1.0], [3.0, 4.0]], np.float32))
    assert out["w"].dtype == np.float32
    assert out["n"].dtype == np.int64 and out["n"].shape == () and int(out["n"]) == 5
    # one received model: the midpoint; none received: unchanged
    np.testing.assert_array_equal(average_states([own, a])["w"], [[2.0, 1.0], [1.5, 6.0]])
    np.testing.assert_array_equal(average_states([own])["w"], own["w"])


def test_average_matches_torch_on_a_real_state_dict() -> None:
    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
            for _ in range(3)]
    states = [{k: v.numpy() for k, v in n.state_dict().items()} for n in nets]
    out = average_states(states)
    for key in states[0]:
        ref = torch.stack([n.state_dict()[key].double() for n in nets]).mean(0)
        if key.endswith("num_batches_tracked"):
            ref = ref.round()
        np.testing.assert_allclose(out[key], ref.numpy(), rtol=1e-6)


def test_average_rejects_mismatched_states() -> None:
    with pytest.raises(ValueError, match="nothing"):
        average_states([])
    with pytest.raises(ValueError, match="keys"):
        average_states([{"a": np.zeros(2)}, {"b": np.zeros(2)}])
    with pytest.raises(ValueError, match="shapes"):
        average_states([{"a": np.zeros(2)}, {"a": np.zeros(3)}])


@pytest.mark.parametrize("n", [2, 3, 7])
def test_peers_are_never_self_and_cover_all_others(n: int) -> None:
    rng = np.random.default_rng(0)
    seen = np.zeros((n, n), dtype=int)
    for _ in range(400):
        for i, j in enumerate(random_others(n, rng)):
            assert i != j and 0 <= j < n
            seen[i, j] += 1
    off_diag = seen[~np.eye(n, dtype=bool)]
    assert off_diag.min() > 0  # every other worker gets picked
    # uniform over the n-1 others: counts near 400 / (n - 1)
    assert np.abs(off_diag - 400 / (n - 1)).max() < 0.3 * 400 / (n - 1) + 15


def test_ddl_sends_both_to_one_peer_ddl_ind_draws_independently() -> None:
    rng = np.random.default_rng(1)
    for _ in range(50):
        c = choose_peers(4, rng, "ddl")
        assert c.generator == c.discriminator and len(c.generator) == 4
    differ = 0
    for _ in range(50):
        c = choose_peers(4, rng, "ddl_ind")
        pairs = enumerate(zip(c.generator, c.discriminator, strict=True))
        assert all(i != g and i != d for i, (g, d) in pairs)
        differ += sum(g != d for g, d in zip(c.generator, c.discriminator, strict=True))
    # independent draws over 3 others: G peer != D peer with probability 2/3
    assert 0.5 * 200 < differ < 0.8 * 200


def test_isolated_and_single_worker_exchange_nothing() -> None:
    rng = np.random.default_rng(2)
    state = rng.bit_generator.state
    assert not choose_peers(5, rng, "isolated").exchanges
    assert not choose_peers(1, rng, "ddl").exchanges
    assert rng.bit_generator.state == state  # no draw consumed
    assert choose_peers(2, rng, "ddl").generator == (1, 0)
    with pytest.raises(ValueError, match="--variant"):
        choose_peers(3, rng, "allreduce")
    assert VARIANTS == ("ddl", "ddl_ind", "isolated")


def test_peer_choice_is_deterministic_under_a_seed() -> None:
    def draws(seed: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        rng = np.random.default_rng(seed)
        return [(c.generator, c.discriminator)
                for c in (choose_peers(6, rng, "ddl_ind") for _ in range(10))]

    assert draws(5) == draws(5)
    assert draws(5) != draws(6)


def test_byte_formulas_from_the_slides() -> None:
    g, d = 1000, 300
    assert p2p_bytes_per_worker(g, d) == 1300  # gossip: |G| + |D|
    assert fl_bytes_per_worker(g, d) == 2600  # FL: 2 (|G| + |D|)
    assert allreduce_bytes_per_worker(10, g, d) == 13000  # all-reduce: N (|G| + |D|)
    assert relayed_bytes(1300) == 2600  # through the server: both legs
