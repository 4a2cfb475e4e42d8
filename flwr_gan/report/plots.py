"""The comparison's figures (matplotlib, Agg backend).

``compare.png``: FID against rounds / iterations, against cumulative virtual
seconds and against cumulative uploaded bytes (log axis), with the threshold
dashed and each run's spread shaded; a second row with KID when every run has
it. One legend under the panels. The first two x axes turn logarithmic when the
runs' lengths differ by more than :data:`LOG_SPREAD` times (points at 0 are then
left out, as on the bytes axis). ``samples.png``: the latest sample grid of
each run, labelled. ``groups.png``: each group's mean FID over its seeds against
rounds / iterations and against mean cumulative virtual seconds, the range shaded.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from flwr_gan.report.markdown import fmt_bytes
from flwr_gan.report.runs import Run
from flwr_gan.report.table import CLOCK_COMPUTE, EvalPoint

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")
LEGEND_COLUMNS = 4
#: An x axis turns logarithmic when the runs' last values differ by more than this factor.
LOG_SPREAD = 20.0


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series(points: Sequence[EvalPoint], x_of: Callable[[EvalPoint], float | None],
            y_of: Callable[[EvalPoint], float | None], band_of: Callable[[EvalPoint], Any],
            *, positive_x: bool = False) -> tuple[list[float], list[float], list[Any]]:
    """Return the x, y and band of the points that have both (``x > 0`` for log axes)."""
    xs, ys, bands = [], [], []
    for p in points:
        x, y = x_of(p), y_of(p)
        if x is None or y is None or (positive_x and x <= 0):
            continue
        xs.append(x)
        ys.append(y)
        bands.append(band_of(p) or (y, y))
    return xs, ys, bands


def _draw(ax: Any, xs: list[float], ys: list[float], bands: list[Any], *, color: Any,
          marker: str, label: str) -> Any:
    line = ax.plot(xs, ys, marker=marker, markersize=4, color=color, label=label, lw=1.4)[0]
    if any(lo != hi for lo, hi in bands):
        ax.fill_between(xs, [b[0] for b in bands], [b[1] for b in bands], color=color,
                        alpha=0.15, lw=0)
    return line


def _plain(value: float) -> str:
    return f"{value:g}"


def _bytes(value: float) -> str:
    return fmt_bytes(int(round(value)))


def _log_ticks(axis: Any, fmt: Callable[[float], str]) -> None:
    """Plain tick labels on a log axis; 2..9 labelled on short spans, only 2, 3, 5 on longer."""
    from matplotlib.ticker import FuncFormatter

    def minor(value: float, _pos: int) -> str:
        low, high = sorted(axis.get_view_interval())
        span = math.log10(high / low) if low > 0 else math.inf
        if value <= 0 or span >= 2:
            return ""
        mantissa = round(value / 10 ** math.floor(math.log10(value)), 6)
        return fmt(value) if span < 0.7 or mantissa in (2.0, 3.0, 5.0) else ""

    axis.set_major_formatter(FuncFormatter(lambda v, _pos: fmt(v) if v > 0 else ""))
    axis.set_minor_formatter(FuncFormatter(minor))


def _y_scale(ax: Any, values: list[float]) -> None:
    """Log scale with plain tick labels when every value is positive, else symlog (KID < 0)."""
    if not values:
        return
    low, high = min(values), max(values)
    if low > 0:
        ax.set_yscale("log")
        _log_ticks(ax.yaxis, _plain)
    else:
        ax.set_yscale("symlog", linthresh=max(1e-6, 1e-2 * max(abs(low), abs(high))))


def _spans_decades(runs: Sequence[Run], x_of: Callable[[EvalPoint], float | None]) -> bool:
    """Whether the runs' last x values differ by more than :data:`LOG_SPREAD` times."""
    ends = [max((x_of(p) or 0.0) for p in r.points) for r in runs]
    ends = [e for e in ends if e > 0]
    return len(ends) > 1 and max(ends) > LOG_SPREAD * min(ends)


