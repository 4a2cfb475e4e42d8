"""A finished run directory, read into one normalised, typed :class:`Run`.

:func:`load_run` checks the directory (it exists, holds ``config.json`` and a
well-formed ``metrics.jsonl`` with at least one evaluation) and builds the
evaluation table with :func:`flwr_gan.report.table.normalise`, which documents
which record fields are per round and which cumulative.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flwr_gan.config import ConfigError
from flwr_gan.report.table import UNITS, EvalPoint, Totals, normalise, number

_SAMPLE = re.compile(r"^(?:round|step)_(\d+)\.png$")


@dataclass(frozen=True)
class Run:
    """A run directory, normalised.

    Attributes
    ----------
    label : str
        Name in tables and legends (default: the folder name, made unique).
    path : Path
        The run directory.
    algorithm : str
        ``standalone``, ``flgan``, ``fegan``, ``mdgan`` or ``gossip``.
    dataset : str
        The data set (with its ``--data-dir`` when one was given).
    extractor : str
        The feature extractor behind every FID of the run.
    config : dict
        ``config.json`` as written.
    unit : str
        What :attr:`EvalPoint.x` counts: ``round``, ``iteration`` or ``step``.
    points : tuple of EvalPoint
        The evaluations, in order.
    totals : Totals
        The whole run's cost.
    samples : Path or None
        The latest sample grid.
    train_images : int or None
        Training images the run's devices held (``local_sizes`` of ``summary.json``
        for MD-GAN and gossip; ``train_size`` for standalone), if recorded.
    """

    label: str
    path: Path
    algorithm: str
    dataset: str
    extractor: str
    config: dict[str, Any]
    unit: str
    points: tuple[EvalPoint, ...]
    totals: Totals
    samples: Path | None = None
    train_images: int | None = None

    @property
    def family(self) -> str:
        """The algorithm with what distinguishes runs of it (gossip variant, MD-GAN kappa)."""
        return family_of(self.config)

    @property
    def best(self) -> EvalPoint:
        """The evaluation with the lowest FID (the first of equals)."""
        return min(self.points, key=lambda p: p.fid)

    @property
    def final(self) -> EvalPoint:
        """The last evaluation."""
        return self.points[-1]


def family_of(config: Mapping[str, Any]) -> str:
    """Return ``algorithm`` plus what tells its runs apart (``gossip (ddl_ind)``, ...)."""
    algo = str(config.get("algorithm") or "unknown")
    extra: list[str] = []
    if algo == "gossip" and config.get("variant"):
        extra.append(str(config["variant"]))
    if algo == "mdgan":
        if config.get("kappa") is not None:
            extra.append(f"kappa={config['kappa']}")
        if config.get("mode") not in (None, "sync"):
            extra.append(str(config["mode"]))
        if config.get("crash_schedule"):
            extra.append("crashes")
    return f"{algo} ({', '.join(extra)})" if extra else algo


def read_records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """Read ``metrics.jsonl`` as ``(line number, record)`` pairs.

    Raises
    ------
    ConfigError
        Naming the first line that is not a JSON object.
    """
    out = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path} line {lineno} is not valid JSON ({err.msg} at column "
                              f"{err.colno}): the file is corrupt or was cut off") from None
        if not isinstance(record, dict):
            raise ConfigError(f"{path} line {lineno} is not a JSON object")
        out.append((lineno, record))
    return out


def latest_sample(run_dir: Path) -> Path | None:
    """Return the sample grid with the highest number in ``run_dir/samples``, or ``None``."""
    grids = [(int(m.group(1)), p) for p in (run_dir / "samples").glob("*.png")
             if (m := _SAMPLE.match(p.name))]
    return max(grids)[1] if grids else None


def unique_labels(paths: Sequence[Path]) -> list[str]:
    """Return a label per run directory: its name, its parent too where names repeat.

    >>> unique_labels([Path("a/run"), Path("b/run"), Path("c")])
    ['a/run', 'b/run', 'c']
    """
    names = [p.name or str(p) for p in paths]
    counts = Counter(names)
    labels = [f"{p.parent.name}/{n}" if counts[n] > 1 and p.parent.name else n
              for p, n in zip(paths, names, strict=True)]
    seen: Counter[str] = Counter()
    out = []
    for label in labels:
        seen[label] += 1
        out.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return out


def load_run(path: str | Path, label: str | None = None) -> Run:
    """Read one run directory.

    Parameters
    ----------
    path : str or Path
        The run directory (holding ``config.json`` and ``metrics.jsonl``).
    label : str, optional
        Its name in the comparison (default: the folder name).

    Raises
    ------
    ConfigError
        If the directory does not exist, is not a run directory, holds a corrupt
        ``config.json`` or ``metrics.jsonl`` (the line is named), or has no
        evaluation (no record with an FID).
    """
    run_dir = Path(path)
    if not run_dir.exists():
        raise ConfigError(f"{run_dir}: no such run directory")
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir} is not a directory: give a run directory (the --out "
                          "of a flwr-gan run)")
    missing = [n for n in ("config.json", "metrics.jsonl") if not (run_dir / n).is_file()]
    if missing:
        raise ConfigError(f"{run_dir} is not a run directory: it has no "
                          f"{' and no '.join(missing)}")
    try:
        config = json.loads((run_dir / "config.json").read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{run_dir / 'config.json'} is not valid JSON (line {err.lineno}: "
                          f"{err.msg})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{run_dir / 'config.json'} is not a JSON object")
    algorithm = str(config.get("algorithm") or "unknown")
    metrics = run_dir / "metrics.jsonl"
    local_steps = number(config.get("local_steps"))
    records = read_records(metrics)
    points, totals = normalise(records, algorithm=algorithm,
                               local_steps=int(local_steps) if local_steps else None,
                               where=str(metrics))
    if not points:
        raise ConfigError(f"{run_dir} has no evaluation (no record in metrics.jsonl carries a "
                          "fid): it ran with --fid-backend none or stopped before its first "
                          "evaluation")
    return Run(label=label or unique_labels([run_dir])[0], path=run_dir, algorithm=algorithm,
               dataset=dataset_of(config), extractor=extractor_of(config, records),
               config=config, unit=UNITS.get(algorithm, "round"), points=tuple(points),
               totals=totals, samples=latest_sample(run_dir),
               train_images=train_images_of(run_dir, config))


def train_images_of(run_dir: Path, config: Mapping[str, Any]) -> int | None:
    """Return the training images a run's devices held, if recorded (else ``None``).

    MD-GAN and gossip list each device's data size under ``local_sizes`` in
    ``summary.json``; standalone's ``config.json`` has the ``train_size`` it used.
    FL-GAN / FeGAN record only the whole data set's size, so they give ``None``.
    ``summary.json`` is auxiliary: one that cannot be read is ignored.
    """
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        summary = None
    sizes = summary.get("local_sizes") if isinstance(summary, dict) else None
    if isinstance(sizes, dict) and sizes:
        values = [number(v) for v in sizes.values()]
        return int(sum(v for v in values if v is not None))
    if config.get("algorithm") == "standalone" and number(config.get("train_size")):
        return int(config["train_size"])
    return None


def dataset_of(config: Mapping[str, Any]) -> str:
    """Return the data set a run trained and was scored on (with its ``--data-dir``)."""
    name = str(config.get("dataset") or "unknown")
    data_dir = config.get("data_dir")
    return f"{name} ({data_dir})" if data_dir else name


def extractor_of(config: Mapping[str, Any],
                 records: Sequence[tuple[int, Mapping[str, Any]]]) -> str:
    """Return the feature extractor of a run's FIDs: from its records, else its config.

    Records that name the extractor's weights (``extractor_id``: the cached classifier,
    whose training differs between installations) give ``name@id``, so runs scored by
    different trainings of the classifier count as different extractors.
    """
    names = sorted({str(r["extractor"]) + (f"@{r['extractor_id']}" if r.get("extractor_id")
                                           else "")
                    for _, r in records
                    if r.get("extractor") and number(r.get("fid")) is not None})
    if names:
        return ", ".join(names)
    return str(config.get("extractor") or config.get("fid_backend") or "unknown")


def load_runs(paths: Sequence[str | Path], labels: Sequence[str] | None = None) -> list[Run]:
    """Read several run directories, labelled (uniquely) by folder name or ``labels``.

    Raises
    ------
    ConfigError
        On a bad run directory (see :func:`load_run`), or ``labels`` that do not
        match the runs one to one or repeat a name.
    """
    if not paths:
        raise ConfigError("give at least one run directory")
    dirs = [Path(p) for p in paths]
    if labels:
        if len(labels) != len(dirs):
            raise ConfigError(f"--label: {len(labels)} label(s) for {len(dirs)} run(s); give "
                              "one per run directory, in the same order")
        dup = sorted(n for n, c in Counter(labels).items() if c > 1)
        if dup or any(not str(n).strip() for n in labels):
            raise ConfigError(f"--label: labels must be unique and non-empty (repeated: "
                              f"{', '.join(map(repr, dup)) or 'an empty one'})")
        names = [str(n) for n in labels]
    else:
        names = unique_labels([d.resolve() for d in dirs])
    return [load_run(d, n) for d, n in zip(dirs, names, strict=True)]


__all__ = ["Run", "dataset_of", "extractor_of", "family_of", "latest_sample", "load_run",
           "load_runs", "read_records", "train_images_of", "unique_labels"]
