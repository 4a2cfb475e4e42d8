"""Gossip GAN as a flwr-gan experiment (its entry in :mod:`flwr_gan.algorithms`).

Scores are over the workers' generators: at each evaluation the harness scores
a fixed random subset of ``--eval-workers`` workers (all when 0) and records
their mean FID as ``fid``, with ``fid_best``, ``fid_worst``, ``fid_std`` and the
per-worker values. Resume is not offered yet for this family (``--resume`` is
not one of its flags).
"""

from __future__ import annotations

from typing import Any

from flwr.serverapp import Grid
from torch import nn

from flwr_gan.fl.server import link_of
from flwr_gan.gossip.server import GossipServer
from flwr_gan.runtime.experiment import Experiment


def run_gossip_experiment(grid: Grid, exp: Experiment) -> list[dict[str, Any]]:
    """Run Gossip GAN for ``exp`` on ``grid``; return the records."""
    s = exp.settings

    def evaluate(iteration: int, generators: dict[str, nn.Module]) -> dict[str, Any]:
        return exp.evaluate(iteration // s.local_steps, generators)

    server = GossipServer(grid, s, image_shape=exp.image_shape, link=link_of(s),
                          evaluate_fn=evaluate if exp.evaluating else None,
                          eval_every=s.eval_every, record_fn=exp.log)
    server.connect()
    exp.resolved |= {"eval_keys": list(server.eval_keys), "generator_bytes": server.g_nbytes,
                     "discriminator_bytes": server.d_nbytes}
    exp.open()
    server.run()
    assert exp.run is not None
    exp.run.write_json("summary.json", {"events": server.events,
                                        "eval_keys": list(server.eval_keys),
                                        "local_sizes": server.local_sizes})
    return exp.finish(title=f"gossip {s.variant} {s.model.model} N={s.num_clients}")
