"""The base of every server-mediated protocol's loop (MD-GAN, Gossip GAN).

:class:`RelayLoop` holds what those loops share besides the :class:`~flwr_gan.runtime.relay.Relay`
itself: the settings and image shape, the evaluation and record callbacks, the
virtual clock's link, the live workers in device-key order and their keys, the
handshake, dropping a worker (recorded with its reason, never an exception), and
handing records on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flwr.app import ConfigRecord, RecordDict
from flwr.serverapp import Grid

from flwr_gan.config import Settings
from flwr_gan.runtime.checkpoint import CheckpointError
from flwr_gan.runtime.relay import Relay, Reply, short_reason
from flwr_gan.runtime.telemetry import LinkModel

log = logging.getLogger(__name__)

NODE_WAIT_S = 120.0  # how long to wait for the workers to connect
RecordFn = Callable[[dict[str, Any]], None]


class RelayLoop:
    """State and plumbing shared by the server loops that relay between workers.

    Parameters
    ----------
    grid : Grid
        The running ServerApp's grid.
    settings : Settings
        The family's settings (``timeout`` and ``num_clients`` are read here).
    image_shape : tuple of int
        ``(C, H, W)`` of the data set.
    evaluate_fn : callable, optional
        The family's evaluation callback (see the subclass).
    eval_every : int
        Evaluation period (0: only at the start and the end).
    record_fn : callable, optional
        Receives every record.
    link : LinkModel, optional
        Link of the virtual clock.
    poll_interval : float
        Seconds between polls for replies.
    """

    #: What a record counts, in event records (``iteration``, ``round``).
    unit = "round"

    def __init__(
        self, grid: Grid, settings: Settings, *, image_shape: tuple[int, int, int] = (1, 28, 28),
        evaluate_fn: Any = None, eval_every: int = 0, record_fn: RecordFn | None = None,
        link: LinkModel | None = None, poll_interval: float = 0.005,
    ) -> None:
        self.grid = grid
        self.cfg = settings
        self.image_shape = tuple(image_shape)
        self.evaluate_fn = evaluate_fn
        self.eval_every = eval_every
        self.record_fn = record_fn
        self.link = link or LinkModel()
        self.relay = Relay(grid, timeout=settings.timeout, poll_interval=poll_interval)
        self.alive: list[int] = []
        self.keys: dict[int, str] = {}
        self.records: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []

    def key(self, node: int) -> str:
        """Return the device key of ``node`` (what records name; stable across runs)."""
        return self.keys.get(node, f"node-{node}")

    def handshake(self, message_type: str, config: dict[str, Any]) -> list[tuple[str, int, Reply]]:
        """Ask every node who it is; keep ``num_clients`` workers in device-key order.

        Nodes that do not answer are recorded as dropped at step 0. Returns
        ``(device key, node, reply)`` for the workers kept.
        """
        def dropped(node: int, reason: str) -> None:
            self.events.append({self.unit: 0, "event": "dropped", "node": f"node-{node}",
                                "reason": short_reason(reason)})
            log.warning("worker %s unavailable at start: %s", node, reason)

        found = self.relay.connect(message_type, config, want=self.cfg.num_clients,
                                   wait_s=NODE_WAIT_S, on_drop=dropped)
        for key, node, _ in found:
            self.keys[node] = key
            self.alive.append(node)
        return found

    def drop(self, node: int, reason: str, step: int) -> dict[str, Any]:
        """Take ``node`` out of the live workers; record and return why."""
        if node in self.alive:
            self.alive.remove(node)
        info = {"node": self.key(node), "reason": short_reason(reason)}
        self.events.append({self.unit: step, "event": "dropped", **info})
        log.info("%s %d: worker %s dropped (%s)", self.unit, step, self.key(node), reason[:120])
        return info

    def forget(self, node: int) -> None:
        """Drop what the loop keeps for ``node``, a worker that left (subclasses extend)."""

    def leave(self, node: int, reason: str, step: int) -> dict[str, Any]:
        """Forget a worker that left and take it out of the live ones; return why."""
        self.forget(node)
        return self.drop(node, reason, step)

    # -- checkpoints ---------------------------------------------------------

    def collect_states(self, message_type: str, step: int) -> dict[str, RecordDict]:
        """Ask every live worker for its learning state; return the replies by device key.

        A worker that does not answer has left the run: it is dropped (an event, as
        in a round) and is not in the result, so a checkpoint is written without it.
        """
        msgs = [self.relay.message(n, message_type, RecordDict({"config": ConfigRecord({})}),
                                   f"state-{step}") for n in self.alive]
        out: dict[str, RecordDict] = {}
        for reply in self.relay.exchange(msgs):
            if reply.ok:
                out[self.key(reply.node)] = reply.content
            else:
                self.leave(reply.node, reply.reason, step)
        return out

    def match_saved(self, saved: list[str]) -> dict[str, int]:
        """Return device key -> node of the connected workers, all of ``saved`` among them.

        Raises
        ------
        CheckpointError
            If a worker of the checkpoint is not connected.
        """
        node_of = {self.key(n): n for n in self.alive}
        missing = sorted(set(saved) - set(node_of))
        if missing:
            raise CheckpointError(f"cannot resume: workers {missing[:5]} of this checkpoint are "
                                  "not connected (same --num-clients and data settings?)")
        return node_of

    def restore_states(self, message_type: str, contents: dict[str, RecordDict],
                       node_of: dict[str, int]) -> None:
        """Hand every worker its saved state (``contents`` by device key).

        Raises
        ------
        CheckpointError
            If a worker cannot restore it.
        """
        msgs = [self.relay.message(node_of[key], message_type, content, "restore")
                for key, content in contents.items()]
        for reply in self.relay.exchange(msgs):
            if not reply.ok:
                raise CheckpointError(f"worker {self.key(reply.node)} could not restore its "
                                      f"state: {reply.reason}")

    def emit(self, record: dict[str, Any]) -> None:
        """Keep a record and hand it to ``record_fn``."""
        self.records.append(record)
        if self.record_fn is not None:
            self.record_fn(record)


__all__ = ["NODE_WAIT_S", "RelayLoop"]
