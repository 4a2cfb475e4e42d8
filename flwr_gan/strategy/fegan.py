"""FeGAN (Guerraoui et al., Middleware 2020, §3) as a Flower strategy.

Before round 1 the server sends every node a ``query.metadata`` message and
gets its per-class sample counts and capabilities
(:mod:`flwr_gan.strategy.metadata`; invalid metadata excludes the node, logged).
From them it computes, once:

* every device's KL score ``s_k = (n_k / n) KL(P_k || Q)``
  (:func:`~flwr_gan.strategy.weighting.kl_scores`);
* every device's training load ``(B_k, E_k)``
  (:func:`~flwr_gan.strategy.load.assign_loads`).

Each round it picks ``max(min_train_nodes, ceil(C * N))`` devices with
*balanced sampling* (:class:`~flwr_gan.strategy.sampling.BalancedSampler`) or
uniformly (``sampling="random"``), sends each its own ``local-steps`` and
``batch-size``, and averages the valid replies with weights
``w_k * B_k * E_k`` (renormalised), where ``w_k`` is the KL weight of the
chosen scheme among the nodes that actually replied
(:func:`~flwr_gan.strategy.weighting.kl_weights`; ``"none"`` turns KL
weighting off). Sampling (the paper's ``s``) and weighting (``w``) are
independent switches; ``sampling="random", weighting="none"`` with equal
loads is FL-VANILLA.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from logging import INFO
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.supercore import log

from flwr_gan.runtime.telemetry import LinkModel
from flwr_gan.strategy.flgan import FLGAN
from flwr_gan.strategy.load import Load, assign_loads
from flwr_gan.strategy.sampling import BalancedSampler, random_sample, round_size
from flwr_gan.strategy.weighting import SCHEMES, combine_weights, kl_scores, kl_weights

SAMPLINGS = ("balanced", "random")


class FeGAN(FLGAN):
    """FeGAN: balanced sampling, KL weighting and load-aware aggregation.

    Parameters
    ----------
    fraction_train : float (default: 0.025)
        Fraction ``C`` of the devices trained each round.
    fraction_evaluate : float (default: 0.0)
        Fraction of nodes for federated evaluation (off: GANs are evaluated
        on the server).
    min_train_nodes : int (default: 1)
        Devices trained per round at least.
    min_evaluate_nodes : int (default: 0)
        As in FedAvg.
    min_available_nodes : int (default: 2)
        Nodes that must be connected before the metadata query (set it to the
        number of devices you expect, or late nodes are never sampled).
    weighted_by_key : str (default: "num-examples")
        Key every reply's MetricRecord must carry (validated; FeGAN's weights
        come from KL scores and loads, not from it).
    arrayrecord_key : str (default: "arrays")
        Key of the ArrayRecord in messages.
    configrecord_key : str (default: "config")
        Key of the ConfigRecord in messages.
    train_metrics_aggr_fn, evaluate_metrics_aggr_fn : callable, optional
        As in FedAvg.
    local_steps : int (default: 30)
        Full load ``E`` (local iterations per round).
    batch_size : int (default: 50)
        Full load ``B``.
    sampling : str (default: "balanced")
        ``"balanced"`` (paper ``s = 1``) or ``"random"`` (``s = 0``).
    weighting : str (default: "exp")
        KL weighting scheme: ``"exp"`` (reference default), ``"linear"``,
        ``"dirac"``, or ``"none"`` (paper ``w = 0``).
    dirac_threshold : float (default: 0.5)
        Cut-off of the ``dirac`` scheme.
    load_weighting : bool (default: True)
        Multiply aggregation weights by the load each device trained on,
        ``min(B_k, n_k) * E_k`` (``n_k``: its data size).
    min_load_fraction : float (default: 0.5)
        Weakest devices still get this fraction of ``B`` and ``E``.
    num_classes : int, optional
        Expected length of reported class counts.
    link : LinkModel, optional
        Device links on the virtual clock (default 2 Gbit/s).
    metadata_timeout : float (default: 600)
        Seconds to wait for metadata replies.
    seed : int, optional
        Seed of random sampling.
    kl_reference : sequence of int, optional
        Class counts of a reference data set for ``kl_seen_reference``
        (see :class:`FLGAN`).
    **robustness
        ``aggregation``, ``min_replies``, ``max_update_norm``, ``wait_timeout``
        (see :class:`FLGAN`). A robust ``aggregation`` replaces FeGAN's KL x load
        weighted average (the weights are still computed and recorded).
    """

    # pylint: disable=too-many-arguments,too-many-locals
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
        sampling: str = "balanced",
        weighting: str = "exp",
        dirac_threshold: float = 0.5,
        load_weighting: bool = True,
        min_load_fraction: float = 0.5,
        num_classes: int | None = None,
        link: LinkModel | None = None,
        metadata_timeout: float = 600.0,
        seed: int | None = None,
        kl_reference: Sequence[int] | None = None,
        **robustness: Any,
    ) -> None:
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        if weighting not in SCHEMES:
            raise ValueError(f"weighting must be one of {SCHEMES}, got {weighting!r}")
        if not 0.0 < min_load_fraction <= 1.0:
            raise ValueError(f"min_load_fraction must be in (0, 1], got {min_load_fraction}")
        super().__init__(
            fraction_train, fraction_evaluate, min_train_nodes, min_evaluate_nodes,
            min_available_nodes, weighted_by_key, arrayrecord_key, configrecord_key,
            train_metrics_aggr_fn, evaluate_metrics_aggr_fn, local_steps=local_steps,
            batch_size=batch_size, collect_metadata=True, num_classes=num_classes, link=link,
            metadata_timeout=metadata_timeout, seed=seed, kl_reference=kl_reference,
            **robustness,
        )
        self.sampling = sampling
        self.weighting = weighting
        self.dirac_threshold = dirac_threshold
        self.load_weighting = load_weighting
        self.min_load_fraction = min_load_fraction
        self.scores: np.ndarray | None = None
        self.loads: list[Load] | None = None
        self.sampler: BalancedSampler | None = None

    def summary(self) -> None:
        """Log the strategy's configuration."""
        log(INFO, "\t├──> FeGAN: sampling=%s, weighting=%s, load weighting=%s",
            self.sampling, self.weighting, self.load_weighting)
        super().summary()

    def _needs_metadata(self) -> bool:
        return True

    def _on_metadata(self) -> None:
        assert self.devices is not None
        counts = [d.class_counts for d in self.devices]
        self.scores = kl_scores(counts)
        self.loads = assign_loads([d.capabilities for d in self.devices],
                                  batch_size=self.batch_size, local_steps=self.local_steps,
                                  min_fraction=self.min_load_fraction)
        self.sampler = BalancedSampler(counts)
        weak = sum(1 for ld in self.loads if ld.units < self.batch_size * self.local_steps)
        log(INFO, "FeGAN: KL scores in [%.4g, %.4g]; %d of %d devices get a reduced load",
            float(self.scores.min()), float(self.scores.max()), weak, len(self.loads))

    def _select(self, grid: Grid) -> list[int]:
        assert self.devices is not None and self.sampler is not None
        size = round_size(self.fraction_train, len(self.devices), self.min_train_nodes)
        if self.sampling == "balanced":
            picked = self.sampler.sample(size)
        else:
            picked = random_sample(self.rng, len(self.devices), size)
        return [self.devices[i].node_id for i in picked]

    def load_of(self, node_id: int) -> Load:
        """Return the assigned load of a device (full load for unknown nodes)."""
        index = self._index()
        if self.loads is None or node_id not in index:
            return Load(self.batch_size, self.local_steps)
        return self.loads[index[node_id]]

    def _node_config(self, node_id: int, config: ConfigRecord) -> ConfigRecord:
        out = ConfigRecord(dict(config))
        load = self.load_of(node_id)
        out["local-steps"] = load.local_steps
        out["batch-size"] = load.batch_size
        return out

    def aggregation_weights(self, node_ids: list[int]) -> np.ndarray:
        """KL weights of the given (replying) devices times their loads, normalised.

        A device's load is what it trained on, ``min(B_k, n_k) * E_k``
        (:meth:`~flwr_gan.strategy.load.Load.processed`), from its reported data size.
        """
        assert self.scores is not None and self.devices is not None
        index = self._index()
        scores = [float(self.scores[index[n]]) if n in index else 0.0 for n in node_ids]
        w = kl_weights(scores, self.weighting, threshold=self.dirac_threshold)
        if self.load_weighting:
            w = combine_weights(w, [
                self.load_of(n).processed(self.devices[index[n]].num_examples)
                if n in index else self.load_of(n).units for n in node_ids])
        return w

    def _weights(self, node_ids: list[int], metrics: list[MetricRecord]) -> np.ndarray:
        return self.aggregation_weights(node_ids)

    def _device_state(self) -> dict[str, Any]:
        state = super()._device_state()
        state["sampler"] = self.sampler.state_dict() if self.sampler is not None else None
        return state

    def _restore_device_state(self, state: dict[str, Any]) -> None:
        super()._restore_device_state(state)
        if self.sampler is not None and state.get("sampler") is not None:
            self.sampler.load_state_dict(state["sampler"])


__all__ = ["SAMPLINGS", "FeGAN"]
