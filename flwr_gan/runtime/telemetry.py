"""Traffic accounting and the virtual clock.

One machine cannot show how a round would scale over many real devices, so
each round is also timed on a *virtual clock*: every node's measured compute
seconds plus the time its own traffic takes on its own link, the slowest node
setting the pace, plus the server's own time::

    virtual_s = max_k(compute_k + 8 * (bytes_down_k + bytes_up_k) / bandwidth_k
                      + 2 * latency_k) + server_s

Bytes are the protobuf-serialized sizes of the message contents Flower sends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from flwr.app import RecordDict
from flwr.common.serde import recorddict_to_proto

DEFAULT_BANDWIDTH_BPS = 2e9  # the FeGAN testbed's 2 Gbit/s links


def content_nbytes(content: RecordDict) -> int:
    """Return the serialized size in bytes of a message's content."""
    return int(recorddict_to_proto(content).ByteSize())


@dataclass(frozen=True)
class LinkModel:
    """A device's network link.

    Attributes
    ----------
    bandwidth_bps : float
        Bits per second, both directions.
    latency_s : float
        One-way latency added once per direction.
    """

    bandwidth_bps: float = DEFAULT_BANDWIDTH_BPS
    latency_s: float = 0.0

    def __post_init__(self) -> None:
        """Validate the link."""
        if not self.bandwidth_bps > 0:
            raise ValueError(f"bandwidth must be > 0 bit/s, got {self.bandwidth_bps}")
        if self.latency_s < 0:
            raise ValueError(f"latency must be >= 0 s, got {self.latency_s}")

    def transfer_s(self, nbytes: int) -> float:
        """Seconds to move ``nbytes`` over this link (no latency)."""
        return 8.0 * nbytes / self.bandwidth_bps


@dataclass(frozen=True)
class NodeCost:
    """What one node did in one round.

    Attributes
    ----------
    node_id : int
        Flower node id.
    compute_s : float
        Seconds of local computation the node reported.
    bytes_down, bytes_up : int
        Bytes it received from / sent to the server.
    """

    node_id: int
    compute_s: float
    bytes_down: int
    bytes_up: int


def virtual_round_seconds(
    costs: Sequence[NodeCost], *, server_s: float = 0.0, link: LinkModel | None = None,
) -> float:
    """Return the round's duration on the virtual clock (formula in the module docstring).

    A round in which no node took part lasts ``server_s``.
    """
    link = link or LinkModel()
    slowest = max(
        (
            c.compute_s + link.transfer_s(c.bytes_down + c.bytes_up) + 2 * link.latency_s
            for c in costs
        ),
        default=0.0,
    )
    return slowest + server_s
