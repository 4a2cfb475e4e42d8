"""The example Flower apps configure every knob, with values the server accepts."""

import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

from flwr_gan.server_app import FederatedConfig

ROOT = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("algo", ["fegan", "flgan"])
def test_example_app_config_is_complete_and_valid(algo):
    meta = tomllib.loads((ROOT / algo / "pyproject.toml").read_text())
    app = meta["tool"]["flwr"]["app"]
    assert app["components"] == {"serverapp": "flwr_gan.server_app:app",
                                 "clientapp": "flwr_gan.client_app:app"}
    assert "federations" not in meta["tool"]["flwr"]
    config = app["config"]
    expected = {f.name.replace("_", "-") for f in fields(FederatedConfig)} - {"num-clients"}
    assert expected <= set(config) and config["num-nodes"] == 176
    cfg = FederatedConfig.from_run_config(config)
    cfg.validate()
    assert cfg.algorithm == algo and cfg.fraction == 0.025 and cfg.local_steps == 30
    assert cfg.batch_size == 50 and cfg.lr_g == 2e-4 and cfg.resolved_loss() == "lsgan"
