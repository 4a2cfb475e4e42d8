"""The run directory every algorithm writes.

Layout::

    DIR/config.json        the full resolved configuration
    DIR/metrics.jsonl      one JSON object per evaluation / round
    DIR/metrics.csv        the same records as CSV (rewritten at each plot)
    DIR/samples/*.png      sample grids (``round_000010.png``)
    DIR/fid_curve.png      FID (and score) against rounds
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch


class RunDirectoryError(FileExistsError):
    """Raised when a run directory would overwrite an earlier run."""


#: The columns ``metrics.csv`` starts with, when present.
CSV_LEAD = ("round", "iteration", "step", "fid", "fid_seed_std", "kid", "kid_std", "precision",
            "recall", "class_tv", "score")


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _jsonable(value.item())
    return value


class RunDirectory:
    """Writes the configuration, metrics, sample grids and FID curve of a run.

    Parameters
    ----------
    path : str or Path
        The directory (created if missing).
    config : mapping
        The resolved configuration, written to ``config.json``.
    overwrite : bool
        Allow writing into a directory that already holds ``metrics.jsonl``
        (its old metrics are then removed). Without it such a directory is
        refused, so a finished run is never clobbered.
    resume : bool
        Append to an existing run instead (checkpoint resumption).
    """

    def __init__(
        self, path: str | Path, config: Mapping[str, Any], *, overwrite: bool = False,
        resume: bool = False,
    ) -> None:
        self.path = Path(path)
        self.metrics_path = self.path / "metrics.jsonl"
        if self.metrics_path.exists() and not (overwrite or resume):
            raise RunDirectoryError(
                f"{self.path} already holds a run (metrics.jsonl). Choose another --out, "
                "pass --overwrite to replace it, or --resume to continue it."
            )
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "samples").mkdir(exist_ok=True)
        if overwrite and not resume and self.metrics_path.exists():
            self.metrics_path.unlink()
        self.write_json("config.json", config)

    def write_json(self, name: str, payload: Mapping[str, Any]) -> Path:
        """Write ``payload`` as pretty JSON to ``DIR/name`` atomically."""
        target = self.path / name
        tmp = target.with_suffix(target.suffix + f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(_jsonable(payload), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, target)
        return target

    def log(self, record: Mapping[str, Any]) -> None:
        """Append one record to ``metrics.jsonl`` (flushed at once)."""
        with self.metrics_path.open("a") as fh:
            fh.write(json.dumps(_jsonable(record), sort_keys=True) + "\n")

    def records(self) -> list[dict[str, Any]]:
        """Read back every record of ``metrics.jsonl``."""
        if not self.metrics_path.exists():
            return []
        return read_metrics(self.metrics_path)

    def save_samples(self, images: torch.Tensor, step: int, *, prefix: str = "round",
                     nrow: int = 8) -> Path:
        """Save a grid of images in ``[-1, 1]`` as ``samples/<prefix>_<step>.png``."""
        from torchvision.utils import save_image

        target = self.path / "samples" / f"{prefix}_{step:06d}.png"
        save_image(images.detach().cpu().float(), target, nrow=nrow, normalize=True,
                   value_range=(-1.0, 1.0), padding=2)
        return target

    def write_csv(self) -> Path:
        """Rewrite ``metrics.csv`` from ``metrics.jsonl`` (scalar columns only)."""
        rows = self.records()
        columns: list[str] = []
        for row in rows:
            for key, value in row.items():
                if key not in columns and not isinstance(value, (list, dict)):
                    columns.append(key)
        # where and how good first, then the rest as the records have them
        lead = [k for k in CSV_LEAD if k in columns]
        columns = lead + [k for k in columns if k not in lead]
        target = self.path / "metrics.csv"
        with target.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        return target

    def plot_curves(self, *, x_key: str = "round", title: str | None = None) -> Path:
        """Draw FID (and score, when present) against ``x_key`` to ``fid_curve.png``."""
        return plot_fid_curves({title or self.path.name: self.records()},
                               self.path / "fid_curve.png", x_key=x_key)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Read a ``metrics.jsonl`` file.

    Raises
    ------
    ValueError
        Naming the line that is not valid JSON.
    """
    out = []
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{lineno} is not valid JSON: {err}") from err
    return out


def plot_fid_curves(
    runs: Mapping[str, list[dict[str, Any]]], target: str | Path, *, x_key: str = "round",
) -> Path:
    """Plot FID, KID and score / precision / recall of several runs, with their spread.

    The FID panel shades ``fid +- fid_seed_std`` (the spread over latent seeds) or,
    for several generators, ``fid_best .. fid_worst``; the KID panel (when records
    carry ``kid``) shades ``kid +- kid_std``; the last panel shows the classifier
    score and, when present, precision and recall.

    Parameters
    ----------
    runs : mapping
        Label -> list of metric records; records without a ``fid`` are skipped.
    target : str or Path
        PNG file to write.
    x_key : str
        Record key for the x axis.
    """
    import matplotlib.pyplot as plt

    fig = fid_figure(runs, x_key=x_key)
    target = Path(target)
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return target


def fid_figure(runs: Mapping[str, list[dict[str, Any]]], *, x_key: str = "round") -> Any:
    """Return the (open) matplotlib figure :func:`plot_fid_curves` saves; close it after use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    every = [r for recs in runs.values() for r in recs if r.get("fid") is not None]
    has_kid = any(r.get("kid") is not None for r in every)
    has_right = any(r.get("score") is not None or r.get("precision") is not None for r in every)
    ncols = 1 + has_kid + has_right
    fig, axes = plt.subplots(1, ncols, figsize=(5.2 * ncols, 4), squeeze=False)
    ax_fid = axes[0][0]
    ax_kid = axes[0][1] if has_kid else None
    ax_right = axes[0][ncols - 1] if has_right else None
    ax_score: Any = None  # the score's twin axis, shared by every run
    extractors: set[str] = set()
    for label, records in runs.items():
        pts = [r for r in records if r.get("fid") is not None and r.get(x_key) is not None]
        extractors.update(str(r["extractor"]) for r in pts if r.get("extractor"))
        xs = [r[x_key] for r in pts]
        line = ax_fid.plot(xs, [r["fid"] for r in pts], marker=".", label=label)[0]
        low, high = _band(pts, "fid", "fid_seed_std", ("fid_best", "fid_worst"))
        if low is not None:
            ax_fid.fill_between(xs, low, high, color=line.get_color(), alpha=0.2, lw=0)
        if ax_kid is not None:
            kpts = [r for r in pts if r.get("kid") is not None]
            kx = [r[x_key] for r in kpts]
            kline = ax_kid.plot(kx, [r["kid"] for r in kpts], marker=".", label=label)[0]
            klow, khigh = _band(kpts, "kid", "kid_std", None)
            if klow is not None:
                ax_kid.fill_between(kx, klow, khigh, color=kline.get_color(), alpha=0.2, lw=0)
        if ax_right is not None:
            ax_score = _plot_right(ax_right, ax_score, pts, x_key, line.get_color())
    feat = ", ".join(sorted(extractors)) or "features"
    ax_fid.set(xlabel=x_key, ylabel=f"FID ({feat})", yscale="log", title="FID (lower is better)")
    ax_fid.grid(True, which="both", alpha=0.3)
    ax_fid.legend()
    if ax_kid is not None:
        ax_kid.set(xlabel=x_key, ylabel="KID", yscale="symlog", title="KID (lower is better)")
        ax_kid.set_yscale("symlog", linthresh=1e-3)
        ax_kid.grid(True, which="both", alpha=0.3)
    if ax_right is not None:
        from matplotlib.lines import Line2D

        ax_right.grid(True, alpha=0.3)
        # colours name the runs (the FID panel's legend); this legend names the line styles
        styles: list[tuple[str, Any]] = [
            (key, style) for key, style in (("precision", "-"), ("recall", "--"))
            if any(r.get(key) is not None for r in every)]
        styles += [("score", ":")] if any(r.get("score") is not None for r in every) else []
        ax_right.legend([Line2D([], [], color="0.3", linestyle=st, marker=".") for _, st in styles],
                        [key for key, _ in styles], fontsize="small", loc="lower right")
    fig.tight_layout()
    return fig


def _plot_right(ax: Any, ax_score: Any, pts: list[dict[str, Any]], x_key: str,
                color: Any) -> Any:
    """Precision (solid) and recall (dashed) in [0, 1]; the classifier score (dotted).

    The score goes on ``ax_score``, a twin axis of ``ax`` made on first use when the
    panel also shows precision and recall (one for all runs); returns it.
    """
    has_pr = any(r.get("precision") is not None for r in pts)
    if has_pr:
        for key, style in (("precision", "-"), ("recall", "--")):
            rpts = [r for r in pts if r.get(key) is not None]
            ax.plot([r[x_key] for r in rpts], [r[key] for r in rpts], linestyle=style,
                    marker=".", color=color)
        ax.set(xlabel=x_key, ylim=(0, 1.02), ylabel="precision / recall",
               title="Precision, recall (higher is better)")
    spts = [r for r in pts if r.get("score") is not None]
    if spts:
        if ax_score is None:
            ax_score = ax.twinx() if has_pr else ax
        ax_score.plot([r[x_key] for r in spts], [r["score"] for r in spts], linestyle=":",
                      marker=".", color=color, alpha=0.7)
        ax_score.set(ylabel="classifier score (dotted)")
        if not has_pr:
            ax_score.set(xlabel=x_key, title="Score (higher is better)")
    return ax_score


def _band(points: list[dict[str, Any]], key: str, std_key: str,
          range_keys: tuple[str, str] | None) -> tuple[list[float] | None, list[float] | None]:
    """Return the lower and upper edge of a metric's spread, or ``(None, None)``."""
    if range_keys and all(r.get(range_keys[0]) is not None for r in points) and points:
        return ([float(r[range_keys[0]]) for r in points],
                [float(r[range_keys[1]]) for r in points])
    if points and all(r.get(std_key) is not None for r in points) \
            and any(r[std_key] > 0 for r in points):
        return ([float(r[key]) - float(r[std_key]) for r in points],
                [float(r[key]) + float(r[std_key]) for r in points])
    return None, None


def untimed(value: Any) -> Any:
    """Drop every timing (``*_s``, ``*_s_max``, ...) from records, recursively.

    What is left must repeat exactly for the same seed (``tests/test_determinism.py``,
    ``bench/crash_resume.py``).
    """
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items()
                if not (k.endswith("_s") or "_s_" in k)}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value
