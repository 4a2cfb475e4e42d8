"""What devices upload, and what it costs in FID: AdaComp levels, partial sync, DP (FeGAN).

Every run is the same FeGAN job on Flower's Ray engine (176 simulated devices on
MNIST split by the FeGAN non-iid engine, 2 devices a round, the ``small`` preset,
the same seed) with one upload setting changed:

* ``none``: the baseline (dense float32 G + D);
* ``adacomp-*``: AdaComp at three levels (fraction of each layer sent, value dtype);
* ``freq-*``: the same job on 10 devices (2 a round), so that a device's
  AdaComp residual is sent when it returns a few rounds later;
* ``sync-generator`` / ``sync-discriminator``: partial synchronisation;
* ``dp-*``: Flower's server-side fixed-clipping DP at two noise levels, against
  the same run without DP (all three with uniform weights, so the budget can be
  accounted).

For each run it reads ``metrics.jsonl`` and writes the uploaded and dense bytes,
the reduction factor, the first / best / final FID and KID, and the load average,
to ``bench/results/upload.json``, with the trade-off plot ``upload_tradeoff.png``::

    python bench/upload.py                       # all groups, ~45 min on 2 cores
    python bench/upload.py --groups adacomp --rounds 4 --out /tmp/u   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BASE = ["simulate", "--algorithm", "fegan", "--num-clients", "176", "--fraction", "0.01",
        "--local-steps", "50", "--model", "small"]
#: name -> extra flags, by group.
GROUPS: dict[str, dict[str, list[str]]] = {
    "adacomp": {
        "none": [],
        "adacomp-0.1-f32": ["--compress", "adacomp", "--compress-ratio", "0.1"],
        "adacomp-0.01-f16": ["--compress", "adacomp", "--compress-ratio", "0.01",
                             "--compress-dtype", "float16"],
        "adacomp-0.001-f16": ["--compress", "adacomp", "--compress-ratio", "0.001",
                              "--compress-dtype", "float16"],
    },
    "frequent": {  # the same 2 devices a round, but of 10: each returns every ~5 rounds
        "freq-none": ["--num-clients", "10", "--fraction", "0.2"],
        "freq-adacomp-0.01-f16": ["--num-clients", "10", "--fraction", "0.2", "--compress",
                                  "adacomp", "--compress-ratio", "0.01",
                                  "--compress-dtype", "float16"],
    },
    "sync": {
        "sync-generator": ["--sync", "generator"],
        "sync-discriminator": ["--sync", "discriminator"],
    },
    "dp": {  # uniform weights, so the RDP accountant applies (docs/privacy.md)
        "dp-off-uniform": ["--weighting", "none", "--no-load-weighting"],
        "dp-server-fixed-0.001": ["--weighting", "none", "--no-load-weighting", "--dp",
                                  "server-fixed", "--noise-multiplier", "0.001",
                                  "--clipping-norm", "CLIP"],
        "dp-server-fixed-0.01": ["--weighting", "none", "--no-load-weighting", "--dp",
                                 "server-fixed", "--noise-multiplier", "0.01",
                                 "--clipping-norm", "CLIP"],
        "dp-server-fixed-1.0": ["--weighting", "none", "--no-load-weighting", "--dp",
                                "server-fixed", "--noise-multiplier", "1.0",
                                "--clipping-norm", "CLIP"],
    },
}


def run_one(name: str, extra: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Run one configuration; return its summary."""
    out = Path(args.runs) / name
    cmd = [sys.executable, "-m", "flwr_gan.cli", *BASE, "--rounds", str(args.rounds),
           "--eval-every", str(args.eval_every), "--seed", str(args.seed), "--out", str(out),
           "--overwrite", "--no-progress",
           *[str(args.clipping_norm) if e == "CLIP" else e for e in extra]]
    print("$", " ".join(cmd[2:]), flush=True)
    load_before = os.getloadavg()
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
        return {"name": name, "flags": extra, "error": proc.stderr.strip().splitlines()[-1:]}
    summary = summarize(name, extra, out)
    summary |= {"wall_s": round(wall, 1), "load_before": [round(x, 2) for x in load_before],
                "load_after": [round(x, 2) for x in os.getloadavg()]}
    print(f"  {name}: {summary['fid']} up {summary['bytes_up'] / 1e6:.2f} MB (dense "
          f"{summary['bytes_up_dense'] / 1e6:.2f} MB) in {wall:.0f} s", flush=True)
    return summary


