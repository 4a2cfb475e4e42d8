"""Failure and attack injection on the devices (FL-GAN / FeGAN), for tests and experiments.

:func:`failure_mod` is a ClientApp mod that acts only on ``train`` messages whose
ConfigRecord carries the injection keys (the server adds them from
``--fail-prob`` / ``--fail-mode`` / ``--attack``, :func:`injection_config`):

* ``fail-prob`` p: each sampled device fails its round with probability p,
  decided by :func:`injected_failure` from (seed, round, device key) only, so a
  run repeats exactly and the same devices fail under any Flower node ids.
  ``fail-mode`` ``error`` raises in the device (the server gets an error
  reply); ``timeout`` sleeps ``fail-delay`` seconds (``--timeout`` + 1) before
  training, so the reply arrives after the server stopped waiting.
* ``attack``: named devices tamper with their honest reply: ``nan`` fills every
  floating-point array with NaN, ``shape`` sends the first float array with a
  wrong shape, ``scale`` sends ``global + 1000 x (update)``.

MD-GAN has the paper's own crash schedule (``--crash-schedule``); gossip has
neither (docs/robustness.md).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict

from flwr_gan.config import ConfigError
from flwr_gan.data.node import device_key

FAIL_MODES = ("error", "timeout")
ATTACKS = ("nan", "shape", "scale")
#: Factor of the ``scale`` attack.
SCALE = 1000.0

KEY_PROB, KEY_MODE, KEY_DELAY, KEY_ATTACK = "fail-prob", "fail-mode", "fail-delay", "attack"


class InjectedFailureError(RuntimeError):
    """The failure a device was told to emulate."""


def parse_attacks(spec: str) -> dict[str, str]:
    """Return ``{device key: attack}`` of ``'key=attack,key=attack'``.

    Raises
    ------
    ConfigError
        Naming the malformed entry and the allowed attacks.
    """
    out: dict[str, str] = {}
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        key, sep, kind = entry.partition("=")
        if not sep or not key.strip() or kind.strip() not in ATTACKS:
            raise ConfigError(f"--attack entry {entry!r} is invalid: write DEVICE-KEY=ATTACK "
                              f"with ATTACK one of {', '.join(ATTACKS)} "
                              "(e.g. partition-0=nan,partition-1=scale)")
        out[key.strip()] = kind.strip()
    return out


def injected_failure(seed: int, server_round: int, key: str, prob: float) -> bool:
    """Return whether device ``key`` fails ``server_round`` (deterministic)."""
    if prob <= 0:
        return False
    entropy = [int(seed), int(server_round), zlib.crc32(key.encode())]
    return bool(np.random.default_rng(entropy).random() < prob)


def injection_config(fail_prob: float, fail_mode: str, attack: str, timeout: float
                     ) -> dict[str, float | str]:
    """Return the train-config entries that switch injection on (empty when off)."""
    out: dict[str, float | str] = {}
    if fail_prob > 0:
        out |= {KEY_PROB: float(fail_prob), KEY_MODE: fail_mode,
                KEY_DELAY: float(timeout) + 1.0}
    if attack:
        out[KEY_ATTACK] = attack
    return out


def _tamper(kind: str, sent: ArrayRecord, reply: ArrayRecord) -> ArrayRecord:
    floats = [k for k, v in reply.items() if v.numpy().dtype.kind == "f"]
    out = {k: v for k, v in reply.items()}
    if kind == "nan":
        for k in floats:
            out[k] = Array(np.full(reply[k].numpy().shape, np.nan, dtype=reply[k].numpy().dtype))
    elif kind == "shape" and floats:
        out[floats[0]] = Array(np.zeros((3, 3), dtype=np.float32))
    elif kind == "scale":
        for k in floats:
            if k in sent:
                base = sent[k].numpy()
                out[k] = Array(np.asarray(base + SCALE * (reply[k].numpy() - base),
                                          dtype=base.dtype))
    return ArrayRecord(out)


def failure_mod(msg: Message, context: Context,
                call_next: Callable[[Message, Context], Message]) -> Message:
    """Inject the configured failure or attack into a ``train`` message (else pass)."""
    if msg.metadata.message_type != "train" or not msg.has_content():
        return call_next(msg, context)
    config = next((r for r in msg.content.config_records.values()
                   if KEY_PROB in r or KEY_ATTACK in r), None)
    if config is None:
        return call_next(msg, context)
    key = device_key(context.node_config, context.node_id)
    rnd = int(_scalar(config, "server-round", 0))
    prob = float(_scalar(config, KEY_PROB, 0.0))
    if injected_failure(int(_scalar(config, "seed", 0)), rnd, key, prob):
        if config.get(KEY_MODE, "error") == "timeout":
            time.sleep(float(_scalar(config, KEY_DELAY, 1.0)))
        else:
            raise InjectedFailureError(f"injected failure of {key} in round {rnd} "
                                  f"(--fail-prob {prob:g})")
    sent = next(iter(msg.content.array_records.values()), None)
    reply = call_next(msg, context)
    kind = parse_attacks(str(config.get(KEY_ATTACK, ""))).get(key)
    if kind is None or sent is None or not reply.has_content() \
            or len(reply.content.array_records) != 1:
        return reply
    name, arrays = next(iter(reply.content.array_records.items()))
    content = RecordDict({name: _tamper(kind, sent, arrays)}
                         | dict(reply.content.metric_records.items())
                         | dict(reply.content.config_records.items()))
    return Message(content, reply_to=msg)


def _scalar(config: ConfigRecord, key: str, default: float) -> float:
    value = config.get(key, default)
    return float(value) if isinstance(value, (int, float)) else default


__all__ = ["ATTACKS", "FAIL_MODES", "InjectedFailureError", "failure_mod", "injected_failure",
           "injection_config", "parse_attacks"]
