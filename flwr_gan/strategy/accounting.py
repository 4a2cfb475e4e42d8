"""What data the server has aggregated so far (FeGAN Fig. 10 and Fig. 14).

:class:`SeenData` accumulates the class counts of every device each time one
of its updates is aggregated (a device visited twice counts twice, as its data
is seen twice) and reports

* ``kl_seen`` -- ``KL(seen || global)``, the divergence of the class
  distribution the server has seen from the global one (natural log; this
  direction stays finite while some class is still unseen);
* ``coverage`` -- the fraction of all samples held by devices visited at
  least once (1.0 means every sample has been seen).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from flwr_gan.strategy.weighting import kl_divergence


class SeenData:
    """Running account of the data behind the aggregated updates.

    Parameters
    ----------
    class_counts : array-like, shape (N, K)
        Per-device class counts (device indices as in the strategy).
    """

    def __init__(self, class_counts: Sequence[Sequence[int]] | np.ndarray) -> None:
        self.counts = np.asarray(class_counts, dtype=np.int64)
        if self.counts.ndim != 2 or self.counts.shape[0] == 0:
            raise ValueError("class_counts must be a non-empty (N, K) matrix")
        self.global_counts = self.counts.sum(axis=0)
        self.seen_counts = np.zeros(self.counts.shape[1], dtype=np.int64)
        self.visited = np.zeros(self.counts.shape[0], dtype=bool)

    def add(self, devices: Iterable[int]) -> None:
        """Account for one aggregation of the given devices' updates."""
        for d in devices:
            self.seen_counts += self.counts[d]
            self.visited[d] = True

    @property
    def kl_seen(self) -> float | None:
        """``KL(seen || global)``, or ``None`` before anything was seen."""
        if self.seen_counts.sum() == 0:
            return None
        return kl_divergence(self.seen_counts, self.global_counts)

    @property
    def coverage(self) -> float:
        """Fraction of all samples on devices visited at least once."""
        return float(self.counts[self.visited].sum() / self.counts.sum())

    @property
    def devices_seen(self) -> int:
        """Devices visited at least once."""
        return int(self.visited.sum())

    def state_dict(self) -> dict[str, Any]:
        """Plain-Python state for checkpoints."""
        return {"seen_counts": self.seen_counts.tolist(), "visited": self.visited.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        seen = np.asarray(state["seen_counts"], dtype=np.int64)
        visited = np.asarray(state["visited"], dtype=bool)
        if seen.shape != self.seen_counts.shape or visited.shape != self.visited.shape:
            raise ValueError("seen-data state was saved for a different set of devices")
        self.seen_counts, self.visited = seen, visited
