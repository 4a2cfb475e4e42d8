"""Split a labelled dataset across clients: iid, FeGAN's non-iid engine, or Dirichlet.

All functions are pure and deterministic for a given ``seed``; they only look at the
label array, so they work for any dataset (e.g. ``load_dataset(...).labels``).
"""

from __future__ import annotations

import contextlib
import math
import operator
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

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
#: How the FeGAN engine draws a device's samples of a class (see :func:`partition_fegan`).
FEGAN_DRAWS: tuple[str, ...] = ("disjoint", "shared")


@dataclass(frozen=True, eq=False, repr=False)
class Partition:
    """An assignment of dataset rows to clients.

    Parameters
    ----------
    indices : tuple of numpy.ndarray
        Per client, sorted ``int64`` row indices into the dataset. No row appears in
        two clients, except with the FeGAN engine's ``shared`` draw; schemes may leave
        rows unassigned (``"fegan"`` does).
    histograms : numpy.ndarray
        ``int64`` array of shape ``(num_clients, num_classes)``: per-client class counts.
    scheme : str
        ``"iid"``, ``"fegan"`` or ``"dirichlet"``.

    """

    indices: tuple[np.ndarray, ...]
    histograms: np.ndarray
    scheme: str

    @property
    def num_clients(self) -> int:
        """Number of clients."""
        return len(self.indices)

    @property
    def sizes(self) -> np.ndarray:
        """Number of samples per client, ``int64`` of shape ``(num_clients,)``."""
        return np.array([len(i) for i in self.indices], dtype=np.int64)

    def __repr__(self) -> str:
        sizes = self.sizes
        return (
            f"Partition(scheme={self.scheme!r}, num_clients={self.num_clients}, "
            f"num_classes={self.histograms.shape[1]}, total={int(sizes.sum())}, "
            f"sizes=[{int(sizes.min())}..{int(sizes.max())}])"
        )


# ----------------------------------------------------------------------------------------
# Schemes
# ----------------------------------------------------------------------------------------


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
    labels, num_classes = _check_labels(labels, num_classes)
    num_clients = _check_num_clients(num_clients, len(labels))
    order = np.random.default_rng(seed).permutation(len(labels))
    parts = [np.sort(part) for part in np.array_split(order, num_clients)]
    return _make(parts, labels, num_classes, "iid")


