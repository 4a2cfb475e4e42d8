"""FL-GAN: federated averaging of a generator and a discriminator.

MD-GAN paper §III-c / FeGAN's "FL-VANILLA": every selected node trains its
copy of G and D for ``E`` local steps from the global ones; the server
averages both (one ArrayRecord, keys ``generator.*`` / ``discriminator.*``),
weighted by the examples each node processed.

On top of Flower's :class:`~flwr.serverapp.strategy.FedAvg`, this class

* draws the round's nodes with its own seeded generator
  (``max(min_train_nodes, ceil(fraction_train * N))`` nodes, the same count as
  :class:`~flwr_gan.strategy.FeGAN`, so both compare like with like);
* validates every reply and *excludes* malformed ones (wrong keys or shapes,
  NaN / inf values, no ``num-examples``, an update norm over
  ``max_update_norm``) instead of failing the round: the round's record lists
  them under ``rejected`` with the reason, apart from the devices that
  ``failed`` (an error reply, or none before the timeout);
* aggregates the valid updates by its weighted average or, with
  ``aggregation``, by one of Flower's robust strategies
  (:mod:`flwr_gan.strategy.robust`); a round with fewer valid updates than
  ``min_replies`` (or than the robust method needs) keeps the global model and
  records why under ``skipped``;
* never waits for nodes forever when ``wait_timeout`` is set
  (:class:`StallError`);
* records per-round telemetry in :attr:`history` (the nodes that actually
  replied, serialized bytes up/down, compute seconds, wall and virtual-clock
  seconds, ``kl_seen`` and coverage when metadata is known) and returns its
  scalars in the round's MetricRecord;
* optionally asks every node for its class counts first
  (``collect_metadata=True``), only to report ``kl_seen``: FL-GAN's own
  decisions never use it;
* can save and restore its state (:meth:`state_dict` / :meth:`load_state_dict`)
  for checkpoints.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from logging import INFO, WARNING
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.supercore import log

from flwr_gan.runtime.telemetry import LinkModel, NodeCost, content_nbytes, virtual_round_seconds
from flwr_gan.strategy.accounting import SeenData
from flwr_gan.strategy.aggregate import StallError, num, triage, weighted_average
from flwr_gan.strategy.metadata import DeviceInfo, MetadataError, query_metadata
from flwr_gan.strategy.robust import RobustAggregation, aggregate_with_flower
from flwr_gan.strategy.sampling import random_sample, round_size
from flwr_gan.strategy.weighting import kl_divergence


class FLGAN(FedAvg):
    """Federated averaging of a GAN (generator + discriminator), examples-weighted.

    Parameters
    ----------
    fraction_train : float (default: 0.025)
        Fraction ``C`` of the nodes trained each round (FeGAN paper default).
    fraction_evaluate : float (default: 0.0)
        Fraction of nodes for federated evaluation (GANs are evaluated on the
        server, so off by default).
    min_train_nodes : int (default: 1)
        Nodes trained per round at least.
    min_evaluate_nodes : int (default: 0)
        Nodes evaluated per round at least.
    min_available_nodes : int (default: 2)
        Nodes that must be connected before the first round starts.
    weighted_by_key : str (default: "num-examples")
        MetricRecord key whose value weights each update.
    arrayrecord_key : str (default: "arrays")
        Key of the ArrayRecord in messages.
    configrecord_key : str (default: "config")
        Key of the ConfigRecord in messages.
    train_metrics_aggr_fn : callable, optional
        As in FedAvg: aggregates the replies' MetricRecords.
    evaluate_metrics_aggr_fn : callable, optional
        As in FedAvg.
    local_steps : int (default: 30)
        ``E``, sent as ``local-steps`` unless the train config sets it.
    batch_size : int (default: 50)
        ``B``, sent as ``batch-size`` unless the train config sets it.
    collect_metadata : bool (default: False)
        Query every node's class counts before round 1 to report ``kl_seen``
        and coverage (telemetry only).
    num_classes : int, optional
        Expected length of reported class counts (default: the most common
        length among the replies).
    link : LinkModel, optional
        Link of every device on the virtual clock (default 2 Gbit/s).
    metadata_timeout : float (default: 600)
        Seconds to wait for metadata replies.
    seed : int, optional
        Seed of node sampling.
    kl_reference : sequence of int, optional
        Class counts of a reference data set (e.g. the whole training set);
        when given, each round also reports ``kl_seen_reference``, the
        divergence of the data seen from it (``kl_seen`` compares with the
        union of the devices' data, which is all the server knows).
    aggregation : RobustAggregation, optional
        A robust aggregator of Flower's instead of the weighted average.
    min_replies : int (default: 1)
        Valid updates a round needs; with fewer it keeps the global model.
    max_update_norm : float (default: 0, off)
        Reject an update whose L2 distance to the global model exceeds this.
    wait_timeout : float, optional
        Seconds to wait for ``min_available_nodes`` to connect before raising
        :class:`StallError` (default: wait forever, as Flower does).
    """

    # pylint: disable=too-many-arguments,too-many-instance-attributes
    def __init__(
        self,
        fraction_train: float = 0.025,
        fraction_evaluate: float = 0.0,
        min_train_nodes: int = 1,
        min_evaluate_nodes: int = 0,
        min_available_nodes: int = 2,
        weighted_by_key: str = "num-examples",
        arrayrecord_key: str = "arrays",
        configrecord_key: str = "config",
        train_metrics_aggr_fn: Callable[[list[RecordDict], str], MetricRecord] | None = None,
        evaluate_metrics_aggr_fn: Callable[[list[RecordDict], str], MetricRecord] | None = None,
        *,
        local_steps: int = 30,
        batch_size: int = 50,
        collect_metadata: bool = False,
        num_classes: int | None = None,
        link: LinkModel | None = None,
        metadata_timeout: float = 600.0,
        seed: int | None = None,
        kl_reference: Sequence[int] | None = None,
        aggregation: RobustAggregation | None = None,
        min_replies: int = 1,
        max_update_norm: float = 0.0,
        wait_timeout: float | None = None,
    ) -> None:
        if min_replies < 1 or max_update_norm < 0:
            raise ValueError("min_replies must be >= 1 and max_update_norm >= 0")
        if not 0.0 < fraction_train <= 1.0:
            raise ValueError(f"fraction_train must be in (0, 1], got {fraction_train}")
        if local_steps < 1 or batch_size < 1:
            raise ValueError("local_steps and batch_size must be >= 1")
        super().__init__(
            fraction_train=fraction_train, fraction_evaluate=fraction_evaluate,
            min_train_nodes=min_train_nodes, min_evaluate_nodes=min_evaluate_nodes,
            min_available_nodes=min_available_nodes, weighted_by_key=weighted_by_key,
            arrayrecord_key=arrayrecord_key, configrecord_key=configrecord_key,
            train_metrics_aggr_fn=train_metrics_aggr_fn,
            evaluate_metrics_aggr_fn=evaluate_metrics_aggr_fn,
        )
        self.local_steps = int(local_steps)
        self.batch_size = int(batch_size)
        self.collect_metadata = collect_metadata
        self.num_classes = num_classes
        self.link = link or LinkModel()
        self.metadata_timeout = metadata_timeout
        self.seed = seed
        self.kl_reference = None if kl_reference is None else [int(c) for c in kl_reference]
        self.rng = np.random.default_rng(seed)
        self.aggregation = aggregation or RobustAggregation()
        self.min_replies = int(min_replies)
        self.max_update_norm = float(max_update_norm)
        self.wait_timeout = wait_timeout
        if self.aggregation.robust:
            log(INFO, "Aggregation: Flower's %s (per-device weights are not used)",
                self.aggregation.method)
        #: Devices with valid metadata, in stable order (``None`` before the query).
        self.devices: list[DeviceInfo] | None = None
        #: Nodes whose metadata was rejected: node id -> reason.
        self.excluded: dict[int, str] = {}
        self.seen: SeenData | None = None
        #: Rounds completed (survives restarts through :meth:`state_dict`).
        self.rounds_done = 0
        #: One telemetry dict per completed round.
        self.history: list[dict[str, Any]] = []
        self.metadata_telemetry: dict[str, Any] = {}
        self._pending_state: dict[str, Any] | None = None
        self._round: dict[str, Any] = {}

    # ------------------------------------------------------------------ helpers

    @property
    def current_round(self) -> int:
        """The round being run (or the next one): ``rounds_done + 1``."""
        return self.rounds_done + 1

    def device_name(self, node_id: int) -> str:
        """Return the device key of ``node_id`` (``node-<id>`` before any metadata).

        Records name devices by key: Flower's node ids are random per run.
        """
        index = self._index()
        if self.devices and node_id in index:
            return self.devices[index[node_id]].key
        return f"node-{node_id}"

    def named(self, reasons: dict[int, str]) -> dict[str, str]:
        """Return ``{node id: reason}`` keyed, and worded, by device key.

        Records must not hold Flower's node ids (random per run), not even in a
        reason such as ``node 123: ... NaN``.
        """
        out = {}
        for nid, reason in reasons.items():
            key = self.device_name(nid)
            out[key] = reason.replace(f"node {nid}", key)
        return out

    def _index(self) -> dict[int, int]:
        return {d.node_id: i for i, d in enumerate(self.devices or [])}

    def _wait_for_nodes(self, grid: Grid, count: int) -> list[int]:
        started = time.monotonic()
        while len(nodes := sorted(grid.get_node_ids())) < count:
            waited = time.monotonic() - started
            if self.wait_timeout is not None and waited >= self.wait_timeout:
                raise StallError(
                    f"waited {waited:.0f} s for {count} devices to connect, only "
                    f"{len(nodes)} did (raise --stall-timeout, lower --num-clients, or start "
                    "the missing SuperNodes; --resume continues from the last checkpoint)")
            log(INFO, "Waiting for nodes to connect: %d connected (minimum required: %d).",
                len(nodes), count)
            time.sleep(min(1.0, self.wait_timeout or 1.0))
        return nodes

    def summary(self) -> None:
        """Log the strategy's configuration."""
        log(INFO, "\t├──> %s: C=%.4f, E=%d, B=%d, min nodes %d, link %.3g bit/s",
            type(self).__name__, self.fraction_train, self.local_steps, self.batch_size,
            self.min_train_nodes, self.link.bandwidth_bps)
        super().summary()

    # ----------------------------------------------------------------- metadata

    def query_metadata(self, grid: Grid) -> list[DeviceInfo]:
        """Ask every connected node for its class counts and capabilities.

        Invalid metadata (negative counts, wrong length, empty device, errors,
        no reply) excludes the node, logged and kept in :attr:`excluded`.

        Raises
        ------
        MetadataError
            If no node returns usable metadata, or two report the same device key.
        """
        nodes = self._wait_for_nodes(grid, self.min_available_nodes)
        started = time.perf_counter()
        got = query_metadata(grid, nodes, config_key=self.configrecord_key,
                             timeout=self.metadata_timeout, num_classes=self.num_classes)
        self.excluded.update(got.excluded)
        for nid, reason in sorted(self.excluded.items()):
            log(WARNING, "Excluding node %d from training: %s", nid, reason)
        if not got.devices:
            raise MetadataError(
                f"none of the {len(nodes)} nodes returned usable metadata; reasons: "
                f"{sorted(set(self.excluded.values()))[:5]}"
            )
        self.devices = got.devices
        self.seen = SeenData([d.class_counts for d in self.devices])
        self.metadata_telemetry = {
            "nodes": len(nodes), "devices": len(self.devices), "excluded": dict(self.excluded),
            "bytes_down": got.bytes_down, "bytes_up": got.bytes_up,
            "wall_s": time.perf_counter() - started,
        }
        log(INFO, "Metadata: %d devices usable, %d excluded, %d samples in %d classes",
            len(self.devices), len(self.excluded),
            sum(d.num_examples for d in self.devices), len(self.devices[0].class_counts))
        self._on_metadata()
        if self._pending_state is not None:
            self._restore_device_state(self._pending_state)
            self._pending_state = None
        return self.devices

    def _on_metadata(self) -> None:
        """Let subclasses react to new metadata (now in :attr:`devices`)."""

    # ----------------------------------------------------------------- training

    def _select(self, grid: Grid) -> list[int]:
        """Return the node ids of this round (uniform sampling)."""
        if self.devices is not None:
            candidates = [d.node_id for d in self.devices]
        else:
            candidates = self._wait_for_nodes(grid, self.min_available_nodes)
        size = round_size(self.fraction_train, len(candidates), self.min_train_nodes)
        return [candidates[i] for i in random_sample(self.rng, len(candidates), size)]

    def _node_config(self, node_id: int, config: ConfigRecord) -> ConfigRecord:
        """Return the ConfigRecord sent to ``node_id`` (adds E and B when missing)."""
        out = ConfigRecord(dict(config))
        out.setdefault("local-steps", self.local_steps)
        out.setdefault("batch-size", self.batch_size)
        return out

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Select this round's nodes and build one train message for each."""
        started = time.perf_counter()
        if self.devices is None and self._needs_metadata():
            self.query_metadata(grid)
            started = time.perf_counter()  # the metadata round is accounted separately
        elif self.devices is None and self.collect_metadata:
            try:  # FL-GAN only reports kl_seen with it: go on without
                self.query_metadata(grid)
            except MetadataError as err:
                log(WARNING, "No usable metadata (%s): kl_seen will not be reported", err)
                self.collect_metadata = False
            started = time.perf_counter()
        t0 = time.perf_counter()
        node_ids = self._select(grid)
        base = ConfigRecord(dict(config))
        base["server-round"] = self.current_round
        messages = []
        bytes_down: dict[int, int] = {}
        for nid in node_ids:
            content = RecordDict({self.arrayrecord_key: arrays,
                                  self.configrecord_key: self._node_config(nid, base)})
            bytes_down[nid] = content_nbytes(content)
            messages.append(Message(content=content, message_type="train", dst_node_id=nid))
        log(INFO, "configure_train: round %d, sampled %d nodes", self.current_round,
            len(node_ids))
        self._round = {"started": started, "intended": list(node_ids), "bytes_down": bytes_down,
                       "reference": arrays, "server_s": time.perf_counter() - t0,
                       "messages": messages}
        return messages

    def _needs_metadata(self) -> bool:
        return False

    def _weights(self, node_ids: list[int], metrics: list[MetricRecord]) -> np.ndarray:
        """Return the aggregation weights of the valid replies (examples processed)."""
        return np.array([num(m[self.weighted_by_key]) for m in metrics])

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Validate the replies, average the valid ones, record the round's telemetry."""
        t0 = time.perf_counter()
        info = self._round or {"started": t0, "intended": [], "bytes_down": {},
                               "reference": None, "server_s": 0.0}
        reference: ArrayRecord | None = info["reference"]
        got = triage(replies, intended=info["intended"], sent=info.get("messages", ()),
                     reference=reference, weighted_by_key=self.weighted_by_key,
                     max_norm=self.max_update_norm)
        failed, rejected = got.failed, got.rejected
        valid_ids, valid_replies = got.ids, got.replies
        valid_arrays, valid_metrics = got.arrays, got.metrics
        for nid, reason in (failed | rejected).items():
            log(WARNING, "Round %d: update of node %d excluded: %s", self.current_round, nid,
                reason)

        new_arrays: ArrayRecord | None = None
        weights = np.zeros(0)
        needed = max(self.min_replies, self.aggregation.replies_needed())
        skipped = None
        if reference is not None and len(valid_arrays) < needed:
            skipped = (f"{len(valid_arrays)} valid update(s), {needed} needed"
                       + (f" by {self.aggregation.method}" if self.aggregation.robust else "")
                       + ": the global model is kept")
            log(WARNING, "Round %d skipped: %s", self.current_round, skipped)
        elif valid_arrays and reference is not None:
            weights = self._weights(valid_ids, valid_metrics)
            weights = weights / weights.sum()
            if self.aggregation.robust:
                new_arrays = aggregate_with_flower(self.aggregation, reference, valid_replies,
                                                   self.current_round)
            else:
                new_arrays = weighted_average(reference, valid_arrays, weights)
        if self.seen is not None:
            index = self._index()
            self.seen.add(index[n] for n in valid_ids if n in index)
        server_s = info["server_s"] + time.perf_counter() - t0
        record = self._telemetry(info, valid_ids, valid_metrics, weights, failed, got.bytes_up,
                                 server_s)
        record["rejected"] = self.named(rejected)
        if skipped is not None:
            record["skipped"] = skipped
        self.history.append(record)
        self.rounds_done += 1
        self._round = {}
        return new_arrays, self._metric_record(record, valid_metrics)

    def _telemetry(self, info: dict[str, Any], valid_ids: list[int],
                   metrics: list[MetricRecord], weights: np.ndarray, failed: dict[int, str],
                   bytes_up: dict[int, int], server_s: float) -> dict[str, Any]:
        compute = {nid: num(m.get("compute-s", 0.0))
                   for nid, m in zip(valid_ids, metrics, strict=True)}
        costs = [NodeCost(nid, compute.get(nid, 0.0), info["bytes_down"].get(nid, 0),
                          bytes_up.get(nid, 0)) for nid in info["intended"]
                 if nid in bytes_up]
        name = self.device_name
        keys = [name(n) for n in valid_ids]

        def mean(key: str) -> float | None:
            vals = [num(m[key]) for m in metrics if key in m]
            return float(np.mean(vals)) if vals else None

        record: dict[str, Any] = {
            "round": self.current_round,
            "nodes": keys,
            "devices": keys,
            "intended": [name(n) for n in info["intended"]],
            "failed": self.named(failed),
            "weights": [float(w) for w in weights],
            "bytes_down": int(sum(info["bytes_down"].values())),
            "bytes_up": int(sum(bytes_up.values())),
            "compute_s": {name(k): v for k, v in compute.items()},
            "compute_s_max": max(compute.values(), default=0.0),
            "examples": int(sum(num(m.get(self.weighted_by_key, 0)) for m in metrics)),
            "d_loss": mean("d-loss"),
            "g_loss": mean("g-loss"),
            "server_s": server_s,
            "wall_s": time.perf_counter() - info["started"],
            "virtual_s": virtual_round_seconds(costs, server_s=server_s, link=self.link),
        }
        if self.seen is not None:
            record["kl_seen"] = self.seen.kl_seen
            if self.kl_reference is not None and self.seen.seen_counts.sum() > 0 \
                    and len(self.kl_reference) == len(self.seen.seen_counts):
                record["kl_seen_reference"] = kl_divergence(self.seen.seen_counts,
                                                            self.kl_reference)
            record["coverage"] = self.seen.coverage
            record["devices_seen"] = self.seen.devices_seen
        return record

    def _metric_record(self, record: dict[str, Any], metrics: list[MetricRecord]
                       ) -> MetricRecord | None:
        out: dict[str, int | float] = {
            "num-nodes": len(record["nodes"]), "num-failed": len(record["failed"]),
            "num-rejected": len(record.get("rejected", {})),
            "bytes-up": record["bytes_up"], "bytes-down": record["bytes_down"],
            "compute-s-max": record["compute_s_max"], "wall-s": record["wall_s"],
            "virtual-s": record["virtual_s"],
        }
        for key in ("d_loss", "g_loss", "kl_seen", "coverage"):
            if record.get(key) is not None:
                out[key.replace("_", "-")] = float(record[key])
        return MetricRecord(out)  # type: ignore[arg-type]

    # --------------------------------------------------------------- checkpoint

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue after a server restart (plain Python types)."""
        state: dict[str, Any] = {
            "strategy": type(self).__name__,
            "rounds_done": self.rounds_done,
            "rng": self.rng.bit_generator.state,
            "history": self.history,
            "devices": [d.to_dict() for d in self.devices] if self.devices else None,
            "excluded": {str(k): v for k, v in self.excluded.items()},
        }
        state.update(self._device_state())
        return state

    def _device_state(self) -> dict[str, Any]:
        return {"seen": self.seen.state_dict() if self.seen is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output.

        Device-dependent state (sampler queues, data seen) is applied once the
        new run's metadata is known; the devices must then be the same ones
        (same keys and class counts), else :class:`MetadataError`.
        """
        if state.get("strategy") != type(self).__name__:
            raise ValueError(
                f"checkpoint holds {state.get('strategy')} state, not {type(self).__name__}"
            )
        self.rounds_done = int(state["rounds_done"])
        self.rng.bit_generator.state = state["rng"]
        self.history = list(state["history"])
        if state.get("devices") is not None:
            self._pending_state = state

    def _restore_device_state(self, state: dict[str, Any]) -> None:
        saved = [(d["key"], list(d["class_counts"])) for d in state["devices"]]
        now = [(d.key, list(d.class_counts)) for d in self.devices or []]
        if saved != now:
            raise MetadataError(
                "the devices differ from the checkpoint's (keys or class counts changed): "
                "the sampling state cannot be resumed; start a new run"
            )
        if self.seen is not None and state.get("seen") is not None:
            self.seen.load_state_dict(state["seen"])
