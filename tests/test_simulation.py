"""The server loop, checkpoints and the simulate command (one real Ray simulation)."""

import json

import numpy as np
import pytest
import torch

from flwr_gan.runtime.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from flwr_gan.cli import build_parser, main
from flwr_gan.client_app import ClientSettings, make_client_app
from flwr_gan.runtime.rundir import read_metrics
from flwr_gan.server_app import FederatedConfig, run_server
from flwr_gan.simulation import run_simulation_command
from tests.fegan_fakes import InProcessGrid, set_task_identity

TELEMETRY = {"round", "nodes", "bytes_up", "bytes_down", "compute_s", "compute_s_max",
             "wall_s", "virtual_s", "kl_seen", "coverage"}


def tiny(tmp_path, **over) -> FederatedConfig:
    base = dict(num_clients=6, rounds=3, fraction=0.34, model="small", local_steps=3,
                batch_size=16, max_class=3, max_samples=100, eval_every=2, n_eval=200,
                out=str(tmp_path / "run"))
    return FederatedConfig(**(base | over))


def in_process(cfg: FederatedConfig, monkeypatch):
    set_task_identity(monkeypatch)
    grid = InProcessGrid(make_client_app(ClientSettings(data=cfg.data_config())),
                         cfg.num_clients)
    return run_server(grid, cfg, num_nodes=cfg.num_clients)


def test_server_loop_writes_the_run_directory(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    out = in_process(tiny(tmp_path), monkeypatch)
    run = tmp_path / "run"
    recs = read_metrics(run / "metrics.jsonl")
    assert [r["round"] for r in recs] == [0, 1, 2, 3]
    assert recs[0]["fid"] > 0 and recs[1].get("fid") is None
    assert recs[2]["fid"] > 0 and recs[3]["fid"] > 0  # every 2 rounds and the last
    for r in recs[1:]:
        assert TELEMETRY <= set(r)
        assert len(r["nodes"]) == 3 and r["virtual_s"] >= r["compute_s_max"]
        assert r["bytes_up"] > 3 * 4 * 100_000  # three small G+D models
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["algorithm"] == "fegan" and cfg["fraction"] == 0.34
    assert (run / "fid_curve.png").exists() and (run / "samples" / "round_000002.png").exists()
    assert json.loads((run / "metadata.json").read_text())["devices"] == 6
    assert out.rounds_done == 3 and load_checkpoint(run / "checkpoint.pt")["round"] == 3


def test_resume_continues_from_the_checkpoint(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    in_process(tiny(tmp_path, rounds=2, eval_every=0), monkeypatch)
    out = in_process(tiny(tmp_path, rounds=4, eval_every=0, resume=True), monkeypatch)
    recs = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["round"] for r in recs] == [0, 1, 2, 3, 4] and out.rounds_done == 4
    # the same 4 rounds without a restart visit the same devices
    ref_dir = tmp_path / "ref"
    in_process(tiny(tmp_path, rounds=4, eval_every=0, out=str(ref_dir)), monkeypatch)
    ref = read_metrics(ref_dir / "metrics.jsonl")
    assert [r.get("devices") for r in recs] == [r.get("devices") for r in ref]
    # different settings are refused
    with pytest.raises(CheckpointError, match="different settings"):
        in_process(tiny(tmp_path, rounds=5, fraction=0.5, resume=True), monkeypatch)


def test_corrupt_checkpoint_is_a_clear_error_never_a_restart(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    in_process(tiny(tmp_path, rounds=1, eval_every=0), monkeypatch)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="checkpoint.pt is corrupt"):
        in_process(tiny(tmp_path, rounds=2, resume=True), monkeypatch)
    assert [r["round"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")] == [0, 1]
    ckpt.unlink()
    with pytest.raises(CheckpointError, match="no checkpoint.pt"):
        in_process(tiny(tmp_path, rounds=2, resume=True), monkeypatch)


def test_checkpoint_roundtrip_is_atomic(tmp_path):
    from flwr.app import Array, ArrayRecord

    arrays = ArrayRecord({"generator.w": Array(np.arange(6, dtype=np.float32).reshape(2, 3))})
    rng = np.random.default_rng(5)
    path = save_checkpoint(tmp_path / "c.pt", round_=7, arrays=arrays,
                           strategy_state={"rng": rng.bit_generator.state, "h": [{"a": None}]},
                           config={"x": 1})
    payload = load_checkpoint(path)
    assert payload["round"] == 7 and payload["strategy"]["h"] == [{"a": None}]
    restored = np.random.default_rng()
    restored.bit_generator.state = payload["strategy"]["rng"]
    assert restored.random() == rng.random()
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind
    (tmp_path / "x.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="x.pt"):
        load_checkpoint(tmp_path / "x.pt")


def test_invalid_settings_fail_before_ray(tmp_path):
    with pytest.raises(ValueError, match="devices without samples"):
        run_simulation_command(tiny(tmp_path, num_clients=176, max_class=10, max_samples=500))
    with pytest.raises(ValueError, match="--weighting"):
        run_simulation_command(tiny(tmp_path, weighting="softmax"))
    assert main(["simulate", "--fraction", "0", "--out", str(tmp_path / "x")]) == 2


def test_cli_help_documents_every_knob(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["simulate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--num-clients", "--fraction", "--local-steps", "--batch-size", "--sampling",
                 "--weighting", "--bandwidth-gbps", "--resume", "--eval-every", "--lr-g"):
        assert flag in text
    assert "0.025" in text and "(default: 30)" in text and "(default: 50)" in text


@pytest.mark.slow
def test_simulate_command_runs_in_flowers_ray_engine(tmp_path):
    """A real Flower simulation (Ray): 6 SuperNodes, FL-GAN with kl_seen telemetry."""
    cfg = tiny(tmp_path, algorithm="flgan", rounds=2, eval_every=2)
    result = run_simulation_command(cfg, progress=False)
    recs = result.records
    assert [r["round"] for r in recs] == [0, 1, 2]
    assert all(TELEMETRY <= set(r) for r in recs[1:])
    assert all(len(r["nodes"]) == 3 and r["failed"] == {} for r in recs[1:])
    assert recs[-1]["fid"] > 0
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["round"] == 2
