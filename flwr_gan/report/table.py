"""A run's ``metrics.jsonl`` records, normalised into one evaluation table (pure logic).

Every family writes the same run directory (:mod:`flwr_gan.runtime.rundir`) but
its records differ: some are per round with traffic and no FID, some are
evaluations, keys vary by family and by code version. :func:`normalise` turns
any of them into one :class:`EvalPoint` per evaluation, with the *cumulative*
cost of reaching it, and the run's :class:`Totals`.

What the writers record (read from their code, not guessed):

* FL-GAN / FeGAN (``fl/server.py``, the strategy's ``history``): per round
  ``bytes_up``, ``bytes_down``, ``virtual_s``, ``wall_s``; cumulative ``elapsed_s``.
* MD-GAN (``mdgan/server.py``): per iteration ``bytes_up``, ``bytes_down``,
  ``virtual_s``, ``wall_s``; cumulative ``virtual_total_s``, ``wall_total_s``,
  ``elapsed_s``. Runs written before commit e0b7f58 have per iteration
  ``iter_virtual_s`` / ``iter_wall_s`` and the running totals as ``virtual_s`` /
  ``wall_s`` (bytes were per iteration already).
* Gossip (``gossip/server.py``): per round ``bytes_up``, ``bytes_down`` (relayed
  models counted on both legs), ``p2p_bytes``, ``virtual_s``, ``wall_s``;
  cumulative ``virtual_total_s``, ``wall_total_s``, ``elapsed_s``; ``iteration``
  is ``round * local_steps``.
* Standalone (``standalone.py``): no traffic, no clock; cumulative ``compute_s``,
  ``examples``, ``elapsed_s`` (older runs: ``wall_s``); ``round == step``.

So cumulative bytes are running sums of the per-record ``bytes_up`` /
``bytes_down`` over *every* record up to and including the evaluation, and
cumulative virtual seconds the running sum of the per-record virtual seconds
(``iter_virtual_s`` where a record has it, else ``virtual_s``). The standalone
baseline has no network and no virtual clock: its time axis is its cumulative
training compute (``compute_s``), which is what the virtual clock gives for one
device with no traffic (evaluation time excluded, as on the virtual clock).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flwr_gan.config import ConfigError

#: The record key counting a family's progress (its registry ``unit``; default ``round``).
UNITS: dict[str, str] = {"standalone": "step", "mdgan": "iteration"}
#: How the time axis of a run was obtained.
CLOCK_VIRTUAL = "virtual"
CLOCK_COMPUTE = "compute"


@dataclass(frozen=True)
class EvalPoint:
    """One evaluation of a run, with the cumulative cost of reaching it.

    Attributes
    ----------
    x : int
        The family's own counter: round (FL-GAN, FeGAN, gossip), iteration
        (MD-GAN) or step (standalone).
    iterations : int or None
        Training iterations per model up to here: ``round * local_steps`` for
        FL-GAN / FeGAN, the ``iteration`` of gossip records, the iteration or
        step otherwise; ``None`` when ``local_steps`` is unknown.
    virtual_s : float or None
        Cumulative seconds on the run's clock (see :attr:`Run.clock`), ``None`` if
        the run records none.
    bytes_up, bytes_down : int
        Cumulative bytes sent to / received from the server (0 for standalone).
    fid : float
        FID (the mean over latent seeds; for gossip, the mean over the evaluated
        workers).
    fid_seed_std : float or None
        Spread of FID over latent seeds.
    fid_best, fid_worst, fid_workers_std : float or None
        Best, worst and standard deviation of FID over workers (gossip).
    kid, kid_std : float or None
        KID and its standard deviation.
    precision, recall, class_tv, score : float or None
        Improved precision / recall, class-mix total variation, classifier score.
    classes_missing : tuple of int or None
        Classes the generator (almost) never produces.
    """

    x: int
    iterations: int | None
    virtual_s: float | None
    bytes_up: int
    bytes_down: int
    fid: float
    fid_seed_std: float | None = None
    fid_best: float | None = None
    fid_worst: float | None = None
    fid_workers_std: float | None = None
    kid: float | None = None
    kid_std: float | None = None
    precision: float | None = None
    recall: float | None = None
    class_tv: float | None = None
    classes_missing: tuple[int, ...] | None = None
    score: float | None = None

    def fid_band(self) -> tuple[float, float] | None:
        """Return the FID spread to shade: workers' best..worst, else ``fid +- seed std``."""
        if self.fid_best is not None and self.fid_worst is not None:
            return self.fid_best, self.fid_worst
        if self.fid_seed_std:
            return self.fid - self.fid_seed_std, self.fid + self.fid_seed_std
        return None

    def kid_band(self) -> tuple[float, float] | None:
        """Return ``kid +- kid_std``, or ``None``."""
        if self.kid is None or not self.kid_std:
            return None
        return self.kid - self.kid_std, self.kid + self.kid_std


