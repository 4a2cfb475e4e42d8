"""Shared helpers of the FeGAN benchmarks: run a command, sample its memory."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

from flwr_gan.runtime.rundir import read_metrics

RESULTS = Path(__file__).parent / "results"


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            out += [int(c) for c in text]
    except OSError:
        pass
    return out


def tree_rss_bytes(root: int) -> int:
    """Sum of the resident memory of ``root`` and all its descendants."""
    total, stack, seen = 0, [root], set()
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
        stack += _children(pid)
    return total


def run_measured(cmd: list[str], log_path: Path) -> dict[str, float]:
    """Run ``cmd``; return wall seconds, peak process-tree RSS and the exit code.

    Ray's own daemons (raylet, GCS) are started by the command and are its
    descendants, so they are counted.
    """
    env = dict(os.environ, OMP_NUM_THREADS="1")
    peak = 0
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, tree_rss_bytes(proc.pid))
                stop.wait(0.5)

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        rc = proc.wait()
        stop.set()
        t.join()
    return {"wall_s": time.perf_counter() - start, "peak_rss_mb": peak / 2**20, "rc": rc}


def finished(run_dir: Path, rounds: int) -> bool:
    """Whether ``run_dir``'s ``metrics.jsonl`` reached ``rounds`` (so it may be reused).

    A run that was cut off, or never started, is not finished: benchmarks rerun it
    rather than report a shorter curve as the planned one.
    """
    metrics = Path(run_dir) / "metrics.jsonl"
    if not metrics.exists():
        return False
    try:
        records = read_metrics(metrics)
    except ValueError:  # a run killed mid-write leaves a truncated last line: not finished
        return False
    return bool(records) and isinstance(records[-1], dict) \
        and int(records[-1].get("round", -1)) >= rounds
