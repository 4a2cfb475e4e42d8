"""The knobs only FL-GAN and FeGAN have (shared ones live in :mod:`flwr_gan.config`)."""

from __future__ import annotations

from dataclasses import dataclass

from flwr_gan.config import knob
from flwr_gan.strategy.fegan import SAMPLINGS
from flwr_gan.strategy.weighting import SCHEMES


@dataclass(frozen=True)
class FLSettings:
    """Which devices train each round (FL-GAN and FeGAN)."""

    fraction: float = knob(0.025, "C: fraction of devices per round (ceil(C*N) devices)",
                           gt=0, le=1)
    min_nodes: int = knob(1, "devices per round at least", ge=1)
    collect_metadata: bool = knob(True, "flgan: query class counts too, only to report "
                                  "kl_seen")


@dataclass(frozen=True)
class FeGANSettings:
    """FeGAN's sampling, weighting and load assignment (FeGAN paper §3)."""

    sampling: str = knob("balanced", "device sampling (paper s=1: balanced, s=0: random)",
                         choices=SAMPLINGS)
    weighting: str = knob("exp", "KL weighting scheme (paper w=0: none)", choices=SCHEMES)
    dirac_threshold: float = knob(0.5, "cut-off of the dirac weighting scheme", ge=0)
    load_weighting: bool = knob(True, "multiply weights by the assigned load B_k*E_k")
    min_load_fraction: float = knob(0.5, "weakest devices get at least this fraction of B "
                                    "and E", gt=0, le=1)
    weak_fraction: float = knob(0.0, "emulated heterogeneity: fraction of devices reporting "
                                "half the memory and compute", ge=0, le=1)
