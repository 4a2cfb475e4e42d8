"""FeGAN vs FL-GAN over several seeds in the FeGAN paper's MNIST regime (issue 11).

Usage::

    python bench/fegan_seeds.py                       # 3 seeds x {FL-GAN, FeGAN s=1 w=1}
    python bench/fegan_seeds.py --ablation            # plus s=1 w=0 and s=0 w=1
    python bench/fegan_seeds.py --smooth 3 --out bench/results/fegan_seeds_smooth3
    python bench/fegan_seeds.py --partition-seed seed --out bench/results/fegan_seeds_pseed
    python bench/fegan_seeds.py --smoke --runs DIR    # tiny version (CI)

The paper's regime where a CPU allows it: MNIST on 80 devices, the FeGAN engine
with the paper's own draw (``--fegan-draw shared``: every device draws its
classes and samples from the whole data set) at max_class = 5, max_samples =
3000 (Table 1's first MNIST setting), C = 0.025 (2 devices a round), E = 30,
B = 50, LSGAN loss, Adam 2e-4 (0.5, 0.999). Changed for the CPU: the ``small``
preset instead of the paper's LSGAN network, FID in the cached MNIST
classifier's feature space on 1,000 samples x 3 latent seeds every 5 rounds.
The devices' data draw is the same for every run (``--partition-seed 0``) unless
``--partition-seed seed`` draws it anew with each training seed (run directories
then end in ``_p<seed>``; partition 0 keeps the plain names, so seed 0 is shared).

Every run directory lands under ``--runs`` (finished runs are reused), then
``flwr-gan compare`` groups the runs by label over the seeds (mean and spread of
the best FID, the area under the FID curve and the paper's convergence gain:
virtual seconds FL-GAN needs for its best FID over the virtual seconds FeGAN
needs to reach it) into ``--out`` (default ``bench/results/fegan_seeds``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fegan_common import RESULTS, finished, run_measured

from flwr_gan.report.compare import compare_runs

RUNS: dict[str, list[str]] = {
    "FL-GAN": ["--algorithm", "flgan"],
    "FeGAN s=1 w=1": ["--algorithm", "fegan", "--sampling", "balanced", "--weighting", "exp"],
    "FeGAN s=1 w=0": ["--algorithm", "fegan", "--sampling", "balanced", "--weighting", "none"],
    "FeGAN s=0 w=1": ["--algorithm", "fegan", "--sampling", "random", "--weighting", "exp"],
}
MAIN = ("FL-GAN", "FeGAN s=1 w=1")


def partition_seed(value: str, seed: int) -> int:
    """Return a run's partition seed: ``value`` as a number, or ``seed`` for ``"seed"``.

    Raises
    ------
    ValueError
        If ``value`` is neither ``"seed"`` nor a whole number >= 0.
    """
    if value == "seed":
        return seed
    if not value.isdigit():
        raise ValueError(f"--partition-seed {value!r}: expected a whole number >= 0 or 'seed' "
                         "(each run's partition seed = its --seed)")
    return int(value)


def run_name(label: str, seed: int, pseed: int) -> str:
    """Return a run's directory name; partition seed 0 keeps the original names."""
    suffix = f"_p{pseed}" if pseed else ""
    return f"{label.replace(' ', '_').replace('=', '')}_seed{seed}{suffix}"


def command(extra: list[str], args: argparse.Namespace, seed: int, out: Path,
            pseed: int = 0) -> list[str]:
    """Return the ``flwr-gan simulate`` command of one run."""
    return [sys.executable, "-m", "flwr_gan.cli", "simulate", *extra, "--dataset", "mnist",
            "--num-clients", str(args.num_clients), "--partition", "fegan",
            "--fegan-draw", "shared", "--max-class", str(args.max_class),
            "--max-samples", str(args.max_samples), "--fraction", str(args.fraction),
            "--rounds", str(args.rounds), "--local-steps", str(args.local_steps),
            "--batch-size", "50", "--model", args.model, "--loss", "lsgan",
            "--eval-every", str(args.eval_every), "--n-eval", str(args.n_eval),
            "--eval-seeds", "3", "--seed", str(seed), "--partition-seed", str(pseed),
            "--out", str(out),
            "--overwrite", "--no-progress"]


def main(argv: list[str] | None = None) -> int:
    """Run (or reuse) every (label, seed) and compare them grouped by label."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rounds", type=int, default=150)
    p.add_argument("--num-clients", type=int, default=80)
    p.add_argument("--max-class", type=int, default=5)
    p.add_argument("--max-samples", type=int, default=3000)
    p.add_argument("--fraction", type=float, default=0.025)
    p.add_argument("--local-steps", type=int, default=30)
    p.add_argument("--model", default="small")
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--n-eval", type=int, default=1000)
    p.add_argument("--partition-seed", default="0",
                   help="the devices' data draw: a number for every run (default 0), or "
                        "'seed' to draw it anew with each training seed")
    p.add_argument("--ablation", action="store_true", help="also s=1 w=0 and s=0 w=1")
    p.add_argument("--only", nargs="+", default=None, choices=list(RUNS),
                   help="run just these labels (with --runs-only)")
    p.add_argument("--runs", default="runs/bench-fegan-seeds")
    p.add_argument("--out", default=str(RESULTS / "fegan_seeds"))
    p.add_argument("--runs-only", action="store_true", help="run, do not compare")
    p.add_argument("--smooth", type=int, default=1,
                   help="gains on the mean of the last K evaluations (flwr-gan compare)")
    p.add_argument("--smoke", action="store_true",
                   help="tiny CI version: 8 devices, 2 rounds, 2 seeds, 100 FID samples")
    args = p.parse_args(argv)
    if args.smoke:
        args.seeds, args.rounds, args.num_clients, args.local_steps = [0, 1], 2, 8, 2
        args.eval_every, args.n_eval, args.max_samples, args.fraction = 1, 100, 100, 0.25
    try:
        pseeds = {seed: partition_seed(args.partition_seed, seed) for seed in args.seeds}
    except ValueError as err:
        p.error(str(err))
    labels = args.only or (list(RUNS) if args.ablation else list(MAIN))
    runs_dir = Path(args.runs)
    runs_dir.mkdir(parents=True, exist_ok=True)
    dirs: list[Path] = []
    names: list[str] = []
    groups: list[str] = []
    timings: dict[str, dict[str, float]] = {}
    for seed in args.seeds:
        for label in labels:
            run_dir = runs_dir / run_name(label, seed, pseeds[seed])
            if not finished(run_dir, args.rounds):
                cmd = command(RUNS[label], args, seed, run_dir, pseeds[seed])
                m = run_measured(cmd, runs_dir / f"{run_dir.name}.log")
                timings[run_dir.name] = m
                print(run_dir.name, m, flush=True)
                if m["rc"] != 0:
                    print(f"{run_dir.name} failed (exit {m['rc']}); see its log",
                          file=sys.stderr)
                    return 1
            dirs.append(run_dir)
            names.append(f"{label} seed {seed}")
            groups.append(label)
    if args.runs_only:
        return 0
    # runs reused from an earlier invocation keep the timings measured then
    timing_file = Path(args.out, "timings.json")
    earlier = json.loads(timing_file.read_text()) if timing_file.exists() else {}
    result = compare_runs(dirs, args.out, labels=names, groups=groups,
                          baseline=MAIN[0], smooth=args.smooth)
    timing_file.write_text(json.dumps(earlier | timings, indent=1) + "\n")
    for group in result.groups:
        print(json.dumps(group.to_dict()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
