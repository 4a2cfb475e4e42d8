"""Gossip GAN as a flwr-gan experiment (its entry in :mod:`flwr_gan.algorithms`).

Scores are over the workers' generators: at each evaluation the harness scores
a fixed random subset of ``--eval-workers`` workers (all when 0) and records
their mean FID as ``fid``, with ``fid_best``, ``fid_worst``, ``fid_std`` and the
per-worker values. Every ``--checkpoint-every`` rounds (and at the end) the
whole learning state is written atomically (:mod:`flwr_gan.gossip.state`);
``--resume`` continues from it at the next round.
"""

from __future__ import annotations

import logging
from typing import Any

from flwr.serverapp import Grid
from torch import nn

from flwr_gan.fl.server import link_of
from flwr_gan.gossip.server import GossipServer
from flwr_gan.gossip.state import checkpoint_state, restore
from flwr_gan.runtime.experiment import Experiment

log = logging.getLogger(__name__)


def run_gossip_experiment(grid: Grid, exp: Experiment) -> list[dict[str, Any]]:
    """Run Gossip GAN for ``exp`` on ``grid``; return the records."""
    s = exp.settings

    def evaluate(iteration: int, generators: dict[str, nn.Module]) -> dict[str, Any]:
        return exp.evaluate(iteration // s.local_steps, generators)

    server = GossipServer(grid, s, image_shape=exp.image_shape, link=link_of(s),
                          evaluate_fn=evaluate if exp.evaluating else None,
                          eval_every=s.eval_every)

    def on_record(record: dict[str, Any]) -> None:
        exp.log(record)
        round_ = int(record["round"])
        if round_ > 0 and exp.checkpoint_due(round_):
            exp.save_checkpoint(round_, checkpoint_state(server, round_))

    server.record_fn = on_record
    server.connect()
    exp.resolved |= {"eval_keys": list(server.eval_keys), "generator_bytes": server.g_nbytes,
                     "discriminator_bytes": server.d_nbytes}
    exp.open()
    if exp.checkpoint is not None:
        with exp.restoring():
            restore(server, exp.checkpoint["state"])
        server.start = exp.start
        log.info("resuming Gossip GAN at round %d", exp.start + 1)
    server.run()
    assert exp.run is not None
    exp.run.write_json("summary.json", {"events": server.events,
                                        "eval_keys": list(server.eval_keys),
                                        "local_sizes": server.local_sizes,
                                        "rounds_done": exp.start + len(
                                            [r for r in server.records if r["round"] > 0])})
    return exp.finish(title=f"gossip {s.variant} {s.model.model} N={s.num_clients}")
