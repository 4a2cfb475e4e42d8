from dataclasses import dataclass

import pytest

from flwr_gan.runconfig import coerce, run_config_kwargs


@dataclass
class _Cfg:
    local_steps: int = 30
    lr: float = 2e-4
    resume: bool = False
    name: str = "x"
    shape: tuple = (1, 28, 28)


def test_kebab_keys_types_and_defaults():
    kw = run_config_kwargs(_Cfg, {"local-steps": "12", "lr": 1, "resume": "true",
                                  "other": 5, "shape": "3,32,32"},
                           converters={"shape": lambda v: tuple(map(int, v.split(",")))})
    assert kw == {"local_steps": 12, "lr": 1.0, "resume": True, "shape": (3, 32, 32)}
    assert run_config_kwargs(_Cfg, {"local-steps": 3}, skip=("local_steps",)) == {}


def test_booleans_from_strings():
    assert coerce("k", "FALSE", False) is False
    assert coerce("k", "on", False) is True
    assert coerce("k", 0, True) is False


def test_bad_values_name_the_key():
    with pytest.raises(ValueError, match="local-steps='many' should be of type int"):
        run_config_kwargs(_Cfg, {"local-steps": "many"})
    with pytest.raises(ValueError, match="shape='a' is not valid"):
        run_config_kwargs(_Cfg, {"shape": "a"}, converters={"shape": lambda v: int(v)})
