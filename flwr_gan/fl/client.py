"""The GAN ClientApp shared by FL-GAN and FeGAN: one app, one handler per message type.

Message types
-------------
``train`` (:func:`handle_train`)
    Receives the global generator + discriminator (one ArrayRecord, keys
    ``generator.*`` / ``discriminator.*``) and a ConfigRecord with the model
    settings and this node's load (``local-steps`` ``E_k``, ``batch-size``
    ``B_k``); trains ``E_k`` GAN steps on the node's own images with the shared
    training core (:class:`flwr_gan.core.training.GANTrainer`, fresh Adam per round)
    and replies with the updated arrays and a MetricRecord: ``num-examples``,
    ``d-loss``, ``g-loss``, ``compute-s``, ``local-steps``, ``batch-size``.
    A diverging loss (NaN) raises, so the server gets an error reply and never
    averages the broken weights. With ``sync`` = ``generator`` or
    ``discriminator`` in the config, only that network travels both ways; the
    other one is the device's own, kept in ``context.state``
    (:mod:`flwr_gan.fl.partial`). With ``bn-buffers`` = ``local`` the device
    trains with its own BatchNorm running statistics and replies with the
    received ones (:mod:`flwr_gan.fl.bn`). With ``optimizer-state`` = ``local`` the
    device keeps its Adam state between its rounds (:mod:`flwr_gan.fl.optstate`).
``query.fl_generator`` (:func:`flwr_gan.fl.partial.handle_generator_query`)
    Replies with the device's own generator (``sync = discriminator``), which
    the server scores at evaluation rounds.
``query.metadata`` (:func:`handle_metadata`)
    Replies with the node's per-class sample counts and capabilities
    (:mod:`flwr_gan.strategy.metadata`), used by FeGAN's sampling, weighting
    and load assignment.

Which images a node trains on is decided by :func:`flwr_gan.data.node.node_training_data`
(``data-path`` on an edge device, ``partition-id``/``num-partitions`` in
simulation). Another Flower project can register these handlers in its own
ClientApp::

    from flwr.clientapp import ClientApp
    from flwr_gan.fl.client import handle_metadata, handle_train
    from flwr_gan.fl.partial import handle_generator_query

    app = ClientApp()
    app.train()(handle_train)
    app.query("metadata")(handle_metadata)
    app.query("fl_generator")(handle_generator_query)  # only for --sync discriminator
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from flwr_gan.core.models import PRESETS, build_models
from flwr_gan.core.training import GANTrainer, OptimizerConfig, infinite_batches
from flwr_gan.data import ImageDataset
from flwr_gan.data.node import ConfigValue, DataConfig, device_key, node_training_data
from flwr_gan.fl.bn import (
    BN_KEY,
    buffer_keys,
    echo_global_buffers,
    restore_local_buffers,
    store_local_buffers,
)
from flwr_gan.fl.optstate import OPT_KEY, restore_optimizers, store_optimizers
from flwr_gan.fl.partial import (
    GENERATOR_QUERY,
    handle_generator_query,
    initial_models,
    load_local,
    local_networks,
    store_local,
    sync_of,
    synced_networks,
)
from flwr_gan.runtime.records import (
    DISCRIMINATOR,
    GENERATOR,
    load_arrays,
    models_to_arrays,
    validate_arrays,
)
from flwr_gan.strategy.metadata import METADATA_KEY

ARRAYS_KEY = "arrays"
CONFIG_KEY = "config"
METRICS_KEY = "metrics"


@dataclass(frozen=True)
class ClientSettings:
    """Node-side settings that do not travel in messages.

    Attributes
    ----------
    data : DataConfig or None
        Data settings; ``None`` reads them from ``context.run_config``.
    weak_fraction : float
        Emulated heterogeneity: this fraction of simulated devices (chosen by
        ``weak_seed`` from their partition id) reports half the memory and
        compute of the others. Real devices report their own values.
    weak_seed : int
        Seed of that choice.
    """

    data: DataConfig | None = None
    weak_fraction: float = 0.0
    weak_seed: int = 0

    def data_config(self, run_config: Mapping[str, ConfigValue]) -> DataConfig:
        """Return the data settings of this run."""
        return self.data if self.data is not None else DataConfig.from_run_config(run_config)

    def weak(self, run_config: Mapping[str, ConfigValue]) -> tuple[float, int]:
        """Return ``(weak_fraction, weak_seed)``, run config overriding the defaults."""
        frac = float(run_config.get("weak-fraction", self.weak_fraction))
        seed = int(run_config.get("seed", self.weak_seed))
        return frac, seed


def _node_data(context: Context, settings: ClientSettings) -> ImageDataset:
    return node_training_data(context.node_config, settings.data_config(context.run_config))


def _total_memory_mb() -> float:
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) / 2**20
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 0.0


def is_weak_device(partition_id: int, num_partitions: int, fraction: float, seed: int) -> bool:
    """Whether simulated device ``partition_id`` is one of the emulated weak devices."""
    if fraction <= 0:
        return False
    draws = np.random.default_rng(seed).random(num_partitions)
    return bool(draws[partition_id] < fraction)


def handle_metadata(msg: Message, context: Context,
                    settings: ClientSettings | None = None) -> Message:
    """Reply to ``query.metadata`` with class counts, device key and capabilities.

    Capabilities come from ``node_config`` (``memory-mb``, ``compute-speed``)
    when set; otherwise the machine's memory and a relative speed of 1.0,
    halved for emulated weak devices.
    """
    settings = settings or ClientSettings()
    data = _node_data(context, settings)
    nc = context.node_config
    memory = float(nc.get("memory-mb", _total_memory_mb()))
    speed = float(nc.get("compute-speed", 1.0))
    frac, seed = settings.weak(context.run_config)
    if "partition-id" in nc and "memory-mb" not in nc and is_weak_device(
        int(nc["partition-id"]), int(nc["num-partitions"]), frac, seed
    ):
        memory, speed = memory / 2, speed / 2
    record = ConfigRecord({
        "class-counts": [int(c) for c in data.class_counts()],
        "num-examples": len(data),
        "device-key": device_key(nc, context.node_id),
        "memory-mb": memory,
        "compute-speed": speed,
    })
    return Message(RecordDict({METADATA_KEY: record}), reply_to=msg)


def _get_int(cfg: ConfigRecord, key: str, default: int) -> int:
    value = cfg.get(key, default)
    if isinstance(value, (bytes, list)):
        raise ValueError(f"train config {key!r} must be a number, got {value!r}")
    return int(value)


def _get_float(cfg: ConfigRecord, key: str, default: float) -> float:
    value = cfg.get(key, default)
    if isinstance(value, (bytes, list)):
        raise ValueError(f"train config {key!r} must be a number, got {value!r}")
    return float(value)


def _seed(*parts: object) -> int:
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def handle_train(msg: Message, context: Context,
                 settings: ClientSettings | None = None) -> Message:
    """Train the received GAN for ``local-steps`` steps of ``batch-size`` and reply.

    Raises
    ------
    KeyError
        If the message lacks its ArrayRecord.
    flwr_gan.runtime.records.InvalidUpdateError
        If the received arrays do not fit the configured model preset.
    flwr_gan.core.training.NonFiniteLossError
        If training diverges (Flower turns it into an error reply).
    """
    settings = settings or ClientSettings()
    cfg = msg.content.config_records.get(CONFIG_KEY, ConfigRecord())
    arrays = msg.content.array_records.get(ARRAYS_KEY)
    if arrays is None:
        raise KeyError(f"train message has no ArrayRecord {ARRAYS_KEY!r}")
    threads = _get_int(cfg, "num-threads", 0)
    if threads > 0:
        torch.set_num_threads(threads)
    data = _node_data(context, settings)
    preset = str(cfg.get("model", "lsgan"))
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r} in the train config")
    latent = _get_int(cfg, "latent-dim", 0) or None
    sync = sync_of(cfg)
    gen, disc = build_models(preset, data.image_shape, latent)
    models = {GENERATOR: gen, DISCRIMINATOR: disc}
    synced = {name: models[name] for name in synced_networks(sync)}
    local = {name: models[name] for name in local_networks(sync)}
    if local:
        validate_arrays(synced, arrays, what="global model")  # no stray local-network keys
    for name, module in synced.items():
        load_arrays(module, arrays, name, what=f"global {name}")
    if local:  # the device's own networks: stored, or (first round) the run's initial ones
        load_local(context, local, lambda: initial_models(
            preset, data.image_shape, latent, _get_int(cfg, "seed", 0)))
    local_bn = str(cfg.get(BN_KEY, "averaged")) == "local"
    if local_bn:
        restore_local_buffers(context, synced)
    steps = _get_int(cfg, "local-steps", 30)
    batch_size = _get_int(cfg, "batch-size", 50)
    rnd = _get_int(cfg, "server-round", 0)
    seed = _seed(cfg.get("seed", 0), rnd, device_key(context.node_config, context.node_id))
    trainer = GANTrainer(
        gen, disc, loss=str(cfg.get("loss", PRESETS[preset].loss)),
        optim=OptimizerConfig(_get_float(cfg, "lr-g", 2e-4), _get_float(cfg, "lr-d", 2e-4),
                              _get_float(cfg, "beta1", 0.5), _get_float(cfg, "beta2", 0.999)),
        d_steps=_get_int(cfg, "d-steps", 1), seed=seed,
    )
    keep_opt = str(cfg.get(OPT_KEY, "fresh")) == "local"
    optimizers = {GENERATOR: trainer.opt_g, DISCRIMINATOR: trainer.opt_d}
    if keep_opt:
        restore_optimizers(context, optimizers)
    batches = infinite_batches(data.to_tensor(), batch_size, seed=seed)
    stats = trainer.train(batches, steps)
    metrics = MetricRecord({
        "num-examples": int(stats.examples),
        "d-loss": float(stats.d_loss), "g-loss": float(stats.g_loss),
        "compute-s": float(stats.compute_s),
        "local-steps": int(steps), "batch-size": int(min(batch_size, len(data))),
    })
    if local:
        store_local(context, local)
    if keep_opt:
        store_optimizers(context, optimizers)
    out = models_to_arrays(synced)
    if local_bn:
        store_local_buffers(context, synced)
        out = echo_global_buffers(out, arrays, buffer_keys(synced))
    reply = RecordDict({ARRAYS_KEY: out, METRICS_KEY: metrics})
    return Message(reply, reply_to=msg)


def register_handlers(app: ClientApp, settings: ClientSettings | None = None) -> ClientApp:
    """Register the FL-GAN / FeGAN handlers on ``app``.

    ``train``, ``query.metadata`` and ``query.fl_generator``.

    Parameters
    ----------
    app : ClientApp
        The app to extend (the device app carries every family's handlers).
    settings : ClientSettings, optional
        Fixed node-side settings; default: everything from ``context.run_config``.
    """
    settings = settings or ClientSettings()

    @app.train()
    def _train(msg: Message, context: Context) -> Message:
        return handle_train(msg, context, settings)

    @app.query("metadata")
    def _metadata(msg: Message, context: Context) -> Message:
        return handle_metadata(msg, context, settings)

    app.query(GENERATOR_QUERY)(handle_generator_query)

    return app


def make_client_app(settings: ClientSettings | None = None) -> ClientApp:
    """Return a ClientApp with only the FL-GAN / FeGAN handlers bound to ``settings``."""
    return register_handlers(ClientApp(), settings)


__all__ = ["ClientSettings", "device_key", "handle_metadata", "handle_train", "is_weak_device",
           "make_client_app", "register_handlers"]
