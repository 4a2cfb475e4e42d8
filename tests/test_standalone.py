"""The standalone baseline end to end, through the `flwr-gan` command."""

import json

import pytest

from flwr_gan.cli import main
from flwr_gan.runtime.rundir import read_metrics


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("standalone") / "run"
    rc = main(["standalone", "--dataset", "mnist", "--model", "small", "--steps", "600",
               "--eval-every", "300", "--batch-size", "64", "--n-eval", "1000",
               "--max-train", "20000", "--out", str(out), "--no-progress"])
    assert rc == 0
    return out


def test_standalone_learns_digits(run_dir):
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in records] == [0, 300, 600]
    fids = [r["fid"] for r in records]
    assert fids[-1] < fids[0] / 2.5  # the generator learned (FID in classifier space)
    assert records[-1]["score"] > records[0]["score"] + 1.0
    # the other scores agree: KID falls, recall rises, the dropped classes come back
    assert records[-1]["kid"] < records[0]["kid"] / 1.5
    assert records[-1]["recall"] > records[0]["recall"] + 0.05
    assert len(records[-1]["classes_missing"]) < len(records[0]["classes_missing"])
    assert records[-1]["class_tv"] < records[0]["class_tv"]
    assert all(r["fid_seed_std"] > 0 and r["kid_std"] > 0 for r in records)
    assert all(r["extractor"] == "classifier:mnist" for r in records)
    ids = {r["extractor_id"] for r in records}  # which trained classifier scored them
    assert len(ids) == 1 and len(ids.pop()) == 12
    assert records[-1]["examples"] == 600 * 64
    assert records[0]["d_loss"] is None and records[-1]["d_loss"] > 0


def test_standalone_outputs(run_dir):
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["algorithm"] == "standalone" and cfg["loss"] == "bce"
    assert cfg["train_size"] == 20000 and cfg["classifier_test_accuracy"] >= 0.98
    grids = sorted(p.name for p in (run_dir / "samples").glob("*.png"))
    assert grids == ["step_000000.png", "step_000300.png", "step_000600.png"]
    assert (run_dir / "fid_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert (run_dir / "metrics.csv").read_text().startswith("round,step,fid,fid_seed_std,kid,")
    assert (run_dir / "checkpoint.pt").stat().st_size > 100_000


def test_existing_run_is_not_clobbered(run_dir, capsys):
    before = (run_dir / "metrics.jsonl").read_text()
    rc = main(["standalone", "--steps", "1", "--out", str(run_dir), "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert (run_dir / "metrics.jsonl").read_text() == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--steps", "-1"], "--steps: '-1' is invalid: expected an integer >= 0"),
        (["--batch-size", "0"], "--batch-size: '0' is invalid: expected an integer >= 1"),
        (["--lr-g", "0"], "--lr-g: '0' is invalid: expected a number > 0"),
        (["--n-eval", "1"], "--n-eval: '1' is invalid: expected an integer >= 2"),
        (["--dataset", "/nonexistent/data.npz"], "nonexistent"),
        (["--partition", "iid"], "unrecognized arguments: --partition"),
    ],
)
def test_bad_arguments_are_explained(tmp_path, capsys, args, message):
    rc = main(["standalone", "--out", str(tmp_path / "r"), "--no-progress", *args])
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "metrics.jsonl").exists()


def test_models_command_lists_presets(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "mlp" in out and "716,560" in out and "small" in out
