"""``compare.md``: the comparison's tables, figures and caveats in Markdown."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from flwr_gan.report.table import CLOCK_COMPUTE

if TYPE_CHECKING:
    from flwr_gan.report.compare import CompareResult, RunSummary
    from flwr_gan.report.groups import Stat

DASH = "–"


def fmt_bytes(n: int | None) -> str:
    """Return a byte count in decimal units (``5.83 MB``); ``0`` stays ``0``.

    >>> fmt_bytes(5_828_901), fmt_bytes(0), fmt_bytes(950)
    ('5.83 MB', '0', '950 B')
    """
    if n is None:
        return DASH
    if n == 0:
        return "0"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.3g} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def fmt_num(value: float | None, digits: int = 4) -> str:
    """Return ``value`` with ``digits`` significant digits, or a dash."""
    return DASH if value is None else f"{value:.{digits}g}"


def fmt_seconds(value: float | None) -> str:
    """Return seconds with one decimal (a dash when unknown)."""
    return DASH if value is None else f"{value:,.1f}"


def fid_with_spread(s: RunSummary) -> str:
    """Return the final FID, where, and its spread (the workers' range, or +- the seed std)."""
    if s.final_fid_best is not None and s.final_fid_worst is not None:
        return (f"{s.final_fid:.1f} at {s.unit} {s.final_x} (workers "
                f"{s.final_fid_best:.1f}–{s.final_fid_worst:.1f})")
    spread = f" ± {s.final_fid_seed_std:.3g}" if s.final_fid_seed_std else ""
    return f"{s.final_fid:.1f}{spread} at {s.unit} {s.final_x}"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows)]


def render(result: CompareResult) -> str:
    """Return the whole ``compare.md`` text."""
    sums = result.summaries
    datasets = sorted({s.dataset for s in sums})
    extractors = sorted({s.extractor for s in sums})
    t = result.threshold
    lines = [
        f"# Comparison of {len(sums)} runs", "",
        f"Data set: {', '.join(datasets)}. Feature extractor: {', '.join(extractors)}. "
        f"FID threshold: **{t:.4g}** ({result.threshold_rule}).", "",
    ]
    if result.mismatches:
        lines += ["**Forced comparison** (`--force`): " + "; ".join(result.mismatches)
                  + ". Scores from different data sets or extractors are not comparable.", ""]
    lines += [f"![FID against {result.x_label}, virtual time and uploaded bytes](compare.png)",
              "", "![The latest sample grid of each run](samples.png)", "", "## Scores", ""]
    has_kid = any(s.final_kid is not None for s in sums)
    has_pr = any(s.final_precision is not None for s in sums)
    header = ["run", "family", "evaluations", "best FID", "final FID (spread)"]
    header += ["best KID", "final KID"] if has_kid else []
    header += ["final precision / recall"] if has_pr else []
    rows = []
    for s in sums:
        row = [s.label, s.family, str(s.evaluations), f"{s.best_fid:.1f} at {s.unit} {s.best_x}",
               fid_with_spread(s)]
        if has_kid:
            row += [f"{fmt_num(s.best_kid)} at {s.unit} {s.best_kid_x}" if s.best_kid is not None
                    else DASH,
                    fmt_num(s.final_kid) + (f" ± {s.final_kid_std:.3g}" if s.final_kid_std
                                            else "")]
        if has_pr:
            row += [f"{fmt_num(s.final_precision, 3)} / {fmt_num(s.final_recall, 3)}"]
        rows.append(row)
    lines += _table(header, rows)
    lines += ["", f"## Cost: to reach FID ≤ {t:.4g}, and in total", ""]
    header = ["run", "reaches at", "iterations", "virtual s", "bytes up", "total bytes up",
              "total bytes down", "total virtual s", "length"]
    rows = []
    for s in sums:
        r = s.reach
        clock = " (compute)" if s.clock == CLOCK_COMPUTE else ""
        rows.append([
            s.label, f"{s.unit} {r.x}" if r else "never",
            fmt_num(r.iterations, 6) if r and r.iterations is not None else DASH,
            fmt_seconds(r.virtual_s) + clock if r else DASH,
            fmt_bytes(r.bytes_up) if r else DASH,
            fmt_bytes(s.total_bytes_up), fmt_bytes(s.total_bytes_down),
            fmt_seconds(s.total_virtual_s) + clock,
            f"{s.total_x} {s.unit}s" + (f" ({s.total_iterations} it.)"
                                        if s.total_iterations not in (None, s.total_x) else ""),
        ])
    lines += _table(header, rows)
    lines += ["", "*reaches at*: the first evaluation with FID ≤ the threshold (so only as "
              "fine as the evaluation interval); *iterations*: training iterations per model "
              "up to there; *virtual s*: cumulative seconds on the virtual clock ((compute): "
              "standalone's training compute); *bytes up*: cumulative bytes sent to the "
              "server up to and including that round; totals cover the whole run. "
              "See docs/compare.md of flwr-gan."]
    if result.groups:
        lines += ["", *_group_lines(result)]
    if result.notes:
        lines += ["", "## Caveats", ""] + [f"- {n}" for n in result.notes]
    lines += ["", "## Runs", ""]
    lines += _table(["run", "directory", "latest sample grid", "training images"],
                    [[s.label, f"`{s.path}`", f"`{Path(s.samples).name}`" if s.samples else DASH,
                      f"{s.train_images:,}" if s.train_images is not None else DASH]
                     for s in sums])
    return "\n".join(lines) + "\n"