def partition_fegan(
    labels: np.ndarray,
    num_clients: int,
    *,
    max_class: int,
    max_samples: int,
    seed: int = 0,
    num_classes: int | None = None,
    draw: str = "disjoint",
) -> Partition:
    r"""Non-iid split by the FeGAN paper's engine (Guerraoui et al., Middleware 2020, §4).

    Devices are numbered :math:`i = 1, \dots, n` (``n = num_clients``; client ``k`` of
    the result is device ``i = k + 1``) and processed in that order. Device ``i`` draws

    * :math:`r_c \sim U\{1, \dots, \max(1, \lfloor \text{max\_class} \cdot i / n \rfloor)\}`
      distinct classes uniformly at random among all ``num_classes`` classes, and
    * for each chosen class independently,
      :math:`r_s \sim U\{1, \dots, \max(1, \lfloor \min(i^2,
      \text{max\_samples} \cdot i / n) \rfloor)\}` samples of that class, drawn
      uniformly without replacement from

      - ``draw="shared"`` (the paper's text: every device draws from the whole data
        set, independently of the others): all the class's rows, so two devices may
        hold the same image; a class with fewer than :math:`r_s` rows gives them all;
      - ``draw="disjoint"``: the class's rows no earlier device took, so no row is
        given to two devices; if fewer than :math:`r_s` are left the device takes what
        is left (possibly nothing; the class still counts as drawn).

    So later devices hold more classes and more samples. Rows nobody draws stay
    unassigned (the engine does not cover the data set). The disjoint draw runs out of
    rows when ``num_clients * max_class * max_samples`` is large against the data set
    (the paper's Table 1 settings on MNIST's ten classes); the shared draw never does.

    If any device ends with no rows at all (only possible with ``disjoint``, or a class
    absent from ``labels``), a :class:`ValueError` names those devices instead of
    returning empty clients.

    The FeGAN reference code (``LPD-EPFL/FeGAN``, ``datasets.py``) differs in details:
    its class count is deterministic (``int(rank * 200 / workers) + 1``, capped at the
    number of classes), its per-class caps use ``randint(1, rank**2)`` with a
    ``magic_num`` limit, each worker takes the *first* matching samples in dataset order,
    and workers may share samples (as in ``shared``, but every worker holding a class
    starts from the same rows). We follow the paper's description instead.

    Parameters
    ----------
    labels : numpy.ndarray
        1-D non-negative integer class labels, one per dataset row.
    num_clients : int
        Number of devices ``n``, ``1 <= n <= len(labels)``.
    max_class : int
        Maximum number of classes on any device, ``1 <= max_class <= num_classes``.
    max_samples : int
        Maximum number of samples per class on any device, ``>= 1``.
    seed : int
        Seed of :func:`numpy.random.default_rng`.
    num_classes : int, optional
        Number of classes; default ``labels.max() + 1``.
    draw : {"disjoint", "shared"}
        Whether devices may share rows (above).

    Returns
    -------
    Partition
        ``scheme == "fegan"``.

    Raises
    ------
    ValueError
        On invalid parameters, or when some device would receive no sample.

    """
    labels, num_classes = _check_labels(labels, num_classes)
    n = _check_num_clients(num_clients, len(labels))
    max_class = _check_int("max_class", max_class)
    max_samples = _check_int("max_samples", max_samples)
    if not 1 <= max_class <= num_classes:
        raise ValueError(f"max_class must be in [1, num_classes={num_classes}], got {max_class}")
    if max_samples < 1:
        raise ValueError(f"max_samples must be >= 1, got {max_samples}")
    if draw not in FEGAN_DRAWS:
        raise ValueError(f"draw must be one of {FEGAN_DRAWS}, got {draw!r}")
    shared = draw == "shared"

    rng = np.random.default_rng(seed)
    # Shuffling each class once and consuming it front to back is the same as drawing
    # without replacement from the not-yet-assigned rows.
    pools = [rng.permutation(np.flatnonzero(labels == c)) for c in range(num_classes)]
    used = [0] * num_classes
    parts: list[np.ndarray] = []
    for i in range(1, n + 1):
        class_cap = max(1, (max_class * i) // n)
        sample_cap = max(1, min(i * i, (max_samples * i) // n))
        num_drawn = int(rng.integers(1, class_cap + 1))
        chunks = []
        for c in rng.choice(num_classes, size=num_drawn, replace=False):
            take = int(rng.integers(1, sample_cap + 1))
            if shared:
                chunks.append(rng.choice(pools[c], size=min(take, len(pools[c])),
                                         replace=False))
                continue
            start = used[c]
            stop = min(start + take, len(pools[c]))
            chunks.append(pools[c][start:stop])
            used[c] = stop
        parts.append(np.sort(np.concatenate(chunks)))

    empty = [k + 1 for k, part in enumerate(parts) if part.size == 0]
    if empty:
        shown = ", ".join(map(str, empty[:10])) + (", ..." if len(empty) > 10 else "")
        raise ValueError(
            f"FeGAN partition left {len(empty)} of {n} devices without samples (devices "
            f"i = {shown}): the classes they drew were already used up by earlier devices. "
            f"Use the paper's shared draw (--fegan-draw shared: devices may hold the same "
            f"images), lower max_samples (now {max_samples}) or num_clients, or use a larger "
            f"dataset: the engine requests roughly max_class * max_samples * "
            f"num_clients / 12 = {max_class * max_samples * n // 12} rows in total, "
            f"the labels have {len(labels)}."
        )
    return _make(parts, labels, num_classes, "fegan")


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
    labels, num_classes = _check_labels(labels, num_classes)
    num_clients = _check_num_clients(num_clients, len(labels))
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)):
        raise ValueError(f"alpha must be a positive number, got {alpha!r}")
    alpha = float(alpha)
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be positive and finite, got {alpha}")
    min_partition_size = _check_int("min_partition_size", min_partition_size)
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
    return _make(parts, labels, num_classes, "dirichlet")


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


# ----------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------


def _check_int(name: str, value: Any) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def _check_labels(labels: Any, num_classes: int | None) -> tuple[np.ndarray, int]:
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {array.shape}")
    if array.size == 0:
        raise ValueError("labels is empty")
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {array.dtype}")
    if array.min() < 0:
        raise ValueError(f"labels must be >= 0, found {array.min()}")
    top = int(array.max())
    if num_classes is None:
        return array.astype(np.int64), top + 1
    num_classes = _check_int("num_classes", num_classes)
    if num_classes <= top:
        raise ValueError(f"num_classes={num_classes} but labels go up to {top}")
    return array.astype(np.int64), num_classes


def _check_num_clients(num_clients: Any, num_rows: int) -> int:
    count = _check_int("num_clients", num_clients)
    if not 1 <= count <= num_rows:
        raise ValueError(f"num_clients must be in [1, len(labels)={num_rows}], got {count}")
    return count


def _make(parts: list[np.ndarray], labels: np.ndarray, num_classes: int, scheme: str) -> Partition:
    indices = tuple(np.asarray(p, dtype=np.int64) for p in parts)
    histograms = np.stack([np.bincount(labels[p], minlength=num_classes) for p in indices]).astype(
        np.int64
    )
    return Partition(indices=indices, histograms=histograms, scheme=scheme)


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
