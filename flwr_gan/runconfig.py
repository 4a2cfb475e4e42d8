"""Reading dataclass settings from a Flower run config.

Flower passes ``[tool.flwr.app.config]`` / ``--run-config`` to apps as a flat
mapping with kebab-case keys (``local-steps = 30``). Every settings dataclass
of the package (data, FL-GAN/FeGAN, MD-GAN) reads it through
:func:`run_config_kwargs`, so missing keys keep their defaults and a value of
the wrong type gets the same clear error everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from dataclasses import fields
from typing import Any

ConfigValue = bool | float | int | str

_TRUE = ("1", "true", "yes", "on")


def coerce(key: str, value: Any, default: Any) -> Any:
    """Convert ``value`` to the type of ``default``.

    Booleans given as strings are read as ``1/true/yes/on`` (anything else is
    false), since ``--run-config "flag='false'"`` arrives as a string.

    Raises
    ------
    ValueError
        Naming the key, the value and the expected type.
    """
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                return value.strip().lower() in _TRUE
            return bool(value)
        return type(default)(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"run config {key}={value!r} should be of type {type(default).__name__}"
        ) from None


def run_config_kwargs(
    cls: type, run_config: Mapping[str, Any], *, skip: Container[str] = (),
    converters: Mapping[str, Callable[[Any], Any]] | None = None,
) -> dict[str, Any]:
    """Return constructor keyword arguments of dataclass ``cls`` found in ``run_config``.

    Parameters
    ----------
    cls : type
        A dataclass whose fields all have defaults.
    run_config : mapping
        Kebab-case keys (``field_name`` -> ``field-name``); unknown keys are ignored.
    skip : container of str
        Field names not to read.
    converters : mapping, optional
        Field name -> conversion function, for fields whose default's type is not
        the right converter (e.g. ``None`` defaults, tuples).
    """
    converters = converters or {}
    defaults = cls()
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        key = f.name.replace("_", "-")
        if f.name in skip or key not in run_config:
            continue
        value = run_config[key]
        if f.name in converters:
            try:
                kwargs[f.name] = converters[f.name](value)
            except (TypeError, ValueError):
                raise ValueError(f"run config {key}={value!r} is not valid") from None
        else:
            kwargs[f.name] = coerce(key, value, getattr(defaults, f.name))
    return kwargs
