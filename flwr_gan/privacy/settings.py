"""The knobs of differential privacy (Flower's DP strategy wrappers and client mods)."""

from __future__ import annotations

from dataclasses import dataclass

from flwr_gan.config import ConfigError, knob

DP_MODES = ("none", "server-fixed", "client-fixed", "server-adaptive", "client-adaptive")


@dataclass(frozen=True)
class DPSettings:
    """Central DP of the averaged update (DP-FedAvg; Augenstein et al., ICLR 2020)."""

    dp: str = knob("none", "differential privacy: Flower's DifferentialPrivacy{Server,Client}"
                   "Side{Fixed,Adaptive}Clipping wrapper (+ client mod)", choices=DP_MODES)
    noise_multiplier: float = knob(1.0, "dp: Gaussian noise std / clipping norm", ge=0)
    clipping_norm: float = knob(1.0, "dp: L2 clipping norm of each device's update (the "
                                "initial norm of the adaptive modes)", gt=0)
    dp_delta: float = knob(1e-5, "dp: delta of the reported (epsilon, delta) budget",
                           gt=0, lt=1)

    def validate(self) -> None:
        """Reject a DP mode whose noise is zero (it would report no guarantee)."""
        if self.dp != "none" and self.noise_multiplier <= 0:
            raise ConfigError(f"--noise-multiplier {self.noise_multiplier:g} is invalid with "
                              f"--dp {self.dp}: expected a number > 0")
