"""The standalone baseline's checkpoints and --resume: a restarted run continues exactly.

The crash is simulated right after a checkpoint is written (as a kill -9 there
would leave things); the checkpoint falls between two records, so the losses
of the record in progress must survive the restart too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from flwr_gan.algorithms import make_settings
from flwr_gan.cli import main
from flwr_gan.runtime.checkpoint import CheckpointError, load_checkpoint, save_state
from flwr_gan.runtime.experiment import prepare
from flwr_gan.runtime.rundir import read_metrics, untimed
from flwr_gan.standalone import run_standalone_experiment
from tests.crash import run_until_killed


def _run(out: Path, steps: int, crash_at: int = 0, **over: Any) -> list[dict[str, Any]]:
    base = dict(model="small", steps=steps, eval_every=20, checkpoint_every=15, batch_size=16,
                n_eval=200, eval_seeds=1, max_train=1000, out=str(out), progress=False, seed=4)
    exp = prepare(make_settings("standalone", **(base | over)), unit="step", total=steps,
                  federated=False)
    return run_until_killed(exp, crash_at, lambda: run_standalone_experiment(None, exp))


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    whole = _run(tmp_path / "whole", 60)
    assert [r["step"] for r in whole] == [0, 20, 40, 60]
    _run(tmp_path / "cut", 60, crash_at=30)
    ckpt = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert ckpt["round"] == 30 and len(ckpt["state"]["d_losses"]) == 10  # steps 21..30
    assert [r["step"] for r in read_metrics(tmp_path / "cut" / "metrics.jsonl")] == [0, 20]
    saved = {k: v.clone() for k, v in ckpt["state"]["generator"].items()}

    resumed = _run(tmp_path / "cut", 60, resume=True)
    assert [r["step"] for r in resumed] == [0, 20, 40, 60]
    assert untimed(resumed) == untimed(whole)
    assert whole[-1]["fid"] < whole[0]["fid"]  # it learned something
    end = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["state"]
    ref = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")["state"]
    for net in ("generator", "discriminator"):
        assert all(torch.equal(end[net][k], ref[net][k]) for k in ref[net]), net
    assert end["opt_g"]["state"][0]["step"] == ref["opt_g"]["state"][0]["step"] == 60
    assert any(not torch.equal(saved[k], end["generator"][k]) for k in saved)
    final = torch.load(tmp_path / "cut" / "generator.pt", weights_only=True)["generator"]
    assert all(torch.equal(final[k], end["generator"][k]) for k in final)


def test_a_finished_run_can_be_extended(tmp_path: Path) -> None:
    _run(tmp_path / "r", 40, fid_backend="none")
    more = _run(tmp_path / "r", 60, resume=True, fid_backend="none")
    assert [r["step"] for r in more] == [0, 20, 40, 60]
    assert more[-1]["examples"] == 60 * 16
    assert load_checkpoint(tmp_path / "r" / "checkpoint.pt")["round"] == 60


def test_a_malformed_checkpoint_is_named_and_kept(tmp_path: Path) -> None:
    _run(tmp_path / "r", 60, crash_at=30, fid_backend="none")
    path = tmp_path / "r" / "checkpoint.pt"
    ckpt = load_checkpoint(path)
    del ckpt["state"]["opt_d"]
    save_state(path, round_=30, state=ckpt["state"], config=ckpt["config"])
    with pytest.raises(CheckpointError, match=r"r/checkpoint.pt: bad standalone state.*opt_d"):
        _run(tmp_path / "r", 60, resume=True, fid_backend="none")
    assert load_checkpoint(path)["round"] == 30


def test_resume_flags_through_the_command(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "none"
    rc = main(["standalone", "--resume", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "nothing to resume" in err and len(err.strip().splitlines()) == 1
    rc = main(["standalone", "--checkpoint-every", "-1", "--out", str(out), "--no-progress"])
    assert rc == 2 and "--checkpoint-every" in capsys.readouterr().err


def test_evaluation_leaves_the_global_random_state_alone(tmp_path: Path) -> None:
    # Building the extractors and scoring draw from torch's RNG; a family that trains
    # from it (FL's server) would otherwise train differently after a resume (its
    # evaluator is built later) or with another --eval-every.
    from flwr_gan.core.models import build_models

    exp = prepare(make_settings("standalone", model="small", n_eval=100, eval_seeds=1,
                                out=str(tmp_path / "r"), progress=False),
                  unit="step", total=1, federated=False)
    exp.open()
    gen, _ = build_models("small", exp.image_shape, None)
    torch.manual_seed(7)
    before = torch.get_rng_state()
    assert exp.evaluate(0, {"generator": gen})["fid"] > 0
    assert torch.equal(torch.get_rng_state(), before)
    exp.close()
