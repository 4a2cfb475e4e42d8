"""Validation and weighted averaging of model updates (pure, no Flower grid).

Every reply is checked against the global arrays that were sent (same keys,
same shapes, finite values) before it is averaged; a reply that fails is
excluded from the round and reported, never averaged in. Averages are
computed in float64 and cast back to each array's original dtype (integer
buffers such as BatchNorm's ``num_batches_tracked`` are rounded), so the
global model keeps its dtypes round after round.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict

from flwr_gan.runtime.records import REJECTED_PREFIX, InvalidUpdateError
from flwr_gan.runtime.telemetry import content_nbytes


class StallError(RuntimeError):
    """The run made no progress for longer than allowed (``--stall-timeout``)."""


def check_update(reference: ArrayRecord, update: ArrayRecord, *, what: str) -> None:
    """Raise :class:`InvalidUpdateError` unless ``update`` fits ``reference``.

    Checks: identical key sets, identical shapes, only finite values.
    """
    missing = sorted(set(reference.keys()) - set(update.keys()))
    extra = sorted(set(update.keys()) - set(reference.keys()))
    if missing or extra:
        raise InvalidUpdateError(
            f"{what}: arrays do not match the global model (missing {missing[:3]}, "
            f"unexpected {extra[:3]})"
        )
    for key, ref in reference.items():
        arr = update[key].numpy()
        if tuple(arr.shape) != tuple(ref.shape):
            raise InvalidUpdateError(
                f"{what}: {key} has shape {tuple(arr.shape)}, expected {tuple(ref.shape)}"
            )
        if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
            raise InvalidUpdateError(f"{what}: {key} contains NaN or infinite values")


def weighted_average(reference: ArrayRecord, updates: Sequence[ArrayRecord],
                     weights: Sequence[float] | np.ndarray) -> ArrayRecord:
    """Return ``sum_k w_k * update_k`` (weights renormalised to sum to 1).

    Parameters
    ----------
    reference : ArrayRecord
        The global arrays (gives key order and dtypes).
    updates : sequence of ArrayRecord
        Validated updates (:func:`check_update`).
    weights : array-like
        Non-negative weights, one per update, not all zero.
    """
    w = np.asarray(weights, dtype=np.float64)
    if len(updates) == 0 or w.shape != (len(updates),):
        raise ValueError(f"need one weight per update, got {w.shape} for {len(updates)}")
    if not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be finite, >= 0 and not all zero: {w.tolist()}")
    w = w / w.sum()
    out: dict[str, Array] = {}
    for key, ref in reference.items():
        acc = np.zeros(tuple(ref.shape), dtype=np.float64)
        for wk, upd in zip(w, updates, strict=True):
            if wk:
                acc += wk * upd[key].numpy().astype(np.float64)
        out[key] = as_reference(acc, ref)
    return ArrayRecord(out)


def as_reference(value: np.ndarray, ref: Array) -> Array:
    """Return an aggregate in ``ref``'s shape and dtype (integers rounded, 0-d kept 0-d)."""
    dtype = ref.numpy().dtype
    value = np.asarray(value).reshape(tuple(ref.shape))
    if dtype.kind in "iub":
        value = np.rint(value)
    return Array(np.array(value, dtype=dtype, order="C"))  # not ascontiguousarray: 0-d


def update_norm(reference: ArrayRecord, update: ArrayRecord) -> float:
    """Return the L2 norm of ``update - reference`` over all floating-point arrays."""
    total = 0.0
    for key, ref in reference.items():
        r = ref.numpy()
        if r.dtype.kind != "f":
            continue
        diff = update[key].numpy().astype(np.float64) - r.astype(np.float64)
        total += float(np.sum(diff * diff))
    return float(np.sqrt(total))


def check_reply(what: str, content: RecordDict, reference: ArrayRecord | None,
                weighted_by_key: str, max_norm: float = 0.0
                ) -> tuple[ArrayRecord, MetricRecord]:
    """Return a train reply's arrays and metrics, or raise :class:`InvalidUpdateError`.

    A reply needs exactly one ArrayRecord and one MetricRecord, a positive
    finite ``weighted_by_key``, arrays that fit ``reference``
    (:func:`check_update`) and, when ``max_norm > 0``, an update whose L2
    distance to ``reference`` is at most ``max_norm``.
    """
    if len(content.array_records) != 1 or len(content.metric_records) != 1:
        raise InvalidUpdateError(
            f"{what}: a reply needs exactly one ArrayRecord and one MetricRecord, got "
            f"{len(content.array_records)} and {len(content.metric_records)}"
        )
    arrays = next(iter(content.array_records.values()))
    metrics = next(iter(content.metric_records.values()))
    weight = metrics.get(weighted_by_key)
    if not isinstance(weight, (int, float)) or not np.isfinite(float(weight)) \
            or float(weight) <= 0:
        raise InvalidUpdateError(
            f"{what}: MetricRecord needs a positive {weighted_by_key!r}, got {weight!r}")
    if reference is not None:
        check_update(reference, arrays, what=what)
        if max_norm > 0:
            norm = update_norm(reference, arrays)
            if norm > max_norm:
                raise InvalidUpdateError(
                    f"{what}: update norm {norm:.4g} exceeds --max-update-norm {max_norm:g}")
    return arrays, metrics


