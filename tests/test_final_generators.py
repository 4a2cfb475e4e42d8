"""A finished run's generators rebuilt from checkpoint.pt, for every family, and the scorer.

The check that the right network came back: scored by the run's own evaluation
protocol, the rebuilt generator gets exactly the FID the run logged at its end.
"""

from __future__ import annotations

import importlib
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from flwr_gan.algorithms import make_settings
from flwr_gan.apps import device_app
from flwr_gan.cli import main
from flwr_gan.data.datasets import load_dataset
from flwr_gan.fl.client import make_client_app
from flwr_gan.gossip.experiment import run_gossip_experiment
from flwr_gan.mdgan.experiment import run_mdgan_experiment
from flwr_gan.metrics.evaluator import GeneratorEvaluator
from flwr_gan.runtime.checkpoint import CheckpointError, load_checkpoint, save_state
from flwr_gan.runtime.experiment import prepare
from flwr_gan.runtime.generators import final_generators
from flwr_gan.runtime.rundir import read_metrics
from tests.fegan_fakes import run_fl_in_process
from tests.mdgan_fakes import FakeGrid, one_thread_task

REPO = Path(__file__).resolve().parents[1]
COMMON: dict[str, Any] = dict(model="small", batch_size=8, n_eval=100, eval_seeds=1,
                              progress=False, seed=3)


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> Any:
    yield from one_thread_task(monkeypatch)


def _grid_run(algorithm: str, out: Path, total: int, **over: Any) -> None:
    s = make_settings(algorithm, num_clients=3, out=str(out), **(COMMON | over))
    exp = prepare(s, unit="round" if algorithm == "gossip" else "iteration", total=total,
                  federated=True)
    ids = random.Random(1).sample(range(1, 2**62), 3)
    grid = FakeGrid([device_app() for _ in range(3)], node_ids=ids, run_config=s.to_run_config())
    try:
        if algorithm == "gossip":
            run_gossip_experiment(grid, exp)
        else:
            run_mdgan_experiment(grid, exp)
    finally:
        exp.close()


def _run(family: str, out: Path) -> Path:
    if family == "standalone":
        assert main(["standalone", "--model", "small", "--steps", "4", "--eval-every", "4",
                     "--batch-size", "8", "--n-eval", "100", "--eval-seeds", "1",
                     "--max-train", "500", "--seed", "3", "--out", str(out),
                     "--no-progress"]) == 0
    elif family == "mdgan":
        _grid_run("mdgan", out, 4, iterations=4, kappa="1", eval_every=4)
    elif family == "gossip":
        _grid_run("gossip", out, 2, rounds=2, local_steps=2, variant="ddl_ind", eval_every=2,
                  eval_workers=3)
    else:
        s = make_settings(family, num_clients=4, rounds=2, fraction=0.5, local_steps=2,
                          max_class=3, max_samples=100, eval_every=2, out=str(out),
                          **COMMON)
        run_fl_in_process(s, make_client_app())
    return out


def _rescore(generator: torch.nn.Module, config: dict[str, Any]) -> float:
    train, test = load_dataset(config["dataset"]), load_dataset(config["dataset"], "test")
    ev = GeneratorEvaluator.for_dataset(train, test, n_real=config["n_eval"],
                                        n_fake=config["n_eval"], seeds=config["eval_seeds"],
                                        mode=config["eval_mode"], progress=False)
    return ev.evaluate(generator).fid


@pytest.mark.parametrize("family", ["standalone", "flgan", "fegan", "mdgan", "gossip"])
def test_the_rebuilt_generator_scores_what_the_run_logged(tmp_path: Path, family: str) -> None:
    run_dir = _run(family, tmp_path / family)
    gens, config = final_generators(run_dir)
    last = read_metrics(run_dir / "metrics.jsonl")[-1]
    assert config["algorithm"] == family and not any(g.training for g in gens.values())
    if family == "gossip":  # no global model: one generator per worker, by device key
        assert sorted(gens) == ["partition-0", "partition-1", "partition-2"]
        assert set(last["fid_workers"]) == set(gens)
        for key, gen in gens.items():
            assert _rescore(gen, config) == pytest.approx(last["fid_workers"][key], rel=1e-6)
    else:
        assert list(gens) == ["generator"]
        assert _rescore(gens["generator"], config) == pytest.approx(last["fid"], rel=1e-6)


