"""The algorithm registry: a family is one module plus one entry here.

An :class:`Algorithm` names the settings groups its family uses, the defaults
it changes (the only place a family's defaults live), what a record counts,
the function that runs its server (on a Flower ``Grid``, or locally for the
standalone baseline) and the function that registers its device handlers on a
ClientApp. ``flwr-gan simulate --algorithm X``, the device ClientApp (one
``flower-supernode`` serves every family) and the ``flwr run`` ServerApp all
read this table.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flwr_gan.compress.settings import CompressSettings, SyncSettings
from flwr_gan.config import (
    CLI,
    RUN_CONFIG,
    ConfigError,
    EvalSettings,
    FederationSettings,
    ModelSettings,
    RoundSettings,
    RunSettings,
    Settings,
    TrainSettings,
    key_of,
    knobs,
    label,
)
from flwr_gan.data.node import DataConfig
from flwr_gan.fl.settings import FailureSettings, FeGANSettings, FLSettings, RobustSettings
from flwr_gan.gossip.settings import GossipSettings
from flwr_gan.mdgan.settings import MDGANSettings
from flwr_gan.privacy.settings import DPSettings
from flwr_gan.standalone import StandaloneSettings

_COMMON: dict[str, type] = {"data": DataConfig, "model": ModelSettings, "train": TrainSettings,
                            "eval": EvalSettings, "run": RunSettings}
_FEDERATED: dict[str, type] = _COMMON | {"federation": FederationSettings}
#: What devices upload, and how (FL-GAN and FeGAN have all three).
_UPLOAD: dict[str, type] = {"compression": CompressSettings, "partial": SyncSettings,
                            "privacy": DPSettings}
#: Validation, robust aggregation and failure injection of FL-GAN / FeGAN (docs/robustness.md).
_RELIABILITY: dict[str, type] = {"robust": RobustSettings, "failures": FailureSettings}


@dataclass(frozen=True)
class Algorithm:
    """One family's registry entry.

    Attributes
    ----------
    name : str
        ``--algorithm`` value.
    summary : str
        One line for ``--help``.
    groups : mapping
        Settings groups by attribute name (``settings.model``, ...).
    defaults : mapping
        The knobs whose defaults this family changes (field name -> value).
    unit : str
        What a record counts: ``round``, ``iteration`` or ``step``.
    total : str
        The knob holding the run's length in ``unit``.
    server : str
        ``module:function`` running the family: ``f(grid, experiment)`` (``grid``
        is ``None`` for local families).
    client : str or None
        ``module:function`` registering the device handlers on a ClientApp.
    hidden : frozenset of str
        Knobs of shared groups the family does not use (no flag, no key).
    """

    name: str
    summary: str
    groups: Mapping[str, type]
    defaults: Mapping[str, Any]
    unit: str
    total: str
    server: str
    client: str | None = None
    hidden: frozenset[str] = field(default_factory=frozenset)

    @property
    def federated(self) -> bool:
        """Whether the family runs on Flower (a ``federation`` group)."""
        return "federation" in self.groups

    def fields(self) -> list[Any]:
        """Every knob's declaration this family exposes, in group order."""
        return [f for g in self.groups.values() for f in knobs(g) if f.name not in self.hidden]

    def settings(self, values: Mapping[str, Any] | None = None, *,
                 where: str = RUN_CONFIG, ignore: tuple[str, ...] = ()) -> Settings:
        """Build this family's settings from kebab-case keys (strictly: see :mod:`.config`)."""
        values = dict(values or {})
        for key in values:
            if key.replace("-", "_") in self.hidden and key not in ignore:
                raise ConfigError(f"{label(key, where)} does not apply to --algorithm "
                                  f"{self.name}")
        settings = Settings.from_mapping(self.name, self.groups, values, defaults=self.defaults,
                                         where=where, ignore=ignore)
        return settings

    def load(self, which: str) -> Callable[..., Any]:
        """Import the ``server`` or ``client`` function."""
        target = getattr(self, which)
        if target is None:
            raise ValueError(f"{self.name} has no {which} function")
        module, _, name = target.partition(":")
        return getattr(importlib.import_module(module), name)


