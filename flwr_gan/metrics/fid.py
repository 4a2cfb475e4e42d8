"""Fréchet distance between feature sets.

The distance itself is pytorch-fid's ``calculate_frechet_distance``; what
changes between backends is the feature extractor
(:mod:`flwr_gan.metrics.classifier` or :mod:`flwr_gan.metrics.inception`).
:mod:`flwr_gan.metrics.evaluator` scores generators with it.
"""

from __future__ import annotations

import warnings

import numpy as np
from pytorch_fid.fid_score import calculate_frechet_distance
from scipy.linalg import LinAlgWarning


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the mean and covariance of ``(N, D)`` features.

    Raises
    ------
    ValueError
        With fewer than 2 samples, or non-finite features.
    """
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"Need an (N, D) feature array with N >= 2, got shape {f.shape}")
    if not np.all(np.isfinite(f)):
        raise ValueError("Features contain NaN or infinite values (is the generator diverged?)")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets.

    Parameters
    ----------
    features_a, features_b : np.ndarray
        ``(N, D)`` and ``(M, D)`` feature arrays.

    Returns
    -------
    float
        ``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))``, >= 0.
    """
    mu_a, s_a = feature_statistics(features_a)
    mu_b, s_b = feature_statistics(features_b)
    if mu_a.shape != mu_b.shape:
        raise ValueError(f"Feature dimensions differ: {mu_a.shape[0]} vs {mu_b.shape[0]}")
    with warnings.catch_warnings():
        # Dead feature units make covariances singular; pytorch-fid then retries sqrtm
        # with a small diagonal offset itself, so scipy's warning is only noise here.
        warnings.simplefilter("ignore", LinAlgWarning)
        warnings.filterwarnings("ignore", message="The `disp` argument",
                                category=DeprecationWarning)
        return max(0.0, float(calculate_frechet_distance(mu_a, s_a, mu_b, s_b)))