def test_a_bad_checkpoint_names_the_file_and_the_problem(tmp_path: Path) -> None:
    run_dir = _run("mdgan", tmp_path / "r")
    path = run_dir / "checkpoint.pt"
    ckpt = load_checkpoint(path)
    save_state(path, round_=ckpt["round"], state={"server": {}}, config=ckpt["config"])
    with pytest.raises(CheckpointError, match=r"r/checkpoint.pt: no 'generator' entry"):
        final_generators(run_dir)
    save_state(path, round_=ckpt["round"], state=ckpt["state"],
               config=ckpt["config"] | {"model": "mlp"})
    with pytest.raises(CheckpointError, match=r"does not fit model preset 'mlp'"):
        final_generators(run_dir)
    save_state(path, round_=ckpt["round"], state=ckpt["state"],
               config=ckpt["config"] | {"algorithm": "dcgan"})
    with pytest.raises(CheckpointError, match=r"unknown algorithm 'dcgan'"):
        final_generators(run_dir)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        final_generators(run_dir)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        final_generators(tmp_path / "nowhere")


def test_final_quality_bench_smoke(tmp_path: Path) -> None:
    """Both backends, one global generator and a gossip federation's typical worker."""
    runs = {f: _run(f, tmp_path / f) for f in ("mdgan", "gossip")}
    out = tmp_path / "fq"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "final_quality.py"),
         *(f"{f}={d}" for f, d in runs.items()), "--n", "60", "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["complete"] is True and not out.with_suffix(".json.tmp").exists()
    md, gossip = doc["runs"]["mdgan"], doc["runs"]["gossip"]
    assert md["algorithm"] == "mdgan" and md["step"] == 4
    for row in (md, gossip):
        assert row["inception"]["fid"] > 0 and row["classifier"]["fid"] > 0
        assert row["inception"]["n"] == row["classifier"]["n"] == 60
    # gossip: every worker scored by the classifier, the median one by Inception
    workers = gossip["classifier"]["fid_workers"]
    assert sorted(workers) == ["partition-0", "partition-1", "partition-2"]
    median = sorted(workers, key=workers.__getitem__)[1]
    assert gossip["inception"]["scored"] == [median]
    table = out.with_suffix(".md").read_text()
    assert "| mdgan |" in table and "| gossip |" in table
    # several latent seeds: the FID is their mean and their spread is reported
    seeded = subprocess.run(
        [sys.executable, str(REPO / "bench" / "final_quality.py"), f"mdgan={runs['mdgan']}",
         "--n", "60", "--eval-seeds", "2", "--out", str(tmp_path / "fq2"),
         "--reuse", str(out.with_suffix(".json"))],  # other settings: nothing to reuse
        capture_output=True, text=True, timeout=600, cwd=REPO)
    assert seeded.returncode == 0, seeded.stdout[-2000:] + seeded.stderr[-2000:]
    two = json.loads((tmp_path / "fq2.json").read_text())["runs"]["mdgan"]
    assert "reused" not in two
    assert two["classifier"]["seeds"] == 2 and two["classifier"]["fid_seed_std"] > 0
    assert md["classifier"]["seeds"] == 1
    # the same runs and settings again: copied from the earlier output, not rescored
    again = subprocess.run(
        [sys.executable, str(REPO / "bench" / "final_quality.py"),
         *(f"{f}={d}" for f, d in runs.items()), "--n", "60", "--out", str(tmp_path / "fq3"),
         "--reuse", str(out.with_suffix(".json"))],
        capture_output=True, text=True, timeout=600, cwd=REPO)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    copied = json.loads((tmp_path / "fq3.json").read_text())["runs"]
    for label in runs:
        assert copied[label].pop("reused") == str(out.with_suffix(".json"))
        assert copied[label] == doc["runs"][label]
    # a run directory without a checkpoint is a usage error naming it
    bad = subprocess.run([sys.executable, str(REPO / "bench" / "final_quality.py"),
                          f"x={tmp_path / 'nowhere'}", "--out", str(out)],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert bad.returncode == 2 and "nowhere" in bad.stderr and "checkpoint" in bad.stderr


def _bench_module(monkeypatch: pytest.MonkeyPatch, name: str) -> Any:
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    return importlib.import_module(name)


def test_final_quality_reuses_only_the_same_checkpoint_and_settings(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fq = _bench_module(monkeypatch, "final_quality")
    settings = {"n": 2000, "inception_workers": 1, "eval_seeds": 1}
    row = {"run": "runs/a", "checkpoint_sha256": "abc", "inception": {"fid": 1.0}}
    previous = {"settings": settings | {"out": "x"}, "runs": {"a": row}}
    assert fq.reusable(previous, "runs/a", "abc", settings | {"out": "y"}) == row
    assert fq.reusable(previous, "runs/./a", "abc", settings) == row  # the same directory
    assert fq.reusable(previous, "runs/a", "abd", settings) is None  # retrained since
    assert fq.reusable(previous, "runs/b", "abc", settings) is None  # another run
    assert fq.reusable(previous, "runs/a", "abc", settings | {"n": 10_000}) is None
    assert fq.reusable(previous, "runs/a", "abc", settings | {"eval_seeds": 3}) is None
    assert fq.reusable({}, "runs/a", "abc", settings) is None


def test_final_quality_groups_labels_by_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    fq = _bench_module(monkeypatch, "final_quality")

    def row(inc: float, clf: float, score: float | None) -> dict[str, Any]:
        return {"inception": {"fid": inc}, "classifier": {"fid": clf, "score": score}}

    groups = fq.groups({"md/s0": row(100.0, 300.0, 3.0), "md/s1": row(104.0, 310.0, 4.0),
                        "fl/s0": row(90.0, 200.0, None), "solo": row(1.0, 1.0, 1.0)})
    assert set(groups) == {"md", "fl"}  # a label without a group stays out
    assert groups["md"]["runs"] == 2
    assert groups["md"]["inception_fid"] == pytest.approx(102.0)
    # the sample (n - 1) spread over training seeds, as report.groups: sqrt(8), not 2
    assert groups["md"]["inception_fid_std"] == pytest.approx(8 ** 0.5)
    assert groups["md"]["classifier_score"] == pytest.approx(3.5)
    assert groups["fl"]["inception_fid_std"] == 0.0 and "classifier_score" not in groups["fl"]
    full = {"algorithm": "mdgan", "step": 4,
            "inception": {"fid": 100.0, "scored": ["g"], "n": 9},
            "classifier": {"fid": 300.0, "score": 3.0, "scored": ["g"]}}
    table = fq.markdown({"md/s0": full})
    assert "| md | 1 | 100.0 ± 0.0 | 300.0 ± 0.0 | 3.00 ± 0.00 |" in table


def test_final_quality_writes_what_it_has_scored_so_far(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A stopped long job keeps its scored runs, marked incomplete, in valid JSON."""
    fq = _bench_module(monkeypatch, "final_quality")
    row = {"algorithm": "fedavg", "step": 3, "run": "runs/a",
           "inception": {"fid": 100.0, "scored": ["g"], "n": 9},
           "classifier": {"fid": 300.0, "score": 3.0, "scored": ["g"]}}
    assert fq._scored(row) and not fq._scored({"run": "runs/b", "classifier": {}})
    out = tmp_path / "sub" / "fq"
    table = fq.write(out, {"n": 9}, {"fl/s0": row}, complete=False)
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["complete"] is False and list(doc["runs"]) == ["fl/s0"]
    assert doc["groups"]["fl"]["inception_fid"] == 100.0 and len(doc["load_avg"]) == 3
    assert out.with_suffix(".md").read_text() == table and "| fl/s0 | fedavg | 3 |" in table
    assert not out.with_suffix(".json.tmp").exists()
    fq.write(out, {"n": 9}, {"fl/s0": row, "fl/s1": row}, complete=True)  # replaces it
    again = json.loads(out.with_suffix(".json").read_text())
    assert again["complete"] is True and again["groups"]["fl"]["runs"] == 2
