import math

import pytest
import torch

from flwr_gan.core.losses import get_loss


def test_bce_values():
    loss = get_loss("bce")
    zeros = torch.zeros(4)
    # sigmoid(0) = 0.5 -> -log(0.5) for every term
    assert loss.discriminator(zeros, zeros).item() == pytest.approx(math.log(2))
    assert loss.generator(zeros).item() == pytest.approx(math.log(2))
    # confident and right -> ~0
    assert loss.discriminator(torch.full((4,), 20.0), torch.full((4,), -20.0)).item() < 1e-6
    assert loss.generator(torch.full((4,), -20.0)).item() == pytest.approx(20.0, rel=1e-4)


def test_lsgan_values():
    loss = get_loss("LSGAN")
    real, fake = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    # 0.5 * (mean((real-1)^2) + mean(fake^2)) = 0.5 * (0.5 + 0.5)
    assert loss.discriminator(real, fake).item() == pytest.approx(0.5)
    assert loss.generator(torch.tensor([1.0, 3.0])).item() == pytest.approx(2.0)


def test_unknown_loss():
    with pytest.raises(ValueError, match="Unknown GAN loss 'wgan'"):
        get_loss("wgan")
