"""Device metadata: what every node reports before training, and its validation.

A node answers the ``query.metadata`` message with one ConfigRecord (key
``"metadata"``) holding

``class-counts`` (list of int)
    Samples per class on the device.
``device-key`` (str)
    A name that is stable across server restarts (``partition-3`` in
    simulation, the ``device-id`` node config or the data path on an edge
    device); server-side state such as the balanced sampler's queues is keyed
    by it, since Flower node ids may change when nodes reconnect.
``memory-mb``, ``compute-speed`` (float)
    Capabilities for the load assignment (:mod:`flwr_gan.strategy.load`).

:func:`parse_metadata` turns one reply into a :class:`DeviceInfo` or raises
:class:`MetadataError` with the reason; the strategy excludes (and logs) the
devices whose metadata is invalid instead of failing the run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from flwr_gan.runtime.telemetry import content_nbytes
from flwr_gan.strategy.aggregate import destinations, sender
from flwr_gan.strategy.load import Capabilities

METADATA_KEY = "metadata"
MESSAGE_TYPE = "query.metadata"


class MetadataError(ValueError):
    """A device's metadata is unusable (the device is excluded from training)."""


@dataclass(frozen=True)
class DeviceInfo:
    """One device as the server knows it.

    Attributes
    ----------
    node_id : int
        Flower node id in the current run.
    key : str
        Stable device name (``device-key``).
    class_counts : tuple of int
        Samples per class.
    capabilities : Capabilities
        Reported memory and compute.
    """

    node_id: int
    key: str
    class_counts: tuple[int, ...]
    capabilities: Capabilities

    @property
    def num_examples(self) -> int:
        """Total samples on the device."""
        return int(sum(self.class_counts))

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (checkpoints, logs)."""
        return {"node_id": self.node_id, "key": self.key, "class_counts": list(self.class_counts),
                "memory_mb": self.capabilities.memory_mb,
                "compute_speed": self.capabilities.compute_speed}


def parse_metadata(node_id: int, record: Mapping[str, Any], num_classes: int | None) -> DeviceInfo:
    """Validate one node's metadata record and return its :class:`DeviceInfo`.

    Parameters
    ----------
    node_id : int
        The replying node.
    record : mapping
        The reply's ``"metadata"`` ConfigRecord.
    num_classes : int or None
        Expected length of ``class-counts`` (``None``: accept any length > 0).

    Raises
    ------
    MetadataError
        Missing counts, wrong length, negative / non-integer / non-finite
        counts, an empty device, or malformed capabilities.
    """
    if "class-counts" not in record:
        raise MetadataError(f"node {node_id}: metadata has no 'class-counts'")
    raw = record["class-counts"]
    if isinstance(raw, (str, bytes)) or not hasattr(raw, "__iter__"):
        raise MetadataError(f"node {node_id}: 'class-counts' must be a list, got {raw!r}")
    values = list(raw)
    if not values:
        raise MetadataError(f"node {node_id}: 'class-counts' is empty")
    counts: list[int] = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                or float(v) != int(v):
            raise MetadataError(f"node {node_id}: class counts must be integers, got {values}")
        counts.append(int(v))
    if num_classes is not None and len(counts) != num_classes:
        raise MetadataError(
            f"node {node_id}: reported {len(counts)} class counts, the data set has "
            f"{num_classes} classes"
        )
    if any(c < 0 for c in counts):
        raise MetadataError(f"node {node_id}: negative class counts {counts}")
    if sum(counts) == 0:
        raise MetadataError(f"node {node_id}: the device holds no samples")
    caps = []
    for name in ("memory-mb", "compute-speed"):
        value = record.get(name, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value < 0:
            raise MetadataError(f"node {node_id}: {name} must be a number >= 0, got {value!r}")
        caps.append(float(value))
    key = str(record.get("device-key", "")) or f"node-{node_id}"
    return DeviceInfo(node_id, key, tuple(counts), Capabilities(caps[0], caps[1]))


@dataclass
class MetadataRound:
    """What one metadata query returned (see :func:`query_metadata`).

    Attributes
    ----------
    devices : list of DeviceInfo
        The usable devices, in :func:`order_devices` order.
    excluded : dict
        Node id -> why it was left out (error, no reply, invalid metadata).
    bytes_down, bytes_up : int
        Serialized bytes of the queries and of the replies.
    """

    devices: list[DeviceInfo] = field(default_factory=list)
    excluded: dict[int, str] = field(default_factory=dict)
    bytes_down: int = 0
    bytes_up: int = 0


def query_metadata(grid: Grid, nodes: list[int], *, config_key: str, timeout: float | None,
                   num_classes: int | None) -> MetadataRound:
    """Ask ``nodes`` for their metadata (``query.metadata``) and validate every reply.

    A reply is attributed to the node its message was sent to
    (:func:`~flwr_gan.strategy.aggregate.sender`). With ``num_classes=None`` the
    expected number of class counts is the most common length reported.

    Raises
    ------
    MetadataError
        If two nodes report the same device key.
    """
    out = MetadataRound()
    messages = [Message(RecordDict({config_key: ConfigRecord({"server-round": 0})}),
                        message_type=MESSAGE_TYPE, dst_node_id=nid) for nid in nodes]
    out.bytes_down = sum(content_nbytes(m.content) for m in messages)
    replies = list(grid.send_and_receive(messages, timeout=timeout))
    sent_to = destinations(messages)
    raw: dict[int, Any] = {}
    for reply in replies:
        nid = sender(reply, sent_to)
        if reply.has_error():
            out.excluded[nid] = f"metadata query failed: {reply.error.reason}"
            continue
        out.bytes_up += content_nbytes(reply.content)
        record = reply.content.config_records.get(METADATA_KEY)
        if record is None:
            out.excluded[nid] = f"reply has no {METADATA_KEY!r} ConfigRecord"
            continue
        raw[nid] = record
    for nid in set(nodes) - {sender(r, sent_to) for r in replies}:
        out.excluded[nid] = "no metadata reply before the timeout"
    expected = num_classes
    if expected is None:
        lengths = [len(cc) for r in raw.values() if isinstance(cc := r.get("class-counts"), list)]
        expected = max(set(lengths), key=lengths.count) if lengths else None
    devices = []
    for nid, record in raw.items():
        try:
            devices.append(parse_metadata(nid, record, expected))
        except MetadataError as err:
            out.excluded[nid] = str(err)
    out.devices = order_devices(devices)
    return out


def _natural(key: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key)]


def order_devices(devices: list[DeviceInfo]) -> list[DeviceInfo]:
    """Return the devices in a stable order (natural sort of their keys).

    Raises
    ------
    MetadataError
        If two nodes report the same device key.
    """
    seen: dict[str, int] = {}
    for d in devices:
        if d.key in seen:
            raise MetadataError(
                f"nodes {seen[d.key]} and {d.node_id} both report device-key {d.key!r}: give "
                "each SuperNode a distinct --node-config \"device-id=...\""
            )
        seen[d.key] = d.node_id
    return sorted(devices, key=lambda d: _natural(d.key))
