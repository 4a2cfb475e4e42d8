import numpy as np
import pytest
import torch

from flwr_gan.core.models import build_models
from flwr_gan.metrics import classifier_score, feature_statistics, frechet_distance
from flwr_gan.metrics.fid import GeneratorEvaluator


def test_identical_features_give_zero():
    f = np.random.default_rng(0).normal(size=(500, 16))
    assert frechet_distance(f, f) == pytest.approx(0.0, abs=1e-6)


def test_known_gaussian_distance():
    # Same covariance, means differ by a vector of norm 3 -> FID = 9 (+ sampling noise).
    rng = np.random.default_rng(1)
    a = rng.normal(size=(20000, 4))
    b = rng.normal(size=(20000, 4)) + np.array([3.0, 0, 0, 0])
    assert frechet_distance(a, b) == pytest.approx(9.0, rel=0.03)
    # Scale: N(0, I) vs N(0, 4I) in d dims: Tr(I + 4I - 2*2I) = d
    c = rng.normal(size=(20000, 4)) * 2
    assert frechet_distance(a, c) == pytest.approx(4.0, rel=0.05)


def test_symmetric_and_monotone():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(800, 8))
    near = rng.normal(size=(800, 8)) + 0.5
    far = rng.normal(size=(800, 8)) + 2.0
    assert frechet_distance(a, near) == pytest.approx(frechet_distance(near, a), rel=1e-6)
    assert frechet_distance(a, near) < frechet_distance(a, far)


def test_bad_features():
    with pytest.raises(ValueError, match="N >= 2"):
        feature_statistics(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="NaN"):
        feature_statistics(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="dimensions differ"):
        frechet_distance(np.zeros((5, 3)) + np.eye(5, 3), np.zeros((5, 4)) + np.eye(5, 4))


def test_classifier_score_bounds():
    k = 10
    confident_spread = np.eye(k)[np.arange(1000) % k]
    assert classifier_score(confident_spread) == pytest.approx(k, rel=1e-6)
    collapsed = np.tile(np.eye(k)[3], (1000, 1))
    assert classifier_score(collapsed) == pytest.approx(1.0, abs=1e-6)
    uniform = np.full((100, k), 1 / k)
    assert classifier_score(uniform) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError):
        classifier_score(np.zeros((0, k)))


class _MeanPool:
    name = "meanpool"

    def __call__(self, images):
        return torch.nn.functional.avg_pool2d(images, 7).flatten(1).double().numpy()


def test_evaluator_is_deterministic_and_flags_diverged_generators():
    torch.manual_seed(0)
    real = torch.rand(300, 1, 28, 28) * 2 - 1
    ev = GeneratorEvaluator(real, _MeanPool(), n_fake=300)
    gen, _ = build_models("small", (1, 28, 28))
    r1, r2 = ev.evaluate(gen), ev.evaluate(gen)
    assert r1.fid == r2.fid and r1.extractor == "meanpool" and r1.score is None
    assert gen.training  # evaluation restores the mode
    with torch.no_grad():
        for p in gen.parameters():
            p.fill_(float("nan"))
    with pytest.raises(ValueError, match="diverged"):
        ev.evaluate(gen)
