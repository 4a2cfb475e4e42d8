"""MD-GAN worker: Flower ClientApp handlers.

A worker holds a discriminator and its Adam optimizer, kept across
iterations in the node's ``context.state``. Two message types:

``train.mdgan_step``
    Content: ``config`` (ConfigRecord: iteration, model, loss, image shape,
    ``disc-steps`` L, learning rate, batch size, seed, data settings,
    ``send-disc``, ``crash``), ``batches`` (ArrayRecord ``x_g``, ``x_d``) and,
    after a swap, ``disc-in`` (another worker's discriminator, relayed by the
    server). The worker loads ``disc-in`` if present, takes L discriminator
    steps on ``(X_r, X_d)`` with one local real batch ``X_r`` (Algorithm 1),
    computes the feedback ``F_n = dB~(X_g)/dx`` and replies with ``feedback``
    (ArrayRecord: dense, or AdaComp-encoded when ``fb-compress`` says so, see
    :mod:`flwr_gan.mdgan.compression`), ``metrics`` (MetricRecord) and, when ``send-disc`` is set,
    ``disc-out`` (its discriminator, for the server to relay).
``query.mdgan_info``
    Replies with the local data-set size ``num-examples`` (the server needs
    ``m`` for the swap period ``m E / b``).

A message with ``crash = True`` (the paper's crash experiment) makes the
worker fail-stop: it raises now and on every later message.

The node's state (``mdgan.disc``: the discriminator's arrays, ``mdgan.opt``:
its Adam state, ``mdgan.meta``: crash mark, step count and the state token)
is written to ``context.state`` after every step, so any process can take
the next message; a :class:`~flwr_gan.runtime.nodestate.NodeStore` also keeps
the discriminator and optimizer alive in this process and reuses them while
the token in ``context.state`` is the one this process wrote.

All GAN math goes through :mod:`flwr_gan.core.training`.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from torch import nn

from flwr_gan.core.models import build_models
from flwr_gan.core.training import GANTrainer, OptimizerConfig
from flwr_gan.data.node import DataConfig, device_key, message_data_config, node_images
from flwr_gan.mdgan.assignment import real_batch_indices
from flwr_gan.mdgan.compression import feedback_record
from flwr_gan.runtime.arraycodec import array_record, module_arrays, tensor_of
from flwr_gan.runtime.nodestate import NodeObjects, NodeStore
from flwr_gan.runtime.records import load_arrays
from flwr_gan.runtime.relay import IDENTITY_KEY

STEP = "mdgan_step"
INFO = "mdgan_info"
STEP_TYPE = f"train.{STEP}"
INFO_TYPE = f"query.{INFO}"

_DISC = "discriminator"
STATE_DISC = "mdgan.disc"
STATE_OPT = "mdgan.opt"
STATE_META = "mdgan.meta"
_STORE = NodeStore("mdgan", modules_key=STATE_DISC, optimizer_keys={_DISC: STATE_OPT},
                   meta_key=STATE_META)


class WorkerCrashedError(RuntimeError):
    """Raised by a worker that has (been made to) crash: fail-stop."""


def data_config(config: Mapping[str, Any], run_config: Mapping[str, Any]) -> DataConfig:
    """Return the data settings: message keys over the run config, then defaults."""
    return message_data_config(config, run_config)


def local_images(context: Context, cfg: DataConfig) -> torch.Tensor:
    """Return the images the node trains on (see :func:`flwr_gan.data.node.node_images`)."""
    return node_images(context.node_config, cfg)


def worker_seed(seed: int, key: str) -> int:
    """Return the seed of a worker's real-batch order (run seed and device key).

    Keyed by the device key (the partition id in simulation), never by Flower's
    node id, which is random per run.
    """
    digest = hashlib.sha256(f"{seed}/{key}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


@lru_cache(maxsize=4)
def _initial_discriminator(model: str, shape: tuple[int, ...], seed: int) -> nn.Module:
    """Return the run's initial discriminator (memoised per process; only ever deep-copied).

    The same on every worker (paper §IV-A): built from ``seed + 1``. Building
    a preset also initialises its generator, which costs more than a
    discriminator step for the MLP, hence the memo.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        _, disc = build_models(model, shape)
    return disc


def _worker(config: Mapping[str, Any], context: Context) -> NodeObjects:
    """Return this worker's discriminator, optimizer and trainer (its ``payload``).

    Cached in this process while ``context.state`` holds the state this process
    wrote last; otherwise rebuilt from ``context.state`` (or from the initial
    discriminator on the first message).
    """
    shape = tuple(int(v) for v in config["image-shape"])
    model, seed = str(config["model"]), int(config["seed"])
    optim = OptimizerConfig(lr_g=float(config["lr-g"]), lr_d=float(config["lr-d"]),
                            beta1=float(config["beta1"]), beta2=float(config["beta2"]))
    loss, d_steps = str(config["loss"]), int(config["disc-steps"])

    def build() -> NodeObjects:
        disc = copy.deepcopy(_initial_discriminator(model, shape, seed))
        trainer = GANTrainer(None, disc, loss=loss, optim=optim, d_steps=d_steps)
        assert trainer.opt_d is not None
        return NodeObjects({_DISC: disc}, {_DISC: trainer.opt_d}, payload=trainer)

    signature = (model, shape, seed, loss, d_steps, optim.lr_d, optim.beta1, optim.beta2)
    objects, _ = _STORE.load(context, signature, build)
    return objects


