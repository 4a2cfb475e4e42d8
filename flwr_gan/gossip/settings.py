"""The knobs only Gossip GAN has (shared ones live in :mod:`flwr_gan.config`)."""

from __future__ import annotations

from dataclasses import dataclass

from flwr_gan.config import knob
from flwr_gan.gossip.peers import VARIANTS


@dataclass(frozen=True)
class GossipSettings:
    """Gossip GAN (the Gossiping GANs slides): who exchanges what with whom."""

    variant: str = knob("ddl", "ddl: G and D travel together to one random peer; ddl_ind: to "
                        "independently drawn peers; isolated: no exchange (N standalone "
                        "workers)", choices=VARIANTS)
    eval_workers: int = knob(4, "workers whose generators are scored at each evaluation (a "
                             "fixed random subset; 0: all)", ge=0)
