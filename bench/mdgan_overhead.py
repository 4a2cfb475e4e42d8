"""Flower overhead of MD-GAN: wall time per iteration vs client compute per iteration.

N workers in Flower's Ray simulation engine, MNIST, batches of b=64 images,
the paper's MLP; synchronous (Algorithm 1) and pipelined (paper §VII-1)
modes. For each mode, over the iterations after a warm-up:

* ``wall_per_iter``    = training wall seconds / generator updates,
* ``compute_per_iter`` = sum of the workers' measured compute seconds
  (their D steps + feedback) / generator updates,
* ``ratio`` = wall_per_iter / compute_per_iter, both from the same run;
* ``parallel_ratio`` = wall_per_iter / (compute_per_iter / actors): against
  the best the actors could do in parallel.

The machine's load average (``os.getloadavg()``) is recorded before and after
each run, with the CPU seconds per update that the run itself used
(``own_cpu_per_iter_s``: this process and its descendants, Ray included) and
that the whole machine used (``machine_cpu_per_iter_s``, from ``/proc/stat``):
the ratio is sensitive to other processes on the same cores. Writes
``bench/results/mdgan_overhead.json`` (``--out``).

Usage::

    OMP_NUM_THREADS=1 python bench/mdgan_overhead.py --num-clients 10 --iterations 150
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flwr_gan.algorithms import make_settings
from flwr_gan.runtime.experiment import Experiment
from flwr_gan.runtime.simulation import run


def machine_cpu_s() -> float:
    """CPU seconds the machine has been busy since boot (all cores, ``/proc/stat``)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU seconds used by this process and its descendants (Ray's actors, raylet, ...)."""
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        parent[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    mine, todo = set(), [os.getpid()]
    while todo:
        pid = todo.pop()
        mine.add(pid)
        todo.extend(p for p, pp in parent.items() if pp == pid and p not in mine)
    return sum(cpu.get(p, 0.0) for p in mine)


def measure(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one mode; return the per-iteration wall and compute times.

    ``sync-poll100ms`` is the synchronous loop polling for replies every
    0.1 s, like Flower's ``Grid.send_and_receive`` (the planning baseline).
    """
    load_before = os.getloadavg()
    poll = 0.1 if mode == "sync-poll100ms" else 0.005
    loop_mode = "sync" if mode.startswith("sync") else mode
    busy: dict[int, float] = {}
    own: dict[int, float] = {}
    log = Experiment.log

    def logged(exp: Experiment, record: Mapping[str, Any]) -> None:
        if record["round"] in (args.warmup, args.iterations):
            busy[int(record["round"])] = machine_cpu_s()
            own[int(record["round"])] = own_cpu_s()
        log(exp, record)

    Experiment.log = logged  # type: ignore[method-assign, assignment]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = make_settings(
                "mdgan", num_clients=args.num_clients, iterations=args.iterations, kappa="1",
                batch_size=args.batch_size, model=args.model, swap_epochs=0, mode=loop_mode,
                poll_interval=poll, fid_backend="none", progress=False, checkpoint_every=0,
                out=str(Path(tmp) / "r"))
            result = run(settings)
    finally:
        Experiment.log = log  # type: ignore[method-assign]
    recs = [r for r in result.records if r["round"] > args.warmup]
    updates = len(recs)
    wall = sum(r["wall_s"] for r in recs)
    machine = ((busy[args.iterations] - busy[args.warmup]) / updates
               if len(busy) == 2 else None)
    ours = (own[args.iterations] - own[args.warmup]) / updates if len(own) == 2 else None
    compute = sum(r["compute_s_total"] for r in recs)
    return {
        "mode": mode, "poll_interval_s": poll, "updates": updates,
        "parallel_ratio": wall / (compute / args.actors), "wall_per_iter_s": wall / updates,
        "compute_per_iter_s": compute / updates, "ratio": wall / compute,
        "compute_max_per_iter_s": sum(r["compute_s_max"] for r in recs) / updates,
        "server_per_iter_s": sum(r["server_s"] for r in recs) / updates,
        "virtual_per_iter_s": sum(r["virtual_s"] for r in recs) / updates,
        "handler_per_iter_s": sum(r["handler_s"] for r in recs) / updates,
        "messages_per_iter": sum(r["messages"] for r in recs) / updates,
        "staleness_mean": (sum(r.get("staleness_mean", 0.0) for r in recs) / updates),
        "machine_cpu_per_iter_s": machine, "own_cpu_per_iter_s": ours,
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
    }


def main() -> int:
    """Measure both modes (``--repeat`` times) and write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-clients", type=int, default=10)
    p.add_argument("--iterations", type=int, default=150)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--model", default="mlp")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--modes", default="sync-poll100ms,sync,pipelined")
    p.add_argument("--actors", type=int, default=2,
                   help="Ray actors running clients in parallel (cores / num_cpus)")
    p.add_argument("--out", default="bench/results/mdgan_overhead.json")
    args = p.parse_args()
    rows = []
    for rep in range(args.repeat):
        for mode in args.modes.split(","):
            row = measure(mode, args) | {"repeat": rep}
            rows.append(row)
            print(json.dumps(row), flush=True)
    target = Path(args.out)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({"settings": vars(args), "cpus": os.cpu_count(),
                                  "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
