"""Ready Flower apps for ``flwr run``: settings from ``[tool.flwr.app.config]``.

``server_app`` reads every MD-GAN setting from the run config (kebab-case
keys of :class:`~flwr_gan.mdgan.server.MDGANConfig`, plus the data keys of
:class:`~flwr_gan.data.node.DataConfig`), waits for ``num-workers`` nodes,
trains, and saves the generator to ``out-dir`` (default ``mdgan-out``) with
``metrics.jsonl``. ``client_app`` is the MD-GAN worker.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from flwr_gan.mdgan.client import client_app
from flwr_gan.mdgan.server import MDGANConfig, run_mdgan

server_app = ServerApp()


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    """Run MD-GAN with the settings of ``context.run_config``."""
    cfg = MDGANConfig.from_run_config(context.run_config)
    out = Path(str(context.run_config.get("out-dir", "mdgan-out")))
    out.mkdir(parents=True, exist_ok=True)
    metrics = out / "metrics.jsonl"

    def record(rec: dict[str, Any]) -> None:
        with metrics.open("a") as fh:
            fh.write(json.dumps(rec, default=str) + "\n")

    server = run_mdgan(grid, cfg, record_fn=record)
    torch.save({"generator": server.generator.state_dict(), "config": cfg.to_dict()},
               out / "generator.pt")


__all__ = ["client_app", "server_app"]
