"""The privacy budget of a DP run, from Flower's own RDP accountant.

:class:`PrivacyLedger` feeds Flower's
:class:`~flwr.supercore.privacy_accounting.rdp_accountant.RdpAccountant` (a thin
layer over Google's ``dp-accounting``; ``flwr[dp]``) one Gaussian release per
aggregated round, under the accounting model Flower's own fixed-clipping
wrappers support: client-level, *add-or-remove-one* neighbours, *no sampling
amplification* (FeGAN's sampling is not random, and FL-GAN's fixed-size sample
is not claimed either, see ``docs/privacy.md``).

What is accounted per round is what the server actually did:

* the update release: Gaussian noise of standard deviation ``noise_std`` added
  to the average of ``k`` updates each clipped to L2 norm ``C``; with the
  aggregation weights ``w`` (normalised) the average moves by at most
  ``max(w) * C`` when one device's update changes, so the release's noise
  multiplier is ``noise_std / (max(w) * C)`` (``z * k / m`` for Flower's
  ``z * C / m`` noise over ``k`` of ``m`` sampled updates). The accountant
  models the average with *fixed* weights, so only *uniform* weights are
  accounted: an examples- or KL-weighted round (weights that depend on the
  devices' data) voids the budget for the rest of the run;
* the adaptive modes' clipped-update count, released with Gaussian noise of
  standard deviation ``count_stddev``: each device changes the count by at most
  1 (Flower counts 0/1 bits, not Andrew et al.'s centred bits), so it is a
  second Gaussian release with noise multiplier ``count_stddev``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flwr.supercore.privacy_accounting import (
    GaussianPrivacyEvent,
    NeighboringRelation,
    PrivacyConfig,
    SamplingMethod,
)
from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

#: Relative spread of weights still accounted as uniform.
UNIFORM_TOLERANCE = 1e-9


class PrivacyLedger:
    """Cumulative (epsilon, delta) of a run's private releases.

    Parameters
    ----------
    delta : float
        The delta at which epsilon is reported.
    population : int
        Devices in the federation (the accountant's population size).
    """

    def __init__(self, delta: float, population: int) -> None:
        self.delta = float(delta)
        self.population = int(population)
        self.config = PrivacyConfig(
            target_delta=self.delta, population_size=self.population,
            neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
            sampling_method=SamplingMethod.NO_AMPLIFICATION,
        )
        self.accountant = RdpAccountant(self.config)
        #: Rounds whose aggregate was released (and accounted).
        self.releases = 0
        #: Why the budget is no longer reported (``None`` while it is).
        self.void: str | None = None

    def release(self, *, noise_std: float, clipping_norm: float, weights: list[float],
                count_stddev: float | None = None) -> float | None:
        """Account one aggregated round; return the noise multiplier accounted.

        Parameters
        ----------
        noise_std : float
            Standard deviation of the Gaussian noise added to the average.
        clipping_norm : float
            L2 norm every averaged update was clipped to.
        weights : list of float
            Aggregation weights of the averaged updates (empty: nothing released).
        count_stddev : float, optional
            Noise of the clipped-update count (adaptive clipping only).

        Returns
        -------
        float or None
            The update release's noise multiplier, or ``None`` when nothing
            was accounted (no update, or the budget is void).
        """
        if not weights or self.void is not None:
            return None
        w = np.asarray(weights, dtype=np.float64)
        w = w / w.sum()
        if w.max() - w.min() > UNIFORM_TOLERANCE * w.max():
            self.void = (f"round {self.releases + 1} averaged with non-uniform weights "
                         f"(max {w.max():.3g} vs 1/{len(w)}): the noise is calibrated for an "
                         "unweighted mean, no budget is reported")
            return None
        if noise_std <= 0:
            self.void = "a round was released without noise"
            return None
        multiplier = float(noise_std / (w.max() * clipping_norm))
        sample = min(len(w), self.population)
        self.accountant.compose(GaussianPrivacyEvent(multiplier, sample, self.population))
        if count_stddev is not None:
            if count_stddev <= 0:
                self.void = "the clipped-update count was released without noise"
                return None
            self.accountant.compose(
                GaussianPrivacyEvent(float(count_stddev), sample, self.population))
        self.releases += 1
        return multiplier

    def epsilon(self) -> float | None:
        """Return epsilon at :attr:`delta` so far (``None``: void or nothing released)."""
        if self.void is not None or self.releases == 0:
            return None
        return float(self.accountant.get_epsilon(self.delta))

    def state_dict(self) -> dict[str, Any]:
        """Plain-Python state for checkpoints."""
        return {"accountant": self.accountant.state_dict(), "releases": self.releases,
                "void": self.void}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (same delta and population)."""
        self.accountant.load_state_dict(dict(state["accountant"]))
        self.releases = int(state["releases"])
        self.void = state.get("void")


__all__ = ["PrivacyLedger", "UNIFORM_TOLERANCE"]
