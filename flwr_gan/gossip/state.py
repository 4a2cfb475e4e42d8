"""Gossip GAN's checkpoints: the relay's state and every worker's, keyed by device key.

A Gossip run's learning state is spread out: every worker holds its own G and
D, both Adam states and (with ``--compress adacomp``) the reference it encodes
its uploads against (``query.gossip_state`` fetches them); the server holds the
peer stream's RNG, the models queued for their receivers, its copy of every
peer's AdaComp reference, the live workers, the evaluated subset and the events
and totals so far. :func:`checkpoint_state` gathers all of it by device key (Flower's
node ids are new after a restart); :func:`restore` hands it back to a freshly
connected federation, so the resumed run continues at the next round and writes
the records an uninterrupted run would have written. The workers' own random
streams need no saving: they derive from (seed, device key, round).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from flwr.app import RecordDict

from flwr_gan.gossip.client import RESTORE_TYPE, STATE_TYPE
from flwr_gan.gossip.server import GossipServer
from flwr_gan.runtime.checkpoint import CheckpointError, arrays_to_tensors, tensors_to_arrays


def _tensors(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.array(v, copy=True)) for k, v in arrays.items()}


def server_state(server: GossipServer) -> dict[str, Any]:
    """Return the relay's state, keyed by device key (plain Python and tensors)."""
    key = server.key
    uploads = server.uploads.state(key)
    return {
        "peer_rng": server.rng.bit_generator.state,
        "alive": [key(n) for n in server.alive],
        "local_sizes": dict(server.local_sizes), "eval_keys": list(server.eval_keys),
        "pending": {key(n): [(kind, arrays_to_tensors(record)) for kind, record in queued]
                    for n, queued in server.pending.items()},
        "refs": {k: {kind: _tensors(ref) for kind, ref in kinds.items()}
                 for k, kinds in uploads["refs"].items()},
        "resync": uploads["resync"],
        "events": list(server.events), "totals": [server.wall_s, server.virtual_s],
    }


def worker_states(server: GossipServer, round_: int) -> dict[str, dict[str, Any]]:
    """Fetch every live worker's learning state (``query.gossip_state``).

    A worker that does not answer has left the run: it is dropped (an event, as in a
    round) and the checkpoint is written without it.
    """
    return {key: {name: arrays_to_tensors(record)
                  for name, record in content.array_records.items()}
            for key, content in server.collect_states(STATE_TYPE, round_).items()}


def checkpoint_state(server: GossipServer, round_: int) -> dict[str, Any]:
    """Return the whole learning state after ``round_`` (workers first: one may drop)."""
    workers = worker_states(server, round_)
    return {"server": server_state(server), "workers": workers}


def restore(server: GossipServer, state: dict[str, Any]) -> None:
    """Put a checkpoint's state back into a freshly connected server and its workers.

    Raises
    ------
    CheckpointError
        If the saved state is malformed, or a saved worker is not connected.
    """
    srv, workers = state["server"], state["workers"]
    node_of = server.match_saved(list(srv["alive"]))
    try:
        server.rng.bit_generator.state = srv["peer_rng"]
        server.uploads.load_state({"refs": srv["refs"], "resync": srv["resync"]}, node_of)
        server.pending = {node_of[k]: [(str(kind), tensors_to_arrays(t)) for kind, t in queued]
                          for k, queued in srv["pending"].items() if k in node_of}
        server.alive = [node_of[k] for k in srv["alive"]]
        server.local_sizes = {str(k): int(v) for k, v in srv["local_sizes"].items()}
        server.eval_keys = [str(k) for k in srv["eval_keys"]]
        server.events = list(srv["events"])
        server.wall_s, server.virtual_s = (float(v) for v in srv["totals"])
        contents = {key: RecordDict({name: tensors_to_arrays(tensors)
                                     for name, tensors in workers[key].items()})
                    for key in srv["alive"]}
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"bad Gossip GAN state ({type(err).__name__}: "
                              f"{err})") from err
    server.restore_states(RESTORE_TYPE, contents, node_of)


__all__ = ["checkpoint_state", "restore", "server_state", "worker_states"]
