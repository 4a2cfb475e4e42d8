"""The knobs only FL-GAN and FeGAN have (shared ones live in :mod:`flwr_gan.config`)."""

from __future__ import annotations

from dataclasses import dataclass

from flwr_gan.config import knob
from flwr_gan.fl.bn import BN_MODES
from flwr_gan.fl.failures import FAIL_MODES, parse_attacks
from flwr_gan.fl.optstate import OPT_MODES
from flwr_gan.strategy.fegan import SAMPLINGS
from flwr_gan.strategy.robust import METHODS, RobustAggregation
from flwr_gan.strategy.weighting import SCHEMES


@dataclass(frozen=True)
class FLSettings:
    """Which devices train each round (FL-GAN and FeGAN)."""

    fraction: float = knob(0.025, "C: fraction of devices per round (ceil(C*N) devices)",
                           gt=0, le=1)
    min_nodes: int = knob(1, "devices per round at least", ge=1)
    collect_metadata: bool = knob(True, "flgan: query class counts too, only to report "
                                  "kl_seen")
    bn_buffers: str = knob("averaged", "BatchNorm running statistics: averaged with the "
                           "weights, or local (each device keeps its own, as the FeGAN "
                           "reference; needs --eval-mode recalibrate or train)",
                           choices=BN_MODES)
    optimizer_state: str = knob("fresh", "Adam state on a device between its rounds: fresh "
                                "(FedAvg: a new Adam each round) or local (each device keeps "
                                "its own moments and step counts)", choices=OPT_MODES)


@dataclass(frozen=True)
class FeGANSettings:
    """FeGAN's sampling, weighting and load assignment (FeGAN paper §3)."""

    sampling: str = knob("balanced", "device sampling (paper s=1: balanced, s=0: random)",
                         choices=SAMPLINGS)
    weighting: str = knob("exp", "KL weighting scheme (paper w=0: none)", choices=SCHEMES)
    dirac_threshold: float = knob(0.5, "cut-off of the dirac weighting scheme", ge=0)
    load_weighting: bool = knob(True, "multiply weights by the load each device trained on, "
                                "min(B_k, n_k)*E_k")
    min_load_fraction: float = knob(0.5, "weakest devices get at least this fraction of B "
                                    "and E", gt=0, le=1)
    weak_fraction: float = knob(0.0, "emulated heterogeneity: fraction of devices reporting "
                                "half the memory and compute", ge=0, le=1)


@dataclass(frozen=True)
class RobustSettings:
    """Validation and aggregation of the updates (docs/robustness.md)."""

    aggregator: str = knob("fedavg", "fedavg (weighted average) or one of Flower's robust "
                            "aggregators, which ignore per-device weights", choices=METHODS)
    trim_beta: float = knob(0.2, "trimmed-mean: fraction cut from each end", ge=0, lt=0.5)
    num_malicious: int = knob(0, "krum / multikrum / bulyan: hostile devices assumed (f)",
                              ge=0)
    krum_select: int = knob(0, "multikrum: updates averaged after selection (0: n - f)", ge=0)
    min_replies: int = knob(1, "valid updates a round needs, else the model is kept", ge=1)
    max_update_norm: float = knob(0.0, "reject an update farther than this (L2) from the "
                                  "global model (0: off)", ge=0)
    stall_timeout: float = knob(600.0, "seconds to wait for --num-clients devices to connect "
                                "before stopping with an error (0: forever)", ge=0)

    def method(self) -> RobustAggregation:
        """Return the aggregation these settings describe."""
        return RobustAggregation(self.aggregator, self.trim_beta, self.num_malicious,
                                 self.krum_select)


@dataclass(frozen=True)
class FailureSettings:
    """Failure and attack injection for tests and experiments (docs/robustness.md)."""

    fail_prob: float = knob(0.0, "probability that a sampled device fails its round "
                            "(decided by seed, round and device key)", ge=0, le=1)
    fail_mode: str = knob("error", "how an injected failure shows: error (the device "
                          "raises) or timeout (it answers after --timeout)",
                          choices=FAIL_MODES)
    attack: str = knob("", "hostile devices, e.g. 'partition-0=nan,partition-1=shape,"
                       "partition-2=scale': they send NaN, wrong shapes or x1000 updates")

    def validate(self) -> None:
        """Check ``attack`` (one line naming the bad entry)."""
        parse_attacks(self.attack)
