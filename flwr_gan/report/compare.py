"""``flwr-gan compare``: several finished runs side by side.

:func:`compare_runs` loads run directories (:mod:`flwr_gan.report.runs`),
refuses runs whose FIDs are not comparable (other data set, other feature
extractor) unless forced, summarises each run (:func:`summarise`: best and final
FID and KID, what it took to first reach an FID threshold, totals) and writes
to ``out``:

``compare.png``  FID against rounds / iterations, virtual time and uploaded bytes
                 (KID too when every run has it), spread shaded;
``samples.png``  the latest sample grid of each run, labelled;
``compare.md``   the tables and the caveats found (:mod:`flwr_gan.report.markdown`);
``compare.json`` the same numbers, plus every run's evaluation table;
``groups.png``   with ``groups`` / ``baseline``: each configuration's mean FID over
                 its seeds, with their range (:mod:`flwr_gan.report.groups`).

The default threshold is :data:`DEFAULT_THRESHOLD_FACTOR` times the best (lowest)
final FID among the runs: a level the best run holds at its end and that slower
or worse runs may or may not reach.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flwr_gan.config import ConfigError
from flwr_gan.report.checks import caveats, mismatches
from flwr_gan.report.groups import GroupSummary, summarise_groups
from flwr_gan.report.runs import Run, load_runs
from flwr_gan.report.table import EvalPoint

#: ``flwr-gan compare``'s one-line help and its description.
HELP = "compare finished runs: FID against rounds, virtual time and bytes"
DESCRIPTION = ("Compare finished run directories: refuses runs on different data sets or "
               "feature extractors (unless --force), then writes to --out compare.png (FID, "
               "and KID when every run has it, against rounds / iterations, cumulative virtual "
               "seconds and uploaded bytes), samples.png (the latest sample grid of each run), "
               "compare.md and compare.json (best and final scores, the rounds, virtual seconds "
               "and bytes to reach an FID threshold, total traffic).")
#: Default threshold: this factor times the best final FID among the runs.
DEFAULT_THRESHOLD_FACTOR = 1.5


@dataclass(frozen=True)
class Reach:
    """The first evaluation at which a run's FID was at or below the threshold.

    Attributes
    ----------
    x : int
        Its round / iteration / step.
    iterations : int or None
        Training iterations per model up to there.
    virtual_s : float or None
        Cumulative seconds on the run's clock.
    bytes_up, bytes_down : int
        Cumulative bytes up to and including that round.
    """

    x: int
    iterations: int | None
    virtual_s: float | None
    bytes_up: int
    bytes_down: int


@dataclass(frozen=True)
class RunSummary:
    """One run's line in the comparison (every field is in ``compare.json``).

    Attributes
    ----------
    label, path, family, dataset, extractor, unit : str
        The run (see :class:`~flwr_gan.report.runs.Run`).
    evaluations : int
        Its evaluation records.
    best_fid, best_x : float, int
        The lowest FID and its round / iteration / step.
    final_fid, final_x : float, int
        The last evaluation's FID and its round / iteration / step.
    final_fid_seed_std, final_fid_best, final_fid_worst : float or None
        The final FID's spread over latent seeds; its best and worst worker (gossip).
    best_kid, best_kid_x, final_kid, final_kid_std : float, int or None
        The same for KID, when recorded.
    final_precision, final_recall : float or None
        The last evaluation's precision and recall, when recorded.
    reach : Reach or None
        The first evaluation at or below the threshold.
    total_x, total_iterations : int, int or None
        The run's length, in its unit and in training iterations per model.
    total_bytes_up, total_bytes_down, total_p2p_bytes : int, int, int or None
        Its traffic (``total_p2p_bytes``: gossip's peer-to-peer equivalent).
    total_virtual_s : float or None
        Its length on its clock.
    clock : str or None
        ``virtual``, ``compute`` (standalone) or ``None``.
    traffic : bool
        Whether it records traffic.
    train_images : int or None
        Training images its devices held, if recorded.
    samples : str or None
        Its latest sample grid.
    """

    label: str
    path: str
    family: str
    dataset: str
    extractor: str
    unit: str
    evaluations: int
    best_fid: float
    best_x: int
    final_fid: float
    final_x: int
    final_fid_seed_std: float | None
    final_fid_best: float | None
    final_fid_worst: float | None
    best_kid: float | None
    best_kid_x: int | None
    final_kid: float | None
    final_kid_std: float | None
    final_precision: float | None
    final_recall: float | None
    reach: Reach | None
    total_x: int
    total_iterations: int | None
    total_bytes_up: int
    total_bytes_down: int
    total_p2p_bytes: int | None
    total_virtual_s: float | None
    clock: str | None
    traffic: bool
    train_images: int | None
    samples: str | None


@dataclass(frozen=True)
class CompareResult:
    """What :func:`compare_runs` compared and wrote.

    Attributes
    ----------
    runs : tuple of Run
        The loaded runs, in the order given.
    summaries : tuple of RunSummary
        One per run.
    threshold : float
        The FID threshold of the *reach* columns.
    threshold_rule : str
        How it was chosen.
    x_label : str
        What the first panel's x axis counts.
    mismatches : tuple of str
        Why the runs are not comparable (only when forced).
    notes : tuple of str
        Caveats: differing evaluation or training set-ups, clocks, units.
    files : dict
        ``figure``, ``samples``, ``markdown``, ``json`` (and ``groups``) -> path written.
    groups : tuple of GroupSummary
        The runs by configuration over seeds, with gains over the baseline (empty
        unless ``groups`` or ``baseline`` was given).
    baseline : str or None
        The group the gains are measured against.
    smooth : int
        Evaluations per trailing mean the gains were measured on (1: raw FIDs).
    """

    runs: tuple[Run, ...]
    summaries: tuple[RunSummary, ...]
    threshold: float
    threshold_rule: str
    x_label: str
    mismatches: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    files: dict[str, Path] = field(default_factory=dict)
    groups: tuple[GroupSummary, ...] = ()
    baseline: str | None = None
    smooth: int = 1

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON document written to ``compare.json``."""
        return {
            "threshold": self.threshold, "threshold_rule": self.threshold_rule,
            "x_axis": self.x_label, "forced": bool(self.mismatches),
            "mismatches": list(self.mismatches), "notes": list(self.notes),
            "runs": [asdict(s) | {"points": [asdict(p) for p in r.points]}
                     for s, r in zip(self.summaries, self.runs, strict=True)],
            "baseline": self.baseline, "smooth": self.smooth,
            "groups": [g.to_dict() for g in self.groups],
        }


# -- pure logic ---------------------------------------------------------------

def first_reaching(points: Sequence[EvalPoint], threshold: float) -> EvalPoint | None:
    """Return the first evaluation with ``fid <= threshold``, or ``None``."""
    return next((p for p in points if p.fid <= threshold), None)


def default_threshold(runs: Sequence[Run]) -> tuple[float, str]:
    """Return :data:`DEFAULT_THRESHOLD_FACTOR` x the best final FID, and the rule in words."""
    best = min(runs, key=lambda r: r.final.fid)
    value = DEFAULT_THRESHOLD_FACTOR * best.final.fid
    return value, (f"{DEFAULT_THRESHOLD_FACTOR:g} x the best final FID ({best.label}: "
                   f"{best.final.fid:.4g})")


def summarise(run: Run, threshold: float) -> RunSummary:
    """Return ``run``'s best / final scores, its cost to reach ``threshold`` and totals."""
    best, final = run.best, run.final
    kids = [p for p in run.points if p.kid is not None]
    best_kid = min(kids, key=lambda p: p.kid or 0.0) if kids else None
    hit = first_reaching(run.points, threshold)
    totals = run.totals
    return RunSummary(
        label=run.label, path=str(run.path), family=run.family, dataset=run.dataset,
        extractor=run.extractor, unit=run.unit, evaluations=len(run.points),
        best_fid=best.fid, best_x=best.x, final_fid=final.fid, final_x=final.x,
        final_fid_seed_std=final.fid_seed_std, final_fid_best=final.fid_best,
        final_fid_worst=final.fid_worst,
        best_kid=best_kid.kid if best_kid else None, best_kid_x=best_kid.x if best_kid else None,
        final_kid=final.kid, final_kid_std=final.kid_std, final_precision=final.precision,
        final_recall=final.recall,
        reach=Reach(hit.x, hit.iterations, hit.virtual_s, hit.bytes_up, hit.bytes_down)
        if hit else None,
        total_x=totals.x, total_iterations=totals.iterations, total_bytes_up=totals.bytes_up,
        total_bytes_down=totals.bytes_down, total_p2p_bytes=totals.p2p_bytes,
        total_virtual_s=totals.virtual_s, clock=totals.clock, traffic=totals.traffic,
        train_images=run.train_images, samples=str(run.samples) if run.samples else None)


def x_axis(runs: Sequence[Run]) -> tuple[str, Callable[[EvalPoint], float | None]]:
    """Return the first panel's x label and accessor: the common unit, else iterations."""
    units = {r.unit for r in runs}
    if len(units) == 1:
        unit = units.pop()
        return f"{unit}s", lambda p: float(p.x)
    return ("training iterations per model",
            lambda p: float(p.iterations) if p.iterations is not None else None)


# -- the command --------------------------------------------------------------

def compare_runs(run_dirs: Sequence[str | Path], out: str | Path, *, force: bool = False,
                 threshold: float | None = None,
                 labels: Sequence[str] | None = None, groups: Sequence[str] | None = None,
                 baseline: str | None = None, smooth: int = 1) -> CompareResult:
    """Compare run directories; write ``compare.png``, ``samples.png``, ``compare.md``/``.json``.

    Parameters
    ----------
    run_dirs : sequence of str or Path
        Run directories (the ``--out`` of ``flwr-gan`` runs).
    out : str or Path
        Folder for the outputs (created; earlier outputs there are replaced).
    force : bool
        Compare even runs on different data sets or feature extractors.
    threshold : float, optional
        FID level of the *reach* columns (default: :func:`default_threshold`).
    labels : sequence of str, optional
        Names of the runs, in order (default: folder names, made unique).
    groups : sequence of str, optional
        The configuration each run is a seed of, one name per run, in order; runs
        sharing a name are summarised together (:mod:`flwr_gan.report.groups`).
    baseline : str, optional
        The group (or, without ``groups``, the run label) that convergence gains
        are measured against.
    smooth : int
        Measure the gains on the trailing mean of this many evaluations (default 1:
        the raw curve, the FeGAN paper's definition).

    Raises
    ------
    ConfigError
        On a bad run directory, runs that are not comparable (without ``force``),
        a threshold that is not a positive number, bad labels or groups, a baseline
        that names no group, a ``smooth`` below 1 or without a baseline, or an
        ``out`` that is a file or one of the run directories.
    """
    if threshold is not None and not threshold > 0:
        raise ConfigError(f"--threshold: {threshold!r} is invalid: expected an FID > 0")
    if isinstance(smooth, bool) or not isinstance(smooth, int) or smooth < 1:
        raise ConfigError(f"--smooth: {smooth!r} is invalid: expected a whole number of "
                          "evaluations >= 1 (1: the raw FID curve)")
    if smooth > 1 and baseline is None:
        raise ConfigError(f"--smooth {smooth} applies to the convergence gain: give "
                          "--baseline NAME too")
    runs = load_runs(run_dirs, labels)
    target = Path(out)
    if target.exists() and not target.is_dir():
        raise ConfigError(f"--out {target} is a file: give a folder for the comparison")
    if any(target.resolve() == r.path.resolve() for r in runs):
        raise ConfigError(f"--out {target} is one of the run directories: give another folder")
    problems = mismatches(runs)
    if problems and not force:
        raise ConfigError("; ".join(problems) + ": their FIDs are not comparable (pass --force "
                          "to compare them anyway)")
    if threshold is None:
        threshold, rule = default_threshold(runs)
    else:
        rule = "given (--threshold)"
    summaries = tuple(summarise(r, threshold) for r in runs)
    by_config = (tuple(summarise_groups(runs, groups, baseline, smooth))
                 if groups or baseline else ())
    notes = caveats(runs, grouped=bool(groups))
    untrained = [s.label for s in summaries if s.reach is not None and s.reach.x == 0]
    if untrained:
        notes.append(f"{', '.join(untrained)} 'reach' FID {threshold:.4g} before training "
                     "(x = 0): the threshold is too loose for them; pass a lower --threshold")
    x_label, x_of = x_axis(runs)
    result = CompareResult(tuple(runs), summaries, float(threshold), rule, x_label,
                           tuple(problems), tuple(notes), groups=by_config, baseline=baseline,
                           smooth=smooth)
    target.mkdir(parents=True, exist_ok=True)
    from flwr_gan.report.markdown import write_markdown
    from flwr_gan.report.plots import plot_comparison, plot_groups, plot_samples

    result.files["figure"] = plot_comparison(runs, target / "compare.png", threshold=threshold,
                                             x_label=x_label, x_of=x_of)
    result.files["samples"] = plot_samples(runs, target / "samples.png")
    if by_config:
        result.files["groups"] = plot_groups(runs, groups or [r.label for r in runs],
                                             target / "groups.png", x_label=x_label)
    result.files["json"] = target / "compare.json"
    result.files["json"].write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    result.files["markdown"] = write_markdown(result, target / "compare.md")
    return result


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of ``flwr-gan compare``."""
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="run directories (the --out of flwr-gan runs)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="folder for compare.png, samples.png, compare.md, compare.json")
    parser.add_argument("--force", action="store_true",
                        help="compare runs on different data sets or feature extractors")
    parser.add_argument("--threshold", type=float, default=None, metavar="FID",
                        help="FID level for the rounds / virtual seconds / bytes to reach it "
                        f"(default: {DEFAULT_THRESHOLD_FACTOR:g} x the best final FID)")
    parser.add_argument("--label", dest="labels", action="extend", nargs="+", default=None,
                        metavar="NAME", help="names of the runs, one per RUN_DIR, in order "
                        "(default: folder names)")
    parser.add_argument("--group", dest="groups", action="extend", nargs="+", default=None,
                        metavar="NAME", help="the configuration each run is a seed of, one "
                        "per RUN_DIR, in order: runs sharing a name are summarised together "
                        "(mean, std, range of best FID, area under the FID curve, gain)")
    parser.add_argument("--baseline", default=None, metavar="NAME",
                        help="group (or run label) to measure the convergence gain against: "
                        "its time to its best FID / a run's time to reach that FID")
    parser.add_argument("--smooth", type=int, default=1, metavar="K",
                        help="measure the gain on the mean of the last K evaluations, so one "
                        "lucky dip does not set it (default 1: the raw FID, the paper's "
                        "definition)")


def run_cli(args: argparse.Namespace) -> int:
    """Run ``flwr-gan compare`` from parsed arguments; print one line per run."""
    result = compare_runs(args.run_dirs, args.out, force=args.force, threshold=args.threshold,
                          labels=args.labels, groups=args.groups, baseline=args.baseline,
                          smooth=args.smooth)
    print(f"compared {len(result.runs)} runs; FID threshold {result.threshold:.4g} "
          f"({result.threshold_rule})")
    for s in result.summaries:
        reach = f"{s.unit} {s.reach.x}" if s.reach else "never"
        print(f"  {s.label}: best FID {s.best_fid:.1f} ({s.unit} {s.best_x}), final "
              f"{s.final_fid:.1f}, reaches threshold: {reach}")
    for g in result.groups:
        gain = (f", gain over {result.baseline} {g.gain_virtual.mean:.2f}x (virtual s, "
                f"{g.reached}/{len(g.runs)} reached)" if g.gain_virtual else "")
        print(f"  group {g.label} ({len(g.runs)} runs): best FID {g.best_fid.mean:.1f} ± "
              f"{g.best_fid.std:.1f}, mean FID over {g.auc_from:g}-{g.auc_upto:g} "
              f"{g.auc.mean:.1f}{gain}")
    if result.mismatches:
        print("forced: " + "; ".join(result.mismatches))
    print(f"outputs in {Path(args.out)}: compare.png, samples.png, compare.md, compare.json")
    return 0


__all__ = ["DEFAULT_THRESHOLD_FACTOR", "DESCRIPTION", "HELP", "CompareResult", "Reach",
           "RunSummary", "add_cli_arguments", "compare_runs", "default_threshold",
           "first_reaching", "run_cli", "summarise", "x_axis"]
