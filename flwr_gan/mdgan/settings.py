"""The knobs only MD-GAN has (shared ones live in :mod:`flwr_gan.config`)."""

from __future__ import annotations

from dataclasses import dataclass

from flwr_gan.config import ConfigError, knob
from flwr_gan.mdgan.aggregation import AGGREGATIONS

MODES = ("sync", "pipelined")


@dataclass(frozen=True)
class MDGANSettings:
    """MD-GAN (Algorithm 1 of the paper, and the extensions of its §VII)."""

    iterations: int = knob(1000, "I: global iterations (generator updates)", ge=1)
    kappa: str = knob("1", "generated batches per iteration: an integer >= 1, or 'log' for "
                      "floor(ln N)")
    swap_epochs: float = knob(1.0, "E: local epochs between discriminator swaps (0: never)",
                              ge=0)
    mode: str = knob("sync", "sync (the paper) or pipelined (asynchronous, bounded staleness)",
                     choices=MODES)
    max_staleness: int = knob(2, "pipelined: drop feedback on batches older than this many "
                              "generator versions", ge=0)
    aggregation: str = knob("mean", "feedback aggregation: mean (the paper) or "
                            "byzantine-robust median / trimmed-mean", choices=AGGREGATIONS)
    trim_fraction: float = knob(0.2, "trimmed-mean: fraction cut from each end", ge=0, lt=0.5)
    workers_per_iteration: int = knob(0, "sample this many workers per iteration (0: all)",
                                      ge=0)
    crash_schedule: bool = knob(False, "inject the paper's crashes: one worker fails every "
                                "I/N iterations")
    poll_interval: float = knob(0.005, "seconds between polls for replies", gt=0)

    def validate(self) -> None:
        """Check ``kappa`` (an integer >= 1 or ``log``)."""
        if self.kappa != "log" and not (self.kappa.isdigit() and int(self.kappa) >= 1):
            raise ConfigError(f"setting kappa={self.kappa!r} is invalid: expected an integer "
                              ">= 1 or 'log'")
