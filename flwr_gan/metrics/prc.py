"""Improved precision and recall on any ``(N, D)`` feature arrays.

Kynkäänniemi et al. (2019), "Improved Precision and Recall Metric for
Assessing Generative Models": each set's manifold is the union of balls
around its samples, each ball reaching the sample's k-th nearest neighbour in
the same set. **Precision** is the fraction of generated samples inside the
real manifold (are the samples realistic?); **recall** is the fraction of real
samples inside the generated manifold (is the real variety covered?). A
mode-collapsed generator keeps a high precision and loses recall.

The maths is torch-fidelity's (``torch_fidelity.metric_prc``); this module
validates the inputs and returns a typed result. Values are only comparable
within one feature space and at the same sample counts (larger sets give
tighter balls).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from flwr_gan.metrics.kid import check_feature_pair, check_int

#: Above this many pairwise distances in one matrix, distances are computed in row
#: blocks of ``_BLOCK_ROWS`` (torch-fidelity's ``save_cpu_ram``): same result, less memory.
_FULL_MATRIX_LIMIT = 4000 * 4000
_BLOCK_ROWS = 1000


@dataclass(frozen=True)
class PrecisionRecall:
    """Improved precision and recall.

    Attributes
    ----------
    precision : float
        Fraction of generated samples inside the real k-NN manifold, in [0, 1].
    recall : float
        Fraction of real samples inside the generated k-NN manifold, in [0, 1].
    neighborhood : int
        The ``k`` of the k-th nearest neighbour that sets each ball's radius.
    """

    precision: float
    recall: float
    neighborhood: int

    def as_dict(self) -> dict[str, float | int]:
        """Return a JSON-friendly dict with the same keys as the attributes."""
        return asdict(self)


def precision_recall(
    fake: np.ndarray, real: np.ndarray, *, neighborhood: int = 3
) -> PrecisionRecall:
    """Improved precision and recall of generated against real features.

    Calls torch-fidelity's ``prc_features_to_metric`` (generated first, real
    second) on float64 tensors. Distances are Euclidean; a point on a ball's
    boundary counts as inside. Both values are exact fractions of the sample
    counts (torch-fidelity's float32 mean is rounded back to ``count / N``).

    Parameters
    ----------
    fake, real : np.ndarray
        ``(N, D)`` and ``(M, D)`` features of generated and real images.
    neighborhood : int
        ``k`` of the k-nearest-neighbour balls (the paper's default: 3). Must
        be smaller than ``N`` and ``M``: a sample's k-th neighbour is another
        sample of the same set.

    Returns
    -------
    PrecisionRecall
        Precision, recall and the ``k`` used.

    Raises
    ------
    ValueError
        If a side has fewer than 2 samples, the feature dimensions differ, a
        feature is NaN or infinite, ``neighborhood < 1``, or ``neighborhood``
        is not smaller than the number of samples on each side.

    Notes
    -----
    Cost: O((N + M)^2 D) time for the pairwise distances; memory O((N + M)^2)
    up to 4,000 samples per side, row blocks of 1,000 beyond.
    """
    # Imported here: torch_fidelity pulls in torchvision and more (~2 s on first import).
    from torch_fidelity.metric_prc import (
        KEY_METRIC_PRECISION,
        KEY_METRIC_RECALL,
        prc_features_to_metric,
    )

    f_fake, f_real = check_feature_pair(fake, real, metric="precision/recall")
    k = check_int(neighborhood, "precision/recall neighborhood", minimum=1)
    n_fake, n_real = f_fake.shape[0], f_real.shape[0]
    if k >= min(n_fake, n_real):
        raise ValueError(
            f"precision/recall: neighborhood k={k} must be smaller than the number of "
            f"samples on each side (fake {n_fake}, real {n_real}); lower the neighborhood "
            "or pass more samples."
        )
    blocked = max(n_fake, n_real) ** 2 > _FULL_MATRIX_LIMIT
    out = prc_features_to_metric(
        torch.from_numpy(f_fake), torch.from_numpy(f_real),
        prc_neighborhood=k, prc_batch_size=_BLOCK_ROWS if blocked else 10000,
        save_cpu_ram=blocked, verbose=False,
    )
    # torch-fidelity averages in float32; both values are counts over a sample size.
    return PrecisionRecall(
        precision=round(float(out[KEY_METRIC_PRECISION]) * n_fake) / n_fake,
        recall=round(float(out[KEY_METRIC_RECALL]) * n_real) / n_real,
        neighborhood=k,
    )
