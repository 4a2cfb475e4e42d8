"""Gossip GAN's pure rules: who sends to whom, how models are averaged, what it costs.

Everything here follows the Gossiping GANs slides (Hardy, Le Merrer,
Sericola, DIDL 2018) and knows nothing of Flower:

* :func:`choose_peers` — every K local iterations each worker sends its model
  to a uniformly random *other* worker. Variants (slides, "The different
  communications setups"): ``ddl`` (G_i and D_i travel together, to one peer),
  ``ddl_ind`` (G_i and D_i go to independently chosen peers) and ``isolated``
  (the "stand-alone" competitor: no communication at all).
* :func:`average_states` — a worker averages its own model with every model it
  received in that exchange, all with equal weight.
* :func:`p2p_bytes_per_worker`, :func:`fl_bytes_per_worker`,
  :func:`allreduce_bytes_per_worker`, :func:`relayed_bytes` — the slides'
  "Summary" table of communication per worker, plus the cost of relaying a
  payload through a server (Flower clients cannot talk to each other), which
  crosses the network twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

VARIANTS = ("ddl", "ddl_ind", "isolated")


@dataclass(frozen=True)
class PeerChoice:
    """The receivers of one exchange, by worker position.

    Attributes
    ----------
    generator : tuple of int
        ``generator[i]`` is the worker that receives worker ``i``'s generator.
        Empty when nothing is exchanged (``isolated``, or fewer than 2 workers).
    discriminator : tuple of int
        Same for the discriminators.
    """

    generator: tuple[int, ...]
    discriminator: tuple[int, ...]

    @property
    def exchanges(self) -> bool:
        """Whether any model moves in this exchange."""
        return bool(self.generator or self.discriminator)


def random_others(n: int, rng: np.random.Generator) -> tuple[int, ...]:
    """Draw, for each of ``n`` workers, a uniformly random other worker.

    Worker ``i`` draws ``j`` uniformly from ``{0, ..., n-2}`` and skips itself
    (``j >= i`` maps to ``j + 1``), so every other worker has probability
    ``1 / (n - 1)`` and no worker ever draws itself.

    Raises
    ------
    ValueError
        If ``n < 2`` (there is no other worker).
    """
    if n < 2:
        raise ValueError(f"need at least 2 workers to choose a peer, got {n}")
    draws = rng.integers(0, n - 1, size=n)
    return tuple(int(j) + int(j >= i) for i, j in enumerate(draws))


def choose_peers(n: int, rng: np.random.Generator, variant: str) -> PeerChoice:
    """Choose who receives each worker's generator and discriminator.

    Parameters
    ----------
    n : int
        Number of live workers (positions ``0..n-1``, in device-key order).
    rng : numpy.random.Generator
        The run's peer stream (consumed only when something is exchanged).
    variant : str
        ``ddl``: one peer per worker gets both networks; ``ddl_ind``: the
        generator's and the discriminator's peers are drawn independently;
        ``isolated``: no exchange.

    Returns
    -------
    PeerChoice
        Empty for ``isolated`` or ``n < 2``.

    Raises
    ------
    ValueError
        For an unknown variant or a negative ``n``.
    """
    if variant not in VARIANTS:
        raise ValueError(f"--variant must be one of {VARIANTS}, got {variant!r}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if variant == "isolated" or n < 2:
        return PeerChoice((), ())
    g_peers = random_others(n, rng)
    d_peers = g_peers if variant == "ddl" else random_others(n, rng)
    return PeerChoice(g_peers, d_peers)


def average_states(states: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Average state dicts with equal weights (the worker's own first, then received ones).

    Floating arrays are averaged in float64 and cast back to their dtype;
    integer arrays (BatchNorm's ``num_batches_tracked``) are averaged and
    rounded to the nearest integer.

    Raises
    ------
    ValueError
        With no state, or when keys or shapes differ between states.
    """
    if not states:
        raise ValueError("nothing to average")
    first = states[0]
    for k, other in enumerate(states[1:], start=1):
        if set(other) != set(first):
            missing = sorted(set(first) ^ set(other))[:3]
            raise ValueError(f"state {k} has different keys than state 0 (e.g. {missing})")
    out: dict[str, np.ndarray] = {}
    for key, ref in first.items():
        ref_arr = np.asarray(ref)
        stack = [np.asarray(s[key]) for s in states]
        if any(a.shape != ref_arr.shape for a in stack):
            raise ValueError(f"{key}: shapes differ between the averaged states")
        mean = np.asarray(np.mean(np.stack([a.astype(np.float64) for a in stack]), axis=0))
        if ref_arr.dtype.kind in "iub":
            mean = np.rint(mean)
        out[key] = np.asarray(mean.astype(ref_arr.dtype))
    return out


def p2p_bytes_per_worker(g_bytes: int, d_bytes: int) -> int:
    """Bytes one worker sends per exchange in a peer-to-peer deployment: ``|G| + |D|``.

    Both gossip variants send each network once (``ddl_ind`` to two peers).
    """
    return int(g_bytes) + int(d_bytes)


def fl_bytes_per_worker(g_bytes: int, d_bytes: int) -> int:
    """Bytes per worker per round of federated learning: ``2 (|G| + |D|)`` (down and up)."""
    return 2 * (int(g_bytes) + int(d_bytes))


def allreduce_bytes_per_worker(n: int, g_bytes: int, d_bytes: int) -> int:
    """Bytes per worker of an all-reduce without parameter server: ``N (|G| + |D|)``."""
    return int(n) * (int(g_bytes) + int(d_bytes))


def relayed_bytes(payload_bytes: int) -> int:
    """Network bytes of a payload relayed by the server: sender -> server -> receiver."""
    return 2 * int(payload_bytes)


__all__ = ["VARIANTS", "PeerChoice", "allreduce_bytes_per_worker", "average_states",
           "choose_peers", "fl_bytes_per_worker", "p2p_bytes_per_worker", "random_others",
           "relayed_bytes"]
