"""Where the time of a server-relayed MD-GAN iteration goes (Ray simulation engine).

Runs MD-GAN once in Flower's simulation engine (:func:`flwr_gan.runtime.simulation.run`)
and, over the
generator updates after the warm-up, measures:

* CPU seconds per update of every process of the run, read from ``/proc``:
  the driver's threads by name (the ServerApp loop, the simulation engine's
  worker / queue threads), each Ray actor, ``raylet``, ``gcs_server`` and the
  other Ray helpers; and what the rest of the machine used meanwhile (other
  users of the shared cores);
* inside the actors (a client mod): the handler's wall and CPU time, the
  workers' reported training compute, and CPU the actor spent *outside* the
  handler (Ray's (de)serialisation of the message and the node's Context);
* optionally (``--cprofile``) function-level profiles of the server loop
  (between the warm-up and the last update) and of the handlers in the actors
  (cProfile slows Python-heavy code: take wall figures from a run without it).

Writes ``bench/results/relay_profile[-<tag>].json`` and the top functions to
``...-server.txt`` / ``...-worker.txt``.

``--mode handler`` times the worker handler alone in this process (no Ray),
and what pickling its Message and Context out of band costs.

Usage::

    OMP_NUM_THREADS=1 python bench/relay_profile.py --num-clients 10 --iterations 80 \
        --mode pipelined --tag before
    OMP_NUM_THREADS=1 python bench/relay_profile.py --mode handler --iterations 40 --cprofile
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import flwr_gan.apps as apps
from flwr_gan.algorithms import device_handlers, make_settings
from flwr_gan.runtime.experiment import Experiment
from flwr_gan.runtime.simulation import run

TICK = os.sysconf("SC_CLK_TCK")


def _stat(path: str) -> tuple[str, int, float] | None:
    """Return ``(comm, ppid, cpu seconds)`` from a ``/proc/.../stat`` file."""
    try:
        raw = Path(path).read_text()
    except OSError:
        return None
    head, _, tail = raw.rpartition(")")
    comm = head.split("(", 1)[1]
    fields = tail.split()
    return comm, int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


def _label(pid: int, comm: str) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    except OSError:
        cmd = comm
    if "ClientAppActor" in cmd or "ClientAppActor" in comm:
        return f"actor:{pid}"
    for name in ("raylet", "gcs_server", "dashboard", "log_monitor", "monitor.py",
                 "runtime_env", "default_worker"):
        if name in cmd or name in comm:
            return f"ray:{name}"
    return f"other:{comm}"


def snapshot() -> dict[str, Any]:
    """CPU seconds of the driver's threads, its descendants and the whole machine."""
    me = os.getpid()
    procs: dict[int, tuple[str, int, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(f"/proc/{entry}/stat")) is not None:
            procs[int(entry)] = st
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    mine, todo = set(), [me]
    while todo:
        pid = todo.pop()
        mine.add(pid)
        todo.extend(children.get(pid, []))
    names = {t.native_id: t.name for t in threading.enumerate()}
    threads: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{me}/task"):
        st = _stat(f"/proc/{me}/task/{tid}/stat")
        if st is not None:
            key = names.get(int(tid), f"native:{st[0]}")
            threads[key] = threads.get(key, 0.0) + st[2]
    groups: dict[str, float] = {}
    for pid in mine - {me}:
        key = _label(pid, procs[pid][0])
        groups[key] = groups.get(key, 0.0) + procs[pid][2]
    cpu = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    busy = (sum(int(v) for v in cpu) - int(cpu[3]) - int(cpu[4])) / TICK
    return {"t": time.perf_counter(), "threads": threads, "groups": groups,
            "machine_busy": busy, "ours": sum(threads.values()) + sum(groups.values()),
            "loadavg": os.getloadavg()}


def _diff(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: b[k] - a.get(k, 0.0) for k in b if b[k] - a.get(k, 0.0) > 1e-9}


# -- actor side ----------------------------------------------------------------

def make_profiling_mod(out_dir: str, warmup: int, use_cprofile: bool,
                       drop_state: bool = False) -> Any:
    """A client mod timing every handler call (and optionally profiling it).

    Ray unpickles the ClientApp (and this closure) afresh for every message, so
    the running totals live on an always-imported module of the actor process.
    """

    def mod(msg: Any, ctxt: Any, call_next: Any) -> Any:
        import sys

        state: dict[str, Any] = sys.__dict__.setdefault("_flwr_gan_relay_profile", {})
        if not state:
            state.update(calls=0, handler_wall=0.0, handler_cpu=0.0, compute=0.0,
                         outside_cpu=0.0, last_cpu=None, counted=0,
                         prof=cProfile.Profile() if use_cprofile else None)
        kinds = state.setdefault("state_buffers", {})  # how the node state arrived
        for record in ctxt.state.array_records.values():
            for arr in record.values():
                raw = arr.raw if hasattr(arr, "raw") else arr.data
                kind = f"{type(arr).__name__}:{type(raw).__name__}"
                kinds[kind] = kinds.get(kind, 0) + 1
                break
            break
        cfg = msg.content.config_records.get("config")
        it = int(cfg.get("iteration", 0)) if cfg is not None else 0
        count = it > warmup
        c0, w0 = time.process_time(), time.perf_counter()
        if count and state["last_cpu"] is not None:
            state["outside_cpu"] += c0 - state["last_cpu"]
        prof = state["prof"] if count else None
        if prof is not None:
            prof.enable()
        try:
            reply = call_next(msg, ctxt)
        finally:
            if prof is not None:
                prof.disable()
        if drop_state:  # lower-bound experiment only: the worker forgets its D (wrong math)
            for key in list(ctxt.state.array_records):
                del ctxt.state.array_records[key]
        c1 = time.process_time()
        state["last_cpu"] = c1
        if count:
            state["counted"] += 1
            state["handler_wall"] += time.perf_counter() - w0
            state["handler_cpu"] += c1 - c0
            if not reply.has_error() and "metrics" in reply.content.metric_records:
                state["compute"] += float(reply.content.metric_records["metrics"]["compute-s"])
        state["calls"] += 1
        if state["calls"] % 10 == 0:
            pid = os.getpid()
            Path(out_dir, f"actor-{pid}.json").write_text(json.dumps(
                {k: v for k, v in state.items() if k != "prof"}))
            if prof is not None:
                prof.dump_stats(str(Path(out_dir, f"actor-{pid}.prof")))
        return reply

    return mod


# -- the handler alone, in process ---------------------------------------------

def handler_profile(args: argparse.Namespace, out: Path, suffix: str) -> dict[str, Any]:
    """Time ``train.mdgan_step`` in this process (no Ray): wall, compute, and what
    shipping its Message and Context costs under pickle protocol 5 (as Ray does)."""
    import pickle
    import uuid

    import numpy as np
    import torch
    from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, Metadata, RecordDict
    from flwr.supercore.task_identity import TaskIdentity

    from flwr_gan.mdgan.client import STEP_TYPE, make_client_app
    from flwr_gan.mdgan.server import worker_config

    TaskIdentity._run_id = TaskIdentity._task_id = TaskIdentity._node_id = 1
    torch.set_num_threads(1)
    settings = make_settings("mdgan", model=args.model, batch_size=args.batch_size,
                             num_clients=args.num_clients, fid_backend="none")
    base = worker_config(settings, (1, 28, 28))
    rng = torch.Generator().manual_seed(0)

    def message(it: int) -> Message:
        x = (torch.rand(args.batch_size, 1, 28, 28, generator=rng) * 2 - 1).numpy()
        content = RecordDict({
            "config": ConfigRecord(base | {"iteration": it, "send-disc": False, "crash": False}),
            "batches": ArrayRecord({"x_g": Array(x), "x_d": Array(x.copy())})})
        meta = Metadata(run_id=1, message_id=uuid.uuid4().hex, src_node_id=1, dst_node_id=5,
                        reply_to_message_id="", group_id=str(it), created_at=time.time(),
                        ttl=3600.0, message_type=STEP_TYPE)
        # a message as the SuperLink delivers it: flwr's public overloads build outgoing ones
        return Message(metadata=meta, content=content)  # type: ignore[call-overload]

    app = make_client_app()
    ctx = Context(run_id=1, node_id=5, node_config={"partition-id": 3,
                                                    "num-partitions": args.num_clients},
                  state=RecordDict(), run_config={})
    for it in range(1, 4):
        app(message(it), ctx)
    msgs = [message(it) for it in range(4, 4 + args.iterations)]
    prof = cProfile.Profile()
    compute = handler = 0.0
    started = time.perf_counter()
    if args.cprofile:
        prof.enable()
    for msg in msgs:
        reply = app(msg, ctx)
        metrics = reply.content.metric_records["metrics"]
        compute += float(cast(float, metrics["compute-s"]))
        handler += float(cast(float, metrics["handler-s"]))
    if args.cprofile:
        prof.disable()
    wall = time.perf_counter() - started

    def shipped(obj: Any, out_of_band: bool) -> tuple[float, int]:
        t0 = time.perf_counter()
        buffers: list[pickle.PickleBuffer] = []
        stream = pickle.dumps(obj, protocol=5,
                              buffer_callback=buffers.append if out_of_band else None)
        stored = np.frombuffer(stream, np.uint8).copy()  # Ray copies both into its store
        views = [np.frombuffer(b.raw(), np.uint8).copy() for b in buffers]
        pickle.loads(stored.data, buffers=views)
        return time.perf_counter() - t0, len(stream) + sum(v.nbytes for v in views)

    n = len(msgs)
    ship = [shipped((msgs[0], ctx), True), shipped((reply, ctx), True)]
    report = {
        "mode": "handler", "settings": vars(args), "calls": n,
        "wall_per_call_s": wall / n, "handler_per_call_s": handler / n,
        "compute_per_call_s": compute / n,
        "ship_in_s": ship[0][0], "ship_out_s": ship[1][0],
        "ship_in_bytes": ship[0][1], "ship_out_bytes": ship[1][1],
        "loadavg": os.getloadavg(),
    }
    (out / f"relay_profile{suffix}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    if args.cprofile:
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(45)
        (out / f"relay_profile{suffix}-handler.txt").write_text(s.getvalue())
    return report


# -- driver side ---------------------------------------------------------------

def main() -> int:
    """Run one profiled simulation and write the breakdown."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-clients", type=int, default=10)
    p.add_argument("--iterations", type=int, default=80)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--model", default="mlp")
    p.add_argument("--mode", default="pipelined",
                   help="sync, pipelined, or handler (the worker handler alone, no Ray)")
    p.add_argument("--cprofile", action="store_true")
    p.add_argument("--tag", default="")
    p.add_argument("--drop-state", action="store_true",
                   help="experiment: empty the node state after each message (wrong math; "
                        "shows what shipping the Context costs)")
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="relay-profile-")
    try:
        return _main(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _main(args: argparse.Namespace, tmp: str) -> int:
    """Profile with scratch files in ``tmp``."""
    suffix = f"-{args.tag}" if args.tag else ""
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    if args.mode == "handler":
        handler_profile(args, out, suffix)
        return 0
    marks: dict[str, Any] = {}
    server_prof = cProfile.Profile()
    log = Experiment.log

    def logged(exp: Experiment, rec: Mapping[str, Any]) -> None:  # the server loop's thread
        log(exp, rec)
        if rec["round"] == args.warmup:
            marks["a"] = snapshot()
            if args.cprofile:
                server_prof.enable()
        if rec["round"] == args.iterations:
            if args.cprofile:
                server_prof.disable()
            marks["b"] = snapshot()

    def device_app(run_config: Mapping[str, Any] | None = None) -> Any:
        from flwr.clientapp import ClientApp
        mods = [make_profiling_mod(tmp, args.warmup, args.cprofile, args.drop_state)]
        if run_config is not None:
            mods.insert(0, apps.fixed_run_config(run_config))
        app = ClientApp(mods=mods)
        for register in device_handlers():
            register(app)
        return app

    Experiment.log = logged  # type: ignore[method-assign, assignment]
    apps.device_app = device_app
    settings = make_settings(
        "mdgan", num_clients=args.num_clients, iterations=args.iterations, kappa="1",
        batch_size=args.batch_size, model=args.model, swap_epochs=0, mode=args.mode,
        fid_backend="none", progress=False, checkpoint_every=0, out=str(Path(tmp) / "run"))
    result = run(settings)
    recs = [r for r in result.records if r["round"] > args.warmup]
    updates = len(recs)
    a, b = marks["a"], marks["b"]
    per = 1.0 / updates
    threads = {k: v * per for k, v in _diff(a["threads"], b["threads"]).items()}
    groups = {k: v * per for k, v in _diff(a["groups"], b["groups"]).items()}
    actors: dict[str, Any] = {}
    for f in Path(tmp).glob("actor-*.json"):
        actors[f.stem] = {k: v * per if isinstance(v, float) and k != "last_cpu" else v
                          for k, v in json.loads(f.read_text()).items()}
    wall = sum(r["wall_s"] for r in recs)
    compute = sum(r["compute_s_total"] for r in recs)
    report = {
        "settings": vars(args), "updates": updates,
        "wall_per_update_s": wall * per, "compute_per_update_s": compute * per,
        "parallel_ratio": wall / (compute / 2), "span_s": b["t"] - a["t"],
        "cpu_per_update_s": {"driver_threads": threads, "processes": groups,
                             "ours_total": (b["ours"] - a["ours"]) * per,
                             "machine_total": (b["machine_busy"] - a["machine_busy"]) * per},
        "actor_mod_per_update_s": actors,
        "loadavg_before": a["loadavg"], "loadavg_after": b["loadavg"],
    }
    target = out / f"relay_profile{suffix}.json"
    target.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    if args.cprofile:
        for name, profs in (("server", [server_prof]),
                            ("worker", sorted(Path(tmp).glob("actor-*.prof")))):
            s = io.StringIO()
            stats = pstats.Stats(*[str(x) if isinstance(x, Path) else x for x in profs],
                                 stream=s)
            stats.sort_stats("cumulative").print_stats(60)
            (out / f"relay_profile{suffix}-{name}.txt").write_text(s.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
