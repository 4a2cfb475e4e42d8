"""Command-line flags of MD-GAN simulation (``flwr-gan simulate --algorithm mdgan``).

:func:`add_arguments` adds the flags to any parser, :func:`run` runs them;
``python -m flwr_gan.mdgan`` uses both.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from flwr_gan.mdgan.aggregation import AGGREGATIONS
from flwr_gan.mdgan.server import MODES
from flwr_gan.mdgan.simulation import MDGANSimulationConfig


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add MD-GAN's simulation flags to ``parser`` (and return it)."""
    from flwr_gan.cli import add_optimizer_arguments
    from flwr_gan.core.models import PRESETS

    d = MDGANSimulationConfig()
    a = parser.add_argument
    a("--dataset", default=d.dataset, help="mnist, fashion-mnist, cifar10, or a path")
    a("--data-dir", default=d.data_dir, help="folder with the raw data set")
    a("--partition", default=d.partition, choices=["iid", "fegan", "dirichlet"],
      help="how the training set is split over workers")
    a("--partition-seed", type=int, default=d.partition_seed, help="seed of the split")
    a("--num-clients", type=int, default=d.num_clients, help="N, simulated workers")
    a("--iterations", type=int, default=d.iterations, help="I, global iterations (G updates)")
    a("--kappa", default=d.kappa,
      help="generated batches per iteration: an integer or 'log' (floor(ln N))")
    a("--disc-steps", type=int, default=d.disc_steps, help="L, D steps per iteration")
    a("--swap-epochs", type=float, default=d.swap_epochs,
      help="E, local epochs between discriminator swaps (0: never)")
    a("--batch-size", type=int, default=d.batch_size, help="b")
    a("--model", default=d.model, choices=sorted(PRESETS), help="model preset")
    a("--loss", default=d.loss, choices=["bce", "lsgan"], help="GAN loss (preset's default)")
    a("--latent-dim", type=int, default=d.latent_dim, help="latent size (preset's default)")
    add_optimizer_arguments(parser, d)
    a("--mode", default=d.mode, choices=MODES,
      help="sync (the paper) or pipelined (asynchronous, bounded staleness)")
    a("--max-staleness", type=int, default=d.max_staleness,
      help="pipelined: drop feedback on batches older than this many G versions")
    a("--aggregation", default=d.aggregation, choices=AGGREGATIONS,
      help="feedback aggregation: mean (paper) or byzantine-robust median / trimmed-mean")
    a("--trim-fraction", type=float, default=d.trim_fraction,
      help="trimmed-mean: fraction cut from each end")
    a("--workers-per-iteration", type=int, default=d.workers_per_iteration,
      help="sample this many workers per iteration (0: all)")
    a("--crash-schedule", action="store_true",
      help="inject the paper's crashes: one worker fails every I/N iterations")
    a("--timeout", type=float, default=d.timeout,
      help="seconds to wait for a worker before dropping it")
    a("--eval-every", type=int, default=d.eval_every,
      help="evaluate FID every K iterations (0: start and end)")
    a("--fid-backend", default=d.fid_backend, choices=["classifier", "inception", "none"],
      help="features for FID")
    a("--n-eval", type=int, default=d.n_eval, help="images per FID evaluation")
    a("--seed", type=int, default=d.seed, help="random seed")
    a("--num-cpus", type=float, default=d.num_cpus, help="Ray CPUs per simulated worker")
    a("--out", default=d.out, help="run directory")
    a("--overwrite", action="store_true", help="replace an existing run in --out")
    a("--no-progress", action="store_true", help="no progress bar")
    return parser


def config_from_args(args: argparse.Namespace) -> MDGANSimulationConfig:
    """Build the simulation config from parsed flags (validated)."""
    cfg = MDGANSimulationConfig(
        dataset=args.dataset, data_dir=args.data_dir or "", partition=args.partition,
        partition_seed=args.partition_seed, num_clients=args.num_clients,
        iterations=args.iterations, kappa=str(args.kappa), disc_steps=args.disc_steps,
        swap_epochs=args.swap_epochs, batch_size=args.batch_size, model=args.model,
        loss=args.loss, latent_dim=args.latent_dim, lr_g=args.lr_g, lr_d=args.lr_d,
        beta1=args.beta1, beta2=args.beta2, mode=args.mode, max_staleness=args.max_staleness,
        aggregation=args.aggregation, trim_fraction=args.trim_fraction,
        workers_per_iteration=args.workers_per_iteration, crash_schedule=args.crash_schedule,
        timeout=args.timeout, eval_every=args.eval_every, fid_backend=args.fid_backend,
        n_eval=args.n_eval, seed=args.seed, num_cpus=args.num_cpus, out=args.out,
        overwrite=args.overwrite, progress=not args.no_progress,
    )
    cfg.validate()
    return cfg


def run(args: argparse.Namespace) -> int:
    """Run an MD-GAN simulation from parsed flags; print a one-line summary."""
    from flwr_gan.mdgan.simulation import run_mdgan_simulation

    try:
        cfg = config_from_args(args)
    except ValueError as err:
        print(f"error: {err}")
        return 2
    result = run_mdgan_simulation(cfg)
    fids = result.fids
    done = [r for r in result.records if r["round"] > 0]
    msg = f"MD-GAN: {len(done)} iterations, {len(result.server.alive)} workers alive"
    if fids:
        msg += f"; FID {fids[0]:.2f} -> {fids[-1]:.2f}"
    print(f"{msg}; outputs in {result.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m flwr_gan.mdgan``."""
    parser = argparse.ArgumentParser(
        prog="python -m flwr_gan.mdgan",
        description="MD-GAN (one server generator, one discriminator per worker) in "
        "Flower's simulation engine.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    return run(args)
