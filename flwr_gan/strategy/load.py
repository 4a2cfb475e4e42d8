"""Per-device training load from reported capabilities (FeGAN paper §3.4).

Devices report ``memory-mb`` (memory available for training) and
``compute-speed`` (relative compute power, any unit, the same for all
devices). The server assigns every device a batch size ``B_k`` and a number of
local steps ``E_k`` with a linear rule, fixed for the whole run:

* the *reference* capability is the median over all devices of each quantity;
  a device at or above it gets the full load;
* below it, the load scales linearly with the ratio, and never drops under
  ``min_fraction`` of the full value (the paper: weak devices got "up to half"
  of ``B`` and ``E``, so ``min_fraction = 0.5``)::

      B_k = clamp(round(B * memory_k / median(memory)), ceil(min_fraction * B), B)
      E_k = clamp(round(E * speed_k  / median(speed)),  ceil(min_fraction * E), E)

A device that reports nothing (or a non-positive value) is treated as a
reference device. The aggregation weight of a device is then multiplied by
the load it really trained on, :meth:`Load.processed`: ``min(B_k, n_k) * E_k``
images per discriminator step, ``n_k`` being its data size. A device holding
fewer images than its batch trains on its whole set at every step (see
:func:`flwr_gan.core.training.infinite_batches`), so counting it at ``B_k``
would overweight it (20 images counted as 50); the FeGAN paper says "load",
the reference code weights by the assigned batch size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Capabilities:
    """What a device says about itself.

    Attributes
    ----------
    memory_mb : float
        Memory available for training (0 = unknown).
    compute_speed : float
        Relative compute power (0 = unknown).
    """

    memory_mb: float = 0.0
    compute_speed: float = 0.0


@dataclass(frozen=True)
class Load:
    """A device's assigned training load.

    Attributes
    ----------
    batch_size : int
        ``B_k``.
    local_steps : int
        ``E_k``.
    """

    batch_size: int
    local_steps: int

    @property
    def units(self) -> int:
        """``B_k * E_k``: the assigned load."""
        return self.batch_size * self.local_steps

    def processed(self, num_examples: int) -> int:
        """``min(B_k, n_k) * E_k``: the images a device with ``n_k`` images trains on.

        The weight factor of the device's update (per discriminator step).
        """
        return min(self.batch_size, max(int(num_examples), 0)) * self.local_steps


def _scaled(full: int, value: float, reference: float, min_fraction: float) -> int:
    if not (value > 0 and reference > 0 and math.isfinite(value)):
        return full
    floor = max(1, math.ceil(min_fraction * full))
    return int(min(full, max(floor, round(full * value / reference))))


def assign_loads(capabilities: Sequence[Capabilities], *, batch_size: int, local_steps: int,
                 min_fraction: float = 0.5) -> list[Load]:
    """Assign every device its ``(B_k, E_k)`` by the rule in the module docstring.

    Parameters
    ----------
    capabilities : sequence of Capabilities
        One entry per device.
    batch_size, local_steps : int
        The full load ``B`` and ``E`` (paper defaults 50 and 30).
    min_fraction : float
        Lowest fraction of ``B`` and ``E`` a device gets, in ``(0, 1]``.
    """
    if batch_size < 1 or local_steps < 1:
        raise ValueError("batch_size and local_steps must be >= 1")
    if not 0.0 < min_fraction <= 1.0:
        raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction}")

    def median(values: list[float]) -> float:
        known = [v for v in values if v > 0 and math.isfinite(v)]
        return float(np.median(known)) if known else 0.0

    ref_mem = median([c.memory_mb for c in capabilities])
    ref_speed = median([c.compute_speed for c in capabilities])
    return [
        Load(_scaled(batch_size, c.memory_mb, ref_mem, min_fraction),
             _scaled(local_steps, c.compute_speed, ref_speed, min_fraction))
        for c in capabilities
    ]
