"""MD-GAN checkpoints and --resume: a restarted run continues exactly where it stopped.

The restarted federation gets other (random) node ids, as after a real restart;
workers are matched to their saved discriminators by device key.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from flwr_gan.apps import device_app
from flwr_gan.mdgan.experiment import run_mdgan_experiment
from flwr_gan.mdgan.worker_state import STATE_TYPE, register_worker
from flwr_gan.runtime.checkpoint import CheckpointError, load_checkpoint
from flwr_gan.runtime.experiment import prepare
from flwr_gan.runtime.rundir import read_metrics
from tests.mdgan_fakes import FakeGrid, mdgan, set_task_identity
from tests.test_determinism import untimed


def _run(out: Path, iterations: int, seed_ids: int, apps: list | None = None,
         **over) -> list[dict]:
    base = dict(num_clients=3, iterations=iterations, kappa="2", batch_size=8, swap_epochs=1e-9,
                eval_every=3, n_eval=100, checkpoint_every=3, out=str(out), progress=False)
    s = mdgan(**(base | over))
    exp = prepare(s, unit="iteration", total=iterations, federated=True)
    ids = random.Random(seed_ids).sample(range(1, 2**62), 3)
    grid = FakeGrid(apps or [device_app() for _ in range(3)], node_ids=ids,
                    run_config=s.to_run_config())
    try:
        return run_mdgan_experiment(grid, exp)
    finally:
        exp.close()


def test_resume_equals_an_uninterrupted_run(tmp_path: Path, monkeypatch) -> None:
    set_task_identity(monkeypatch)
    torch.set_num_threads(1)
    whole = _run(tmp_path / "whole", 6, 0)
    _run(tmp_path / "cut", 3, 1)
    ckpt = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert ckpt["round"] == 3 and set(ckpt["state"]["workers"]) == {
        "partition-0", "partition-1", "partition-2"}
    saved_g = {k: v.clone() for k, v in ckpt["state"]["server"]["generator"].items()}
    resumed = _run(tmp_path / "cut", 6, 2, resume=True)
    assert [r["round"] for r in resumed] == [0, 1, 2, 3, 4, 5, 6]
    assert untimed(resumed) == untimed(whole)
    assert untimed(read_metrics(tmp_path / "cut" / "metrics.jsonl")) == untimed(whole)
    # the checkpoint restored bit for bit what was saved
    assert all(torch.equal(saved_g[k], v) for k, v in saved_g.items())
    final = torch.load(tmp_path / "cut" / "generator.pt", weights_only=True)["generator"]
    ref = torch.load(tmp_path / "whole" / "generator.pt", weights_only=True)["generator"]
    assert all(torch.equal(final[k], ref[k]) for k in ref)


def test_resume_with_other_settings_is_refused(tmp_path: Path, monkeypatch) -> None:
    set_task_identity(monkeypatch)
    _run(tmp_path / "r", 3, 0)
    with pytest.raises(CheckpointError, match="kappa: '2' then, '1' now"):
        _run(tmp_path / "r", 6, 1, resume=True, kappa="1")


def test_a_worker_lost_while_checkpointing_is_dropped_not_fatal(tmp_path: Path,
                                                                monkeypatch) -> None:
    set_task_identity(monkeypatch)

    def gone_at_3(msg: Message, ctx: Context, call_next) -> Message:  # type: ignore[no-untyped-def]
        if msg.metadata.message_type == STATE_TYPE and msg.metadata.group_id == "state-3":
            raise RuntimeError("partition-1 is gone")
        return call_next(msg, ctx)

    apps = [device_app(), register_worker(ClientApp(mods=[gone_at_3])), device_app()]
    records = _run(tmp_path / "r", 6, 0, apps=apps, fid_backend="none")
    assert [r["iteration"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert [r["alive"] for r in records] == [3, 3, 3, 2, 2, 2]
    ckpt = load_checkpoint(tmp_path / "r" / "checkpoint.pt")
    assert set(ckpt["state"]["workers"]) == {"partition-0", "partition-2"}
    assert any(e.get("node") == "partition-1" and "gone" in e["reason"]
               for e in ckpt["state"]["server"]["events"])
