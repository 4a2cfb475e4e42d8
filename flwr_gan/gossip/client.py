"""Gossip GAN worker: Flower ClientApp handlers.

Each worker hosts its own generator G_i and discriminator D_i (and their Adam
optimizers), kept across rounds in the node's ``context.state``. All workers
start from the same initialisation, built from the run seed (as in FL).
Three message types:

``train.gossip_step``
    Content: ``config`` (ConfigRecord: ``model``, ``loss``, ``latent-dim``,
    ``image-shape``, ``lr-g``, ``lr-d``, ``beta1``, ``beta2``, ``d-steps``,
    ``batch-size``, ``seed``, ``sync-every`` K, ``round`` (the exchange
    index), ``send`` (``"gd"``, ``"g"``, ``"d"`` or ``""``: which networks to
    send back), ``merge-only``, data settings) and optionally the models other
    workers sent, relayed by the server: ArrayRecords ``g-in.<k>``
    (``generator.*`` keys) and ``d-in.<k>`` (``discriminator.*`` keys). The
    worker averages its own G with every received G (equal weights), the
    same for D, trains K local iterations with
    :class:`~flwr_gan.core.training.GANTrainer` on its own images (skipped with
    ``merge-only``), stores everything back and replies with ``metrics``
    (``compute-s``, ``d-loss``, ``g-loss``, ``num-examples``, ``merged-g``,
    ``merged-d``, ``local-iterations``) and, as asked, ``g-out`` / ``d-out``
    (full models, or AdaComp deltas against the reference the server keeps too
    when ``upload-compress`` says so: :mod:`flwr_gan.gossip.compression`).
    A diverging (NaN) loss raises, so the server gets an error reply.
``query.gossip_info``
    Handshake: ``metrics`` (``num-examples``) and ``identity`` (``device-key``).
``query.gossip_generator``
    Replies with the current generator as ArrayRecord ``generator`` (for
    evaluation); the initial one if the worker has not trained yet.
``query.gossip_state`` / ``train.gossip_restore``
    For checkpoints: the worker's whole learning state (G and D, both Adam
    states, the AdaComp reference) as ArrayRecords, and putting it back after a
    restart (:mod:`flwr_gan.gossip.state`).

Random streams (real-batch order, latent draws) are keyed by the run seed, the
device key and the round, never by Flower's node id (random per run).
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from torch import nn

from flwr_gan.core.models import seeded_models
from flwr_gan.core.training import GANTrainer, OptimizerConfig, TrainStats, infinite_batches
from flwr_gan.data.node import DataConfig, device_key, message_data_config, node_images
from flwr_gan.gossip.compression import STATE_REF, worker_uploads
from flwr_gan.gossip.peers import average_states
from flwr_gan.runtime.nodestate import load_optimizer_arrays, optimizer_to_arrays
from flwr_gan.runtime.records import (
    DISCRIMINATOR,
    GENERATOR,
    check_state,
    load_arrays,
    models_to_arrays,
    split_arrays,
)
from flwr_gan.runtime.relay import IDENTITY_KEY

STEP = "gossip_step"
INFO = "gossip_info"
GENERATOR_QUERY = "gossip_generator"
STATE = "gossip_state"
RESTORE = "gossip_restore"
STEP_TYPE = f"train.{STEP}"
INFO_TYPE = f"query.{INFO}"
GENERATOR_TYPE = f"query.{GENERATOR_QUERY}"
STATE_TYPE = f"query.{STATE}"
RESTORE_TYPE = f"train.{RESTORE}"

G_IN, D_IN = "g-in.", "d-in."
G_OUT, D_OUT = "g-out", "d-out"

_STATE_MODELS = "gossip.models"
_STATE_OPT_G = "gossip.opt-g"
_STATE_OPT_D = "gossip.opt-d"
#: Everything a worker keeps between rounds (its random streams derive from seed, key, round).
STATE_ARRAYS = (_STATE_MODELS, _STATE_OPT_G, _STATE_OPT_D, STATE_REF)


def data_config(config: Mapping[str, Any], run_config: Mapping[str, Any]) -> DataConfig:
    """Return the data settings: the message's keys over the node's run config."""
    return message_data_config(config, run_config)


def local_images(context: Context, cfg: DataConfig) -> torch.Tensor:
    """Return the images this node trains on (its partition, or its ``data-path``)."""
    return node_images(context.node_config, cfg)


def stream_seed(seed: int, key: str, round_: int, what: str) -> int:
    """Return the seed of one random stream of one worker in one round.

    Parameters
    ----------
    seed : int
        The run seed.
    key : str
        The worker's device key (the partition id in simulation).
    round_ : int
        Exchange index.
    what : str
        Which stream (``"batches"``, ``"latent"``).
    """
    digest = hashlib.sha256(f"gossip/{seed}/{key}/{round_}/{what}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


@lru_cache(maxsize=4)
def _initial(model: str, shape: tuple[int, ...], latent_dim: int | None,
             seed: int) -> tuple[nn.Module, nn.Module]:
    """Build (memoised per process; only ever deep-copied) the run's initial G and D."""
    return seeded_models(model, shape, latent_dim, seed)


