"""The relay: what every server-mediated protocol needs on top of Flower's ``Grid``.

Flower clients cannot message each other, so MD-GAN's discriminator swaps and
Gossip GAN's model exchanges go through the ServerApp. :class:`Relay` holds the
pieces those loops share:

* building messages with a TTL (:meth:`Relay.message`), pushing and pulling
  them (:meth:`Relay.push`, :meth:`Relay.pull`), and a blocking
  :meth:`Relay.exchange` that waits for every reply or the timeout: a reply that
  is an error or never arrives comes back as a :class:`Reply` that is not ``ok``
  with the reason, never as an exception;
* the handshake (:meth:`Relay.connect`): wait for the nodes, ask each one for
  its identity, drop those that do not answer, and order the rest by their
  **device key** (the partition id in simulation), never by Flower's node ids,
  which are random per run;
* traffic accounting (:class:`Traffic`): bytes down and up per node, measured
  from the serialized message contents, and relayed payloads counted on both
  legs (uploaded by the sender, downloaded by the receiver).

Pure Flower plumbing; the protocols live in their families (``mdgan``, ``gossip``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from flwr_gan.runtime.telemetry import NodeCost, content_nbytes

log = logging.getLogger(__name__)

IDENTITY_KEY = "identity"
MAX_POLL_INTERVAL_S = 0.02


def short_reason(reason: str, limit: int = 240) -> str:
    """Keep the informative tail of an error (Ray prefixes long tracebacks)."""
    text = " ".join(str(reason).split())
    return text if len(text) <= limit else "..." + text[-limit:]


@dataclass
class Reply:
    """The outcome of one message: a usable reply, an error reply, or nothing.

    Attributes
    ----------
    node : int
        Destination node id.
    message : Message or None
        The reply when it arrived without error.
    reason : str
        Why there is no usable reply (empty when ``ok``).
    bytes_up : int
        Serialized size of the reply's content (0 without a reply).
    """

    node: int
    message: Message | None
    reason: str = ""
    bytes_up: int = 0

    @property
    def ok(self) -> bool:
        """Whether a reply without error arrived."""
        return self.message is not None

    @property
    def content(self) -> RecordDict:
        """The reply's content (raises if there is none)."""
        if self.message is None:
            raise RuntimeError(f"node {self.node} has no reply: {self.reason}")
        return self.message.content


def read_reply(node: int, reply: Message | None, timeout: float) -> Reply:
    """Turn what :meth:`Relay.pull` returned for one message into a :class:`Reply`."""
    if reply is None:
        return Reply(node, None, f"no reply within {timeout:g} s")
    if reply.has_error():
        return Reply(node, None, f"failed: {short_reason(reply.error.reason or '')}")
    return Reply(node, reply, "", content_nbytes(reply.content))


@dataclass
class Traffic:
    """Bytes and compute per node over one interval (a round, an iteration).

    ``relayed_*`` count payloads that only cross the server on their way to
    another node (swapped discriminators, gossiped models): they are part of
    ``bytes_up`` of the sender and ``bytes_down`` of the receiver, and also
    kept apart so a report can say what a peer-to-peer deployment would send.
    """

    started: float = field(default_factory=time.perf_counter)
    down: dict[int, int] = field(default_factory=dict)
    up: dict[int, int] = field(default_factory=dict)
    compute: dict[int, float] = field(default_factory=dict)
    relayed_up: int = 0
    relayed_down: int = 0
    messages: int = 0

    def sent(self, node: int, nbytes: int, *, relayed: int = 0) -> None:
        """Account a message of ``nbytes`` to ``node`` (``relayed`` of them forwarded)."""
        self.down[node] = self.down.get(node, 0) + int(nbytes)
        self.relayed_down += int(relayed)
        self.messages += 1

    def received(self, node: int, nbytes: int, *, compute_s: float = 0.0,
                 relayed: int = 0) -> None:
        """Account a reply of ``nbytes`` from ``node`` (``relayed`` of them to forward)."""
        self.up[node] = self.up.get(node, 0) + int(nbytes)
        self.compute[node] = self.compute.get(node, 0.0) + float(compute_s)
        self.relayed_up += int(relayed)

    @property
    def bytes_down(self) -> int:
        """Bytes the server sent."""
        return sum(self.down.values())

    @property
    def bytes_up(self) -> int:
        """Bytes the server received."""
        return sum(self.up.values())

    def costs(self) -> list[NodeCost]:
        """Per-node costs for the virtual clock (every node that sent or received)."""
        nodes = sorted(set(self.down) | set(self.up) | set(self.compute))
        return [NodeCost(n, self.compute.get(n, 0.0), self.down.get(n, 0), self.up.get(n, 0))
                for n in nodes]


