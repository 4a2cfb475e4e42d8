"""The FL-GAN / FeGAN family's server: the strategies run as a flwr-gan experiment.

:func:`run_federated` is the family's entry in :mod:`flwr_gan.algorithms`: it
builds the strategy from the settings, starts it on the grid, and per round
logs one record to ``metrics.jsonl`` (the strategy's telemetry: ``round``,
``nodes``, ``bytes_up``, ``bytes_down``, ``compute_s``, ``compute_s_max``,
``wall_s``, ``virtual_s``, ``kl_seen`` (vs the devices' data),
``kl_seen_reference`` (vs the whole training set), ``coverage``, losses; plus
``fid`` / ``score`` at evaluations), saves sample grids, and checkpoints the
full server state atomically, from which ``--resume`` continues.

``--sync generator`` / ``--sync discriminator`` (:mod:`flwr_gan.fl.partial`,
``docs/partial-sync.md``): the global ArrayRecord (what travels, is averaged
and checkpointed) holds that network only; the other one stays on each device.
With ``--sync discriminator`` the server has no generator of its own: an
evaluation round scores the generators of the devices trained in that round
(queried with ``query.fl_generator``; records then carry ``evaluated``,
``eval_bytes`` (not in ``bytes_up`` / ``bytes_down``) and the several-generator
fields ``fid_best``, ``fid_worst``, ``fid_std``, ``fid_workers``).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from flwr_gan.compress.strategy import AdaComp
from flwr_gan.config import ConfigError, Settings
from flwr_gan.core.models import build_models
from flwr_gan.fl.bn import BN_KEY
from flwr_gan.fl.failures import injection_config
from flwr_gan.fl.optstate import OPT_KEY
from flwr_gan.fl.partial import SYNC_KEY, fetch_generators, synced_networks, trained_nodes
from flwr_gan.privacy.strategy import (
    DPGuard,
    account_round,
    dp_wrapper,
    find_guard,
    make_ledger,
)
from flwr_gan.runtime.checkpoint import (
    CheckpointError,
    arrays_to_tensors,
    numpy_global_state,
    set_numpy_global_state,
    tensors_to_arrays,
)
from flwr_gan.runtime.experiment import CHECKPOINT, Experiment
from flwr_gan.runtime.records import (
    DISCRIMINATOR,
    GENERATOR,
    REJECTED_PREFIX,
    load_arrays,
    models_to_arrays,
    validate_arrays,
)
from flwr_gan.runtime.telemetry import LinkModel
from flwr_gan.strategy import FLGAN, FeGAN
from flwr_gan.strategy.sampling import round_size

log = logging.getLogger(__name__)


def link_of(settings: Settings) -> LinkModel:
    """Return the virtual-clock link of the federation settings."""
    fed = settings.federation
    return LinkModel(fed.bandwidth_gbps * 1e9, fed.latency_ms / 1e3)


def train_config(settings: Settings) -> ConfigRecord:
    """Return the ConfigRecord every train message carries (model and optimizer).

    A partially synchronised run adds ``sync`` (the network that travels).
    """
    s = settings
    sync = {SYNC_KEY: s.partial.sync} if s.partial.sync != "both" else {}
    if s.fl.bn_buffers != "averaged":
        sync[BN_KEY] = s.fl.bn_buffers
    if s.fl.optimizer_state != "fresh":
        sync[OPT_KEY] = s.fl.optimizer_state
    fail = s.failures
    sync |= injection_config(fail.fail_prob, fail.fail_mode, fail.attack, s.federation.timeout)
    return ConfigRecord(sync | {
        "model": s.model.model, "loss": s.model.resolved_loss(),
        "latent-dim": s.model.latent_dim, "lr-g": s.train.lr_g, "lr-d": s.train.lr_d,
        "beta1": s.train.beta1, "beta2": s.train.beta2, "d-steps": s.train.d_steps,
        "seed": s.run.seed, "num-threads": s.federation.client_threads,
        "local-steps": s.schedule.local_steps, "batch-size": s.train.batch_size,
    })


def make_strategy(settings: Settings, *, num_nodes: int, num_classes: int,
                  kl_reference: list[int] | None = None) -> FLGAN:
    """Build the strategy of ``settings.algorithm`` (``fegan`` or ``flgan``).

    Parameters
    ----------
    settings : Settings
        Run settings.
    num_nodes : int
        Nodes to wait for before the first round.
    num_classes : int
        Classes of the data set (validates reported metadata).
    kl_reference : list of int, optional
        Class counts of the whole training set (``kl_seen_reference``).
    """
    s = settings
    common: dict[str, Any] = {
        "fraction_train": s.fl.fraction, "min_train_nodes": s.fl.min_nodes,
        "min_available_nodes": num_nodes, "local_steps": s.schedule.local_steps,
        "batch_size": s.train.batch_size, "num_classes": num_classes, "link": link_of(s),
        "metadata_timeout": s.federation.timeout, "seed": s.run.seed,
        "kl_reference": kl_reference, "aggregation": s.robust.method(),
        "min_replies": s.robust.min_replies, "max_update_norm": s.robust.max_update_norm,
        "wait_timeout": s.robust.stall_timeout or None,
    }
    if s.algorithm == "fegan":
        fe = s.fegan
        return FeGAN(**common, sampling=fe.sampling, weighting=fe.weighting,
                     dirac_threshold=fe.dirac_threshold, load_weighting=fe.load_weighting,
                     min_load_fraction=fe.min_load_fraction)
    return FLGAN(**common, collect_metadata=s.fl.collect_metadata)


def wrap_strategy(settings: Settings, strategy: FLGAN) -> Strategy:
    """Wrap ``strategy`` in what ``settings`` ask of uploads (AdaComp outermost).

    ``--dp``: Flower's DP wrapper of that mode goes first, with ``m`` the
    round's node count, inside a :class:`~flwr_gan.privacy.strategy.DPGuard`
    (docs/privacy.md). AdaComp must decode a reply before any other wrapper
    reads its arrays, so it wraps last; the devices' ``adacomp_mod`` likewise
    compresses last (outside the clipping mods).
    """
    outer: Strategy = strategy
    if settings.privacy.dp != "none":
        fl = settings.fl
        sampled = round_size(fl.fraction, settings.federation.num_clients, fl.min_nodes)
        outer = DPGuard(dp_wrapper(outer, settings.privacy, sampled))
    comp = settings.compression
    if comp.compress == "adacomp":
        outer = AdaComp(outer, ratio=comp.compress_ratio, value_dtype=comp.compress_dtype)
    return outer


def run_federated(grid: Grid, exp: Experiment) -> list[dict[str, Any]]:
    """Run ``exp``'s FL-GAN / FeGAN rounds on ``grid``; return the records.

    Raises
    ------
    ConfigError
        On ``--resume`` with ``--sync discriminator`` (the generators lived on
        the devices and are gone).
    CheckpointError
        If the checkpoint being resumed holds a malformed strategy state.
    """
    s: Settings = exp.settings
    sync = s.partial.sync
    if sync == "discriminator" and exp.checkpoint is not None:
        raise ConfigError("--resume does not support --sync discriminator: the generators "
                          "lived on the devices and a restarted run has lost them; start a "
                          "new run")
    torch.manual_seed(s.run.seed)
    if s.privacy.dp != "none":  # Flower's DP wrappers draw their noise from numpy's global RNG
        np.random.seed(s.run.seed)  # noqa: NPY002 - seeded for reproducible runs
    gen, disc = build_models(s.model.model, exp.image_shape, s.model.latent_dim or None)
    num_nodes = s.federation.num_clients
    strategy = make_strategy(s, num_nodes=num_nodes, num_classes=exp.train.num_classes,
                             kl_reference=[int(c) for c in exp.train.class_counts()])
    outer = wrap_strategy(s, strategy)
    guard = find_guard(outer)
    ledger = None if guard is None else make_ledger(s.privacy, num_nodes)
    exp.resolved |= {"num_nodes": num_nodes, "strategy": type(strategy).__name__}
    models = {GENERATOR: gen, DISCRIMINATOR: disc}
    synced = {name: models[name] for name in synced_networks(sync)}
    arrays = models_to_arrays(synced)
    if exp.checkpoint is not None:
        state = exp.checkpoint["state"]
        try:
            arrays = tensors_to_arrays(state["arrays"])
            validate_arrays(synced, arrays, what="checkpointed global model")
            strategy.load_state_dict(state["strategy"])
            if guard is not None and ledger is not None and "privacy" in state:
                guard.load_state_dict(state["privacy"]["guard"])
                ledger.load_state_dict(state["privacy"]["ledger"])
            torch.set_rng_state(state["torch_rng"])
            if "numpy_rng" in state:
                set_numpy_global_state(state["numpy_rng"])
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise CheckpointError(f"{exp.out / CHECKPOINT}: bad FL state ({err})") from err
        log.info("Resuming from %s at round %d", exp.out, exp.start)
    if sync == "discriminator" and exp.evaluating and s.privacy.dp != "none":
        log.warning("--sync discriminator --dp %s: evaluation fetches the devices' own "
                    "generators, outside the DP guarantee (docs/partial-sync.md)", s.privacy.dp)
    exp.open()

    def evaluate(r: int, current: ArrayRecord) -> dict[str, Any]:
        if sync != "discriminator":
            load_arrays(gen, current, GENERATOR)
            return exp.evaluate(r, {"generator": gen})
        if r == 0 or not exp.evaluating:  # round 0: every device starts from this generator
            return exp.evaluate(r, {"generator": gen})
        nodes = trained_nodes(strategy.history[-1]["nodes"], grid.get_node_ids(),
                              strategy.device_name)
        gens, nbytes, failed = fetch_generators(
            grid, nodes, gen, name_of=strategy.device_name, server_round=r,
            timeout=s.federation.timeout)
        record: dict[str, Any] = {"evaluated": sorted(gens), "eval_bytes": nbytes}
        if failed:
            record["eval_failed"] = failed
        if not gens:
            log.warning("Round %d: no device generator to evaluate", r)
            return record
        return record | exp.evaluate(r, {k: gens[k] for k in sorted(gens)})

    def on_round(server_round: int, current: ArrayRecord) -> MetricRecord | None:
        r = strategy.rounds_done
        if server_round == 0:
            if r == 0:
                exp.log({"round": 0, "wall_s": 0.0, "virtual_s": 0.0} | evaluate(0, current))
            return None
        record = dict(strategy.history[-1])
        if isinstance(outer, AdaComp) and outer.telemetry:
            comp = outer.telemetry[-1]
            record |= {"bytes_up_dense": comp["bytes_up_dense"],
                       "compression": comp["compression"]}
        if guard is not None and ledger is not None:
            record = _privacy_record(record, guard, ledger, strategy)
        if exp.due(r):
            record |= evaluate(r, current)
        exp.log(record)
        if exp.checkpoint_due(r):
            extra = {} if guard is None or ledger is None else {"privacy": {
                "guard": guard.state_dict(), "ledger": ledger.state_dict()}}
            if s.privacy.dp != "none":  # the DP noise's stream (numpy's global RNG)
                extra["numpy_rng"] = numpy_global_state()
            exp.save_checkpoint(r, {"arrays": arrays_to_tensors(current),
                                    "strategy": strategy.state_dict(),
                                    "torch_rng": torch.get_rng_state()} | extra)
        if record.get("fid") is not None:
            return MetricRecord({"fid": float(record["fid"])})
        return None

    remaining = exp.total - exp.start
    if remaining > 0:
        outer.start(grid=grid, initial_arrays=arrays, num_rounds=remaining,
                       timeout=s.federation.timeout, train_config=train_config(s),
                       evaluate_fn=on_round)
    if strategy.metadata_telemetry:
        assert exp.run is not None
        exp.run.write_json("metadata.json", strategy.metadata_telemetry
                           | {"devices_info": [d.to_dict() for d in strategy.devices or []]})
    return exp.finish(title=f"{s.algorithm} {s.model.model} on {exp.train.name}")


def _privacy_record(record: dict[str, Any], guard: DPGuard, ledger: Any, strategy: FLGAN
                    ) -> dict[str, Any]:
    """Return ``record`` with the round's DP fields (``dp_epsilon``, ``clipping_norm``, ...).

    Replies the guard excluded before DP never reached the strategy (which
    counted them as missing): error replies appear in ``failed``, invalid
    updates in ``rejected``, each with its reason.
    """
    out = record | account_round(guard, ledger, list(record.get("weights", [])))
    excluded = guard.rounds[-1]["excluded"] if guard.rounds else {}
    failed = dict(record.get("failed", {}))
    rejected = dict(record.get("rejected", {}))
    for key, reason in strategy.named(excluded).items():
        if reason.startswith("error: ") and not reason.startswith("error: " + REJECTED_PREFIX):
            failed[key] = reason
        else:
            failed.pop(key, None)
            rejected[key] = reason.removeprefix("error: ").removeprefix(REJECTED_PREFIX)
    return out | {"failed": failed, "rejected": rejected}
