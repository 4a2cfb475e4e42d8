"""DP on the server: Flower's DP strategy wrappers around FL-GAN / FeGAN.

:func:`dp_wrapper` returns Flower's own, unmodified
``DifferentialPrivacy{Server,Client}Side{Fixed,Adaptive}Clipping`` around the
strategy; :class:`DPGuard` goes around that and only adapts what Flower's
wrappers cannot take from a GAN federation:

* a reply that is an error, or whose arrays do not fit the global model (keys,
  shapes, NaN / inf), would make Flower's wrappers skip the whole round (an
  error reply) or raise (a shape mismatch while clipping); the guard excludes
  it first, logs why and keeps the reason in :attr:`DPGuard.rounds`;
* integer arrays (BatchNorm's ``num_batches_tracked``) cannot be clipped in
  place and are step counters, not data: the guard shows the wrapper a zero
  update for them and sets the aggregate's counters to the replies' rounded
  mean afterwards (no noise on counters);
* the client-side modes' train config names the clipping flavour
  (``dp-clipping``) for the gated device mods of :mod:`flwr_gan.privacy.mods`;
* the noised aggregate's BatchNorm variances are clamped at 0 (post-processing);
* per round it records the clipping norm used, the next one (adaptive modes),
  the noise standard deviation added and the count noise, for the budget
  (:mod:`flwr_gan.privacy.accounting`).

Aggregation weights: Flower's wrappers add noise of standard deviation
``z * C / m`` for an *unweighted* mean of ``m`` clipped updates. FL-GAN weights
by the examples each device processed (``E * B``: equal on every device, so the
mean is unweighted and the calibration holds); FeGAN's KL / load weights are
not uniform, so one device can move the average by ``max(w) * C > C / m``:
the run is still clipped and noised, but no budget is reported for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from logging import WARNING
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import (
    DifferentialPrivacyClientSideAdaptiveClipping,
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideAdaptiveClipping,
    DifferentialPrivacyServerSideFixedClipping,
    Strategy,
)
from flwr.supercore import log
from flwr.supercore.differential_privacy import KEY_NORM_BIT, compute_stdv

from flwr_gan.privacy.accounting import PrivacyLedger
from flwr_gan.privacy.mods import KEY_DP_CLIPPING, integer_keys
from flwr_gan.privacy.settings import DPSettings
from flwr_gan.runtime.records import InvalidUpdateError
from flwr_gan.strategy.aggregate import check_update, destinations, sender, short_reason
from flwr_gan.strategy.wrapper import WrapperStrategy

ADAPTIVE = (DifferentialPrivacyServerSideAdaptiveClipping,
            DifferentialPrivacyClientSideAdaptiveClipping)
MODES: dict[type, str] = {
    DifferentialPrivacyServerSideFixedClipping: "server-fixed",
    DifferentialPrivacyClientSideFixedClipping: "client-fixed",
    DifferentialPrivacyServerSideAdaptiveClipping: "server-adaptive",
    DifferentialPrivacyClientSideAdaptiveClipping: "client-adaptive",
}
CLIENT_SIDE = (DifferentialPrivacyClientSideFixedClipping,
               DifferentialPrivacyClientSideAdaptiveClipping)


def count_stddev(noise_multiplier: float, num_sampled_clients: int) -> float:
    """Return the noise of the adaptive modes' clipped-update count.

    Andrew et al.'s recommendation ``m / 20`` (Flower's default) when it is
    above ``z / 2``; else ``z``, as Flower needs ``z < 2 * count_stddev`` (the
    update noise then grows by ``1 / sqrt(3/4)``, about 15 %).
    """
    default = num_sampled_clients / 20
    return default if noise_multiplier < 2 * default else float(noise_multiplier)


def dp_wrapper(strategy: Strategy, dp_settings: DPSettings, num_sampled_clients: int
               ) -> Strategy:
    """Return Flower's DP wrapper of ``dp_settings.dp`` around ``strategy``.

    Parameters
    ----------
    strategy : Strategy
        The strategy that samples and aggregates (FL-GAN, FeGAN, FedAvg, ...).
    dp_settings : DPSettings
        ``dp`` (``server-fixed``, ``client-fixed``, ``server-adaptive``,
        ``client-adaptive``), ``noise_multiplier``, ``clipping_norm`` (the
        adaptive modes' initial norm).
    num_sampled_clients : int
        Devices sampled per round (``m``; the noise is ``z * C / m``).

    Raises
    ------
    ValueError
        If ``dp`` is ``none`` or unknown, or Flower rejects the parameters.
    """
    z, clip, m = dp_settings.noise_multiplier, dp_settings.clipping_norm, num_sampled_clients
    mode = dp_settings.dp
    if mode == "server-fixed":
        return DifferentialPrivacyServerSideFixedClipping(strategy, z, clip, m)
    if mode == "client-fixed":
        return DifferentialPrivacyClientSideFixedClipping(strategy, z, clip, m)
    if mode == "server-adaptive":
        return DifferentialPrivacyServerSideAdaptiveClipping(
            strategy, z, m, initial_clipping_norm=clip, clipped_count_stddev=count_stddev(z, m))
    if mode == "client-adaptive":
        return DifferentialPrivacyClientSideAdaptiveClipping(
            strategy, z, m, initial_clipping_norm=clip, clipped_count_stddev=count_stddev(z, m))
    raise ValueError(f"no DP wrapper for dp={mode!r}")


class DPGuard(WrapperStrategy):
    """Adapt GAN-federation replies to one of Flower's DP wrappers (see the module doc).

    Parameters
    ----------
    dp : Strategy
        A ``DifferentialPrivacy*Clipping`` wrapper (:func:`dp_wrapper`).
    """

    def __init__(self, dp: Strategy) -> None:
        super().__init__(dp)
        #: The ``--dp`` mode of the wrapper (``server-fixed``, ...).
        self.mode = MODES[type(dp)] if type(dp) in MODES else type(dp).__name__
        self._reference: ArrayRecord | None = None
        self._sent: list[Message] = []
        #: One dict per aggregated round: ``clipping_norm`` (used),
        #: ``next_clipping_norm``, ``noise_std``, ``count_stddev``, ``excluded``.
        self.rounds: list[dict[str, Any]] = []

    @property
    def clipping_norm(self) -> float:
        """The DP wrapper's current clipping norm (the adaptive modes change it)."""
        return float(self.strategy.clipping_norm)  # type: ignore[attr-defined]

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        """Keep the round's global arrays; name the clipping flavour for the device mods."""
        config = ConfigRecord(dict(config))  # Flower's wrappers write into it
        if isinstance(self.strategy, CLIENT_SIDE):
            config[KEY_DP_CLIPPING] = "adaptive" if isinstance(self.strategy, ADAPTIVE) \
                else "fixed"
        self._reference = arrays
        self._sent = list(self.strategy.configure_train(server_round, arrays, config, grid))
        return self._sent

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Exclude unusable replies, hide counters, let the DP wrapper clip / aggregate / noise."""
        dp = self.strategy
        kept: list[Message] = []
        excluded: dict[int, str] = {}
        counters: list[dict[str, np.ndarray]] = []
        sent_to = destinations(self._sent)
        for reply in replies:
            nid = sender(reply, sent_to)  # a dead node's error comes from the SuperLink
            try:
                counters.append(self._admit(reply, nid))
            except InvalidUpdateError as err:
                excluded[nid] = str(err)
                log(WARNING, "Round %d: update of node %d excluded before DP: %s",
                    server_round, nid, err)
                continue
            kept.append(reply)
        clip = self.clipping_norm
        if kept:
            arrays, metrics = dp.aggregate_train(server_round, kept)
        else:  # nothing to clip or noise: no release (and no division by zero)
            arrays, metrics = dp.strategy.aggregate_train(  # type: ignore[attr-defined]
                server_round, kept)
        noise_std = None
        if arrays is not None and kept:
            noise_std = compute_stdv(dp.noise_multiplier,  # type: ignore[attr-defined]
                                     self.clipping_norm,
                                     dp.num_sampled_clients)  # type: ignore[attr-defined]
            arrays = _restore_counters(arrays, counters)
            arrays = clamp_variances(arrays)
        self.rounds.append({
            "round": server_round, "clipping_norm": clip,
            "next_clipping_norm": self.clipping_norm, "noise_std": noise_std,
            "count_stddev": (float(dp.clipped_count_stddev)
                             if isinstance(dp, ADAPTIVE) and noise_std is not None else None),
            "excluded": excluded,
        })
        return arrays, metrics

    def _admit(self, reply: Message, nid: int) -> dict[str, np.ndarray]:
        """Check ``reply``; replace its counters by the global ones; return its counters.

        Raises
        ------
        InvalidUpdateError
            If the reply is an error or does not fit the global model.
        """
        if reply.has_error():
            raise InvalidUpdateError(f"error: {short_reason(reply.error.reason or '')}")
        if self._reference is None:
            raise InvalidUpdateError("a reply arrived before any train message")
        if len(reply.content.array_records) != 1:
            raise InvalidUpdateError(f"node {nid}: a reply needs exactly one ArrayRecord")
        key, arrays = next(iter(reply.content.array_records.items()))
        check_update(self._reference, arrays, what=f"node {nid}")
        if isinstance(self.strategy, DifferentialPrivacyClientSideAdaptiveClipping) and not any(
                KEY_NORM_BIT in m for m in reply.content.metric_records.values()):
            raise InvalidUpdateError(f"node {nid}: no {KEY_NORM_BIT!r} in the reply (the "
                                     "device did not run adaptiveclipping_mod)")
        names = integer_keys(self._reference)
        if not names:
            return {}
        found = {k: arrays[k].numpy() for k in names}
        reply.content.array_records[key] = ArrayRecord({
            k: Array(self._reference[k].numpy().astype(np.float64)) if k in found else arrays[k]
            for k in arrays.keys()})
        return found

    def state_dict(self) -> dict[str, Any]:
        """Return the adaptive clipping norm (the only state Flower's wrappers keep)."""
        return {"clipping_norm": self.clipping_norm}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        self.strategy.clipping_norm = float(state["clipping_norm"])  # type: ignore[attr-defined]


def _restore_counters(arrays: ArrayRecord, counters: list[dict[str, np.ndarray]]
                      ) -> ArrayRecord:
    """Return ``arrays`` with each counter set to the replies' rounded mean."""
    names = {k for c in counters for k in c}
    if not names:
        return arrays
    out: dict[str, Array] = {}
    for key in arrays.keys():
        if key in names:
            values = [c[key] for c in counters if key in c]
            mean = np.mean([v.astype(np.float64) for v in values], axis=0)
            out[key] = Array(np.asarray(np.rint(mean).astype(values[0].dtype)))
        else:
            out[key] = arrays[key]
    return ArrayRecord(out)


def clamp_variances(arrays: ArrayRecord) -> ArrayRecord:
    """Return ``arrays`` with noised BatchNorm variances clamped at 0.

    Flower's noise reaches every array, ``running_var`` included; a negative
    variance makes the model produce NaN. Clamping is post-processing of the
    private release, so it costs no privacy.
    """
    out: dict[str, Array] = {}
    for key in arrays.keys():
        value = arrays[key]
        if key.endswith("running_var"):
            value = Array(np.asarray(np.maximum(value.numpy(), 0)))
        out[key] = value
    return ArrayRecord(out)


def find_guard(strategy: Strategy) -> DPGuard | None:
    """Return the :class:`DPGuard` in a chain of wrappers (``.strategy``), if any."""
    inner: Any = strategy
    while inner is not None:
        if isinstance(inner, DPGuard):
            return inner
        inner = inner.__dict__.get("strategy") if hasattr(inner, "__dict__") else None
    return None




def make_ledger(dp_settings: DPSettings, population: int) -> PrivacyLedger:
    """Return the budget ledger of a DP run.

    (Client-side clipping with AdaComp, whose residual the clip does not bound,
    is refused by the settings, so every run it is called for can be accounted.)
    """
    return PrivacyLedger(dp_settings.dp_delta, population)


def account_round(guard: DPGuard, ledger: PrivacyLedger, weights: list[float]
                  ) -> dict[str, Any]:
    """Account the guard's last round in ``ledger``; return its metrics.jsonl fields.

    Parameters
    ----------
    guard : DPGuard
        The run's guard (its last entry of :attr:`DPGuard.rounds` is this round).
    ledger : PrivacyLedger
        The run's ledger.
    weights : list of float
        The aggregation weights of the updates the strategy averaged.
    """
    info = guard.rounds[-1] if guard.rounds else {}
    multiplier = None
    if info.get("noise_std") is not None:
        multiplier = ledger.release(noise_std=info["noise_std"],
                                    clipping_norm=info["clipping_norm"], weights=weights,
                                    count_stddev=info["count_stddev"])
    fields: dict[str, Any] = {
        "dp": guard.mode, "dp_epsilon": ledger.epsilon(), "dp_delta": ledger.delta,
        "clipping_norm": info.get("clipping_norm", guard.clipping_norm),
        "dp_noise_std": info.get("noise_std"), "dp_noise_multiplier": multiplier,
        "dp_releases": ledger.releases,
    }
    if info.get("count_stddev") is not None:
        fields["dp_next_clipping_norm"] = info["next_clipping_norm"]
        fields["dp_count_stddev"] = info["count_stddev"]
    if ledger.void is not None:
        fields["dp_note"] = ledger.void
    return fields


__all__ = ["DPGuard", "account_round", "clamp_variances", "count_stddev", "dp_wrapper",
           "find_guard", "make_ledger"]
