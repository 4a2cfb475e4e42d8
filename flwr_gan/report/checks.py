"""What makes runs incomparable, or their comparison less direct than it looks.

:func:`mismatches` finds what forbids a comparison (FIDs on other data sets or
other feature extractors live on other scales); :func:`caveats` what only
qualifies it: other evaluation settings, other training set-ups, other units
and clocks, and untrained generators that scored differently (a sign that the
runs were evaluated differently, e.g. by another version of the code).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from flwr_gan.report.runs import Run
from flwr_gan.report.table import CLOCK_COMPUTE

#: Settings that change how a score is measured (a difference is a caveat).
EVAL_KEYS = ("n_eval", "eval_seeds", "eval_mode")
#: Settings of the training set-up worth pointing out when they differ.
SETUP_KEYS = ("partition", "num_clients", "model", "loss", "batch_size", "seed")
#: Initial FIDs of the same untrained generator further apart than this (relative) differ.
INITIAL_FID_TOLERANCE = 0.01


def _groups(values: Mapping[str, Any]) -> str:
    """``{label: value}`` -> ``"v1 (a, b), v2 (c)"``."""
    by: dict[str, list[str]] = defaultdict(list)
    for label, value in values.items():
        by[str(value)].append(label)
    return ", ".join(f"{v} ({', '.join(labels)})" for v, labels in by.items())


def mismatches(runs: Sequence[Run]) -> list[str]:
    """Say why the runs' FIDs are not comparable (other data set, other extractor)."""
    out = []
    for what, attr in (("data sets", "dataset"), ("feature extractors", "extractor")):
        values = {r.label: getattr(r, attr) for r in runs}
        if len(set(values.values())) > 1:
            out.append(f"the runs use different {what}: {_groups(values)}")
    return out


def caveats(runs: Sequence[Run], *, grouped: bool = False) -> list[str]:
    """Return what makes the comparison less direct than it looks (settings, clocks, units).

    With ``grouped`` (runs summarised over seeds) a differing ``seed`` is the point,
    not a caveat.
    """
    notes = []
    for key in EVAL_KEYS + SETUP_KEYS:
        if grouped and key == "seed":
            continue
        values = {r.label: r.config.get(key) for r in runs}
        recorded = {k: v for k, v in values.items() if v is not None}
        if len({str(v) for v in recorded.values()}) > 1:
            scoring = key in EVAL_KEYS
            unrecorded = [k for k, v in values.items() if v is None]
            tail = (f"; {'not recorded by' if scoring else 'no such setting in'} "
                    f"{', '.join(unrecorded)}" if unrecorded else "")
            kind = "scores measured differently" if scoring else "training set-up"
            notes.append(f"`{key}` differs ({kind}): {_groups(recorded)}{tail}")
    images = {r.label: r.train_images for r in runs if r.train_images is not None}
    if len(set(images.values())) > 1:
        notes.append(f"the devices held different numbers of training images in all: "
                     f"{_groups(images)}")
    notes.extend(_initial_fid_caveats(runs))
    if len({r.unit for r in runs}) > 1:
        notes.append("the runs count progress in different units (" + ", ".join(
            sorted({f"{r.unit}s" for r in runs})) + "): the first panel's x axis is training "
            "iterations per model (FL-GAN / FeGAN: rounds x local steps; gossip: its "
            "iterations; MD-GAN: generator iterations; standalone: steps)")
    compute = [r.label for r in runs if r.totals.clock == CLOCK_COMPUTE]
    if compute and len(compute) < len(runs):
        notes.append(f"{', '.join(compute)}: no virtual clock (standalone); the time axis is "
                     "its cumulative training compute (compute_s), what the virtual clock "
                     "gives one device with no traffic")
    no_clock = [r.label for r in runs if r.totals.clock is None]
    if no_clock:
        notes.append(f"{', '.join(no_clock)}: no clock recorded; left out of the time panel")
    quiet = [r.label for r in runs if r.totals.bytes_up == 0]
    if quiet:
        notes.append(f"{', '.join(quiet)}: no uploaded bytes; left out of the bytes panel "
                     "(log axis), shown as 0 in the tables")
    gossip = [r.label for r in runs if r.totals.p2p_bytes is not None]
    if gossip and len(gossip) < len(runs):
        notes.append(f"{', '.join(gossip)} (gossip): the server relays the models, so each "
                     "is counted up (sender to server) and again down (server to peer); a "
                     "peer-to-peer deployment would send `total_p2p_bytes` (compare.json), "
                     "about the uploaded bytes")
    workers = [r.label for r in runs if r.final.fid_best is not None]
    if workers and len(workers) < len(runs):
        notes.append(f"{', '.join(workers)}: FID is the mean over the evaluated workers' "
                     "generators (band: best..worst worker; the sample grid is the first "
                     "evaluated worker's); the others score one generator")
    return notes


def _initial_fid_caveats(runs: Sequence[Run]) -> list[str]:
    """Flag runs whose untrained generators (same model, seed) scored differently at x=0."""
    groups: dict[tuple[str, ...], dict[str, float]] = defaultdict(dict)
    for r in runs:
        first = r.points[0]
        if first.x == 0:
            key = tuple(str(r.config.get(k)) for k in ("model", "seed", "image_shape"))
            groups[key + (r.dataset, r.extractor)][r.label] = first.fid
    notes = []
    for fids in groups.values():
        low, high = min(fids.values()), max(fids.values())
        if len(fids) > 1 and high > (1 + INITIAL_FID_TOLERANCE) * low:
            notes.append(
                "runs with the same model preset and seed scored differently before training "
                f"(x = 0): {_groups({k: f'{v:.1f}' for k, v in fids.items()})}, "
                f"{100 * (high / low - 1):.0f}% apart: their untrained generators or their "
                "evaluations differ (e.g. written by different code versions), so FID "
                "differences of that relative size across these groups are not meaningful")
    return notes


__all__ = ["EVAL_KEYS", "INITIAL_FID_TOLERANCE", "SETUP_KEYS", "caveats", "mismatches"]