def fmt_stat(value: Stat | None, digits: int = 1) -> str:
    """Return ``mean ± std (min–max)``, or a dash; just the value for one run."""
    if value is None:
        return DASH
    if value.n == 1:
        return f"{value.mean:.{digits}f}"
    return (f"{value.mean:.{digits}f} ± {value.std:.{digits}f} "
            f"({value.min:.{digits}f}–{value.max:.{digits}f})")


def _group_lines(result: CompareResult) -> list[str]:
    """Return the *Over seeds* section: one row per group (:mod:`flwr_gan.report.groups`)."""
    groups = result.groups
    unit = result.summaries[0].unit
    base = result.baseline
    lines = ["## Over seeds: each configuration's runs together", "",
             "![Mean FID of each group, best..worst run shaded](groups.png)", ""]
    header = ["group", "runs", "seeds", "best FID", "final FID",
              f"mean FID, {unit} {groups[0].auc_from:g}–{groups[0].auc_upto:g}"]
    if base is not None:
        header += [f"gain over {base} (virtual s)", f"gain ({unit}s)", "reached"]
    rows = []
    for g in groups:
        row = [g.label, str(len(g.runs)), ", ".join(DASH if s is None else str(s)
                                                    for s in g.seeds),
               fmt_stat(g.best_fid), fmt_stat(g.final_fid), fmt_stat(g.auc)]
        if base is not None:
            row += ([DASH, DASH, DASH] if g.label == base else
                    [fmt_stat(g.gain_virtual, 2), fmt_stat(g.gain_x, 2),
                     f"{g.reached}/{len(g.gains)}"])
        rows.append(row)
    lines += _table(header, rows)
    lines += ["", "Mean ± sample standard deviation (min–max) over each group's runs. "
              f"*mean FID*: the area under the FID curve divided by its length, over {unit}s "
              f"{groups[0].auc_from:g}–{groups[0].auc_upto:g} (what every run covers), on the "
              f"same {groups[0].auc_points} points for every run (the sparsest run's "
              "evaluations, the others interpolated), so evaluating more often is no "
              "advantage."]
    if base is not None:
        lines += [f"*gain*: the FeGAN paper's convergence gain, the time {base} needs to reach "
                  "its best FID divided by the time the run needs to first reach that FID "
                  "(paired by seed; > 1 is faster); *reached*: runs that got there at all."
                  + (f" Measured on the mean of the last {result.smooth} evaluations "
                     "(`--smooth`), for both runs." if result.smooth > 1 else "")]
        per_run = [gain for grp in groups for gain in grp.gains]
        if per_run:
            lines += ["", _row(["run", "seed", f"{base}'s best FID", f"at {unit}",
                                f"run reaches it at {unit}", "virtual s: baseline / run",
                                "gain"]),
                      _row(["---"] * 7)]
            for gain in per_run:
                lines.append(_row([
                    gain.run, DASH if gain.seed is None else str(gain.seed),
                    f"{gain.target:.1f}", str(gain.baseline_x),
                    DASH if gain.reach_x is None else str(gain.reach_x),
                    f"{fmt_seconds(gain.baseline_virtual_s)} / "
                    f"{fmt_seconds(gain.reach_virtual_s)}",
                    DASH if gain.gain_virtual is None else f"{gain.gain_virtual:.2f}x"]))
    return lines


def write_markdown(result: CompareResult, target: Path) -> Path:
    """Write :func:`render`'s text to ``target``; return it."""
    target.write_text(render(result))
    return target


__all__ = ["fid_with_spread", "fmt_bytes", "fmt_num", "fmt_seconds", "fmt_stat", "render",
           "write_markdown"]