_FL_DEFAULTS = {"model": "lsgan", "batch_size": 50, "partition": "fegan", "num_clients": 176,
                "timeout": 3600.0}

ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in (
    Algorithm(
        "fegan", "FeGAN: balanced device sampling, KL weighting, load-aware FedAvg of G and D "
        "(defaults: the FeGAN paper's)",
        _FEDERATED | {"schedule": RoundSettings, "fl": FLSettings, "fegan": FeGANSettings}
        | _UPLOAD | _RELIABILITY,
        _FL_DEFAULTS | {"out": "runs/fegan"}, "round", "rounds",
        "flwr_gan.fl.server:run_federated", "flwr_gan.fl.client:register_handlers"),
    Algorithm(
        "flgan", "FL-GAN: FedAvg of generator and discriminator",
        _FEDERATED | {"schedule": RoundSettings, "fl": FLSettings} | _UPLOAD | _RELIABILITY,
        _FL_DEFAULTS | {"out": "runs/flgan"}, "round", "rounds",
        "flwr_gan.fl.server:run_federated", "flwr_gan.fl.client:register_handlers"),
    Algorithm(
        "mdgan", "MD-GAN: one generator on the server, one discriminator per device, error "
        "feedback, discriminator swaps relayed by the server",
        _FEDERATED | {"mdgan": MDGANSettings, "compression": CompressSettings},
        {"eval_every": 100, "checkpoint_every": 100, "timeout": 120.0,
         "out": "runs/mdgan"}, "iteration", "iterations",
        "flwr_gan.mdgan.experiment:run_mdgan_experiment",
        "flwr_gan.mdgan.worker_state:register_worker"),
    Algorithm(
        "gossip", "Gossip GAN: every device trains its own G and D; every --local-steps "
        "iterations each sends them to random peers, which average (relayed by the server)",
        _FEDERATED | {"schedule": RoundSettings, "gossip": GossipSettings,
                      "compression": CompressSettings, "partial": SyncSettings},
        {"rounds": 50, "local_steps": 10, "eval_every": 5, "out": "runs/gossip"}, "round",
        "rounds", "flwr_gan.gossip.experiment:run_gossip_experiment",
        "flwr_gan.gossip.client:register_handlers"),
    Algorithm(
        "standalone", "the centralised baseline: one G and D on the whole training set",
        _COMMON | {"standalone": StandaloneSettings},
        {"eval_every": 500, "checkpoint_every": 500, "out": "runs/standalone"}, "step",
        "steps", "flwr_gan.standalone:run_standalone_experiment",
        hidden=frozenset({"partition", "partition_seed", "max_class", "max_samples",
                          "fegan_draw", "alpha"})),
)}


def get_algorithm(name: str) -> Algorithm:
    """Return the registry entry of ``name``.

    Raises
    ------
    ConfigError
        Naming the known algorithms.
    """
    if name not in ALGORITHMS:
        raise ConfigError(f"--algorithm {name!r} is unknown: choose one of "
                          f"{', '.join(ALGORITHMS)}")
    return ALGORITHMS[name]


def make_settings(algorithm: str, **values: Any) -> Settings:
    """Return ``algorithm``'s settings with some knobs set by field name (checked).

    >>> make_settings("mdgan", iterations=10, num_clients=3).mdgan.iterations
    10
    """
    return get_algorithm(algorithm).settings({key_of(k): v for k, v in values.items()},
                                             where=CLI)


def device_handlers() -> list[Callable[..., Any]]:
    """Every family's function registering its device handlers."""
    seen: list[str] = []
    out = []
    for algo in ALGORITHMS.values():
        if algo.client and algo.client not in seen:
            seen.append(algo.client)
            out.append(algo.load("client"))
    return out


__all__ = ["ALGORITHMS", "Algorithm", "device_handlers", "get_algorithm", "make_settings"]