class Relay:
    """Send messages to nodes and collect their replies over a Flower ``Grid``.

    Parameters
    ----------
    grid : Grid
        The running ServerApp's grid.
    timeout : float
        Seconds to wait for a reply before the node counts as failed.
    poll_interval : float
        Seconds between polls while replies keep arriving.
    max_poll_interval : float
        Longest gap between polls: after each poll that found nothing the gap
        doubles, up to this (default: ``max(poll_interval, 0.02)``); a reply
        resets it. Asking an in-memory grid for ten replies costs ~0.3 ms of
        the server's CPU, and Flower's simulation engine hands a node its next
        message only every 0.1 s anyway.
    """

    def __init__(self, grid: Grid, *, timeout: float, poll_interval: float = 0.005,
                 max_poll_interval: float | None = None) -> None:
        if timeout <= 0 or poll_interval <= 0:
            raise ValueError("the relay's timeout and poll interval must be > 0")
        self.grid = grid
        self.timeout = float(timeout)
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = max(self.poll_interval, MAX_POLL_INTERVAL_S
                                     if max_poll_interval is None else float(max_poll_interval))
        self._gap = self.poll_interval
        self._next_poll = 0.0

    def message(self, node: int, message_type: str, content: RecordDict,
                group: str = "") -> Message:
        """Build a message for ``node`` that lives at least as long as the timeout."""
        return Message(content, int(node), message_type, group_id=group,
                       ttl=max(self.timeout, 60.0))

    def push(self, messages: Sequence[Message]) -> list[str]:
        """Push messages; return their ids in order."""
        return [str(m) for m in self.grid.push_messages(messages)] if messages else []

    def pull(self, ids: Sequence[str]) -> list[Message]:
        """Return the replies that have arrived for ``ids`` (possibly none).

        Polls back off: within the current gap after a poll that found
        nothing, this returns nothing without asking the grid (see
        ``max_poll_interval``).
        """
        if not ids:
            return []
        now = time.perf_counter()
        if now < self._next_poll:
            return []
        replies = list(self.grid.pull_messages(ids))
        if replies:
            self._gap, self._next_poll = self.poll_interval, 0.0
        else:
            self._next_poll = now + self._gap
            self._gap = min(2 * self._gap, self.max_poll_interval)
        return replies

    def exchange(self, messages: Sequence[Message]) -> list[Reply]:
        """Push ``messages`` and wait for every reply or the timeout.

        Returns one :class:`Reply` per message, in order.
        """
        ids = self.push(messages)
        waiting = set(ids)
        got: dict[str, Message] = {}
        deadline = time.perf_counter() + self.timeout
        while waiting and time.perf_counter() < deadline:
            for reply in self.pull(sorted(waiting)):
                rid = reply.metadata.reply_to_message_id
                if rid in waiting:
                    got[rid] = reply
                    waiting.discard(rid)
            if waiting:
                now = time.perf_counter()
                time.sleep(max(self.poll_interval, min(self._next_poll, deadline) - now))
        return [read_reply(m.metadata.dst_node_id, got.get(i), self.timeout)
                for m, i in zip(messages, ids, strict=True)]

    def wait_for_nodes(self, want: int, wait_s: float) -> list[int]:
        """Wait up to ``wait_s`` for ``want`` connected nodes; return all ids, sorted.

        Raises
        ------
        RuntimeError
            If fewer than ``want`` nodes connected in time.
        """
        deadline = time.perf_counter() + wait_s
        nodes = sorted(int(n) for n in self.grid.get_node_ids())
        while len(nodes) < want and time.perf_counter() < deadline:
            time.sleep(0.2)
            nodes = sorted(int(n) for n in self.grid.get_node_ids())
        if len(nodes) < want:
            raise RuntimeError(f"only {len(nodes)} of {want} nodes connected within "
                               f"{wait_s:.0f} s")
        return nodes

    def connect(
        self, message_type: str, config: Mapping[str, Any], *, want: int, wait_s: float,
        on_drop: Callable[[int, str], None] | None = None,
    ) -> list[tuple[str, int, Reply]]:
        """Handshake: ask every node who it is; return ``(device key, node, reply)`` sorted.

        Every node gets ``config`` (a ConfigRecord named ``config``) in a
        ``message_type`` message; its reply must carry a ConfigRecord
        ``identity`` with a ``device-key``. Nodes that fail or time out are
        passed to ``on_drop``. When ``want`` > 0 only the first ``want`` device
        keys are kept, so which nodes take part does not depend on node ids.

        Raises
        ------
        RuntimeError
            If too few nodes connected, or none answered.
        """
        nodes = self.wait_for_nodes(max(want, 1), wait_s)
        msgs = [self.message(n, message_type, RecordDict({"config": ConfigRecord(dict(config))}),
                             "0") for n in nodes]
        found: list[tuple[str, int, Reply]] = []
        for reply in self.exchange(msgs):
            if not reply.ok:
                if on_drop is not None:
                    on_drop(reply.node, reply.reason)
                continue
            ident: Any = reply.content.config_records.get(IDENTITY_KEY, ConfigRecord())
            key = str(ident.get("device-key", f"node-{reply.node}"))
            found.append((key, reply.node, reply))
        if not found:
            raise RuntimeError(f"no node answered the {message_type} handshake")
        found.sort(key=lambda t: device_sort_key(t[0]))
        return found[:want] if want > 0 else found


def device_sort_key(key: str) -> tuple[str, int, str]:
    """Order device keys naturally (``partition-2`` before ``partition-10``)."""
    head, _, tail = key.rpartition("-")
    if tail.isdigit():
        return (head, int(tail), "")
    return (key, -1, key)


__all__ = ["IDENTITY_KEY", "Relay", "Reply", "Traffic", "device_sort_key", "read_reply",
           "short_reason"]
