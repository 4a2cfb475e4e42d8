"""The simulation on a Ray cluster of two nodes (`ray start --head` + `ray start --address`).

Each Ray node is a separate raylet process with one CPU; with one CPU per client,
Flower's actor pool can only hold two actors if it uses both nodes. The test watches
the ``ClientAppActor`` processes while the run trains and checks that they were
started by two different raylets, then that the run learned its rounds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.deployment import free_port, read_records

BIN = Path(sys.executable).parent


def _cmdline(pid: str) -> str:
    try:
        return (Path("/proc") / pid / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _ppid(pid: str) -> int:
    try:
        return int((Path("/proc") / pid / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def actor_parents(stop: threading.Event, seen: set[int]) -> None:
    """Record the parent (a raylet) of every ClientAppActor process until ``stop``."""
    while not stop.is_set():
        for pid in os.listdir("/proc"):
            if pid.isdigit() and "ClientAppActor" in _cmdline(pid):
                seen.add(_ppid(pid))
        stop.wait(0.3)


def stop_cluster(temp: Path) -> None:
    """Stop this test's Ray processes by PID (never `ray stop`, which stops every cluster)."""
    import signal

    def ours() -> list[int]:
        return [int(p) for p in os.listdir("/proc")
                if p.isdigit() and int(p) != os.getpid() and str(temp) in _cmdline(p)]

    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in ours():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 15
        while ours() and time.monotonic() < deadline:
            time.sleep(0.3)


@pytest.mark.slow
def test_simulation_runs_on_a_two_node_ray_cluster(tmp_path):
    port = free_port()
    temp = Path("/tmp") / f"flwr-gan-ray-{port}"  # Ray's socket paths must stay short
    env = dict(os.environ, OMP_NUM_THREADS="1", RAY_USAGE_STATS_ENABLED="0",
               PATH=str(BIN) + os.pathsep + os.environ.get("PATH", ""))
    ray = str(BIN / "ray")
    head = [ray, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
            "--num-cpus", "1", "--temp-dir", str(temp), "--include-dashboard", "false"]
    seen: set[int] = set()
    stop = threading.Event()
    watcher = threading.Thread(target=actor_parents, args=(stop, seen), daemon=True)
    try:
        subprocess.run(head, env=env, check=True, capture_output=True, timeout=120)
        subprocess.run([ray, "start", "--address", f"127.0.0.1:{port}", "--num-cpus", "1"],
                       env=env, check=True, capture_output=True, timeout=120)
        raylets = {int(p) for p in os.listdir("/proc")
                   if p.isdigit() and "raylet/raylet" in _cmdline(p) and str(temp) in _cmdline(p)}
        assert len(raylets) == 2, raylets
        watcher.start()
        out = tmp_path / "run"
        proc = subprocess.run(
            [str(BIN / "flwr-gan"), "simulate", "--algorithm", "fegan", "--model", "small",
             "--num-clients", "4", "--fraction", "0.5", "--rounds", "3", "--local-steps", "5",
             "--batch-size", "16", "--max-samples", "100", "--max-class", "3",
             "--eval-every", "3", "--n-eval", "200", "--eval-seeds", "1",
             "--ray-address", f"127.0.0.1:{port}", "--out", str(out), "--no-progress"],
            env=env, capture_output=True, text=True, timeout=240)
    finally:
        stop.set()
        stop_cluster(temp)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    records = read_records(out / "metrics.jsonl")
    assert [r["round"] for r in records] == [0, 1, 2, 3]
    assert all(len(r["nodes"]) == 2 and r["failed"] == {} for r in records[1:])
    assert records[-1]["fid"] > 0 and records[-1]["d_loss"] is not None
    # actors on both Ray nodes: started by both raylets, by nothing else
    assert seen & raylets == raylets, (seen, raylets)