def initial_models(model: str, shape: tuple[int, ...], latent_dim: int | None,
                   seed: int) -> tuple[nn.Module, nn.Module]:
    """Return fresh copies of the initial generator and discriminator of a run.

    Every worker and the server build the same pair from the run seed.
    """
    gen, disc = _initial(model, tuple(int(v) for v in shape), latent_dim, int(seed))
    return copy.deepcopy(gen), copy.deepcopy(disc)


def _latent_dim(config: Mapping[str, Any]) -> int | None:
    value = int(config.get("latent-dim", 0) or 0)
    return value if value > 0 else None


def _models(config: Mapping[str, Any], context: Context) -> tuple[nn.Module, nn.Module]:
    """Return this worker's G and D: stored ones, or the run's initial pair."""
    gen, disc = initial_models(str(config["model"]), tuple(config["image-shape"]),
                               _latent_dim(config), int(config["seed"]))
    stored = context.state.array_records.get(_STATE_MODELS)
    if stored is not None:
        load_arrays(gen, stored, GENERATOR, what="stored generator")
        load_arrays(disc, stored, DISCRIMINATOR, what="stored discriminator")
    return gen, disc


def merge_received(module: nn.Module, records: list[ArrayRecord], prefix: str) -> int:
    """Average ``module`` in place with every received model (equal weights).

    Returns how many models were merged in.

    Raises
    ------
    flwr_gan.runtime.records.InvalidUpdateError
        If a received model does not fit ``module`` or is not finite.
    """
    if not records:
        return 0
    reference = module.state_dict()
    own = {k: v.detach().cpu().numpy() for k, v in reference.items()}
    received = []
    for k, record in enumerate(records):
        state = split_arrays(record, prefix)
        check_state(reference, state, what=f"received {prefix} #{k}")
        received.append(state)
    averaged = average_states([own, *received])
    merged = ArrayRecord({f"{prefix}.{k}": Array(v) for k, v in averaged.items()})
    load_arrays(module, merged, prefix, what=f"averaged {prefix}")
    return len(records)


def _incoming(content: RecordDict, head: str) -> list[ArrayRecord]:
    """Relayed models with key prefix ``head``, in a fixed order (by their index)."""
    keys = sorted((k for k in content.array_records if k.startswith(head)),
                  key=lambda k: (len(k), k))
    return [content.array_records[k] for k in keys]


def _optimizer(config: Mapping[str, Any]) -> OptimizerConfig:
    return OptimizerConfig(lr_g=float(config["lr-g"]), lr_d=float(config["lr-d"]),
                           beta1=float(config["beta1"]), beta2=float(config["beta2"]))


