"""What every partition scheme shares: the :class:`Partition` result and input checks.

Kept apart from the schemes (as Flower keeps ``strategy_utils.py`` apart from its
strategies) so that :mod:`flwr_gan.data.partition` and :mod:`flwr_gan.data.fegan_engine`
both build on it without importing each other.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Partition", "build_partition", "check_int", "check_labels", "check_num_clients"]


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


def check_int(name: str, value: Any) -> int:
    """Return ``value`` as an ``int``, or raise :class:`ValueError` naming ``name``."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def check_labels(labels: Any, num_classes: int | None) -> tuple[np.ndarray, int]:
    """Validate 1-D non-negative integer labels; return them as ``int64`` and the class count."""
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
    num_classes = check_int("num_classes", num_classes)
    if num_classes <= top:
        raise ValueError(f"num_classes={num_classes} but labels go up to {top}")
    return array.astype(np.int64), num_classes


def check_num_clients(num_clients: Any, num_rows: int) -> int:
    """Validate ``1 <= num_clients <= num_rows``."""
    count = check_int("num_clients", num_clients)
    if not 1 <= count <= num_rows:
        raise ValueError(f"num_clients must be in [1, len(labels)={num_rows}], got {count}")
    return count


def build_partition(
    parts: list[np.ndarray], labels: np.ndarray, num_classes: int, scheme: str
) -> Partition:
    """Wrap per-client row indices as a :class:`Partition` with its class histograms."""
    indices = tuple(np.asarray(p, dtype=np.int64) for p in parts)
    histograms = np.stack([np.bincount(labels[p], minlength=num_classes) for p in indices]).astype(
        np.int64
    )
    return Partition(indices=indices, histograms=histograms, scheme=scheme)