@dataclass(frozen=True)
class Totals:
    """What a whole run cost, over every record (evaluated or not).

    Attributes
    ----------
    x : int
        The last round / iteration / step recorded.
    iterations : int or None
        Training iterations per model at ``x`` (see :attr:`EvalPoint.iterations`).
    bytes_up, bytes_down : int
        Total bytes up and down (0 for standalone).
    p2p_bytes : int or None
        Gossip only: what a peer-to-peer deployment would have sent.
    virtual_s : float or None
        Total seconds on the run's clock.
    clock : str or None
        :data:`CLOCK_VIRTUAL` (the simulated clock of federated families),
        :data:`CLOCK_COMPUTE` (standalone's training compute) or ``None``.
    traffic : bool
        Whether the run records traffic at all.
    """

    x: int
    iterations: int | None
    bytes_up: int
    bytes_down: int
    p2p_bytes: int | None
    virtual_s: float | None
    clock: str | None
    traffic: bool


def number(value: Any) -> float | None:
    """Return ``value`` as a finite float, or ``None`` (booleans, strings, NaN, null)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _iterations(record: Mapping[str, Any], x: int, unit: str,
                local_steps: int | None) -> int | None:
    """Training iterations per model at ``x``: gossip's ``iteration``, rounds x local steps."""
    if unit != "round":
        return x
    given = number(record.get("iteration"))
    if given is not None:
        return int(given)
    return x * local_steps if local_steps else None


def normalise(records: Sequence[tuple[int, Mapping[str, Any]]], *, algorithm: str,
              local_steps: int | None = None,
              where: str = "metrics.jsonl") -> tuple[list[EvalPoint], Totals]:
    """Turn a run's records into its evaluation table and totals.

    Parameters
    ----------
    records : sequence of (int, mapping)
        ``(line number, record)`` pairs in file order (line numbers name errors).
    algorithm : str
        The family (chooses the counter and the clock).
    local_steps : int, optional
        Local iterations per round (FL-GAN / FeGAN iterations).
    where : str
        The file, for error messages.

    Returns
    -------
    points : list of EvalPoint
        One per record with a finite ``fid``.
    totals : Totals
        Over every record.

    Raises
    ------
    ConfigError
        If a record lacks its counter.
    """
    unit = UNITS.get(algorithm, "round")
    up = down = 0
    p2p: int | None = None
    virtual = 0.0
    clock: str | None = None
    traffic = False
    x = 0
    iterations: int | None = 0
    points: list[EvalPoint] = []
    for lineno, r in records:
        raw_x = r.get(unit, r.get("round"))
        if number(raw_x) is None:
            raise ConfigError(f"{where} line {lineno}: the record has no {unit!r} (nor "
                              f"'round'): is this a flwr-gan run?")
        x = int(raw_x)
        if "bytes_up" in r or "bytes_down" in r:
            traffic = True
        up += int(number(r.get("bytes_up")) or 0)
        down += int(number(r.get("bytes_down")) or 0)
        if number(r.get("p2p_bytes")) is not None:
            p2p = (p2p or 0) + int(r["p2p_bytes"])
        if algorithm == "standalone":
            compute = number(r.get("compute_s"))  # cumulative training compute
            if compute is not None:
                virtual, clock = compute, CLOCK_COMPUTE
        else:
            # before e0b7f58 MD-GAN wrote the running total as virtual_s and the
            # iteration's own seconds as iter_virtual_s
            step_s = number(r["iter_virtual_s"] if "iter_virtual_s" in r else r.get("virtual_s"))
            if step_s is not None:
                virtual += step_s
                clock = CLOCK_VIRTUAL
        iterations = _iterations(r, x, unit, local_steps)
        fid = number(r.get("fid"))
        if fid is None:
            continue
        missing = r.get("classes_missing")
        points.append(EvalPoint(
            x=x, iterations=iterations, virtual_s=virtual if clock else None,
            bytes_up=up, bytes_down=down, fid=fid,
            fid_seed_std=number(r.get("fid_seed_std")), fid_best=number(r.get("fid_best")),
            fid_worst=number(r.get("fid_worst")), fid_workers_std=number(r.get("fid_std")),
            kid=number(r.get("kid")), kid_std=number(r.get("kid_std")),
            precision=number(r.get("precision")), recall=number(r.get("recall")),
            class_tv=number(r.get("class_tv")), score=number(r.get("score")),
            classes_missing=tuple(int(c) for c in missing) if isinstance(missing, list)
            else None))
    totals = Totals(x=x, iterations=iterations, bytes_up=up, bytes_down=down, p2p_bytes=p2p,
                    virtual_s=virtual if clock else None, clock=clock, traffic=traffic)
    return points, totals


__all__ = ["CLOCK_COMPUTE", "CLOCK_VIRTUAL", "UNITS", "EvalPoint", "Totals", "normalise",
           "number"]
