import numpy as np
import pytest
import torch

from flwr_gan.core.models import build_models
from flwr_gan.metrics import classifier_score, feature_statistics, frechet_distance
from flwr_gan.metrics.evaluator import GeneratorEvaluator


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


def _bn_generator():
    torch.manual_seed(1)
    gen, _ = build_models("small", (1, 28, 28))
    # running statistics far from what the layers see: eval and train modes must differ
    for m in gen.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.fill_(3.0)
            m.running_var.fill_(0.01)
    return gen


def test_several_latent_seeds_give_the_mean_and_its_spread():
    torch.manual_seed(0)
    real = torch.rand(300, 1, 28, 28) * 2 - 1
    gen = _bn_generator()
    one = GeneratorEvaluator(real, _MeanPool(), n_fake=200).evaluate(gen)
    three = GeneratorEvaluator(real, _MeanPool(), n_fake=200, seeds=3).evaluate(gen)
    assert one.seeds == 1 and one.fid_seed_std == 0.0 and len(one.fids) == 1
    assert three.fids[0] == pytest.approx(one.fid)  # seed 0 is the same sample set
    assert three.fid == pytest.approx(np.mean(three.fids))
    assert three.fid_seed_std == pytest.approx(np.std(three.fids)) and three.fid_seed_std > 0
    assert three.kid is not None and three.kid_std is not None and three.kid_std > 0
    assert 0 <= three.precision <= 1 and 0 <= three.recall <= 1
    rec = three.record()
    assert {"fid", "fid_seed_std", "kid", "kid_std", "precision", "recall", "eval_s"} <= set(rec)
    assert "class_tv" not in rec  # no classifier, no coverage


def test_eval_modes_use_batch_norm_as_named_and_leave_the_generator_as_it_was():
    torch.manual_seed(0)
    real = torch.rand(300, 1, 28, 28) * 2 - 1
    gen = _bn_generator()
    before = {k: v.clone() for k, v in gen.state_dict().items()}
    fids = {mode: GeneratorEvaluator(real, _MeanPool(), n_fake=200, mode=mode).evaluate(gen).fid
            for mode in ("eval", "train", "recalibrate")}
    after = gen.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # running stats untouched
    assert gen.training
    # the broken running statistics hurt only in eval mode; batch and re-estimated
    # statistics agree closely with each other
    assert fids["eval"] > 2 * fids["train"]
    assert fids["recalibrate"] == pytest.approx(fids["train"], rel=0.5)
    with pytest.raises(ValueError, match="mode must be one of"):
        GeneratorEvaluator(real, _MeanPool(), mode="average")
    with pytest.raises(ValueError, match="seeds must be >= 1"):
        GeneratorEvaluator(real, _MeanPool(), seeds=0)
