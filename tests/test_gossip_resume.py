"""Gossip GAN checkpoints and --resume: a restarted run continues exactly where it stopped.

The restarted federation gets other (random) node ids, as after a real restart;
workers are matched to their saved models, optimizers and AdaComp references by
device key, and the relay gets back its peer stream and the models queued for
their receivers.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import torch
from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from flwr_gan.algorithms import make_settings
from flwr_gan.apps import device_app
from flwr_gan.config import ConfigError
from flwr_gan.data.node import device_key
from flwr_gan.gossip.client import STATE_TYPE, STEP_TYPE, register_handlers
from flwr_gan.gossip.experiment import run_gossip_experiment
from flwr_gan.runtime.checkpoint import CheckpointError, load_checkpoint, save_state
from flwr_gan.runtime.experiment import prepare
from flwr_gan.runtime.rundir import read_metrics, untimed
from tests.crash import run_until_killed
from tests.mdgan_fakes import FakeGrid, one_thread_task

KEYS = {"partition-0", "partition-1", "partition-2"}


def _failing(what: str, at_round: int, key: str = "partition-1") -> ClientApp:
    """A gossip worker (device ``key``) that fails messages of type ``what`` at ``at_round``."""
    def mod(msg: Message, ctx: Context, call_next: Any) -> Message:
        round_ = msg.content.config_records["config"].get("round", -1) \
            if "config" in msg.content.config_records else -1
        group = msg.metadata.group_id
        if (msg.metadata.message_type == what and device_key(ctx.node_config, 0) == key
                and (round_ == at_round or group == f"state-{at_round}")):
            raise RuntimeError(f"{key} is gone")
        return call_next(msg, ctx)

    return register_handlers(ClientApp(mods=[mod]))


def _run(out: Path, rounds: int, seed_ids: int, apps: list[ClientApp] | None = None,
         crash_at: int = 0, **over: Any) -> list[dict[str, Any]]:
    base = dict(num_clients=3, rounds=rounds, local_steps=2, batch_size=8, variant="ddl_ind",
                eval_every=2, n_eval=100, eval_seeds=1, checkpoint_every=2, eval_workers=2,
                out=str(out), progress=False, seed=5)
    s = make_settings("gossip", **(base | over))
    exp = prepare(s, unit="round", total=rounds, federated=True)
    ids = random.Random(seed_ids).sample(range(1, 2**62), 3)
    grid = FakeGrid(apps or [device_app() for _ in range(3)], node_ids=ids,
                    run_config=s.to_run_config())
    return run_until_killed(exp, crash_at, lambda: run_gossip_experiment(grid, exp))


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> Any:
    yield from one_thread_task(monkeypatch)


@pytest.mark.parametrize("over", [{}, {"compress": "adacomp", "compress_ratio": 0.05,
                                       "variant": "ddl", "sync": "generator"}],
                         ids=["dense", "adacomp-sync-g"])
def test_resume_equals_an_uninterrupted_run(tmp_path: Path, over: dict[str, Any]) -> None:
    whole = _run(tmp_path / "whole", 4, 0, **over)
    _run(tmp_path / "cut", 4, 1, crash_at=2, **over)
    ckpt = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    srv = ckpt["state"]["server"]
    assert ckpt["round"] == 2 and set(ckpt["state"]["workers"]) == KEYS
    assert srv["pending"], "models queued for round 3 must be in the checkpoint"
    if over.get("compress") == "adacomp":  # the server's copies of the peers' references
        assert set(srv["refs"]) == KEYS and all(set(k) == {"g"} for k in srv["refs"].values())
        assert all("gossip.adacomp.ref" in w for w in ckpt["state"]["workers"].values())
    saved = {k: {n: t.clone() for n, t in w["gossip.models"].items()}
             for k, w in ckpt["state"]["workers"].items()}

    resumed = _run(tmp_path / "cut", 4, 2, resume=True, **over)
    assert [r["round"] for r in resumed] == [0, 1, 2, 3, 4]
    assert untimed(resumed) == untimed(whole)
    assert untimed(read_metrics(tmp_path / "cut" / "metrics.jsonl")) == untimed(whole)
    assert resumed[3]["d_loss"] is not None and resumed[3]["peers"]
    # the models the workers hold at the end are those of the uninterrupted run, bit for bit
    end = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["state"]["workers"]
    ref = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")["state"]["workers"]
    for key in KEYS:
        for name, tensors in ref[key].items():
            assert all(torch.equal(tensors[n], end[key][name][n]) for n in tensors), (key, name)
        assert any(not torch.equal(saved[key][n], end[key]["gossip.models"][n])
                   for n in saved[key]), "training after the resume changed nothing"


def test_a_worker_dropped_before_the_checkpoint_stays_out(tmp_path: Path) -> None:
    def apps() -> list[ClientApp]:
        return [device_app(), _failing(STEP_TYPE, 2), device_app()]

    whole = _run(tmp_path / "whole", 4, 0, apps=apps(), fid_backend="none")
    _run(tmp_path / "cut", 4, 1, apps=apps(), crash_at=2, fid_backend="none")
    ckpt = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert set(ckpt["state"]["workers"]) == {"partition-0", "partition-2"}
    resumed = _run(tmp_path / "cut", 4, 2, apps=apps(), resume=True, fid_backend="none")
    assert untimed(resumed) == untimed(whole)
    assert [r["alive"] for r in resumed] == [3, 2, 2, 2]


def test_a_worker_lost_while_checkpointing_is_dropped_not_fatal(tmp_path: Path) -> None:
    apps = [device_app(), _failing(STATE_TYPE, 2), device_app()]
    records = _run(tmp_path / "r", 4, 0, apps=apps, fid_backend="none")
    ckpt = load_checkpoint(tmp_path / "r" / "checkpoint.pt")
    assert set(ckpt["state"]["workers"]) == {"partition-0", "partition-2"}
    assert [r["alive"] for r in records] == [3, 3, 2, 2]
    summary = (tmp_path / "r" / "summary.json").read_text()
    assert "partition-1 is gone" in summary


def test_resume_with_other_settings_is_refused(tmp_path: Path) -> None:
    _run(tmp_path / "r", 4, 0, crash_at=2, fid_backend="none")
    with pytest.raises(CheckpointError, match="variant: 'ddl_ind' then, 'ddl' now"):
        _run(tmp_path / "r", 4, 1, resume=True, variant="ddl", fid_backend="none")


def test_a_malformed_gossip_state_names_the_problem(tmp_path: Path) -> None:
    _run(tmp_path / "r", 4, 0, crash_at=2, fid_backend="none", compress="adacomp")
    path = tmp_path / "r" / "checkpoint.pt"
    ckpt = load_checkpoint(path)
    refs = ckpt["state"]["server"]["refs"]["partition-0"]["g"]
    name = next(iter(refs))
    refs[name] = torch.zeros(3)
    save_state(path, round_=ckpt["round"], state=ckpt["state"], config=ckpt["config"])
    with pytest.raises(CheckpointError, match=r"r/checkpoint.pt: bad Gossip GAN state.*"
                                              r"generator reference of partition-0 does not fit"):
        _run(tmp_path / "r", 4, 1, resume=True, fid_backend="none", compress="adacomp")
    # nothing was lost: the checkpoint and the records are still those of round 2
    assert load_checkpoint(path)["round"] == 2
    assert [r["round"] for r in read_metrics(tmp_path / "r" / "metrics.jsonl")] == [1, 2]


def test_resume_is_a_gossip_flag_now() -> None:
    s = make_settings("gossip", resume=True, sync="discriminator")
    assert s.run.resume and s.run.checkpoint_every == 1
    with pytest.raises(ConfigError, match="--resume and --overwrite exclude each other"):
        make_settings("gossip", resume=True, overwrite=True)


def test_a_checkpoint_naming_an_absent_worker_is_refused(tmp_path: Path) -> None:
    _run(tmp_path / "r", 4, 0, crash_at=2, fid_backend="none")
    path = tmp_path / "r" / "checkpoint.pt"
    ckpt = load_checkpoint(path)
    ckpt["state"]["server"]["alive"].append("partition-9")
    save_state(path, round_=ckpt["round"], state=ckpt["state"], config=ckpt["config"])
    with pytest.raises(CheckpointError, match=r"r/checkpoint.pt: cannot resume: workers "
                                              r"\['partition-9'\] of this checkpoint are not "
                                              r"connected"):
        _run(tmp_path / "r", 4, 1, resume=True, fid_backend="none")
