"""The FL-GAN / FeGAN server loop on the harness, checkpoints, and one real Ray simulation."""

import json
import subprocess
import sys

import pytest
import torch

from flwr_gan.algorithms import make_settings
from flwr_gan.fl.client import make_client_app
from flwr_gan.runtime.checkpoint import CheckpointError, load_checkpoint, save_state
from flwr_gan.runtime.experiment import prepare
from flwr_gan.runtime.rundir import read_metrics
from tests.fegan_fakes import run_fl_in_process, set_task_identity

TELEMETRY = {"round", "nodes", "bytes_up", "bytes_down", "compute_s", "compute_s_max",
             "wall_s", "virtual_s", "kl_seen", "coverage"}


def tiny(tmp_path, algorithm="fegan", **over):
    base = dict(num_clients=6, rounds=3, fraction=0.34, model="small", local_steps=3,
                batch_size=16, max_class=3, max_samples=100, eval_every=2, n_eval=200,
                out=str(tmp_path / "run"), progress=False)
    return make_settings(algorithm, **(base | over))


def in_process(settings, monkeypatch):
    """Run the family's server loop over an in-process grid (no Ray)."""
    set_task_identity(monkeypatch)
    return run_fl_in_process(settings, make_client_app())[0]


def test_server_loop_writes_the_run_directory(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    recs = in_process(tiny(tmp_path), monkeypatch)
    run_dir = tmp_path / "run"
    assert recs == read_metrics(run_dir / "metrics.jsonl")
    assert [r["round"] for r in recs] == [0, 1, 2, 3]
    assert recs[0]["fid"] > 0 and recs[1].get("fid") is None
    assert recs[2]["fid"] > 0 and recs[3]["fid"] > 0  # every 2 rounds and the last
    for r in recs[1:]:
        assert TELEMETRY <= set(r)
        assert len(r["nodes"]) == 3 and r["virtual_s"] >= r["compute_s_max"]
        assert r["bytes_up"] > 3 * 4 * 100_000  # three small G+D models
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["algorithm"] == "fegan" and cfg["fraction"] == 0.34
    assert cfg["loss"] == "bce" and cfg["image_shape"] == [1, 28, 28]
    assert (run_dir / "fid_curve.png").exists()
    assert (run_dir / "samples" / "round_000002.png").exists()
    assert json.loads((run_dir / "metadata.json").read_text())["devices"] == 6
    assert load_checkpoint(run_dir / "checkpoint.pt")["round"] == 3


def test_resume_continues_from_the_checkpoint(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    in_process(tiny(tmp_path, rounds=2, eval_every=0), monkeypatch)
    recs = in_process(tiny(tmp_path, rounds=4, eval_every=0, resume=True), monkeypatch)
    assert [r["round"] for r in recs] == [0, 1, 2, 3, 4]
    # the same 4 rounds without a restart visit the same devices
    ref = in_process(tiny(tmp_path, rounds=4, eval_every=0, out=str(tmp_path / "ref")),
                     monkeypatch)
    assert [r.get("nodes") for r in recs] == [r.get("nodes") for r in ref]
    # different settings are refused, before anything runs
    s = tiny(tmp_path, rounds=5, fraction=0.5, resume=True)
    with pytest.raises(CheckpointError, match="other settings .*fraction: 0.34 then, 0.5 now"):
        prepare(s, unit="round", total=5, federated=True)


def test_resume_with_server_dp_draws_the_noise_an_uninterrupted_run_draws(tmp_path,
                                                                        monkeypatch):
    from flwr_gan.runtime.rundir import untimed

    torch.set_num_threads(1)
    dp = dict(dp="server-fixed", noise_multiplier=0.5, clipping_norm=5.0, eval_every=0,
              algorithm="flgan", fraction=0.5)
    in_process(tiny(tmp_path, rounds=2, **dp), monkeypatch)
    assert "numpy_rng" in load_checkpoint(tmp_path / "run" / "checkpoint.pt")["state"]
    recs = in_process(tiny(tmp_path, rounds=4, resume=True, **dp), monkeypatch)
    ref = in_process(tiny(tmp_path, rounds=4, out=str(tmp_path / "ref"), **dp), monkeypatch)
    # (round 2 differs only by the evaluation at the end of the first, 2-round, run)
    assert [r["round"] for r in recs] == [0, 1, 2, 3, 4]
    assert untimed(recs[3:]) == untimed(ref[3:])
    a = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["state"]["arrays"]
    b = load_checkpoint(tmp_path / "ref" / "checkpoint.pt")["state"]["arrays"]
    assert all(torch.equal(a[k], b[k]) for k in b)  # the noised models, bit for bit


def test_corrupt_checkpoint_is_a_clear_error_never_a_restart(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    in_process(tiny(tmp_path, rounds=1, eval_every=0), monkeypatch)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:200])
    s = tiny(tmp_path, rounds=2, resume=True)
    with pytest.raises(CheckpointError, match="checkpoint.pt is corrupt"):
        prepare(s, unit="round", total=2, federated=True)
    assert [r["round"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")] == [0, 1]
    ckpt.unlink()
    with pytest.raises(ValueError, match="holds a run but no checkpoint.pt"):
        prepare(s, unit="round", total=2, federated=True)


def test_checkpoint_roundtrip_is_atomic(tmp_path):
    import numpy as np

    rng = np.random.default_rng(5)
    path = save_state(tmp_path / "c.pt", round_=7,
                      state={"w": torch.arange(6.0), "rng": rng.bit_generator.state,
                             "h": [{"a": None}]}, config={"x": 1})
    payload = load_checkpoint(path)
    assert payload["round"] == 7 and payload["state"]["h"] == [{"a": None}]
    assert torch.equal(payload["state"]["w"], torch.arange(6.0))
    restored = np.random.default_rng()
    restored.bit_generator.state = payload["state"]["rng"]
    assert restored.random() == rng.random()
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind
    (tmp_path / "x.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="x.pt"):
        load_checkpoint(tmp_path / "x.pt")


@pytest.mark.slow
def test_simulate_runs_in_flowers_ray_engine_and_its_log_stays_readable(tmp_path):
    """The CLI as a user runs it into a log file: a real Flower simulation (Ray), 6 SuperNodes.

    FL-GAN with kl_seen telemetry; the log (stderr is a file, not a TTY) holds plain
    progress lines, no carriage-return frames, no colour codes and none of Flower's
    or Ray's notices about choices the package makes on purpose.
    """
    out = tmp_path / "run"
    log = tmp_path / "run.log"
    cmd = [sys.executable, "-m", "flwr_gan.cli", "simulate", "--algorithm", "flgan",
           "--num-clients", "6", "--rounds", "2", "--fraction", "0.34", "--model", "small",
           "--local-steps", "3", "--batch-size", "16", "--max-class", "3",
           "--max-samples", "100", "--eval-every", "2", "--n-eval", "200",
           "--eval-seeds", "1", "--out", str(out)]
    with log.open("w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=600).returncode
    text = log.read_text()
    assert rc == 0, text
    recs = read_metrics(out / "metrics.jsonl")
    assert [r["round"] for r in recs] == [0, 1, 2]
    assert all(TELEMETRY <= set(r) for r in recs[1:])
    assert all(len(r["nodes"]) == 3 and r["failed"] == {} for r in recs[1:])
    assert recs[-1]["fid"] > 0 and recs[-1]["kid"] is not None
    assert load_checkpoint(out / "checkpoint.pt")["round"] == 2
    assert "\r" not in text and "\x1b[" not in text, text
    for noise in ("DEPRECATED", "fraction_evaluate", "FutureWarning", "alembic"):
        assert noise not in text, text
    lines = [ln for ln in text.splitlines() if ln.startswith("flgan round")]
    assert lines and lines[-1].startswith("flgan round 2/2 fid "), text
