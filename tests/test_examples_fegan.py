"""The example Flower apps configure every knob, with values the server accepts."""

from pathlib import Path

import pytest

from flwr_gan.algorithms import get_algorithm
from flwr_gan.config import key_of

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("algo", ["fegan", "flgan", "mdgan", "gossip"])
def test_example_app_config_is_complete_and_valid(algo):
    meta = tomllib.loads((ROOT / algo / "pyproject.toml").read_text())
    app = meta["tool"]["flwr"]["app"]
    assert app["components"] == {"serverapp": "flwr_gan.apps:server_app",
                                 "clientapp": "flwr_gan.apps:client_app"}
    assert "federations" not in meta["tool"]["flwr"]
    config = dict(app["config"])
    family = get_algorithm(config.pop("algorithm"))
    assert family.name == algo
    # every knob of the family is there, nothing else, and the schema accepts it as is
    assert set(config) == {key_of(f.name) for f in family.fields()}
    settings = family.settings(config)
    if algo in ("fegan", "flgan"):  # the FeGAN paper's defaults
        assert settings.fraction == 0.025 and settings.local_steps == 30
        assert settings.batch_size == 50 and settings.lr_g == 2e-4
        assert settings.model.resolved_loss() == "lsgan"


def _pids_with_env(key: str, value: str) -> list[int]:
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if f"{key}={value}".encode() in (p / "environ").read_bytes().split(b"\0"):
                    pids.append(int(p.name))
            except OSError:
                continue
    return pids


@pytest.mark.slow
def test_flwr_run_the_fegan_example(tmp_path):
    """``flwr run examples/fegan`` on 4 SuperNodes (local SuperLink, stopped by PID)."""
    import json
    import os
    import signal
    import subprocess
    import sys

    home = tmp_path / "flwr-home"
    home.mkdir()
    # the flwr CLI and the SuperLink it starts come from this interpreter's environment,
    # even when it is not activated (CI calls .venv/bin/python directly)
    bindir = str(Path(sys.executable).parent)
    env = dict(os.environ, FLWR_HOME=str(home), FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
               OMP_NUM_THREADS="1", PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    out = tmp_path / "run"
    run_config = (f"num-clients=4 rounds=2 model='small' local-steps=3 batch-size=16 "
                  f"fraction=0.5 max-samples=100 eval-every=2 n-eval=200 out='{out}'")
    try:
        proc = subprocess.run(
            [str(Path(bindir) / "flwr"), "run", str(ROOT / "fegan"),
             "--federation-config", "num-supernodes=4",
             "--run-config", run_config, "--stream"],
            env=env, capture_output=True, text=True, timeout=420)
    finally:
        for pid in _pids_with_env("FLWR_HOME", str(home)):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()] \
        if (out / "metrics.jsonl").exists() else []
    assert [r["round"] for r in records] == [0, 1, 2], proc.stdout[-2000:] + proc.stderr[-2000:]
    assert all(len(r["nodes"]) == 2 and r["kl_seen"] is not None for r in records[1:])
