"""The machinery under the settings schema: declaring, parsing and checking a knob.

:func:`knob` declares a setting as a dataclass field carrying its help text and allowed
values; :func:`parse_value` / :func:`check_value` turn what a user wrote (a run-config
value or a flag) into that type and refuse anything else with a one-line
:class:`ConfigError` naming the key, the value and what is allowed. The groups built on
it, and :class:`~flwr_gan.config.Settings`, live in :mod:`flwr_gan.config`, which
re-exports every name here.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import Field, field, fields
from typing import Any

__all__ = ["CLI", "RUN_CONFIG", "ConfigError", "ConfigValue", "check_group", "check_value",
           "describe_allowed", "key_of", "knob", "knobs", "label", "parse_value", "read_group",
           "unknown_message"]

ConfigValue = bool | float | int | str

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class ConfigError(ValueError):
    """An invalid setting: the message names the key, the value and what is allowed."""


def knob(default: Any, help: str, *, choices: Sequence[str] | None = None,
         ge: float | None = None, gt: float | None = None, le: float | None = None,
         lt: float | None = None, aliases: Sequence[str] = ()) -> Any:
    """Declare a setting: a dataclass field carrying its help text and allowed values.

    Parameters
    ----------
    default : bool, int, float or str
        The default; its type is the setting's type.
    help : str
        One line for ``--help`` and the docs.
    choices : sequence of str, optional
        Allowed values of a string setting.
    ge, gt, le, lt : float, optional
        Bounds of a number (>=, >, <=, <).
    aliases : sequence of str, optional
        Other accepted names (kebab-case), e.g. the name a paper uses.
    """
    meta = {"help": help, "choices": tuple(choices) if choices else None, "ge": ge, "gt": gt,
            "le": le, "lt": lt, "aliases": tuple(aliases)}
    return field(default=default, metadata=meta)


def key_of(name: str) -> str:
    """Return the run-config key of a field (``local_steps`` -> ``local-steps``)."""
    return name.replace("_", "-")


def describe_allowed(f: Field[Any]) -> str:
    """Say in words which values field ``f`` accepts."""
    meta = f.metadata
    if meta.get("choices"):
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    kind = type(f.default)
    if kind is bool:
        return "true or false"
    parts = []
    for op, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if meta.get(op) is not None:
            parts.append(f"{sym} {meta[op]:g}")
    what = {int: "an integer", float: "a number", str: "a string"}.get(kind, kind.__name__)
    return what + (" " + " and ".join(parts) if parts else "")


RUN_CONFIG = "run config key {key!r}"
CLI = "--{key}"


def label(key: str, where: str) -> str:
    """Name a key the way the user wrote it (``where`` is :data:`RUN_CONFIG` or :data:`CLI`)."""
    return where.format(key=key)


def parse_value(f: Field[Any], raw: Any, *, where: str = RUN_CONFIG) -> Any:
    """Convert ``raw`` to field ``f``'s type and check it; raise :class:`ConfigError`."""
    kind = type(f.default)

    def bad() -> ConfigError:
        return ConfigError(f"{label(key_of(f.name), where)}: {raw!r} is invalid: expected "
                           f"{describe_allowed(f)}")

    value: Any
    if kind is bool:
        if isinstance(raw, bool):
            value = raw
        elif isinstance(raw, int) and raw in (0, 1):
            value = bool(raw)
        elif isinstance(raw, str) and raw.strip().lower() in _TRUE + _FALSE:
            value = raw.strip().lower() in _TRUE
        else:
            raise bad()
    elif kind is int:
        if isinstance(raw, bool):
            raise bad()
        if isinstance(raw, float):
            if not raw.is_integer():
                raise bad()
            value = int(raw)
        else:
            try:
                value = int(str(raw).strip())
            except ValueError:
                raise bad() from None
    elif kind is float:
        if isinstance(raw, bool):
            raise bad()
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise bad() from None
        if not math.isfinite(value):
            raise bad()
    else:
        if not isinstance(raw, (str, int, float)) or isinstance(raw, bool):
            raise bad()
        value = str(raw)
    check_value(f, value, where=where, shown=raw)
    return value


def check_value(f: Field[Any], value: Any, *, where: str = RUN_CONFIG,
                shown: Any = None) -> None:
    """Raise :class:`ConfigError` if ``value`` breaks ``f``'s choices or bounds.

    ``shown`` is what the user wrote (default: ``value``), quoted in the message.
    """
    meta = f.metadata
    err = ConfigError(f"{label(key_of(f.name), where)}: {value if shown is None else shown!r} "
                      f"is invalid: expected {describe_allowed(f)}")
    if meta.get("choices") and value not in meta["choices"]:
        raise err
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if meta.get("ge") is not None and not value >= meta["ge"]:
            raise err
        if meta.get("gt") is not None and not value > meta["gt"]:
            raise err
        if meta.get("le") is not None and not value <= meta["le"]:
            raise err
        if meta.get("lt") is not None and not value < meta["lt"]:
            raise err


def knobs(group: type) -> list[Field[Any]]:
    """Return the declared settings of a group (fields made with :func:`knob`)."""
    return [f for f in fields(group) if "help" in f.metadata]


def check_group(obj: Any, *, where: str = CLI) -> None:
    """Check every field of a group instance against its declaration."""
    for f in knobs(type(obj)):
        value = getattr(obj, f.name)
        if type(value) is not type(f.default) and not (
            isinstance(f.default, float) and isinstance(value, int)
            and not isinstance(value, bool)
        ):
            raise ConfigError(f"{label(key_of(f.name), where)}: {value!r} is invalid: "
                              f"expected {describe_allowed(f)}")
        check_value(f, value, where=where)


def unknown_message(key: str, known: Sequence[str], *, where: str) -> str:
    """Say that ``key`` is unknown, suggesting the closest known keys."""
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    if close:
        hint = "did you mean " + " or ".join(label(c, where) for c in close) + "?"
    else:
        hint = "known: " + ", ".join(sorted(known))
    return f"{label(key, where)} is unknown ({hint})"


def read_group(group: type, values: Mapping[str, Any], *, where: str = RUN_CONFIG) -> Any:
    """Build one group from the keys of ``values`` it declares (others are not its business).

    Nodes use this to read, say, the data settings out of a run config that also
    carries every other knob. Values are parsed and checked strictly.
    """
    kwargs: dict[str, Any] = {}
    for f in knobs(group):
        for key in (key_of(f.name), *f.metadata.get("aliases", ())):
            if key in values:
                kwargs[f.name] = parse_value(f, values[key], where=where)
    obj = group(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj
