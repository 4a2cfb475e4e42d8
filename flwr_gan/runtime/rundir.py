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
    """Plot the FID (left) and score (right, when any run has one) of several runs.

    Parameters
    ----------
    runs : mapping
        Label -> list of metric records; records without a ``fid`` are skipped.
    target : str or Path
        PNG file to write.
    x_key : str
        Record key for the x axis.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    has_score = any(r.get("score") is not None for recs in runs.values() for r in recs)
    fig, axes = plt.subplots(1, 2 if has_score else 1, figsize=(11 if has_score else 6, 4),
                             squeeze=False)
    extractors: set[str] = set()
    for label, records in runs.items():
        pts = [r for r in records if r.get("fid") is not None and r.get(x_key) is not None]
        extractors.update(str(r["extractor"]) for r in pts if r.get("extractor"))
        axes[0][0].plot([r[x_key] for r in pts], [r["fid"] for r in pts], marker=".",
                        label=label)
        if has_score:
            spts = [r for r in pts if r.get("score") is not None]
            axes[0][1].plot([r[x_key] for r in spts], [r["score"] for r in spts], marker=".",
                            label=label)
    feat = ", ".join(sorted(extractors)) or "features"
    axes[0][0].set(xlabel=x_key, ylabel=f"FID ({feat})", yscale="log",
                   title="FID (lower is better)")
    axes[0][0].grid(True, which="both", alpha=0.3)
    axes[0][0].legend()
    if has_score:
        axes[0][1].set(xlabel=x_key, ylabel="classifier score",
                       title="Score (higher is better)")
        axes[0][1].grid(True, alpha=0.3)
    fig.tight_layout()
    target = Path(target)
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return target
