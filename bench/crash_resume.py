"""kill -9 mid-run, then ``--resume``: FeGAN, MD-GAN and Gossip GAN in Flower's Ray engine.

For each family, three runs of the same ``flwr-gan simulate`` command (same seed):

1. ``ref``: uninterrupted;
2. ``crash``: SIGKILL to the whole session (the command, Ray's daemons and its
   actors) as soon as round / iteration ``--kill-at`` is in ``metrics.jsonl``; the
   processes left behind are counted (then killed);
3. the same command with ``--resume`` on the crashed run directory.

Checked and written to ``bench/results/crash_resume.json``: every round / iteration
0..R appears exactly once in the resumed ``metrics.jsonl``; the records equal the
uninterrupted run's apart from timings (keys ending in ``_s``); the final checkpoint's
tensors equal the uninterrupted run's bit for bit; the time to restart (launch of the
resume command until it records a round / iteration beyond the last one recorded before
the kill) and the whole resumed command::

    python bench/crash_resume.py                   # fegan, mdgan, gossip: ~9 min on 2 cores
    python bench/crash_resume.py --smoke           # smaller, nothing written
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from fegan_common import RESULTS

from flwr_gan.runtime.checkpoint import load_checkpoint
from flwr_gan.runtime.rundir import untimed

FLWR_GAN = str(Path(sys.executable).parent / "flwr-gan")
COMMON = ["--model", "small", "--batch-size", "16", "--n-eval", "500", "--eval-seeds", "1",
          "--seed", "3", "--no-progress", "--checkpoint-every", "1"]  # MD-GAN's default is 100
FAMILIES: dict[str, tuple[str, list[str]]] = {
    "fegan": ("round", ["--algorithm", "fegan", "--num-clients", "6", "--fraction", "0.34",
                        "--local-steps", "5", "--max-class", "3", "--max-samples", "200",
                        "--eval-every", "2"]),
    "mdgan": ("iteration", ["--algorithm", "mdgan", "--num-clients", "4", "--eval-every", "5",
                            "--swap-epochs", "1"]),
    "gossip": ("round", ["--algorithm", "gossip", "--num-clients", "4", "--variant", "ddl_ind",
                         "--local-steps", "5", "--eval-every", "2", "--eval-workers", "2",
                         "--compress", "adacomp"]),
}
LENGTH = {"fegan": ["--rounds", "6"], "mdgan": ["--iterations", "30"], "gossip": ["--rounds", "6"]}
SMOKE = {"fegan": ["--rounds", "3"], "mdgan": ["--iterations", "6"], "gossip": ["--rounds", "3"]}


def records(out: Path) -> list[dict[str, Any]]:
    """The run's records (none yet if the file does not exist)."""
    path = out / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def session_pids(sid: int) -> list[int]:
    """Processes of session ``sid`` (what a command started, Ray's daemons included)."""
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[3]) == sid and int(p) != os.getpid():
                out.append(int(p))
    return out


def launch(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own session, output to ``log``."""
    return subprocess.Popen(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
                            env=dict(os.environ, OMP_NUM_THREADS="1"), start_new_session=True)


def tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor in a checkpoint, by its path in the state."""
    flat: dict[str, torch.Tensor] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, torch.Tensor):
            flat[prefix] = value
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}/{k}", v)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(f"{prefix}/{i}", v)

    walk("", load_checkpoint(path)["state"])
    return flat


def family(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run ref, crash and resume for one family; return the figures."""
    unit, flags = FAMILIES[name]
    length = SMOKE[name] if args.smoke else LENGTH[name]
    runs = Path(args.runs) / name
    runs.mkdir(parents=True, exist_ok=True)
    base = [FLWR_GAN, "simulate", *flags, *length, *COMMON]
    ref, crash = runs / "ref", runs / "crash"
    t0 = time.perf_counter()
    subprocess.run([*base, "--out", str(ref), "--overwrite"], check=True,
                   stdout=open(runs / "ref.log", "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
                   env=dict(os.environ, OMP_NUM_THREADS="1"))
    ref_s = time.perf_counter() - t0
    kill_at = args.kill_at or int(length[1]) // 2
    shutil.rmtree(crash, ignore_errors=True)  # an old run's records would trigger the kill
    proc = launch([*base, "--out", str(crash), "--overwrite"], runs / "crash.log")
    while proc.poll() is None and not any(r[unit] >= kill_at for r in records(crash)):
        time.sleep(0.2)
    if proc.poll() is not None:
        raise SystemExit(f"{name}: the run ended before {unit} {kill_at}; see crash.log")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(1.0)
    left = session_pids(proc.pid)  # Ray daemons that escaped the process group
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    at_kill = records(crash)
    ckpt_round = load_checkpoint(crash / "checkpoint.pt")["round"]
    t1 = time.perf_counter()
    resumed = launch([*base, "--out", str(crash), "--resume"], runs / "resume.log")
    first_new = None
    reached = max(r[unit] for r in at_kill)
    while resumed.poll() is None:
        if first_new is None and any(r[unit] > reached for r in records(crash)):
            first_new = time.perf_counter() - t1
        time.sleep(0.2)
    resume_s = time.perf_counter() - t1
    got, want = records(crash), records(ref)
    units = [r[unit] for r in got]
    a, b = tensors(crash / "checkpoint.pt"), tensors(ref / "checkpoint.pt")
    return {
        "family": name, "command": " ".join(base[1:]), "unit": unit, "kill_at": kill_at,
        "records_at_kill": len(at_kill), "checkpoint_at_kill": ckpt_round,
        "processes_left_after_kill": len(left), "resume_rc": resumed.returncode,
        "units_each_once": units == list(range(int(length[1]) + 1)),
        "records_equal_uninterrupted": untimed(got) == untimed(want),
        "final_tensors": len(a),
        "final_tensors_bit_identical": a.keys() == b.keys()
        and all(torch.equal(a[k], b[k]) for k in a),
        "final_tensors_differing": sorted(k for k in a if k in b and not torch.equal(a[k], b[k])),
        "restart_to_past_the_kill_s": first_new, "resume_command_s": resume_s,
        "uninterrupted_command_s": ref_s, "loadavg": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the chosen families; write the results unless ``--smoke``."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--kill-at", type=int, default=0, help="default: half the run")
    parser.add_argument("--runs", default="/tmp/flwr-gan-bench-crash")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    out = []
    for name in args.families:
        res = family(name, args)
        out.append(res)
        print(json.dumps(res), flush=True)
    if not args.smoke:
        (RESULTS / "crash_resume.json").write_text(json.dumps({"runs": out}, indent=1) + "\n")
    ok = all(r["units_each_once"] and r["records_equal_uninterrupted"]
             and r["final_tensors_bit_identical"] for r in out)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