def gossip_step(msg: Message, context: Context) -> Message:
    """Handle ``train.gossip_step``: average in what peers sent, train K iterations, reply.

    Raises
    ------
    flwr_gan.core.training.NonFiniteLossError
        When a loss becomes NaN / infinite (the models are not stored or sent).
    flwr_gan.runtime.records.InvalidUpdateError
        When a relayed model is malformed.
    """
    started = time.perf_counter()
    config: Any = msg.content.config_records["config"]
    round_ = int(config["round"])
    seed = int(config["seed"])
    key = device_key(context.node_config, context.node_id)
    gen, disc = _models(config, context)
    trainer = GANTrainer(gen, disc, loss=str(config["loss"]), optim=_optimizer(config),
                         d_steps=int(config["d-steps"]),
                         seed=stream_seed(seed, key, round_, "latent"))
    assert trainer.opt_g is not None and trainer.opt_d is not None
    if _STATE_OPT_G in context.state.array_records:
        load_optimizer_arrays(trainer.opt_g, context.state.array_records[_STATE_OPT_G])
        load_optimizer_arrays(trainer.opt_d, context.state.array_records[_STATE_OPT_D])
    merge_start = time.perf_counter()
    merged_g = merge_received(gen, _incoming(msg.content, G_IN), GENERATOR)
    merged_d = merge_received(disc, _incoming(msg.content, D_IN), DISCRIMINATOR)
    merge_s = time.perf_counter() - merge_start
    images = local_images(context, data_config(config, context.run_config))
    steps = 0 if bool(config.get("merge-only", False)) else int(config["sync-every"])
    stats = TrainStats()
    if steps > 0:
        batches = infinite_batches(images, int(config["batch-size"]),
                                   seed=stream_seed(seed, key, round_, "batches"))
        stats = trainer.train(batches, steps)
    context.state.array_records[_STATE_MODELS] = models_to_arrays(
        {GENERATOR: gen, DISCRIMINATOR: disc})
    context.state.array_records[_STATE_OPT_G] = optimizer_to_arrays(trainer.opt_g)
    context.state.array_records[_STATE_OPT_D] = optimizer_to_arrays(trainer.opt_d)
    metrics: dict[str, Any] = {
        "round": round_, "compute-s": stats.compute_s + merge_s,
        "handler-s": time.perf_counter() - started, "num-examples": int(images.size(0)),
        "merged-g": merged_g, "merged-d": merged_d, "local-iterations": stats.steps,
    }
    if stats.steps:
        metrics |= {"d-loss": stats.d_loss, "g-loss": stats.g_loss}
    content = RecordDict({"metrics": MetricRecord(metrics)})
    send = str(config.get("send", ""))

    def initial() -> ArrayRecord:
        g0, d0 = initial_models(str(config["model"]), tuple(config["image-shape"]),
                                _latent_dim(config), seed)
        return models_to_arrays({GENERATOR: g0, DISCRIMINATOR: d0})

    content.array_records.update(worker_uploads(context, config, {"g": gen, "d": disc}, send,
                                                initial))
    return Message(content, reply_to=msg)


def gossip_info(msg: Message, context: Context) -> Message:
    """Handle ``query.gossip_info``: the local data-set size and the device key."""
    config: Any = msg.content.config_records.get("config", ConfigRecord())
    images = local_images(context, data_config(config, context.run_config))
    metrics = MetricRecord({"num-examples": int(images.size(0))})
    identity = ConfigRecord({"device-key": device_key(context.node_config, context.node_id)})
    return Message(RecordDict({"metrics": metrics, IDENTITY_KEY: identity}), reply_to=msg)


def gossip_generator(msg: Message, context: Context) -> Message:
    """Handle ``query.gossip_generator``: reply with the current generator."""
    config: Any = msg.content.config_records["config"]
    gen, _ = _models(config, context)
    return Message(RecordDict({GENERATOR: models_to_arrays({GENERATOR: gen})}), reply_to=msg)


def gossip_state(msg: Message, context: Context) -> Message:
    """Handle ``query.gossip_state``: reply with this worker's learning state (for checkpoints)."""
    content = RecordDict({"meta": ConfigRecord({
        "device-key": device_key(context.node_config, context.node_id)})})
    for name in STATE_ARRAYS:
        if name in context.state.array_records:
            content.array_records[name] = context.state.array_records[name]
    return Message(content, reply_to=msg)


def gossip_restore(msg: Message, context: Context) -> Message:
    """Handle ``train.gossip_restore``: replace this worker's state with the message's."""
    for name in STATE_ARRAYS:
        if name in msg.content.array_records:
            context.state.array_records[name] = msg.content.array_records[name]
        elif name in context.state.array_records:
            del context.state.array_records[name]
    return Message(RecordDict({"meta": ConfigRecord({"restored": 1})}), reply_to=msg)


def register_handlers(app: ClientApp) -> ClientApp:
    """Register the gossip worker's handlers on an existing ClientApp (and return it)."""
    app.train(STEP)(gossip_step)
    app.query(INFO)(gossip_info)
    app.query(GENERATOR_QUERY)(gossip_generator)
    app.query(STATE)(gossip_state)
    app.train(RESTORE)(gossip_restore)
    return app


def make_client_app() -> ClientApp:
    """Return a new ClientApp serving gossip workers."""
    return register_handlers(ClientApp())


client_app = make_client_app()

__all__ = ["D_IN", "D_OUT", "GENERATOR_TYPE", "G_IN", "G_OUT", "INFO_TYPE", "RESTORE_TYPE",
           "STATE_ARRAYS", "STATE_TYPE", "STEP_TYPE", "client_app", "gossip_generator",
           "gossip_info", "gossip_restore", "gossip_state", "gossip_step", "initial_models",
           "make_client_app", "merge_received", "register_handlers", "stream_seed"]
