"""Gossip GAN (Hardy, Le Merrer, Sericola, "Gossiping GANs", DIDL 2018) over Flower.

Every worker hosts its own generator and discriminator, trains them locally and,
every K iterations, sends them to a random peer that averages them into its own.
Flower clients cannot talk to each other, so the ServerApp relays the models
(and counts them on both legs). Building blocks:

* :mod:`~flwr_gan.gossip.peers` — peer choice (``ddl``, ``ddl_ind``,
  ``isolated``), equal-weight averaging, the slides' byte formulas (pure).
* :mod:`~flwr_gan.gossip.client` — the worker's ClientApp handlers
  (``register_handlers(app)``, a ready ``client_app``).
* :mod:`~flwr_gan.gossip.server` — :class:`GossipServer` and :func:`run_gossip`,
  the relay loop usable from any ServerApp ``main(grid, context)``.
"""

from flwr_gan.gossip.client import (
    GENERATOR_TYPE,
    INFO_TYPE,
    STEP_TYPE,
    client_app,
    gossip_generator,
    gossip_info,
    gossip_step,
    initial_models,
    make_client_app,
    register_handlers,
)
from flwr_gan.gossip.peers import (
    VARIANTS,
    PeerChoice,
    allreduce_bytes_per_worker,
    average_states,
    choose_peers,
    fl_bytes_per_worker,
    p2p_bytes_per_worker,
    relayed_bytes,
)
from flwr_gan.gossip.server import GossipServer, record_nbytes, run_gossip
from flwr_gan.gossip.settings import GossipSettings

__all__ = [
    "GENERATOR_TYPE", "INFO_TYPE", "STEP_TYPE", "VARIANTS", "GossipSettings", "GossipServer",
    "PeerChoice", "allreduce_bytes_per_worker", "average_states", "choose_peers", "client_app",
    "fl_bytes_per_worker", "gossip_generator", "gossip_info", "gossip_step", "initial_models",
    "make_client_app", "p2p_bytes_per_worker", "record_nbytes", "register_handlers",
    "relayed_bytes", "run_gossip",
]
