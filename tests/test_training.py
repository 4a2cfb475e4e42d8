import copy

import pytest
import torch

from flwr_gan.core.losses import get_loss
from flwr_gan.core.models import build_models
from flwr_gan.core.training import (
    GANTrainer,
    NonFiniteLossError,
    OptimizerConfig,
    apply_feedback,
    discriminator_feedback,
    generator_step,
    infinite_batches,
    make_optimizer,
)


def _pair(preset="small", seed=0):
    torch.manual_seed(seed)
    return build_models(preset, (1, 28, 28))


@pytest.mark.parametrize("loss_name", ["bce", "lsgan"])
@pytest.mark.parametrize("preset", ["small", "mlp"])
def test_feedback_path_equals_generator_step(preset, loss_name):
    """Back-propagating D's feedback dL/dx through G is exactly a generator step."""
    gen, disc = _pair(preset)
    gen_b = copy.deepcopy(gen)
    cfg = OptimizerConfig()
    loss = get_loss(loss_name)
    z = torch.randn(16, gen.latent_dim)

    ref = generator_step(gen, disc, make_optimizer(gen, 1e-3, cfg), loss, z)

    with torch.no_grad():
        fake = gen_b(z)  # what a server would send (train-mode BN, like generator_step)
    grad, value = discriminator_feedback(disc, loss, fake)
    assert grad.shape == fake.shape
    assert value == pytest.approx(ref, rel=1e-6)
    apply_feedback(gen_b, make_optimizer(gen_b, 1e-3, cfg), z, grad)
    pairs = zip(gen.named_parameters(), gen_b.named_parameters(), strict=True)
    for (name, p_ref), (_, p_fb) in pairs:
        torch.testing.assert_close(p_fb, p_ref, rtol=1e-5, atol=1e-7, msg=name)


def test_feedback_leaves_discriminator_untouched():
    _, disc = _pair()
    before = copy.deepcopy(disc.state_dict())
    grad, _ = discriminator_feedback(disc, get_loss("bce"), torch.randn(4, 1, 28, 28))
    assert all(p.grad is None for p in disc.parameters())
    assert grad.abs().sum() > 0
    for k, v in disc.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_apply_feedback_rejects_wrong_shape():
    gen, _ = _pair()
    opt = make_optimizer(gen, 1e-3, OptimizerConfig())
    with pytest.raises(ValueError, match="feedback shape"):
        apply_feedback(gen, opt, torch.randn(4, gen.latent_dim), torch.randn(3, 1, 28, 28))


def test_discriminator_learns_to_separate():
    """D steps on fixed batches drive its loss well below chance (log 2)."""
    gen, disc = _pair()
    trainer = GANTrainer(gen, disc, loss="bce", optim=OptimizerConfig(lr_d=1e-3), seed=0)
    real = torch.rand(32, 1, 28, 28) * 2 - 1
    fake = trainer.generate(32)
    first = trainer.d_step(real, fake)
    for _ in range(30):
        last = trainer.d_step(real, fake)
    assert first == pytest.approx(0.69, abs=0.1)
    assert last < 0.2 * first


def test_train_counts_steps_examples_and_losses():
    gen, disc = _pair()
    trainer = GANTrainer(gen, disc, d_steps=2, seed=1)
    data = torch.rand(100, 1, 28, 28) * 2 - 1
    stats = trainer.train(infinite_batches(data, 10, seed=0), steps=3)
    assert stats.steps == 3
    assert stats.examples == 3 * 2 * 10
    assert len(stats.d_losses) == 6 and len(stats.g_losses) == 3
    assert stats.compute_s > 0
    assert stats.d_loss == pytest.approx(sum(stats.d_losses) / 6)


def test_training_updates_both_networks():
    gen, disc = _pair()
    g0, d0 = copy.deepcopy(gen.state_dict()), copy.deepcopy(disc.state_dict())
    trainer = GANTrainer(gen, disc, seed=1)
    trainer.train(infinite_batches(torch.rand(64, 1, 28, 28), 16), steps=2)
    assert any(not torch.equal(v, g0[k]) for k, v in gen.state_dict().items())
    assert any(not torch.equal(v, d0[k]) for k, v in disc.state_dict().items())


def test_seeded_trainers_are_reproducible():
    results = []
    for _ in range(2):
        gen, disc = _pair(seed=3)
        trainer = GANTrainer(gen, disc, seed=5)
        stats = trainer.train(infinite_batches(torch.rand(64, 1, 28, 28), 16, seed=2), 3)
        results.append(stats.g_losses)
    assert results[0] == results[1]


def test_nan_loss_raises():
    gen, disc = _pair()
    trainer = GANTrainer(gen, disc, seed=0)
    bad = torch.full((8, 1, 28, 28), float("nan"))
    with pytest.raises(NonFiniteLossError, match="must not be used"):
        trainer.d_step(bad)


def test_partial_trainers():
    gen, disc = _pair()
    d_only = GANTrainer(None, disc)
    with pytest.raises(RuntimeError, match="no generator"):
        d_only.g_step(4)
    d_only.d_step(torch.rand(4, 1, 28, 28), torch.rand(4, 1, 28, 28))
    g_only = GANTrainer(gen, None)
    assert g_only.generate(3).shape == (3, 1, 28, 28)
    with pytest.raises(RuntimeError, match="no discriminator"):
        g_only.feedback(torch.rand(2, 1, 28, 28))


def test_infinite_batches_epochs_cover_data():
    data = torch.arange(10).float().view(10, 1, 1, 1)
    it = infinite_batches(data, 5, seed=0)
    epoch = torch.cat([next(it), next(it)]).flatten().sort().values
    assert torch.equal(epoch, torch.arange(10).float())
    # a data set smaller than the batch yields the whole data set each time
    small = infinite_batches(data[:3], 8)
    assert next(small).shape[0] == 3


@pytest.mark.parametrize("batch_size", [4, 5, 23, 30])
@pytest.mark.parametrize("skip", [0, 1, 5, 6, 17])
def test_skipping_batches_resumes_the_same_stream(batch_size, skip):
    import itertools

    data = torch.arange(23).float().view(23, 1)
    full = list(itertools.islice(infinite_batches(data, batch_size, seed=2), 30))
    rest = list(itertools.islice(infinite_batches(data, batch_size, seed=2, skip=skip),
                                 30 - skip))
    assert all(torch.equal(a, b) for a, b in zip(full[skip:], rest, strict=True))
    with pytest.raises(ValueError, match="skip"):
        next(infinite_batches(data, 4, skip=-1))


@pytest.mark.parametrize(
    "kwargs, match",
    [({"lr_g": 0}, "lr_g"), ({"lr_d": float("nan")}, "lr_d"), ({"beta1": 1.0}, "beta1")],
)
def test_bad_optimizer_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OptimizerConfig(**kwargs)


def test_bad_batches_and_steps():
    with pytest.raises(ValueError, match="empty"):
        next(infinite_batches(torch.empty(0, 1, 2, 2), 4))
    with pytest.raises(ValueError, match="batch_size"):
        next(infinite_batches(torch.rand(3, 1, 2, 2), 0))
    gen, disc = _pair()
    with pytest.raises(ValueError, match="d_steps"):
        GANTrainer(gen, disc, d_steps=0)
