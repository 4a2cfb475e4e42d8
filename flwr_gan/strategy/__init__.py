"""FL-GAN and FeGAN as Flower Message-API strategies, and their pure building blocks.

>>> from flwr_gan.strategy import FLGAN, FeGAN
>>> strategy = FeGAN(fraction_train=0.025, min_available_nodes=176)
>>> # inside a ServerApp main: strategy.start(grid=grid, initial_arrays=arrays, num_rounds=R)
"""

from flwr_gan.strategy.accounting import SeenData
from flwr_gan.strategy.aggregate import check_update, weighted_average
from flwr_gan.strategy.fegan import SAMPLINGS, FeGAN
from flwr_gan.strategy.flgan import FLGAN
from flwr_gan.strategy.load import Capabilities, Load, assign_loads
from flwr_gan.strategy.metadata import DeviceInfo, MetadataError, parse_metadata
from flwr_gan.strategy.sampling import BalancedSampler, random_sample, round_size
from flwr_gan.strategy.weighting import (
    SCHEMES,
    combine_weights,
    kl_divergence,
    kl_scores,
    kl_weights,
)

__all__ = [
    "FLGAN",
    "SAMPLINGS",
    "SCHEMES",
    "BalancedSampler",
    "Capabilities",
    "DeviceInfo",
    "FeGAN",
    "Load",
    "MetadataError",
    "SeenData",
    "assign_loads",
    "check_update",
    "combine_weights",
    "kl_divergence",
    "kl_scores",
    "kl_weights",
    "parse_metadata",
    "random_sample",
    "round_size",
    "weighted_average",
]
