"""Partial synchronisation of FL-GAN / FeGAN (``--sync``, Plato's ``network_to_sync``).

With ``--sync generator`` or ``--sync discriminator`` only that network travels
and is averaged; the other one stays on each device, in ``context.state``
(ArrayRecord :data:`LOCAL_KEY`, ``<network>.<key>`` arrays), across rounds.
See ``docs/partial-sync.md``.

Device side
    :func:`load_local` fills the device's own networks from ``context.state``,
    or on the device's first round from the run's seeded initialisation
    (:func:`initial_models`, the very weights the server starts from), and
    :func:`store_local` writes them back after training.
    :func:`handle_generator_query` answers ``query.fl_generator`` with the
    device's own generator (``--sync discriminator``: the server evaluates those).
Server side
    :func:`trained_nodes` names the node ids a round's record lists and
    :func:`fetch_generators` asks them for their generators.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid
from torch import nn

from flwr_gan.compress.settings import SYNCS
from flwr_gan.core.models import seeded_models
from flwr_gan.runtime.nodestate import array_record, load_module_arrays, module_arrays
from flwr_gan.runtime.records import DISCRIMINATOR, GENERATOR, InvalidUpdateError, load_arrays
from flwr_gan.runtime.telemetry import content_nbytes

log = logging.getLogger(__name__)

#: Train-config key naming the synced network(s): ``both`` (absent), ``generator``, ...
SYNC_KEY = "sync"
#: ``context.state`` ArrayRecord of the networks a device keeps to itself.
LOCAL_KEY = "fl.local"
#: Action and message type of the query for a device's own generator.
GENERATOR_QUERY = "fl_generator"
GENERATOR_TYPE = f"query.{GENERATOR_QUERY}"
#: Key of the ArrayRecord in train messages, replies and generator replies.
ARRAYS_KEY = "arrays"

NETWORKS = (GENERATOR, DISCRIMINATOR)
#: Node id -> device name (e.g. :meth:`flwr_gan.strategy.FLGAN.device_name`).
NameOf = Callable[[int], str]


def check_sync(sync: str) -> str:
    """Return ``sync`` if it names a known mode, else raise :class:`ValueError`."""
    if sync not in SYNCS:
        raise ValueError(f"sync must be one of {list(SYNCS)}, got {sync!r}")
    return sync


def synced_networks(sync: str) -> tuple[str, ...]:
    """Return the networks that travel and are averaged under ``sync``.

    Examples
    --------
    >>> synced_networks("both")
    ('generator', 'discriminator')
    >>> synced_networks("discriminator")
    ('discriminator',)
    """
    return NETWORKS if check_sync(sync) == "both" else (sync,)


def local_networks(sync: str) -> tuple[str, ...]:
    """Return the networks that stay on the devices under ``sync`` (none for ``both``)."""
    synced = synced_networks(sync)
    return tuple(n for n in NETWORKS if n not in synced)


def sync_of(config: Mapping[str, object]) -> str:
    """Return the sync mode a train ConfigRecord names (``both`` when it names none).

    Raises
    ------
    ValueError
        If the record names an unknown mode.
    """
    return check_sync(str(config.get(SYNC_KEY, "both")))


def initial_models(model: str, shape: tuple[int, ...], latent_dim: int | None,
                   seed: int) -> dict[str, nn.Module]:
    """Build the run's initial networks, as the server does (``manual_seed(seed)`` first).

    The caller's torch random state is left as it was.
    """
    gen, disc = seeded_models(model, shape, latent_dim, seed)
    return {GENERATOR: gen, DISCRIMINATOR: disc}


def load_local(context: Context, modules: Mapping[str, nn.Module],
               initial: Callable[[], Mapping[str, nn.Module]]) -> bool:
    """Fill ``modules`` (name -> module) with this device's own networks, in place.

    From ``context.state`` when it holds them; otherwise (the device's first
    round) from ``initial()``, the run's seeded initial networks
    (:func:`initial_models`). Returns whether they came from ``context.state``.

    Raises
    ------
    flwr_gan.runtime.records.InvalidUpdateError
        If the stored networks do not fit the modules (another model).
    """
    stored = context.state.array_records.get(LOCAL_KEY)
    if stored is not None:
        for name, module in modules.items():
            load_module_arrays(module, stored, name, what=f"stored local {name}")
        return True
    start = initial()
    for name, module in modules.items():
        module.load_state_dict(start[name].state_dict())
    return False


def store_local(context: Context, modules: Mapping[str, nn.Module]) -> None:
    """Keep ``modules`` (name -> module) in ``context.state`` for the next round."""
    context.state.array_records[LOCAL_KEY] = module_arrays(modules)


def handle_generator_query(msg: Message, context: Context) -> Message:
    """Answer ``query.fl_generator`` with this device's own generator (``--sync discriminator``).

    Raises
    ------
    KeyError
        If the device keeps no generator of its own (it has not trained yet,
        or the run synchronises the generator).
    """
    stored = context.state.array_records.get(LOCAL_KEY)
    head = f"{GENERATOR}."
    keys = [k for k in stored.keys() if k.startswith(head)] if stored is not None else []
    if not keys:
        raise KeyError("this device keeps no generator of its own (it has not trained in "
                       "this run, or the run does not use --sync discriminator)")
    assert stored is not None
    return Message(RecordDict({ARRAYS_KEY: array_record({k: stored[k] for k in keys})}),
                   reply_to=msg)


# -- server side --------------------------------------------------------------------

def trained_nodes(keys: Iterable[str], node_ids: Iterable[int],
                  name_of: NameOf) -> list[int]:
    """Return the node ids whose device names (``name_of(node_id)``) are in ``keys``.

    A round's record names devices by key; queries need node ids.
    """
    wanted = set(keys)
    return sorted(n for n in node_ids if name_of(n) in wanted)


def fetch_generators(grid: Grid, node_ids: Sequence[int], template: nn.Module, *,
                     name_of: NameOf, server_round: int, timeout: float | None
                     ) -> tuple[dict[str, nn.Module], int, dict[str, str]]:
    """Ask ``node_ids`` for their own generators.

    Parameters
    ----------
    grid : Grid
        The run's grid.
    node_ids : sequence of int
        Nodes to ask (the devices trained in the round being evaluated).
    template : nn.Module
        A generator of the run's model; each answer is loaded into a copy.
    name_of : callable
        Node id -> device name (keys of the returned dict).
    server_round : int
        Round being evaluated (sent as ``server-round``).
    timeout : float or None
        Seconds to wait for the replies.

    Returns
    -------
    generators : dict
        Device name -> generator, for every valid answer.
    nbytes : int
        Serialized bytes of the queries and the answers.
    failed : dict
        Device name -> why it gave no usable generator.
    """
    config = ConfigRecord({"server-round": int(server_round)})
    messages = [Message(RecordDict({"config": config}), message_type=GENERATOR_TYPE,
                        dst_node_id=int(nid)) for nid in node_ids]
    nbytes = sum(content_nbytes(m.content) for m in messages)
    generators: dict[str, nn.Module] = {}
    failed: dict[str, str] = {}
    replies = list(grid.send_and_receive(messages, timeout=timeout)) if messages else []
    for reply in replies:
        name = name_of(int(reply.metadata.src_node_id))
        if reply.has_error():
            failed[name] = f"error: {reply.error.reason}"
            continue
        nbytes += content_nbytes(reply.content)
        gen = copy.deepcopy(template)
        try:
            load_arrays(gen, reply.content.array_records[ARRAYS_KEY], GENERATOR,
                        what=f"{name} generator")
        except (InvalidUpdateError, KeyError) as err:
            failed[name] = str(err)[:300]
            continue
        generators[name] = gen
    answered = {name_of(int(r.metadata.src_node_id)) for r in replies}
    for nid in node_ids:
        if name_of(int(nid)) not in answered:
            failed[name_of(int(nid))] = "no reply before the timeout"
    for name, reason in failed.items():
        log.warning("Round %d: no generator of %s to evaluate: %s", server_round, name, reason)
    return generators, nbytes, failed


__all__ = ["GENERATOR_QUERY", "GENERATOR_TYPE", "LOCAL_KEY", "SYNC_KEY", "check_sync",
           "fetch_generators", "handle_generator_query", "initial_models", "load_local",
           "local_networks", "store_local", "sync_of", "synced_networks", "trained_nodes"]
