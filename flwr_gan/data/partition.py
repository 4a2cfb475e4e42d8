"""Split a labelled dataset across clients: iid, FeGAN's non-iid engine, or Dirichlet.

All functions are pure and deterministic for a given ``seed``; they only look at the
label array, so they work for any dataset (e.g. ``load_dataset(...).labels``). The FeGAN
engine lives in :mod:`flwr_gan.data.fegan_engine`, the shared result type and checks in
:mod:`flwr_gan.data.partition_utils`; both are re-exported here.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from flwr_gan.data.fegan_engine import FEGAN_DRAWS, partition_fegan
from flwr_gan.data.partition_utils import (
    Partition,
    build_partition,
    check_int,
    check_labels,
    check_num_clients,
)

__all__ = [
    "FEGAN_DRAWS",
    "PARTITION_SCHEMES",
    "Partition",
    "make_partition",
    "partition_dirichlet",
    "partition_fegan",
    "partition_iid",
]

PARTITION_SCHEMES: tuple[str, ...] = ("iid", "fegan", "dirichlet")


def partition_iid(
    labels: np.ndarray, num_clients: int, *, seed: int = 0, num_classes: int | None = None
) -> Partition:
    """Shuffle all rows and split them into near-equal parts.

    Parameters
    ----------
    labels : numpy.ndarray
        1-D non-negative integer class labels, one per dataset row.
    num_clients : int
        Number of clients, ``1 <= num_clients <= len(labels)``.
    seed : int
        Seed of :func:`numpy.random.default_rng`.
    num_classes : int, optional
        Histogram width; default ``labels.max() + 1``.

    Returns
    -------
    Partition
        Every row assigned exactly once; sizes differ by at most one.

    """
    labels, num_classes = check_labels(labels, num_classes)
    num_clients = check_num_clients(num_clients, len(labels))
    order = np.random.default_rng(seed).permutation(len(labels))
    parts = [np.sort(part) for part in np.array_split(order, num_clients)]
    return build_partition(parts, labels, num_classes, "iid")


def partition_dirichlet(
    labels: np.ndarray,
    num_clients: int,
    *,
    alpha: float,
    seed: int = 0,
    num_classes: int | None = None,
    min_partition_size: int = 1,
) -> Partition:
    """Split each class across clients by Dirichlet(``alpha``) proportions.

    Delegates to :class:`flwr_datasets.partitioner.DirichletPartitioner` (no
    self-balancing, shuffled, seeded) on an in-memory ``datasets.Dataset`` built from
    ``labels``, with ``HF_HUB_OFFLINE=1`` set while it runs (see notes). Small ``alpha``
    gives few classes per client; large ``alpha`` approaches iid.

    Parameters
    ----------
    labels : numpy.ndarray
        1-D non-negative integer class labels, one per dataset row.
    num_clients : int
        Number of clients, ``1 <= num_clients <= len(labels)``.
    alpha : float
        Concentration, ``> 0`` and finite.
    seed : int
        Seed handed to the partitioner.
    num_classes : int, optional
        Histogram width; default ``labels.max() + 1``.
    min_partition_size : int
        Every client gets at least this many rows; flwr-datasets re-draws the
        proportions up to 10 times to satisfy it.

    Returns
    -------
    Partition
        Every row assigned exactly once; ``scheme == "dirichlet"``.

    Raises
    ------
    ValueError
        On invalid parameters, or when ``min_partition_size`` cannot be met.

    Notes
    -----
    ``HF_HUB_OFFLINE`` is set to ``1`` only if unset, and restored afterwards; but
    ``huggingface_hub``/``datasets`` read it once at import, so if this function is the
    first to import them, they stay offline for the rest of the process.

    """
    labels, num_classes = check_labels(labels, num_classes)
    num_clients = check_num_clients(num_clients, len(labels))
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)):
        raise ValueError(f"alpha must be a positive number, got {alpha!r}")
    alpha = float(alpha)
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be positive and finite, got {alpha}")
    min_partition_size = check_int("min_partition_size", min_partition_size)
    if min_partition_size < 0:
        raise ValueError(f"min_partition_size must be >= 0, got {min_partition_size}")
    if min_partition_size * num_clients > len(labels):
        raise ValueError(
            f"min_partition_size={min_partition_size} is impossible: {num_clients} clients "
            f"x {min_partition_size} > {len(labels)} rows"
        )

    with _hf_hub_offline():
        from datasets import Dataset
        from flwr_datasets.partitioner import DirichletPartitioner

        # Arrow format: the partitioner's column reads become zero-copy instead of a
        # Python-level loop over rows.
        table = Dataset.from_dict(
            {"label": labels, "index": np.arange(len(labels), dtype=np.int64)}
        ).with_format("arrow")
        partitioner = DirichletPartitioner(
            num_partitions=num_clients,
            partition_by="label",
            alpha=alpha,
            min_partition_size=min_partition_size,
            self_balancing=False,
            shuffle=True,
            seed=seed,
        )
        partitioner.dataset = table
        with warnings.catch_warnings():
            # It warns on every re-draw; we either succeed or raise a clear error below.
            warnings.filterwarnings("ignore", message="The specified min_partition_size")
            try:
                loaded = [partitioner.load_partition(k) for k in range(num_clients)]
            except ValueError as err:
                raise ValueError(
                    f"Dirichlet partition failed: flwr-datasets could not give each of the "
                    f"{num_clients} clients at least min_partition_size={min_partition_size} "
                    f"rows with alpha={alpha} after its retries. Increase alpha, lower "
                    f"min_partition_size or use fewer clients. ({err})"
                ) from err
        parts = [np.sort(np.asarray(part["index"], dtype=np.int64)) for part in loaded]
    return build_partition(parts, labels, num_classes, "dirichlet")


def make_partition(
    scheme: str,
    labels: np.ndarray,
    num_clients: int,
    *,
    seed: int = 0,
    num_classes: int | None = None,
    **params: Any,
) -> Partition:
    """Dispatch to a partition scheme by name.

    Parameters
    ----------
    scheme : {"iid", "fegan", "dirichlet"}
        Case-insensitive scheme name.
    labels : numpy.ndarray
        1-D non-negative integer class labels.
    num_clients : int
        Number of clients.
    seed : int
        Random seed.
    num_classes : int, optional
        Number of classes; default ``labels.max() + 1``.
    **params
        Scheme parameters: none for ``"iid"``; ``max_class``, ``max_samples`` and
        optionally ``draw`` for ``"fegan"``; ``alpha`` and optionally
        ``min_partition_size`` for
        ``"dirichlet"``.

    Returns
    -------
    Partition
        The partition.

    Raises
    ------
    ValueError
        Unknown scheme, missing or unexpected parameters, or invalid values.

    """
    key = scheme.strip().lower() if isinstance(scheme, str) else scheme
    required: dict[str, set[str]] = {
        "iid": set(),
        "fegan": {"max_class", "max_samples"},
        "dirichlet": {"alpha"},
    }
    optional: dict[str, set[str]] = {"dirichlet": {"min_partition_size"}, "fegan": {"draw"}}
    if key not in required:
        raise ValueError(f"unknown partition scheme {scheme!r}; choose one of {PARTITION_SCHEMES}")
    missing = required[key] - params.keys()
    unexpected = params.keys() - required[key] - optional.get(key, set())
    if missing or unexpected:
        problems = []
        if missing:
            problems.append(f"missing {sorted(missing)}")
        if unexpected:
            problems.append(f"unexpected {sorted(unexpected)}")
        allowed = sorted(required[key] | optional.get(key, set()))
        raise ValueError(
            f"partition scheme {key!r}: {' and '.join(problems)} parameters "
            f"(it takes {allowed if allowed else 'no parameters'})"
        )
    if key == "iid":
        return partition_iid(labels, num_clients, seed=seed, num_classes=num_classes)
    if key == "fegan":
        return partition_fegan(
            labels,
            num_clients,
            max_class=params["max_class"],
            max_samples=params["max_samples"],
            seed=seed,
            num_classes=num_classes,
            draw=params.get("draw", "disjoint"),
        )
    return partition_dirichlet(
        labels,
        num_clients,
        alpha=params["alpha"],
        seed=seed,
        num_classes=num_classes,
        min_partition_size=params.get("min_partition_size", 1),
    )


@contextlib.contextmanager
def _hf_hub_offline() -> Iterator[None]:
    """Set ``HF_HUB_OFFLINE=1`` (if unset) for the duration of the block."""
    previous = os.environ.get("HF_HUB_OFFLINE")
    if previous is None:
        os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