def plot_comparison(runs: Sequence[Run], target: Path, *, threshold: float, x_label: str,
                    x_of: Callable[[EvalPoint], float | None]) -> Path:
    """Draw ``compare.png`` (see the module docstring); return its path.

    Parameters
    ----------
    runs : sequence of Run
        The runs, in legend order.
    target : Path
        PNG to write.
    threshold : float
        FID level drawn dashed on the FID panels.
    x_label : str
        Label of the first column's x axis.
    x_of : callable
        The first column's x of an evaluation.
    """
    plt = _pyplot()
    kid_row = all(any(p.kid is not None for p in r.points) for r in runs)
    compute = any(r.totals.clock == CLOCK_COMPUTE for r in runs)
    columns: list[tuple[str, Callable[[EvalPoint], float | None], bool]] = [
        (x_label, x_of, _spans_decades(runs, x_of)),
        ("cumulative virtual seconds" + (" (standalone: compute seconds)" if compute else ""),
         lambda p: p.virtual_s, _spans_decades(runs, lambda p: p.virtual_s)),
        ("cumulative bytes uploaded", lambda p: float(p.bytes_up), True),
    ]
    metrics: list[tuple[str, Callable[[EvalPoint], float | None], Callable[[EvalPoint], Any]]]
    metrics = [("FID", lambda p: p.fid, EvalPoint.fid_band)]
    if kid_row:
        metrics.append(("KID", lambda p: p.kid, EvalPoint.kid_band))
    n_legend_rows = math.ceil(len(runs) / LEGEND_COLUMNS)
    legend_h = 0.2 + 0.24 * n_legend_rows
    height = 3.9 * len(metrics) + legend_h + 0.5
    fig, axes = plt.subplots(len(metrics), len(columns), figsize=(16, height), squeeze=False)
    cmap = plt.get_cmap("tab10" if len(runs) <= 10 else "tab20")
    handles = []
    for i, run in enumerate(runs):
        color, marker = cmap(i % cmap.N), MARKERS[i % len(MARKERS)]
        for row, (_, y_of, band_of) in enumerate(metrics):
            for col, (_, col_x, log_x) in enumerate(columns):
                xs, ys, bands = _series(run.points, col_x, y_of, band_of, positive_x=log_x)
                if not xs:
                    continue
                line = _draw(axes[row][col], xs, ys, bands, color=color, marker=marker,
                             label=run.label)
                if row == 0 and col == 0:
                    handles.append(line)
    for row, (name, y_of, _) in enumerate(metrics):
        values = [v for r in runs for p in r.points if (v := y_of(p)) is not None]
        for col, (xlabel, _, log_x) in enumerate(columns):
            ax = axes[row][col]
            ax.set_xlabel(xlabel + (" (log)" if log_x else ""))
            ax.set_ylabel(f"{name} (lower is better)")
            _y_scale(ax, values)
            if log_x and ax.has_data():
                ax.set_xscale("log")
                _log_ticks(ax.xaxis, _bytes if col == 2 else _plain)
            if name == "FID":
                ax.axhline(threshold, color="0.35", ls="--", lw=1)
            ax.grid(True, which="major", alpha=0.35)
            ax.grid(True, which="minor", alpha=0.12)
            if not ax.has_data():
                ax.text(0.5, 0.5, "no run records this", ha="center", va="center",
                        transform=ax.transAxes, color="0.4")
        axes[row][0].set_title(f"{name} against {x_label}", fontsize=10)
        axes[row][1].set_title(f"{name} against virtual time", fontsize=10)
        axes[row][2].set_title(f"{name} against uploaded bytes", fontsize=10)
    datasets = ", ".join(sorted({r.dataset for r in runs}))
    extractors = ", ".join(sorted({r.extractor for r in runs}))
    fig.suptitle(f"{len(runs)} runs on {datasets}, FID on {extractors} features; shaded: "
                 "spread over latent seeds (+- std) or over workers (best..worst)", fontsize=11)
    from matplotlib.lines import Line2D

    handles.append(Line2D([], [], color="0.35", ls="--", lw=1,
                          label=f"FID threshold {threshold:.4g}"))
    fig.legend(handles, [h.get_label() for h in handles], loc="lower center",
               ncol=min(LEGEND_COLUMNS, len(handles)) or 1, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, legend_h / height, 1, 0.97))
    fig.savefig(target, dpi=100)
    plt.close(fig)
    return target


