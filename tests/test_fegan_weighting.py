import math

import numpy as np
import pytest

from flwr_gan.strategy import (
    SeenData,
    combine_weights,
    kl_divergence,
    kl_scores,
    kl_weights,
)


def test_kl_divergence_exact():
    # P = [.5, .5], Q = [.25, .75]
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert kl_divergence([1, 1], [1, 3]) == pytest.approx(expected, abs=1e-12)
    assert kl_divergence([2, 2], [5, 5]) == 0.0
    assert kl_divergence([0, 4], [1, 1]) == pytest.approx(math.log(2))  # 0 log 0 = 0
    assert kl_divergence([1, 1], [1, 0]) == math.inf
    with pytest.raises(ValueError, match="classes"):
        kl_divergence([1, 1], [1, 1, 1])
    with pytest.raises(ValueError, match="non-negative"):
        kl_divergence([-1, 2], [1, 1])
    with pytest.raises(ValueError, match="empty"):
        kl_divergence([0, 0], [1, 1])


def test_kl_scores_exact():
    # Q = [.5, .5]; each device one-hot: KL = ln 2; n_k/n = 1/2 and 1/4, 1/4.
    s = kl_scores([[4, 0], [0, 2], [0, 2]])
    np.testing.assert_allclose(s, [0.5 * math.log(2), 0.25 * math.log(2), 0.25 * math.log(2)])
    np.testing.assert_allclose(kl_scores([[1, 1], [3, 3]]), [0.0, 0.0])


def test_weighting_schemes_exact_numbers():
    s = [0.1, 0.2, 0.7]
    e = np.exp(s)
    np.testing.assert_allclose(kl_weights(s, "exp"), e / e.sum())
    np.testing.assert_allclose(kl_weights(s, "linear"), [0.1, 0.2, 0.7])
    np.testing.assert_allclose(kl_weights(s, "dirac"), [0.0, 0.0, 1.0])
    np.testing.assert_allclose(kl_weights(s, "none"), [1 / 3] * 3)
    # dirac keeps every weight >= threshold and renormalises
    np.testing.assert_allclose(kl_weights([0.5, 0.5, 0.0], "dirac"), [0.5, 0.5, 0.0])
    # nobody reaches the threshold: the largest weight(s) are kept
    np.testing.assert_allclose(kl_weights([0.2, 0.3, 0.3, 0.2], "dirac"), [0, 0.5, 0.5, 0])
    # all scores zero (perfectly iid devices): linear falls back to uniform
    np.testing.assert_allclose(kl_weights([0.0, 0.0], "linear"), [0.5, 0.5])
    assert kl_weights([], "exp").size == 0
    with pytest.raises(ValueError, match="unknown weighting"):
        kl_weights(s, "softmax")
    with pytest.raises(ValueError, match="finite"):
        kl_weights([0.1, math.nan], "exp")


def test_combine_with_loads_exact():
    np.testing.assert_allclose(combine_weights([0.1, 0.2, 0.7], [100, 50, 100]),
                               np.array([10, 10, 70]) / 90)
    np.testing.assert_allclose(combine_weights([0.5, 0.5], [1500, 375]), [0.8, 0.2])
    with pytest.raises(ValueError):
        combine_weights([1.0], [1, 2])
    with pytest.raises(ValueError, match="zero"):
        combine_weights([1.0, 0.0], [0, 5])


def test_seen_data_kl_and_coverage():
    seen = SeenData([[4, 0], [0, 2], [0, 2]])
    assert seen.kl_seen is None and seen.coverage == 0.0
    seen.add([0])
    # seen = [4, 0] vs global [4, 4]: KL(seen || global) = ln 2
    assert seen.kl_seen == pytest.approx(math.log(2))
    assert seen.coverage == pytest.approx(0.5)
    seen.add([1, 2])
    assert seen.kl_seen == pytest.approx(0.0)
    assert seen.coverage == 1.0 and seen.devices_seen == 3
    seen.add([0])  # seen twice: [8, 4] vs [4, 4]
    assert seen.kl_seen == pytest.approx(kl_divergence([8, 4], [1, 1]))
    other = SeenData([[4, 0], [0, 2], [0, 2]])
    other.load_state_dict(seen.state_dict())
    assert other.kl_seen == seen.kl_seen