def summarize(name: str, extra: list[str], out: Path) -> dict[str, Any]:
    """Summarise one finished run directory."""
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rounds = [r for r in records if r["round"] > 0]
    evals = [r for r in records if r.get("fid") is not None]
    up = sum(int(r["bytes_up"]) for r in rounds)
    dense = sum(int(r.get("bytes_up_dense", r["bytes_up"])) for r in rounds)
    summary = {
        "name": name, "flags": extra, "rounds": len(rounds), "bytes_up": up,
        "bytes_up_dense": dense, "bytes_down": sum(int(r["bytes_down"]) for r in rounds),
        "bytes_up_per_round": up / max(1, len(rounds)),
        "fid": [round(float(r["fid"]), 1) for r in evals],
        "kid": [round(float(r["kid"]), 2) for r in evals if r.get("kid") is not None],
        "final_fid": float(evals[-1]["fid"]), "best_fid": min(float(r["fid"]) for r in evals),
        # Non-iid FeGAN's FID swings by ~50% between evaluations: the mean of the last
        # three is the comparison that a single unlucky round does not decide.
        "fid_last3": sum(float(r["fid"]) for r in evals[-3:]) / len(evals[-3:]),
        "d_loss_last": rounds[-1].get("d_loss") if rounds else None,
    }
    for key in ("dp_epsilon", "dp_delta", "clipping_norm"):
        if rounds and rounds[-1].get(key) is not None:
            summary[key] = rounds[-1][key]
    return summary


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Final FID against the upload reduction factor (vs the baseline's bytes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if "error" not in r]
    base = next((r for r in ok if r["name"] == "none"), None)
    if base is None:
        return
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for r in ok:
        if "fid_last3" not in r or r["name"].startswith("dp-"):  # DP leaves bytes alone
            continue
        freq = r["name"].startswith("freq")
        ref = next((x for x in ok if x["name"] == "freq-none"), base) if freq else base
        factor = ref["bytes_up"] / r["bytes_up"]
        ax.scatter(factor, r["fid_last3"], s=40, marker="s" if freq else "o")
        ax.annotate(r["name"], (factor, r["fid_last3"]), fontsize=7, xytext=(4, 3),
                    textcoords="offset points")
    ax.axhline(base["fid_last3"] * 1.1, ls="--", lw=0.8, c="grey", label="baseline FID +10%")
    ax.axvline(40, ls=":", lw=0.8, c="grey", label="40x fewer bytes")
    ax.set_xscale("log")
    ax.set_xlabel("upload reduction vs dense G+D (x, log)")
    ax.set_ylabel(f"FID, mean of the last 3 evaluations (to round {base['rounds']})")
    ax.set_title("FeGAN, non-iid MNIST, 2 devices a round: what uploads cost in FID\n"
                 "(circles: of 176 devices; squares: of 10)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen groups and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", default="adacomp,sync,dp")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clipping-norm", type=float, default=2.0,
                        help="about one device's update norm (G 1.9, D 0.95 after 50 steps)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--runs", default="/tmp/flwr-gan-upload-runs",
                        help="where the run directories go")
    parser.add_argument("--only", default="", help="comma-separated run names")
    parser.add_argument("--summarize", action="store_true",
                        help="only re-read the finished runs in --runs")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result_file = out / "upload.json"
    previous = json.loads(result_file.read_text()) if result_file.exists() else {}
    results = {r["name"]: r for r in previous.get("runs", [])}
    for group in args.groups.split(","):
        for name, extra in GROUPS[group].items():
            if args.only and name not in args.only.split(","):
                continue
            if args.summarize:  # re-read finished runs (keeps their timings)
                if (Path(args.runs) / name / "metrics.jsonl").exists():
                    results[name] = results.get(name, {}) | summarize(
                        name, extra, Path(args.runs) / name)
            else:
                results[name] = run_one(name, extra, args)
            payload = {"base": BASE, "rounds": args.rounds, "eval_every": args.eval_every,
                       "seed": args.seed, "clipping_norm": args.clipping_norm,
                       "cpus": os.cpu_count(), "runs": list(results.values())}
            result_file.write_text(json.dumps(payload, indent=1) + "\n")
    plot(list(results.values()), out / "upload_tradeoff.png")
    print(f"wrote {result_file}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