def meta_record(context: Context) -> Any:
    """Return the node's ``mdgan.meta`` ConfigRecord (created on first use)."""
    if STATE_META not in context.state.config_records:
        context.state.config_records[STATE_META] = ConfigRecord({"crashed-at": -1, "steps": 0})
    return context.state.config_records[STATE_META]


def flush_state(context: Context) -> None:
    """Make sure ``context.state`` holds the worker's current state.

    Every step writes its state through, so there is nothing left to write;
    kept for callers (checkpoints) that must not depend on that.
    """


def forget_cached_state(context: Context) -> None:
    """Stop every process from trusting its cached copy of this node's state.

    Call after replacing ``mdgan.disc`` / ``mdgan.opt`` in ``context.state``
    (e.g. when restoring a checkpoint): the next step rebuilds from them.
    """
    _STORE.forget(context)


def mdgan_step(msg: Message, context: Context) -> Message:
    """Handle ``train.mdgan_step``: L discriminator steps, then the error feedback.

    Raises
    ------
    WorkerCrashedError
        When told to crash (or crashed earlier).
    flwr_gan.runtime.records.InvalidUpdateError
        When a relayed discriminator is malformed (the local one is kept).
    """
    config: Any = msg.content.config_records["config"]
    iteration = int(config["iteration"])
    meta = meta_record(context)
    if int(meta["crashed-at"]) >= 0:
        raise WorkerCrashedError(f"worker crashed at iteration {meta['crashed-at']} (fail-stop)")
    if bool(config.get("crash", False)):
        meta["crashed-at"] = iteration
        raise WorkerCrashedError(f"injected crash at iteration {iteration}")
    started = time.perf_counter()
    objects = _worker(config, context)
    try:
        content = _step(msg, context, config, objects, iteration, started)
    except BaseException:
        _STORE.forget(context, stored=False)  # the cached objects may be half updated
        raise
    return Message(content, reply_to=msg)


def _step(msg: Message, context: Context, config: Any, objects: NodeObjects, iteration: int,
          started: float) -> RecordDict:
    """L discriminator steps and the feedback; store the new state; return the reply content."""
    trainer: GANTrainer = objects.payload
    disc = trainer.discriminator
    assert disc is not None and trainer.opt_d is not None
    swapped_in = False
    if "disc-in" in msg.content.array_records:
        load_arrays(disc, msg.content.array_records["disc-in"], _DISC,
                    what="relayed discriminator")
        swapped_in = True
    cfg = data_config(config, context.run_config)
    images = local_images(context, cfg)
    b = int(config["batch-size"])
    idx = real_batch_indices(images.size(0), b, iteration - 1,
                             seed=worker_seed(int(config["seed"]),
                                             device_key(context.node_config, context.node_id)))
    real = images[torch.as_tensor(idx)]
    batches = msg.content.array_records["batches"]
    x_g, x_d = tensor_of(batches["x_g"]), tensor_of(batches["x_d"])
    compute_start = time.perf_counter()
    disc.train()
    d_losses = [trainer.d_step(real, x_d) for _ in range(trainer.d_steps)]
    feedback, g_loss = trainer.feedback(x_g)
    compute_s = time.perf_counter() - compute_start
    meta = meta_record(context)
    meta["steps"] = int(meta["steps"]) + trainer.d_steps
    _STORE.save(context, objects)
    content = RecordDict({
        "feedback": feedback_record(feedback.cpu().numpy(), config),
        "metrics": MetricRecord({
            "iteration": iteration, "compute-s": compute_s,
            "handler-s": time.perf_counter() - started, "d-loss": float(np.mean(d_losses)),
            "g-loss": g_loss, "num-examples": int(images.size(0)),
            "swapped-in": int(swapped_in),
        }),
    })
    if bool(config.get("send-disc", False)):  # the arrays just stored: same bytes, no copy
        content.array_records["disc-out"] = array_record(
            dict(context.state.array_records[STATE_DISC].items()))
    return content


def mdgan_info(msg: Message, context: Context) -> Message:
    """Handle ``query.mdgan_info``: report the local data-set size."""
    config: Any = msg.content.config_records.get("config", ConfigRecord())
    if int(meta_record(context)["crashed-at"]) >= 0:
        raise WorkerCrashedError("worker crashed earlier (fail-stop)")
    images = local_images(context, data_config(config, context.run_config))
    metrics = MetricRecord({"num-examples": int(images.size(0))})
    identity = ConfigRecord({"device-key": device_key(context.node_config, context.node_id)})
    return Message(RecordDict({"metrics": metrics, IDENTITY_KEY: identity}), reply_to=msg)


def register_handlers(app: ClientApp) -> ClientApp:
    """Register MD-GAN's worker handlers on an existing ClientApp (and return it)."""
    app.train(STEP)(mdgan_step)
    app.query(INFO)(mdgan_info)
    return app


def make_client_app() -> ClientApp:
    """Return a new ClientApp serving MD-GAN workers."""
    return register_handlers(ClientApp())


def discriminator_arrays(disc: nn.Module) -> ArrayRecord:
    """Pack a discriminator the way workers exchange it in a swap."""
    return module_arrays({_DISC: disc})


client_app = make_client_app()
