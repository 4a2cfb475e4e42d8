"""Feedback validation and the robust aggregation options (no Flower)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flwr_gan.core.models import build_models
from flwr_gan.core.training import OptimizerConfig, make_optimizer
from flwr_gan.mdgan.aggregation import (
    Feedback,
    InvalidFeedbackError,
    check_feedback,
    generator_update,
)


def test_check_feedback_rejects_bad_input_with_reasons() -> None:
    good = np.zeros((4, 1, 28, 28), np.float32)
    check_feedback(good, (4, 1, 28, 28), worker="w")
    with pytest.raises(InvalidFeedbackError, match="shape"):
        check_feedback(good[:3], (4, 1, 28, 28), worker="w")
    bad = good.copy()
    bad[1, 0, 3, 3] = np.inf
    bad[2, 0, 0, 0] = np.nan
    with pytest.raises(InvalidFeedbackError, match="2 NaN or infinite"):
        check_feedback(bad, (4, 1, 28, 28), worker="w")
    with pytest.raises(InvalidFeedbackError, match="dtype"):
        check_feedback(good.astype(np.int32), (4, 1, 28, 28), worker="w")


def _grads(method: str, feedbacks: list[Feedback], z: torch.Tensor, b: int,
           trim: float = 0.2) -> list[torch.Tensor]:
    torch.manual_seed(0)
    gen, _ = build_models("mlp", (1, 28, 28), latent_dim=8)
    opt = make_optimizer(gen, 1e-4, OptimizerConfig())
    generator_update(gen, opt, [z], b, feedbacks, method=method, trim_fraction=trim)
    return [p.grad.clone() for p in gen.parameters() if p.grad is not None]


def _flat(grads: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([g.flatten() for g in grads])


def test_robust_rules_agree_with_mean_when_they_should() -> None:
    b = 4
    z = torch.randn(2 * b, 8, generator=torch.Generator().manual_seed(1))
    fb = [Feedback(i, 0, i % 2, torch.randn(b, 1, 28, 28) * 1e-3) for i in range(5)]
    mean = _flat(_grads("mean", fb, z, b))
    assert torch.allclose(_flat(_grads("trimmed-mean", fb, z, b, trim=0.0)), mean, atol=1e-8)
    one = fb[:1]
    assert torch.allclose(_flat(_grads("median", one, z, b)), _flat(_grads("mean", one, z, b)),
                          atol=1e-8)


def test_median_and_trimmed_mean_resist_a_lying_worker() -> None:
    b = 4
    z = torch.randn(b, 8, generator=torch.Generator().manual_seed(2))
    base = torch.randn(b, 1, 28, 28, generator=torch.Generator().manual_seed(3)) * 1e-3
    honest = [Feedback(i, 0, 0, base * (1 + 0.01 * i)) for i in range(4)]
    liar = Feedback(99, 0, 0, -base * 1e4)  # a byzantine discriminator
    clean = _flat(_grads("mean", honest, z, b))
    attacked_mean = _flat(_grads("mean", honest + [liar], z, b))
    assert torch.norm(attacked_mean - clean) > 100 * torch.norm(clean)
    for method in ("median", "trimmed-mean"):
        robust = _flat(_grads(method, honest + [liar], z, b))
        assert torch.norm(robust - clean) < 0.1 * torch.norm(clean), method


def test_generator_update_rejects_nonsense() -> None:
    gen, _ = build_models("small", (1, 28, 28))
    opt = make_optimizer(gen, 1e-4, OptimizerConfig())
    z = torch.randn(4, 32)
    with pytest.raises(ValueError, match="no feedback"):
        generator_update(gen, opt, [z], 4, [])
    fb = [Feedback(1, 0, 0, torch.zeros(4, 1, 28, 28))]
    with pytest.raises(ValueError, match="unknown aggregation"):
        generator_update(gen, opt, [z], 4, fb, method="max")