def plot_groups(runs: Sequence[Run], groups: Sequence[str], target: Path, *,
                x_label: str) -> Path:
    """Draw ``groups.png``: per group, the mean FID over its runs and their min..max.

    Runs of a group are aligned evaluation by evaluation (the same schedule) and
    cut to the shortest; the virtual-time panel uses their mean cumulative seconds.
    """
    plt = _pyplot()
    members: dict[str, list[Run]] = {}
    for run, name in zip(runs, groups, strict=True):
        members.setdefault(str(name), []).append(run)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for i, (name, group) in enumerate(members.items()):
        n = min(len(r.points) for r in group)
        fids = [[r.points[k].fid for r in group] for k in range(n)]
        mean = [sum(v) / len(v) for v in fids]
        bands = [(min(v), max(v)) for v in fids]
        xs = [float(group[0].points[k].x) for k in range(n)]
        vs: list[float | None] = []
        for k in range(n):
            clock = [r.points[k].virtual_s for r in group]
            known = [t for t in clock if t is not None]
            vs.append(sum(known) / len(known) if len(known) == len(clock) else None)
        label = f"{name} ({len(group)} run{'s' if len(group) > 1 else ''})"
        color, marker = cmap(i % cmap.N), MARKERS[i % len(MARKERS)]
        _draw(axes[0][0], xs, mean, bands, color=color, marker=marker, label=label)
        timed = [(v, m, b) for v, m, b in zip(vs, mean, bands, strict=True) if v is not None]
        if timed:
            _draw(axes[0][1], [t[0] for t in timed], [t[1] for t in timed],
                  [t[2] for t in timed], color=color, marker=marker, label=label)
    for ax, xlabel in zip(axes[0], (x_label, "mean cumulative virtual seconds"), strict=True):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("FID, mean over runs (lower is better)")
        _y_scale(ax, [p.fid for r in runs for p in r.points])
        ax.grid(True, alpha=0.35)
    axes[0][0].legend(fontsize=9)
    fig.suptitle("Mean FID over each group's runs; shaded: best..worst run", fontsize=11)
    fig.tight_layout()
    fig.savefig(target, dpi=100)
    plt.close(fig)
    return target


def plot_samples(runs: Sequence[Run], target: Path, *, columns: int = 5) -> Path:
    """Draw the latest sample grid of every run side by side to ``target``; return it."""
    plt = _pyplot()
    import matplotlib.image as mpimg

    ncols = min(columns, len(runs))
    nrows = math.ceil(len(runs) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.9 * ncols, 3.45 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, run in zip(axes.flat, runs, strict=False):
        title = "\n".join(textwrap.wrap(run.label, 40)[:2])
        if run.samples is None:
            ax.text(0.5, 0.5, "no sample grid", ha="center", va="center",
                    transform=ax.transAxes, color="0.4")
            ax.set_title(f"{title}\n{run.family}", fontsize=9)
            continue
        image = mpimg.imread(run.samples)
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, interpolation="nearest")
        ax.set_title(f"{title}\n{run.family} · {run.samples.stem}", fontsize=9)
    fig.tight_layout()
    fig.savefig(target, dpi=100)
    plt.close(fig)
    return target


__all__ = ["plot_comparison", "plot_groups", "plot_samples"]
