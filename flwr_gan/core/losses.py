"""GAN losses: non-saturating BCE and least-squares (LSGAN).

Discriminators in :mod:`flwr_gan.core.models` output raw scores (logits). The loss
decides how they are read: ``bce`` applies a sigmoid through
``binary_cross_entropy_with_logits``; ``lsgan`` regresses them onto 1 (real)
and 0 (fake) with a mean squared error, as in Mao et al. (2017).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, float], torch.Tensor]


def _bce(scores: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(scores, torch.full_like(scores, target))


def _mse(scores: torch.Tensor, target: float) -> torch.Tensor:
    return F.mse_loss(scores, torch.full_like(scores, target))


@dataclass(frozen=True)
class GANLoss:
    """A pair of discriminator / generator objectives built on one criterion.

    Parameters
    ----------
    name : str
        ``"bce"`` or ``"lsgan"``.
    criterion : LossFn
        ``criterion(scores, target)`` returns the mean loss of the scores
        against a constant target.
    """

    name: str
    criterion: LossFn

    def discriminator(self, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
        """Return the discriminator loss (real -> 1, fake -> 0), averaged over the two terms."""
        return 0.5 * (self.criterion(real_scores, 1.0) + self.criterion(fake_scores, 0.0))

    def generator(self, fake_scores: torch.Tensor) -> torch.Tensor:
        """Return the non-saturating generator loss (fake -> 1), a mean over the batch."""
        return self.criterion(fake_scores, 1.0)


LOSSES: Mapping[str, GANLoss] = MappingProxyType(
    {"bce": GANLoss("bce", _bce), "lsgan": GANLoss("lsgan", _mse)}
)


def get_loss(name: str) -> GANLoss:
    """Return the loss called ``name``.

    Raises
    ------
    ValueError
        If ``name`` is not one of :data:`LOSSES`.
    """
    try:
        return LOSSES[name.lower()]
    except KeyError:
        raise ValueError(
            f"Unknown GAN loss {name!r}: choose one of {sorted(LOSSES)}."
        ) from None
