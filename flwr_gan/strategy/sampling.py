"""Which devices take part in a round: FeGAN's balanced sampling and uniform sampling.

Pure functions and a small stateful sampler over *device indices* ``0..N-1``
(the strategy maps them to Flower node ids); no Flower, no Ray.

Balanced sampling (FeGAN paper §3.3, reference code ``init_groups``)
--------------------------------------------------------------------
The server keeps ``taken[c]``, the number of samples of class ``c`` it has
(had) aggregated so far, and one round-robin queue per class holding the
devices that own that class. For each of the round's ``m`` slots it

1. picks the class with the smallest ``taken`` (the lowest class index on ties),
2. pops devices from that class's queue, putting each back at the tail, until
   it finds one that is not yet in this round,
3. adds that device to the round and adds the device's *whole* class-count
   vector to ``taken``.

Choices where the paper and the reference are silent or degenerate (documented
in ``docs/fegan.md``):

* the queues are filled in *descending* device index, as the reference does
  (``reversed(...)``), so on the FeGAN partition the larger, later devices come
  first;
* classes that no device owns are ignored (the reference would spin on them);
* when every device of the least-taken class is already in the round, the next
  least-taken class is tried instead of leaving the slot empty (the reference
  leaves it empty); a slot stays empty only when no class can supply a new
  device.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np


def round_size(fraction: float, num_devices: int, min_devices: int = 1) -> int:
    """Return how many devices take part in a round: ``max(min_devices, ceil(C * N))``.

    Capped at ``num_devices``.

    Raises
    ------
    ValueError
        If ``fraction`` is not in ``(0, 1]`` or there are no devices.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if num_devices < 1:
        raise ValueError("there are no devices to sample from")
    # Round away float noise (0.025 * 40 = 1.0000000000000002) before the ceiling.
    wanted = math.ceil(round(fraction * num_devices, 9))
    return min(num_devices, max(int(min_devices), wanted))


def random_sample(rng: np.random.Generator, num_devices: int, size: int) -> list[int]:
    """Draw ``size`` distinct device indices uniformly (FedAvg / FL-VANILLA sampling)."""
    if not 0 <= size <= num_devices:
        raise ValueError(f"cannot draw {size} of {num_devices} devices")
    return [int(i) for i in rng.choice(num_devices, size=size, replace=False)]


class BalancedSampler:
    """FeGAN's balanced sampler (see the module docstring).

    Parameters
    ----------
    class_counts : array-like of int, shape (N, K)
        Samples per class on each device (all rows must be non-negative and
        non-empty; the strategy validates metadata before building this).
    """

    def __init__(self, class_counts: Sequence[Sequence[int]] | np.ndarray) -> None:
        counts = np.asarray(class_counts, dtype=np.int64)
        if counts.ndim != 2 or counts.shape[0] == 0:
            raise ValueError(f"class_counts must be a non-empty (N, K) matrix, got {counts.shape}")
        if (counts < 0).any():
            raise ValueError("class_counts must be non-negative")
        self.counts = counts
        self.taken = np.zeros(counts.shape[1], dtype=np.int64)
        n = counts.shape[0]
        self.queues: list[deque[int]] = [
            deque(i for i in range(n - 1, -1, -1) if counts[i, c] > 0)
            for c in range(counts.shape[1])
        ]

    @property
    def num_devices(self) -> int:
        """Number of devices ``N``."""
        return int(self.counts.shape[0])

    def sample(self, size: int) -> list[int]:
        """Choose up to ``size`` distinct devices for the next round (mutates the state)."""
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        chosen: list[int] = []
        in_round: set[int] = set()
        for _ in range(min(size, self.num_devices)):
            device = self._next_device(in_round)
            if device is None:
                break
            chosen.append(device)
            in_round.add(device)
            self.taken += self.counts[device]
        return chosen

    def _next_device(self, in_round: set[int]) -> int | None:
        # Classes that some device owns, least taken first, lowest index on ties.
        order = sorted((int(self.taken[c]), c) for c, q in enumerate(self.queues) if q)
        for _, c in order:
            queue = self.queues[c]
            for _ in range(len(queue)):
                device = queue.popleft()
                queue.append(device)
                if device not in in_round:
                    return device
        return None

    def state_dict(self) -> dict[str, Any]:
        """Return the sampler's state (plain Python types, for checkpoints)."""
        return {"taken": self.taken.tolist(), "queues": [list(q) for q in self.queues],
                "counts": self.counts.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict`.

        Raises
        ------
        ValueError
            If the state belongs to different devices (other class counts).
        """
        if np.asarray(state["counts"], dtype=np.int64).tolist() != self.counts.tolist():
            raise ValueError("sampler state was saved for different devices / class counts")
        self.taken = np.asarray(state["taken"], dtype=np.int64)
        self.queues = [deque(int(d) for d in q) for q in state["queues"]]
