"""MD-GAN as a flwr-gan experiment: run directory, evaluation, checkpoints and resume.

:func:`run_mdgan_experiment` is MD-GAN's entry in :mod:`flwr_gan.algorithms`.
Every ``--checkpoint-every`` iterations (and at the end) it writes the whole
learning state atomically: the generator and its Adam state, the server's RNG
streams (numpy for swaps, crashes and sampling; torch for latent draws), the
swap period, the crash plan, the live workers and their data sizes, the
discriminators waiting to be relayed, the totals so far, and every worker's
discriminator, Adam state and step counter, fetched with ``query.mdgan_state``
(that evaluation-side traffic is not counted in ``bytes_up``/``bytes_down``).
Everything is keyed by device key: on ``--resume`` the new Flower nodes (with
new random ids) are matched to their saved state by device key, each worker
gets its discriminator back with ``train.mdgan_restore``, and training continues
at the next iteration.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from flwr.app import ConfigRecord, RecordDict
from flwr.serverapp import Grid

from flwr_gan.fl.server import link_of
from flwr_gan.mdgan.server import MDGANServer
from flwr_gan.mdgan.worker_state import RESTORE_TYPE, STATE_TYPE
from flwr_gan.runtime.checkpoint import CheckpointError, arrays_to_tensors, tensors_to_arrays
from flwr_gan.runtime.experiment import Experiment

log = logging.getLogger(__name__)


def server_state(server: MDGANServer) -> dict[str, Any]:
    """Return the server's learning state, keyed by device key (plain Python and tensors)."""
    key = server.key
    opt = server.trainer.opt_g
    assert opt is not None
    return {
        "generator": {k: v.detach().clone() for k, v in server.generator.state_dict().items()},
        "opt_g": opt.state_dict(),
        "numpy_rng": server.rng.bit_generator.state,
        "latent_rng": server.trainer._rng.get_state(),
        "alive": [key(n) for n in server.alive],
        "local_sizes": {key(n): v for n, v in server.local_sizes.items()},
        "period": server.period, "crash_plan": list(server.crash_plan),
        "pending_disc": {key(n): arrays_to_tensors(a) for n, a in server.pending_disc.items()},
        "events": server.events, "totals": [server.wall_s, server.virtual_s, server.compute_s],
    }


def worker_states(server: MDGANServer, iteration: int) -> dict[str, dict[str, Any]]:
    """Fetch every live worker's discriminator, Adam state and counters.

    A worker that does not answer has left the run: it is dropped (an event, as in an
    iteration) and the checkpoint is written without it.
    """
    return {key: {name: arrays_to_tensors(c.array_records[name]) for name in c.array_records}
            | {"meta": dict(c.config_records["meta"])}
            for key, c in server.collect_states(STATE_TYPE, iteration).items()}


def restore(server: MDGANServer, state: dict[str, Any]) -> None:
    """Put a checkpoint's state back into a freshly connected server and its workers.

    Raises
    ------
    CheckpointError
        If the saved state is malformed, or a saved worker is not connected.
    """
    srv, workers = state["server"], state["workers"]
    node_of = server.match_saved(list(srv["alive"]))
    try:
        server.generator.load_state_dict(srv["generator"])
        assert server.trainer.opt_g is not None
        server.trainer.opt_g.load_state_dict(srv["opt_g"])
        server.rng.bit_generator.state = srv["numpy_rng"]
        server.trainer._rng.set_state(srv["latent_rng"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"bad MD-GAN server state ({err})") from err
    server.alive = [node_of[k] for k in srv["alive"]]
    server.local_sizes = {node_of[k]: int(v) for k, v in srv["local_sizes"].items()
                          if k in node_of}
    server.period, server.crash_plan = int(srv["period"]), [int(i) for i in srv["crash_plan"]]
    server.pending_disc = {node_of[k]: tensors_to_arrays(t)
                           for k, t in srv["pending_disc"].items() if k in node_of}
    server.events = list(srv["events"])
    server.wall_s, server.virtual_s, server.compute_s = (float(v) for v in srv["totals"])
    contents = {}
    for key in srv["alive"]:
        content = RecordDict({"meta": ConfigRecord(dict(workers[key]["meta"]))})
        for name, tensors in workers[key].items():
            if name != "meta":
                content.array_records[name] = tensors_to_arrays(tensors)
        contents[key] = content
    server.restore_states(RESTORE_TYPE, contents, node_of)


def run_mdgan_experiment(grid: Grid, exp: Experiment) -> list[dict[str, Any]]:
    """Run MD-GAN for ``exp`` on ``grid``; return the records."""
    s = exp.settings

    def evaluate(iteration: int, generator: torch.nn.Module) -> dict[str, Any]:
        return exp.evaluate(iteration, {"generator": generator})

    server = MDGANServer(grid, s, image_shape=exp.image_shape, link=link_of(s),
                         evaluate_fn=evaluate if exp.evaluating else None,
                         eval_every=s.eval_every)

    def on_record(record: dict[str, Any]) -> None:
        exp.log(record)
        it = int(record["round"])
        if it > 0 and exp.checkpoint_due(it):
            workers = worker_states(server, it)  # first: a worker may drop
            exp.save_checkpoint(it, {"server": server_state(server), "workers": workers})

    server.record_fn = on_record
    server.connect()
    exp.resolved |= {"swap_period": server.period,
                     "local_sizes": {server.key(n): v for n, v in server.local_sizes.items()}}
    exp.open()
    if exp.checkpoint is not None:
        with exp.restoring():
            restore(server, exp.checkpoint["state"])
        server.start = exp.start
        log.info("resuming MD-GAN at iteration %d", exp.start)
    server.run()
    assert exp.run is not None
    done = [r for r in server.records if r["round"] > 0]
    exp.run.write_json("summary.json", {
        "events": server.events, "swap_period": server.period,
        "alive_at_end": [server.key(n) for n in server.alive],
        "local_sizes": {server.key(n): v for n, v in server.local_sizes.items()},
        "iterations_done": exp.start + len(done),
        "bytes_up": int(np.sum([r["bytes_up"] for r in done])),
        "bytes_down": int(np.sum([r["bytes_down"] for r in done])),
        "train_wall_s": server.wall_s, "virtual_s": server.virtual_s,
        "compute_s": server.compute_s,
    })
    torch.save({"generator": server.generator.state_dict(), "config": exp.resolved},
               exp.out / "generator.pt")
    return exp.finish(title=f"MD-GAN {s.model.model} N={s.num_clients} kappa={s.kappa}")