def wire_nbytes(content: RecordDict) -> int:
    """Return the bytes a reply took on the wire.

    That is ``wire-bytes`` when a decoding wrapper
    (:class:`flwr_gan.compress.strategy.AdaComp`) measured them before decoding,
    else the serialized size of the content.
    """
    for metrics in content.metric_records.values():
        value = metrics.get("wire-bytes")
        if isinstance(value, int) and value > 0:
            return value
    return content_nbytes(content)


def num(value: object) -> float:
    """Return a MetricRecord scalar as float (NaN for lists / non-numbers)."""
    return float(value) if isinstance(value, (int, float)) else float("nan")


def destinations(messages: Iterable[Message]) -> dict[str, int]:
    """Return ``{message id: destination node id}`` of messages that were sent."""
    return {m.metadata.message_id: int(m.metadata.dst_node_id) for m in messages
            if m.metadata.message_id}


def sender(reply: Message, sent_to: Mapping[str, int]) -> int:
    """Return the node a reply answers for.

    That is the destination of the message it replies to: when a node is gone,
    the SuperLink itself answers with an error ("Node Unavailable") whose
    source is the SuperLink, not the node.
    """
    return sent_to.get(reply.metadata.reply_to_message_id, int(reply.metadata.src_node_id))


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def short_reason(reason: str, limit: int = 300) -> str:
    """Return the part of an error reason a record should keep.

    Flower's simulation wraps a device's exception in Ray's traceback, with
    process ids and actor ids that differ from run to run; the record keeps
    the exception's own message (after the last ``Message:``), without
    terminal colours, so that ``metrics.jsonl`` repeats.
    """
    text = _ANSI.sub("", reason)
    if "Message: " in text:
        text = text.rsplit("Message: ", 1)[1].rstrip("'>\" \n")
    else:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        text = lines[-1] if lines else ""
    return text[:limit]


@dataclass
class Triage:
    """A round's replies sorted into valid updates, failures and rejections.

    Attributes
    ----------
    ids, replies, arrays, metrics : list
        The valid updates: node id, reply, its ArrayRecord and MetricRecord, in
        the order the nodes were sampled (so float sums repeat bit for bit).
    failed : dict
        Node id -> why it gave no update (an error reply, or none before the timeout).
    rejected : dict
        Node id -> why its update was refused (:func:`check_reply`, or a wrapper
        that rejected what arrived).
    bytes_up : dict
        Node id -> bytes its reply took on the wire (:func:`wire_nbytes`).
    """

    ids: list[int] = field(default_factory=list)
    replies: list[Message] = field(default_factory=list)
    arrays: list[ArrayRecord] = field(default_factory=list)
    metrics: list[MetricRecord] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    rejected: dict[int, str] = field(default_factory=dict)
    bytes_up: dict[int, int] = field(default_factory=dict)


def triage(replies: Iterable[Message], *, intended: Sequence[int],
           sent: Iterable[Message], reference: ArrayRecord | None, weighted_by_key: str,
           max_norm: float = 0.0) -> Triage:
    """Sort a round's replies (see :class:`Triage`); nodes that never answered fail."""
    out = Triage()
    sent_to = destinations(sent)
    # Replies arrive in whatever order the devices finish; keep the sampling order.
    order = {nid: i for i, nid in enumerate(intended)}
    by_node = sorted(((sender(r, sent_to), r) for r in replies),
                     key=lambda pair: (order.get(pair[0], len(order)), pair[0]))
    for nid, reply in by_node:
        if reply.has_error():
            reason = reply.error.reason or ""
            if reason.startswith(REJECTED_PREFIX):  # a wrapper rejected what arrived
                out.rejected[nid] = reason[len(REJECTED_PREFIX):]
            else:
                out.failed[nid] = f"error: {short_reason(reason)}"
            continue
        out.bytes_up[nid] = wire_nbytes(reply.content)
        try:
            arrays, metrics = check_reply(f"node {nid}", reply.content, reference,
                                          weighted_by_key, max_norm)
        except InvalidUpdateError as err:
            out.rejected[nid] = str(err)
            continue
        out.ids.append(nid)
        out.replies.append(reply)
        out.arrays.append(arrays)
        out.metrics.append(metrics)
    replied = {nid for nid, _ in by_node}
    for nid in intended:
        if nid not in replied:
            out.failed[nid] = "no reply before the timeout"
    return out
