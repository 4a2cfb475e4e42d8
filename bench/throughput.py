"""Throughput vs number of devices on the virtual clock: FeGAN vs MD-GAN (FeGAN paper Fig. 12).

For N in {10, 20, 40, 80, 120, 176} (``--sizes``), one ``flwr-gan simulate`` per family
in Flower's Ray engine, MNIST split iid over N devices, the small preset for both (the
paper's LSGAN network does not fit the CPU budget of 12 runs), batch 50, no evaluation:

* FeGAN: the paper's C = 0.025 (ceil(C*N) devices a round), E = 30, balanced sampling,
  KL x load weighting; ``--rounds`` rounds.
* MD-GAN: Algorithm 1, every worker every iteration, kappa = 1, swaps every epoch;
  ``--iterations`` iterations.

Throughput is in epochs (passes over MNIST's 60,000 training images) per *virtual*
second: the real images the discriminators trained on (FeGAN: the ``examples`` each
device reports; MD-GAN: one batch of b per live worker per iteration) over the virtual
time of those rounds / iterations, each device on its own machine with a 2 Gbit/s link
(``virtual_s``: slowest device's measured compute + its bytes over the link, plus the
server's time; the FeGAN testbed's link). That clock gives the server an unlimited
link; a second figure also bounds each round by the server's own 2 Gbit/s link, which
must carry every byte of the round (``max(virtual_s, (bytes_down + bytes_up) / 2 Gbit/s
+ server_s)``). The first round / iteration (warm-up) is left out. Written to
``bench/results/throughput.json`` and ``throughput.png``::

    python bench/throughput.py              # ~10 min on 2 cores
    python bench/throughput.py --smoke      # N = 6, 2 rounds: a check, nothing kept
    python bench/throughput.py --reuse      # recompute from the run directories
    python bench/throughput.py --sweep      # Fig. 13: FeGAN's C x E at N = 60, MD-GAN beside
                                            # -> throughput_sweep.json, ~10 min
    python bench/throughput.py --families mdgan --kappa log   # MD-GAN, floor(ln N) batches
                                            # -> throughput_mdgan_kappa-log.json, ~4 min
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from fegan_common import RESULTS, run_measured

from flwr_gan.runtime.rundir import read_metrics

FLWR_GAN = str(Path(sys.executable).parent / "flwr-gan")
TRAIN_IMAGES = 60_000
BATCH = 50
SERVER_LINK_BPS = 2e9  # the FeGAN testbed's 2 Gbit/s, for the server as for the devices
COMMON = ["--dataset", "mnist", "--partition", "iid", "--model", "small", "--batch-size",
          str(BATCH), "--fid-backend", "none", "--seed", "1", "--no-progress",
          "--client-threads", "1"]


def command(family: str, n: int, length: int, out: Path, *, fraction: float = 0.025,
            local_steps: int = 30, kappa: str = "1") -> list[str]:
    """The ``flwr-gan simulate`` command of one point."""
    if family == "fegan":
        own = ["--algorithm", "fegan", "--rounds", str(length), "--local-steps",
               str(local_steps), "--fraction", repr(fraction)]
    else:
        own = ["--algorithm", "mdgan", "--iterations", str(length), "--kappa", kappa,
               "--swap-epochs", "1"]
    return [FLWR_GAN, "simulate", *own, "--num-clients", str(n), *COMMON, "--out", str(out),
            "--overwrite"]


def throughput(family: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Images and virtual seconds of the measured records (all but the first)."""
    done = [r for r in records if r["round"] > 0][1:]
    if not done:
        raise SystemExit(f"{family}: no record past the warm-up")
    if family == "fegan":
        images = sum(int(r["examples"]) for r in done)
        per = [len(r["nodes"]) for r in done]
    else:
        images = sum(BATCH * len(r["nodes"]) for r in done)
        per = [len(r["nodes"]) for r in done]
    virtual = sum(float(r["virtual_s"]) for r in done)
    compute = sum(float(r.get("compute_s_max", 0.0)) for r in done)
    server = sum(float(r.get("server_s", 0.0)) for r in done)
    server_bytes = sum(int(r["bytes_down"]) + int(r["bytes_up"]) for r in done)
    bounded = sum(max(float(r["virtual_s"]), (int(r["bytes_down"]) + int(r["bytes_up"])) * 8
                      / SERVER_LINK_BPS + float(r.get("server_s", 0.0))) for r in done)
    return {"measured": len(done), "devices_per_step": per, "images": images,
            "virtual_s": virtual, "slowest_compute_s": compute, "server_s": server,
            "server_bytes": server_bytes, "virtual_s_server_link": bounded,
            "epochs_per_virtual_s": images / TRAIN_IMAGES / virtual,
            "images_per_virtual_s": images / virtual,
            "epochs_per_virtual_s_server_link": images / TRAIN_IMAGES / bounded}


