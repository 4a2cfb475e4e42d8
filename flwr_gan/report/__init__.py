"""Reports over finished run directories: ``flwr-gan compare``.

:mod:`~flwr_gan.report.runs` reads a run directory into a normalised :class:`Run`,
whose evaluation table :mod:`~flwr_gan.report.table` builds from any family's records
(which fields are per round and which cumulative is documented there);
:mod:`~flwr_gan.report.compare` summarises several runs (best / final scores, the
cost of reaching an FID threshold, totals) and writes the comparison, with
:mod:`~flwr_gan.report.checks` (what is not comparable, caveats),
:mod:`~flwr_gan.report.plots` (figures) and :mod:`~flwr_gan.report.markdown`.
"""

from __future__ import annotations

from flwr_gan.report.compare import CompareResult, RunSummary, compare_runs, summarise
from flwr_gan.report.runs import Run, load_run, load_runs
from flwr_gan.report.table import EvalPoint

__all__ = ["CompareResult", "EvalPoint", "Run", "RunSummary", "compare_runs", "load_run",
           "load_runs", "summarise"]
