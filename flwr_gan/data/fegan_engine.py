"""The FeGAN paper's non-iid distribution engine (Guerraoui et al., Middleware 2020, §4)."""

from __future__ import annotations

import numpy as np

from flwr_gan.data.partition_utils import (
    Partition,
    build_partition,
    check_int,
    check_labels,
    check_num_clients,
)

__all__ = ["FEGAN_DRAWS", "partition_fegan"]

#: How the FeGAN engine draws a device's samples of a class (see :func:`partition_fegan`).
FEGAN_DRAWS: tuple[str, ...] = ("disjoint", "shared")


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
    labels, num_classes = check_labels(labels, num_classes)
    n = check_num_clients(num_clients, len(labels))
    max_class = check_int("max_class", max_class)
    max_samples = check_int("max_samples", max_samples)
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
    return build_partition(parts, labels, num_classes, "fegan")