def main(argv: list[str] | None = None) -> int:
    """Measure every (family, N) point; write the results unless ``--smoke``."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 40, 80, 120, 176])
    parser.add_argument("--families", nargs="+", default=["fegan", "mdgan"],
                        choices=["fegan", "mdgan"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--runs", default="/tmp/flwr-gan-bench-throughput")
    parser.add_argument("--kappa", default="1", help="MD-GAN's kappa (1 or log)")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--sweep", action="store_true",
                        help="FeGAN paper Fig. 13: C in {1/30, 1/15, 2/15} x E in {15, 30, 60} "
                        "at N = 60")
    parser.add_argument("--reuse", action="store_true",
                        help="recompute from the run directories in --runs (no new runs)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.rounds, args.iterations = [6], 2, 2
    if args.sweep:
        return sweep(args)
    if args.kappa != "1":  # an MD-GAN variant beside the main figure
        points = [measure("mdgan", n, args.iterations,
                          Path(args.runs) / f"mdgan_kappa-{args.kappa}_{n}", args.reuse,
                          kappa=args.kappa) for n in args.sizes]
        if not args.smoke:
            (RESULTS / f"throughput_mdgan_kappa-{args.kappa}.json").write_text(json.dumps(
                {"date": time.strftime("%Y-%m-%d"), "points": points}, indent=1) + "\n")
        return 0
    points = [measure(family, n, args.rounds if family == "fegan" else args.iterations,
                      Path(args.runs) / f"{family}_{n}", args.reuse)
              for n in args.sizes for family in args.families]
    ratios: dict[str, dict[str, float]] = {"device_links": {}, "server_link": {}}
    for n in args.sizes:
        for name, key in (("device_links", "epochs_per_virtual_s"),
                          ("server_link", "epochs_per_virtual_s_server_link")):
            got = {p["family"]: p[key] for p in points if p["n"] == n}
            if len(got) == 2:
                ratios[name][str(n)] = got["fegan"] / got["mdgan"]
    print(json.dumps({"fegan_over_mdgan": ratios}), flush=True)
    if args.smoke:
        return 0
    result = {"date": time.strftime("%Y-%m-%d"), "points": points, "fegan_over_mdgan": ratios,
              "commands": {f: " ".join(command(f, 176, 3, Path("OUT"))[1:])
                           for f in args.families}}
    (RESULTS / "throughput.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(points, RESULTS / "throughput.png")
    return 0


def measure(family: str, n: int, length: int, out: Path, reuse: bool,
            **knobs: Any) -> dict[str, Any]:
    """Run (or, with ``reuse``, re-read) one point; return its figures."""
    out.parent.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    if reuse:
        run = dict(json.loads(out.with_suffix(".run.json").read_text()))
        load = run.pop("load_before")
    else:
        run = run_measured(command(family, n, length, out, **knobs), out.with_suffix(".log"))
        out.with_suffix(".run.json").write_text(json.dumps(run | {"load_before": load}))
    if run["rc"] != 0:
        raise SystemExit(f"{family} N={n} {knobs} failed (rc {run['rc']}): see "
                         f"{out.with_suffix('.log')}")
    point = {"family": family, "n": n, **knobs, "load_before": load, **run,
             **throughput(family, read_metrics(out / "metrics.jsonl"))}
    print(json.dumps(point), flush=True)
    return point


def sweep(args: argparse.Namespace) -> int:
    """FeGAN paper Fig. 13: throughput for C x E at N = 60, MD-GAN's beside it."""
    n, runs = 60, Path(args.runs) / "sweep"
    points = [measure("mdgan", n, args.iterations, runs / "mdgan", args.reuse)]
    for c_num, c_den in ((1, 30), (1, 15), (2, 15)):
        for e in (15, 30, 60):
            points.append(measure("fegan", n, args.rounds, runs / f"fegan_c{c_num}-{c_den}_e{e}",
                                  args.reuse, fraction=c_num / c_den, local_steps=e))
    md = points[0]
    for p in points[1:]:
        p["over_mdgan"] = p["epochs_per_virtual_s"] / md["epochs_per_virtual_s"]
        p["over_mdgan_server_link"] = (p["epochs_per_virtual_s_server_link"]
                                       / md["epochs_per_virtual_s_server_link"])
    (RESULTS / "throughput_sweep.json").write_text(json.dumps(
        {"date": time.strftime("%Y-%m-%d"), "n": n, "points": points}, indent=1) + "\n")
    return 0


def plot(points: list[dict[str, Any]], path: Path) -> None:
    """Epochs per virtual second vs N, one line per family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, key, title in ((axes[0], "epochs_per_virtual_s", "device links only"),
                           (axes[1], "epochs_per_virtual_s_server_link",
                            "server link counted too")):
        for family, label in (("fegan", "FeGAN (C=0.025, E=30)"), ("mdgan", "MD-GAN (Alg. 1)")):
            pts = sorted((p["n"], p[key]) for p in points if p["family"] == family)
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=label)
        ax.set_xlabel("devices N")
        ax.set_title(f"2 Gbit/s links, {title}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.set_yscale("log")
    axes[0].set_ylabel("epochs per virtual second")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
