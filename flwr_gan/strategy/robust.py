"""Robust aggregation for FL-GAN / FeGAN, delegated to Flower's own strategies.

``--aggregator`` picks how the round's valid updates become the new global
model:

==============  ================================================  =====================
method          Flower strategy whose ``aggregate_train`` runs    valid replies needed
==============  ================================================  =====================
fedavg          none: FL-GAN's examples / FeGAN's KL x load       1
                weighted average (:mod:`~flwr_gan.strategy.aggregate`)
median          :class:`flwr.serverapp.strategy.FedMedian`        1
trimmed-mean    :class:`~flwr.serverapp.strategy.FedTrimmedAvg`   1
                (``--trim-beta``)
krum            :class:`~flwr.serverapp.strategy.Krum`            2f + 3
                (``--num-malicious`` f)
multikrum       :class:`~flwr.serverapp.strategy.MultiKrum`       2f + 3
                (f, ``--krum-select`` m)
bulyan          :class:`~flwr.serverapp.strategy.Bulyan` (f)      4f + 3
==============  ================================================  =====================

Nothing is re-implemented: the replies that passed validation are handed to a
Flower strategy instance's ``aggregate_train`` and its arrays are taken as the
new model, cast back to the global model's dtypes (integer buffers such as
BatchNorm's ``num_batches_tracked`` rounded), because Flower's median and
trimmed mean return floats. Those aggregators ignore FeGAN's KL x load weights
(Multi-Krum and Bulyan average what they select by ``num-examples``): robust
aggregation trades FeGAN's weighting for resistance to hostile devices, and the
server logs that once. A round with fewer valid replies than the method needs
keeps the global model and says why in the record's ``skipped``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from flwr.app import ArrayRecord, Message
from flwr.serverapp.strategy import (
    Bulyan,
    FedAvg,
    FedMedian,
    FedTrimmedAvg,
    Krum,
    MultiKrum,
)

from flwr_gan.strategy.aggregate import as_reference

log = logging.getLogger(__name__)

#: The ``--aggregator`` choices.
METHODS = ("fedavg", "median", "trimmed-mean", "krum", "multikrum", "bulyan")


@dataclass(frozen=True)
class RobustAggregation:
    """How the valid updates of a round are combined.

    Parameters
    ----------
    method : str
        One of :data:`METHODS`.
    trim_beta : float
        ``trimmed-mean``: fraction cut from each end, in [0, 0.5).
    num_malicious : int
        ``krum`` / ``multikrum`` / ``bulyan``: devices assumed hostile (f).
    num_selected : int
        ``multikrum``: updates averaged after selection (m; 0 = n - f).
    """

    method: str = "fedavg"
    trim_beta: float = 0.2
    num_malicious: int = 0
    num_selected: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"aggregation {self.method!r} is unknown: choose one of "
                             f"{', '.join(METHODS)}")
        if not 0.0 <= self.trim_beta < 0.5:
            raise ValueError(f"trim_beta must be in [0, 0.5), got {self.trim_beta}")
        if self.num_malicious < 0 or self.num_selected < 0:
            raise ValueError("num_malicious and num_selected must be >= 0")

    @property
    def robust(self) -> bool:
        """Whether a Flower aggregator replaces the weighted average."""
        return self.method != "fedavg"

    def replies_needed(self) -> int:
        """Return the fewest valid replies the method can aggregate."""
        f = self.num_malicious
        if self.method in ("krum", "multikrum"):
            return max(2 * f + 3, self.num_selected)
        if self.method == "bulyan":
            return 4 * f + 3
        return 1

    def flower_strategy(self, n: int) -> FedAvg:
        """Return the Flower strategy that aggregates ``n`` valid replies."""
        f = self.num_malicious
        if self.method == "median":
            return FedMedian()
        if self.method == "trimmed-mean":
            return FedTrimmedAvg(beta=self.trim_beta)
        if self.method == "krum":
            return Krum(num_malicious_nodes=f)
        if self.method == "multikrum":
            return MultiKrum(num_malicious_nodes=f, num_nodes_to_select=self.num_selected or n - f)
        if self.method == "bulyan":
            return Bulyan(num_malicious_nodes=f)
        raise ValueError(f"{self.method} is not a Flower aggregator")


def aggregate_with_flower(config: RobustAggregation, reference: ArrayRecord,
                          replies: Sequence[Message], server_round: int) -> ArrayRecord:
    """Return the aggregate of validated ``replies`` by ``config``'s Flower strategy.

    Parameters
    ----------
    config : RobustAggregation
        A robust method (not ``fedavg``).
    reference : ArrayRecord
        The global model that was sent (key order and dtypes of the result).
    replies : sequence of Message
        Replies that passed validation, at least ``config.replies_needed()``;
        their ArrayRecords are consumed (Flower's median pops them).
    server_round : int
        The round (Flower's strategies log it).

    Raises
    ------
    ValueError
        With fewer replies than the method needs, or if Flower returned nothing.
    """
    if len(replies) < config.replies_needed():
        raise ValueError(f"{config.method} needs {config.replies_needed()} valid replies, "
                         f"got {len(replies)}")
    arrays, _ = config.flower_strategy(len(replies)).aggregate_train(server_round, replies)
    if arrays is None:
        raise ValueError(f"Flower's {config.method} aggregation returned no model")
    # Flower's median and trimmed mean return floats: back to the model's dtypes and shapes
    return ArrayRecord({key: as_reference(arrays[key].numpy(), ref)
                        for key, ref in reference.items()})


__all__ = ["METHODS", "RobustAggregation", "aggregate_with_flower"]
