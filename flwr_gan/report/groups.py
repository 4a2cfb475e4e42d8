"""Runs of one configuration over several seeds, and gains against a baseline (pure logic).

``flwr-gan compare --group NAME ... --baseline NAME`` names, for every run, the
configuration it is a seed of; :func:`summarise_groups` then gives per group the
mean, standard deviation and range over its runs of

* the best and the final FID;
* the **area under the FID curve**: the mean FID over rounds / iterations over the
  span every run covers, on one grid for all runs (:func:`common_grid`,
  :func:`fid_auc_on`: trapezoids on the sparsest run's evaluation points, the others
  interpolated), so a run that gets good early and stays there scores lower than one
  that only touches the same best value once, and evaluating more often is no
  advantage;
* the FeGAN paper's **convergence gain** over the baseline (§5.2): the time the
  baseline needs to reach its best FID divided by the time this run needs to first
  reach that FID (:func:`convergence_gain`), on the virtual clock and in
  rounds / iterations, paired by seed (the baseline run with the same ``seed`` in
  its ``config.json``; runs without one are paired in the order given).

A gain above 1 means faster than the baseline; a run that never reaches the
baseline's best FID has no gain (counted in ``reached``).

The best FID of a noisy curve is whichever evaluation happened to dip, so the
gain can swing from "never" to 3x between seeds of the same two configurations
(docs/results-fegan.md §5). ``--smooth K`` measures it on the trailing mean of
the last ``K`` evaluations instead (:func:`smoothed`): the baseline's best
smoothed FID and the first point where the run's smoothed FID reaches it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from flwr_gan.config import ConfigError
from flwr_gan.report.runs import Run
from flwr_gan.report.table import EvalPoint


@dataclass(frozen=True)
class Stat:
    """Mean, sample standard deviation (0 for one value), min and max of ``n`` values."""

    mean: float
    std: float
    min: float
    max: float
    n: int


def stat(values: Sequence[float]) -> Stat | None:
    """Return the :class:`Stat` of ``values``, or ``None`` for none.

    >>> stat([1.0, 3.0])
    Stat(mean=2.0, std=1.4142135623730951, min=1.0, max=3.0, n=2)
    """
    vals = [float(v) for v in values]
    if not vals:
        return None
    mean = sum(vals) / len(vals)
    var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1) if len(vals) > 1 else 0.0
    return Stat(mean, math.sqrt(var), min(vals), max(vals), len(vals))


def fid_auc(points: Sequence[EvalPoint], upto: float | None = None) -> float:
    """Return one run's mean FID from its first evaluation to ``upto``, on its own points.

    Parameters
    ----------
    points : sequence of EvalPoint
        One run's evaluations, in order.
    upto : float, optional
        Where the area ends (default: the last evaluation); a value between two
        evaluations interpolates the FID linearly, one past the last is refused.

    Raises
    ------
    ValueError
        If ``points`` is empty or ``upto`` lies outside the evaluated range.

    Examples
    --------
    >>> from flwr_gan.report.table import EvalPoint
    >>> pts = [EvalPoint(x, None, None, 0, 0, fid) for x, fid in [(0, 400.0), (10, 200.0)]]
    >>> fid_auc(pts), fid_auc(pts, upto=5)
    (300.0, 350.0)
    """
    if not points:
        raise ValueError("no evaluation to integrate")
    first, last = float(points[0].x), float(points[-1].x)
    end = last if upto is None else float(upto)
    if end < first or end > last:
        raise ValueError(f"upto={end} lies outside the evaluated range {first}..{last}")
    return fid_auc_on(points, _span_grid(points, first, end))


def _span_grid(points: Sequence[EvalPoint], start: float, end: float) -> list[float]:
    """Return ``start``, ``end`` and the evaluations strictly between them, in order."""
    return sorted({start, end} | {float(p.x) for p in points if start < p.x < end})


def common_grid(curves: Sequence[Sequence[EvalPoint]]) -> list[float]:
    """Return the x grid on which every curve's area is measured alike.

    The area runs from the latest first evaluation to the earliest last one, over the
    evaluation points (inside that span, plus its two ends) of the curve that has the
    fewest of them. Trapezoids over a sparse grid overestimate a falling convex FID
    curve, so integrating a densely and a sparsely evaluated run each on its own
    points would favour the dense one; on one grid both carry the same bias. Runs
    evaluated at the same points keep exactly their own area.

    Parameters
    ----------
    curves : sequence of sequence of EvalPoint
        Every run's evaluations, each in order and non-empty.

    Returns
    -------
    list of float
        Increasing x values; one value when the span is a single point.

    Raises
    ------
    ValueError
        If ``curves`` or one of them is empty, or two runs' evaluations do not overlap.

    Examples
    --------
    >>> from flwr_gan.report.table import EvalPoint
    >>> def curve(xs): return [EvalPoint(x, None, None, 0, 0, 1.0) for x in xs]
    >>> common_grid([curve([0, 1, 2, 3, 4]), curve([0, 2, 4, 6])])
    [0.0, 2.0, 4.0]
    """
    if not curves or not all(curves):
        raise ValueError("no evaluation to integrate")
    start = max(float(c[0].x) for c in curves)
    end = min(float(c[-1].x) for c in curves)
    if start > end:
        raise ValueError(f"the runs' evaluations do not overlap: one ends at {end:g}, "
                         f"another starts at {start:g}")
    return min((_span_grid(c, start, end) for c in curves), key=len)


def fid_auc_on(points: Sequence[EvalPoint], grid: Sequence[float]) -> float:
    """Return the mean FID over ``grid`` (trapezoids of the FID interpolated at its points).

    Parameters
    ----------
    points : sequence of EvalPoint
        One run's evaluations, in order; they must cover ``grid``.
    grid : sequence of float
        Increasing x values (:func:`common_grid`).

    Raises
    ------
    ValueError
        If ``points`` or ``grid`` is empty or ``grid`` leaves the evaluated range.

    Examples
    --------
    >>> from flwr_gan.report.table import EvalPoint
    >>> pts = [EvalPoint(x, None, None, 0, 0, f) for x, f in [(0, 400.0), (5, 100.0),
    ...                                                         (10, 200.0)]]
    >>> fid_auc_on(pts, [0.0, 5.0, 10.0]), fid_auc_on(pts, [0.0, 10.0])
    (200.0, 300.0)
    """
    if not points or not grid:
        raise ValueError("no evaluation to integrate")
    xs = [float(p.x) for p in points]
    if grid[0] < xs[0] or grid[-1] > xs[-1]:
        raise ValueError(f"grid {grid[0]:g}..{grid[-1]:g} leaves the evaluated range "
                         f"{xs[0]:g}..{xs[-1]:g}")
    ys = [float(np.interp(x, xs, [p.fid for p in points])) for x in grid]
    if len(grid) == 1:
        return ys[0]
    area = sum((x1 - x0) * (y0 + y1) / 2
               for x0, x1, y0, y1 in zip(grid, grid[1:], ys, ys[1:], strict=False))
    return area / (grid[-1] - grid[0])


def smoothed(points: Sequence[EvalPoint], window: int) -> list[EvalPoint]:
    """Return ``points`` with each FID replaced by the mean of the last ``window`` FIDs.

    A trailing window (no evaluation sees a later one); the first ``window - 1``
    points average what exists. ``window = 1`` returns the points unchanged.

    Raises
    ------
    ValueError
        If ``window`` is below 1.

    Examples
    --------
    >>> from flwr_gan.report.table import EvalPoint
    >>> pts = [EvalPoint(x, None, None, 0, 0, f) for x, f in [(0, 9.0), (1, 3.0), (2, 6.0)]]
    >>> [p.fid for p in smoothed(pts, 2)]
    [9.0, 6.0, 4.5]
    """
    if window < 1:
        raise ValueError(f"smoothing window must be >= 1, got {window}")
    return [replace(p, fid=sum(q.fid for q in points[max(0, i - window + 1):i + 1])
                    / (i + 1 - max(0, i - window + 1)))
            for i, p in enumerate(points)]


@dataclass(frozen=True)
class Gain:
    """The paper's convergence gain of one run over its baseline run (same seed).

    Attributes
    ----------
    run, baseline : str
        Labels of the two runs.
    seed : int or None
        Their seed (``None`` when paired by order).
    target : float
        The baseline's best FID (smoothed over ``smooth`` evaluations).
    baseline_x, baseline_virtual_s : int, float or None
        Where (round / iteration) and when (cumulative virtual s) the baseline got there.
    reach_x, reach_virtual_s : int or None, float or None
        Where and when this run first got to ``target`` (``None``: never).
    gain_x, gain_virtual : float or None
        ``baseline_x / reach_x`` and ``baseline_virtual_s / reach_virtual_s``.
    smooth : int
        Evaluations per trailing mean (1: the raw FIDs, the paper's definition).
    """

    run: str
    baseline: str
    seed: int | None
    target: float
    baseline_x: int
    baseline_virtual_s: float | None
    reach_x: int | None
    reach_virtual_s: float | None
    gain_x: float | None
    gain_virtual: float | None
    smooth: int = 1


def _ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num is not None and den else None


def convergence_gain(baseline: Run, run: Run, smooth: int = 1) -> Gain:
    """Return ``run``'s convergence gain over ``baseline`` (see the module docstring)."""
    best = min(smoothed(baseline.points, smooth), key=lambda p: p.fid)
    hit = next((p for p in smoothed(run.points, smooth) if p.fid <= best.fid), None)
    seed = run.config.get("seed")
    return Gain(run=run.label, baseline=baseline.label,
                seed=int(seed) if isinstance(seed, int) else None, target=best.fid,
                baseline_x=best.x, baseline_virtual_s=best.virtual_s,
                reach_x=hit.x if hit else None, reach_virtual_s=hit.virtual_s if hit else None,
                gain_x=_ratio(float(best.x), float(hit.x)) if hit else None,
                gain_virtual=_ratio(best.virtual_s, hit.virtual_s) if hit else None,
                smooth=smooth)


@dataclass(frozen=True)
class GroupSummary:
    """One configuration over its runs (see the module docstring).

    Attributes
    ----------
    label : str
        The group's name.
    runs : tuple of str
        Its runs' labels.
    seeds : tuple of int or None
        Their seeds.
    best_fid, final_fid, auc : Stat
        Over the runs; ``auc`` runs to ``auc_upto``.
    auc_upto : float
        The common end of every group's area (the shortest run's last evaluation).
    auc_from, auc_points : float, int
        Its common start (the latest first evaluation) and how many points of
        :func:`common_grid` it is measured on.
    gains : tuple of Gain
        One per run against the baseline run of its seed (empty for the baseline
        itself or without a baseline).
    gain_x, gain_virtual : Stat or None
        Over the runs that reached the baseline's best FID.
    reached : int
        How many runs reached it.
    """

    label: str
    runs: tuple[str, ...]
    seeds: tuple[int | None, ...]
    best_fid: Stat
    final_fid: Stat
    auc: Stat
    auc_upto: float
    gains: tuple[Gain, ...] = ()
    gain_x: Stat | None = None
    gain_virtual: Stat | None = None
    reached: int = 0
    auc_from: float = 0.0
    auc_points: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Return the group as JSON-ready data."""
        return asdict(self)


def group_runs(runs: Sequence[Run], groups: Sequence[str]) -> dict[str, list[Run]]:
    """Return group name -> its runs, in first-seen order.

    Raises
    ------
    ConfigError
        If ``groups`` does not name one group per run or names an empty one.
    """
    if len(groups) != len(runs):
        raise ConfigError(f"--group: {len(groups)} group name(s) for {len(runs)} run(s); give "
                          "one per run directory, in the same order")
    if any(not str(g).strip() for g in groups):
        raise ConfigError("--group: group names must be non-empty")
    out: dict[str, list[Run]] = {}
    for run, name in zip(runs, groups, strict=True):
        out.setdefault(str(name), []).append(run)
    return out


def _seed(run: Run) -> int | None:
    seed = run.config.get("seed")
    return int(seed) if isinstance(seed, int) else None


def _pair(members: list[Run], base: list[Run]) -> list[tuple[Run, Run]]:
    """Pair each run with the baseline run of its seed, else the one at its position."""
    by_seed = {_seed(b): b for b in base if _seed(b) is not None}
    pairs = []
    for i, run in enumerate(members):
        match = by_seed.get(_seed(run)) if _seed(run) is not None else None
        if match is None and i < len(base):
            match = base[i]
        if match is not None:
            pairs.append((run, match))
    return pairs


def summarise_groups(runs: Sequence[Run], groups: Sequence[str] | None = None,
                     baseline: str | None = None, smooth: int = 1) -> list[GroupSummary]:
    """Summarise ``runs`` by group (default: each run its own group) against ``baseline``.

    ``smooth`` is the trailing window of the gains (:func:`smoothed`).

    Raises
    ------
    ConfigError
        On bad ``groups`` (:func:`group_runs`), a ``baseline`` that names no group,
        a ``smooth`` below 1, or runs whose evaluations do not overlap.
    """
    if isinstance(smooth, bool) or not isinstance(smooth, int) or smooth < 1:
        raise ConfigError(f"--smooth: {smooth!r} is invalid: expected a whole number of "
                          "evaluations >= 1 (1: the raw FID curve)")
    grouped = group_runs(runs, list(groups) if groups else [r.label for r in runs])
    if baseline is not None and baseline not in grouped:
        raise ConfigError(f"--baseline: {baseline!r} is not one of the groups "
                          f"({', '.join(map(repr, grouped))})")
    try:
        grid = common_grid([r.points for r in runs])
    except ValueError as err:
        raise ConfigError(f"runs: cannot be compared over one span: {err}; compare runs "
                          "whose evaluations overlap") from err
    out = []
    for name, members in grouped.items():
        gains: tuple[Gain, ...] = ()
        if baseline is not None and name != baseline:
            gains = tuple(convergence_gain(b, r, smooth)
                          for r, b in _pair(members, grouped[baseline]))
        best, final = stat([r.best.fid for r in members]), stat([r.final.fid for r in members])
        auc = stat([fid_auc_on(r.points, grid) for r in members])
        assert best is not None and final is not None and auc is not None  # members non-empty
        out.append(GroupSummary(
            label=name, runs=tuple(r.label for r in members),
            seeds=tuple(_seed(r) for r in members), best_fid=best, final_fid=final, auc=auc,
            auc_upto=grid[-1], auc_from=grid[0], auc_points=len(grid), gains=gains,
            gain_x=stat([g.gain_x for g in gains if g.gain_x is not None]),
            gain_virtual=stat([g.gain_virtual for g in gains if g.gain_virtual is not None]),
            reached=sum(g.reach_x is not None for g in gains)))
    return out


__all__ = ["Gain", "GroupSummary", "Stat", "common_grid", "convergence_gain", "fid_auc",
           "fid_auc_on", "group_runs", "smoothed", "stat", "summarise_groups"]
