"""One settings schema for every algorithm family.

Each knob is declared once, as a field of a small frozen dataclass (a *group*)
made with :func:`knob`: its default, its help text, its allowed values. From
these declarations come

* the command-line flags (``local_steps`` -> ``--local-steps``; help from the
  field, defaults shown; booleans as ``--flag`` / ``--no-flag``),
* the keys of ``[tool.flwr.app.config]`` / ``--run-config`` (``local-steps``),
* the resolved ``config.json`` of a run (``local_steps``).

Each family (:mod:`flwr_gan.algorithms`) names the groups it uses and, in one
place, the defaults it changes (FeGAN's paper values, MD-GAN's). Parsing is
strict: an unknown key, a malformed number or boolean (``"flase"``), a value out
of range or not among the choices raises :class:`ConfigError`, one line naming
the key, the value and what is allowed. Nothing falls back silently. The knob machinery
(declaring, parsing, checking) is :mod:`flwr_gan.knobs`; its names are re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import Field, dataclass, replace
from typing import Any

from flwr_gan.knobs import (
    CLI,
    RUN_CONFIG,
    ConfigError,
    ConfigValue,
    check_group,
    check_value,
    describe_allowed,
    key_of,
    knob,
    knobs,
    label,
    parse_value,
    read_group,
    unknown_message,
)


@dataclass(frozen=True)
class ModelSettings:
    """The networks."""

    model: str = knob("small", "model preset (`flwr-gan models` lists them)",
                      choices=("mlp", "lsgan", "dcgan", "mdgan-cnn", "small"))
    loss: str = knob("", "GAN loss; empty = the preset's paper loss", choices=("", "bce", "lsgan"))
    latent_dim: int = knob(0, "latent size; 0 = the preset's", ge=0)

    def resolved_loss(self) -> str:
        """Return the loss in use (the preset's paper loss unless set)."""
        from flwr_gan.core.models import PRESETS

        return self.loss or PRESETS[self.model].loss


@dataclass(frozen=True)
class TrainSettings:
    """Local training: batches, discriminator steps and Adam."""

    batch_size: int = knob(64, "batch size (B in FeGAN, b in MD-GAN)", ge=1)
    d_steps: int = knob(1, "discriminator updates per generator update (L in MD-GAN)", ge=1)
    lr_g: float = knob(2e-4, "generator Adam learning rate", gt=0)
    lr_d: float = knob(2e-4, "discriminator Adam learning rate", gt=0)
    beta1: float = knob(0.5, "Adam beta1", ge=0, lt=1)
    beta2: float = knob(0.999, "Adam beta2", ge=0, lt=1)

    def optimizer(self) -> Any:
        """Return the training core's optimizer settings."""
        from flwr_gan.core.training import OptimizerConfig

        return OptimizerConfig(self.lr_g, self.lr_d, self.beta1, self.beta2)


@dataclass(frozen=True)
class EvalSettings:
    """Evaluation of the generator(s)."""

    eval_every: int = knob(10, "evaluate every k rounds / iterations / steps "
                           "(0: only at the start and the end)", ge=0)
    fid_backend: str = knob("classifier", "features for FID: the cached classifier (fast) "
                            "or InceptionV3; none skips evaluation",
                            choices=("classifier", "inception", "none"))
    n_eval: int = knob(2000, "generated and held-out real images per evaluation", ge=2)
    eval_seeds: int = knob(3, "latent seeds per evaluation: FID and KID are their mean, "
                           "with the spread over seeds", ge=1, le=100)
    eval_mode: str = knob("eval", "generator batch norm while scoring: eval (running "
                          "statistics, device-averaged in federated runs), train (batch "
                          "statistics) or recalibrate (re-estimated on fresh latents)",
                          choices=("eval", "train", "recalibrate"))


@dataclass(frozen=True)
class RunSettings:
    """The run: seed, output, resume."""

    seed: int = knob(0, "seed of model init, sampling, peers and local training", ge=0)
    out: str = knob("runs/run", "run directory")
    overwrite: bool = knob(False, "replace an existing run in --out")
    resume: bool = knob(False, "continue the run in --out from its checkpoint")
    checkpoint_every: int = knob(1, "write the checkpoint every k rounds / iterations "
                                 "(0: only at the end)", ge=0)
    progress: bool = knob(True, "show a progress bar")


@dataclass(frozen=True)
class FederationSettings:
    """The simulated (or real) federation and its links."""

    num_clients: int = knob(10, "devices: simulated SuperNodes, or nodes to wait for", ge=1)
    timeout: float = knob(600.0, "seconds to wait for replies; late devices are dropped", gt=0)
    client_cpus: float = knob(1.0, "CPUs Ray reserves per simulated client "
                              "(1: one client per core)", gt=0)
    client_threads: int = knob(1, "torch threads per client (0: torch's default)", ge=0)
    bandwidth_gbps: float = knob(2.0, "virtual-clock link bandwidth per device "
                                 "(FeGAN testbed: 2 Gbit/s)", gt=0)
    latency_ms: float = knob(0.0, "virtual-clock one-way link latency", ge=0)
    ray_address: str = knob("", "simulate: run the clients on this existing Ray cluster "
                            "(host:port of `ray start --head`, or auto) instead of a new "
                            "local one")


@dataclass(frozen=True)
class RoundSettings:
    """Communication rounds with local training in between (FL-GAN, FeGAN, gossip)."""

    rounds: int = knob(100, "communication rounds R", ge=0)
    local_steps: int = knob(30, "local GAN iterations per round (E in FeGAN, K in gossip)",
                            ge=1, aliases=("sync-every",))


class Settings:
    """A family's settings: one instance of each of its groups, read by attribute.

    ``settings.model`` is the :class:`ModelSettings`; a knob is read by name,
    ``settings.rounds`` or ``settings.get("rounds")`` (group names win: the
    preset is ``settings.model.model``). Build with :meth:`from_mapping` or
    :func:`flwr_gan.algorithms.make_settings`.

    Parameters
    ----------
    algorithm : str
        The family's name.
    groups : mapping
        Attribute name -> group instance (e.g. ``"model" -> ModelSettings(...)``).
    """

    def __init__(self, algorithm: str, groups: Mapping[str, Any]) -> None:
        self.algorithm = algorithm
        self._groups = dict(groups)
        self._owner: dict[str, str] = {}
        for gname, g in self._groups.items():
            for f in knobs(type(g)):
                if f.name in self._owner:
                    raise TypeError(f"setting {f.name!r} is declared in both "
                                    f"{self._owner[f.name]!r} and {gname!r}")
                self._owner[f.name] = gname

    def __getattr__(self, name: str) -> Any:
        """Return a group by its attribute name, else a knob by its field name."""
        groups = self.__dict__.get("_groups", {})
        if name in groups:
            return groups[name]
        owner = self.__dict__.get("_owner", {})
        if name in owner:
            return getattr(groups[owner[name]], name)
        raise AttributeError(f"{self.__dict__.get('algorithm')} settings have no {name!r}")

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Settings) and self.algorithm == other.algorithm
                and self._groups == other._groups)

    def __repr__(self) -> str:
        return f"Settings({self.algorithm!r}, {self.to_dict()})"

    @property
    def groups(self) -> dict[str, Any]:
        """Attribute name -> group instance."""
        return dict(self._groups)

    def names(self) -> list[str]:
        """Every knob's field name, in declaration order."""
        return list(self._owner)

    def get(self, name: str) -> Any:
        """Return one knob's value by field name."""
        return getattr(self._groups[self._owner[name]], name)

    def has(self, name: str) -> bool:
        """Whether this family has the knob ``name``."""
        return name in self._owner

    def field(self, name: str) -> Field[Any]:
        """Return a knob's declaration."""
        group = type(self._groups[self._owner[name]])
        return next(f for f in knobs(group) if f.name == name)

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with some knobs changed (checked)."""
        groups = dict(self._groups)
        for name, value in changes.items():
            if name not in self._owner:
                raise ConfigError(unknown_message(key_of(name), [key_of(n) for n in self._owner],
                                                  where=CLI))
            gname = self._owner[name]
            groups[gname] = replace(groups[gname], **{name: value})
        new = Settings(self.algorithm, groups)
        new.check()
        return new

    def check(self) -> None:
        """Check every knob and the groups' own cross-field rules."""
        for g in self._groups.values():
            check_group(g)
            validate = getattr(g, "validate", None)
            if callable(validate):
                validate()
        if (self.has("dp") and str(self.get("dp")).startswith("client")
                and self.has("compress") and self.get("compress") != "none"):
            raise ConfigError(f"--dp {self.get('dp')} with --compress {self.get('compress')} "
                              "has no privacy guarantee (the compression residual is not "
                              "clipped): use a server-side --dp mode, or --compress none")
        if (self.algorithm in ("flgan", "fegan") and self.has("sync")
                and self.get("sync") == "discriminator" and self.has("resume")
                and self.get("resume")):
            raise ConfigError("--resume does not support --sync discriminator: the generators "
                              "lived on the devices and a restarted run has lost them; start a "
                              "new run")
        if self.has("bn_buffers") and self.get("bn_buffers") == "local":
            if self.get("eval_mode") == "eval":
                raise ConfigError("--bn-buffers local needs --eval-mode recalibrate or train: "
                                  "the server's generator has no running statistics of its "
                                  "own to score with")
            if self.has("resume") and self.get("resume"):
                raise ConfigError("--resume does not support --bn-buffers local: the devices' "
                                  "running statistics are not in the checkpoint; start a new "
                                  "run")
        if (self.has("optimizer_state") and self.get("optimizer_state") == "local"
                and self.has("resume") and self.get("resume")):
            raise ConfigError("--resume does not support --optimizer-state local: the devices' "
                              "Adam state is not in the checkpoint; start a new run")
        if self.has("aggregator"):
            self._check_round_size()
        if self.has("resume") and self.get("resume") and self.get("overwrite"):
            raise ConfigError("--resume and --overwrite exclude each other: --resume continues "
                              "the run in --out, --overwrite replaces it")

    def _check_round_size(self) -> None:
        """Check that a round samples as many devices as the aggregation needs updates."""
        from flwr_gan.strategy.robust import RobustAggregation
        from flwr_gan.strategy.sampling import round_size

        method = RobustAggregation(str(self.get("aggregator")), float(self.get("trim_beta")),
                                   int(self.get("num_malicious")), int(self.get("krum_select")))
        needed = max(int(self.get("min_replies")), method.replies_needed())
        size = round_size(float(self.get("fraction")), int(self.get("num_clients")),
                          int(self.get("min_nodes")))
        if size < needed:
            why = (f"--aggregator {method.method} with --num-malicious {method.num_malicious}"
                   if method.robust and method.replies_needed() == needed
                   else f"--min-replies {needed}")
            raise ConfigError(f"{why} needs {needed} valid updates per round, but a round "
                              f"samples {size} devices (--fraction x --num-clients, at least "
                              f"--min-nodes): set --min-nodes {needed} or more")

    def to_dict(self) -> dict[str, ConfigValue]:
        """Every knob as ``field_name -> value`` (the resolved ``config.json`` keys)."""
        return {name: self.get(name) for name in self._owner}

    def to_run_config(self) -> dict[str, ConfigValue]:
        """Every knob as a kebab-case run-config entry, plus ``algorithm``."""
        return {"algorithm": self.algorithm} | {key_of(k): v for k, v in self.to_dict().items()}

    @classmethod
    def from_mapping(cls, algorithm: str, group_types: Mapping[str, type],
                     values: Mapping[str, Any], *, defaults: Mapping[str, Any] | None = None,
                     where: str = RUN_CONFIG, ignore: Iterable[str] = ()) -> Settings:
        """Build settings from kebab-case keys (missing keys take the defaults).

        Raises
        ------
        ConfigError
            On an unknown key (with the closest known ones), or a bad value.
        """
        ignore = set(ignore)
        by_key: dict[str, tuple[str, Field[Any]]] = {}
        for gname, gtype in group_types.items():
            for f in knobs(gtype):
                by_key[key_of(f.name)] = (gname, f)
                for alias in f.metadata.get("aliases", ()):
                    by_key[alias] = (gname, f)
        kwargs: dict[str, dict[str, Any]] = {g: {} for g in group_types}
        for name, value in (defaults or {}).items():
            gname, f = by_key[key_of(name)]
            kwargs[gname][f.name] = value
        for key, raw in values.items():
            if key in ignore:
                continue
            if key not in by_key:
                raise ConfigError(unknown_message(key, list(by_key), where=where))
            gname, f = by_key[key]
            kwargs[gname][f.name] = parse_value(f, raw, where=where)
        settings = cls(algorithm, {g: t(**kwargs[g]) for g, t in group_types.items()})
        settings.check()
        return settings


__all__ = ["CLI", "RUN_CONFIG", "ConfigError", "ConfigValue", "EvalSettings",
           "FederationSettings", "ModelSettings", "RoundSettings", "RunSettings", "Settings",
           "TrainSettings", "check_group", "check_value", "describe_allowed", "key_of", "knob",
           "knobs", "label", "parse_value", "read_group", "unknown_message"]
