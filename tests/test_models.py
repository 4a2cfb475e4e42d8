import pytest
import torch

from flwr_gan.core.models import PRESETS, build_models, count_parameters, validate_image_shape


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_shapes_and_ranges(preset, shape):
    gen, disc = build_models(preset, shape)
    z = torch.randn(5, gen.latent_dim)
    x = gen(z)
    assert x.shape == (5, *shape)
    assert x.min() >= -1.0 and x.max() <= 1.0
    scores = disc(x)
    assert scores.shape == (5,)
    assert torch.isfinite(scores).all()


def test_mlp_matches_md_gan_paper_generator_size():
    # MD-GAN paper: "The total number of parameters is 716,560 for G" (MNIST MLP).
    gen, disc = build_models("mlp", (1, 28, 28))
    assert count_parameters(gen) == 716_560
    # Paper's D has 11 outputs (ACGAN): 670,219; ours has 1 output, 10 * 513 fewer.
    assert count_parameters(disc) == 670_219 - 10 * 513


def test_latent_override_and_independent_instances():
    g1, _ = build_models("small", (1, 28, 28), latent_dim=7)
    g2, _ = build_models("small", (1, 28, 28), latent_dim=7)
    assert g1.latent_dim == 7
    assert g1(torch.randn(2, 7)).shape == (2, 1, 28, 28)
    # two builds must not share parameters
    pairs = zip(g1.parameters(), g2.parameters(), strict=True)
    assert all(a.data_ptr() != b.data_ptr() for a, b in pairs)


def test_discriminator_is_per_sample():
    # MD-GAN feedback needs scores that do not depend on the rest of the batch.
    for preset in PRESETS:
        _, disc = build_models(preset, (1, 28, 28))
        x = torch.randn(6, 1, 28, 28)
        torch.testing.assert_close(disc(x)[:2], disc(x[:2]))


@pytest.mark.parametrize(
    "shape", [(2, 28, 28), (1, 28, 30), (1, 30, 30), (1, 28), (3, 4, 4)]
)
def test_bad_shapes_rejected(shape):
    with pytest.raises(ValueError, match="shape"):
        validate_image_shape(shape)


def test_bad_preset_and_latent():
    with pytest.raises(ValueError, match="Unknown model preset 'nope'.*small"):
        build_models("nope", (1, 28, 28))
    with pytest.raises(ValueError, match="latent_dim"):
        build_models("small", (1, 28, 28), latent_dim=0)
