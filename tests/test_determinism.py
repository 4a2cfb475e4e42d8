"""Same seed, same metrics.jsonl (apart from timings), for every family.

Flower's node ids are random per run; here every second run gets other random
node ids (in shuffled order), so anything keyed by node id instead of device key
shows up as a difference.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import torch

from flwr_gan.algorithms import make_settings
from flwr_gan.runtime.experiment import prepare
from flwr_gan.runtime.rundir import read_metrics, untimed
from flwr_gan.runtime.simulation import run


def random_ids(n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return rng.sample(range(1, 2**62), n)


def test_untimed_drops_timings_only():
    rec = {"round": 1, "wall_s": 0.3, "compute_s": {"partition-0": 0.1}, "fid": 3.0,
           "compute_s_max": 0.1,
           "dropped": [{"node": "partition-1", "t_s": 1.0}]}
    assert untimed(rec) == {"round": 1, "fid": 3.0, "dropped": [{"node": "partition-1"}]}


def test_standalone(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        s = make_settings("standalone", steps=30, eval_every=15, n_eval=100, batch_size=16,
                          out=str(tmp_path / name), progress=False)
        runs.append(untimed(run(s).records))
    assert runs[0] == runs[1] and len(runs[0]) == 3 and runs[0][-1]["fid"] > 0


@pytest.mark.parametrize("algorithm", ["fegan", "flgan"])
def test_fl_families(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, algorithm: str) -> None:
    from flwr_gan.fl.client import make_client_app
    from flwr_gan.fl.server import run_federated
    from tests.fegan_fakes import InProcessGrid, set_task_identity

    set_task_identity(monkeypatch)
    torch.set_num_threads(1)
    runs = []
    for i, name in enumerate(("a", "b")):
        s = make_settings(algorithm, num_clients=6, rounds=3, fraction=0.34, model="small",
                          local_steps=2, batch_size=16, max_samples=100, eval_every=3,
                          n_eval=100, out=str(tmp_path / name), progress=False)
        exp = prepare(s, unit="round", total=3, federated=True)
        grid = InProcessGrid(make_client_app(), 6, run_config=s.to_run_config(),
                             node_ids=random_ids(6, i))
        run_federated(grid, exp)
        runs.append(untimed(read_metrics(tmp_path / name / "metrics.jsonl")))
    assert runs[0] == runs[1]
    assert all(r["nodes"] for r in runs[0][1:])


def relay_runs(tmp_path: Path, algorithm: str, **values: Any) -> list[list[dict[str, Any]]]:
    """Run a relay family twice over in-process grids with other random node ids each time."""
    from flwr_gan.algorithms import get_algorithm
    from flwr_gan.apps import device_app
    from tests.mdgan_fakes import FakeGrid

    algo = get_algorithm(algorithm)
    runs = []
    for i, name in enumerate(("a", "b")):
        s = make_settings(algorithm, out=str(tmp_path / name), progress=False, **values)
        exp = prepare(s, unit=algo.unit, total=int(s.get(algo.total)), federated=True)
        n = s.num_clients
        grid = FakeGrid([device_app() for _ in range(n)], node_ids=random_ids(n, i),
                        run_config=s.to_run_config())
        algo.load("server")(grid, exp)  # the family's registry entry
        exp.close()
        runs.append(untimed(read_metrics(tmp_path / name / "metrics.jsonl")))
    return runs


def test_mdgan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.mdgan_fakes import set_task_identity

    set_task_identity(monkeypatch)
    runs = relay_runs(tmp_path, "mdgan", num_clients=3, iterations=6, kappa="2", batch_size=8,
                      swap_epochs=1e-9, crash_schedule=True, eval_every=3, n_eval=100)
    assert runs[0] == runs[1]
    assert sum(r.get("swaps", 0) for r in runs[0]) > 0 and runs[0][-1]["alive"] < 3


def test_gossip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.mdgan_fakes import set_task_identity

    set_task_identity(monkeypatch)
    torch.set_num_threads(1)
    runs = relay_runs(tmp_path, "gossip", variant="ddl_ind", num_clients=4, rounds=3,
                      local_steps=2, batch_size=8, eval_every=3, eval_workers=2, n_eval=100)
    assert runs[0] == runs[1]
    assert runs[0][-1]["fid_worst"] >= runs[0][-1]["fid_best"] > 0
    assert all(r["peers"] for r in runs[0][1:])  # models were exchanged
