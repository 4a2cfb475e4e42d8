"""Class coverage: which classes a generator produces, as a classifier sees them.

The cached classifier (:class:`~flwr_gan.metrics.classifier.TrainedClassifier`)
labels each generated image with its most likely class::

    _, probs = classifier.features_and_probs(fake_images)
    coverage = class_coverage(probs.argmax(axis=1), real_labels, num_classes)

and the mix of those labels is compared with the real (held-out) class mix:
total variation, KL divergence, and the list of classes the generator (almost)
never produces. It is the direct read-out of mode collapse that FID, KID and
recall only hint at, and it is as good as the classifier's accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

#: Added to every generated-class fraction (then renormalised) before the KL divergence,
#: so a class the generator never produces costs ``p_real * log(p_real / 1e-6)``
#: (about 1.15 nats for a class holding 10 % of the real images), not infinity.
KL_EPSILON = 1e-6


@dataclass(frozen=True)
class ClassCoverage:
    """How the generated class mix compares with the real one.

    Attributes
    ----------
    fractions : tuple of float
        Per class, the fraction of generated samples the classifier puts in it.
    real_fractions : tuple of float
        Per class, the fraction of real (held-out) samples in it.
    tv : float
        Total variation distance ``0.5 * sum |fractions - real_fractions|``, in
        [0, 1]: 0 for the same mix, 1 for mixes with no class in common.
    kl : float
        ``KL(real || generated)`` in nats, with :data:`KL_EPSILON` added to each
        generated fraction (then renormalised), so a missing class gives a
        large finite value; >= 0.
    missing : tuple of int
        Classes whose generated fraction is below ``missing_below`` times their
        real fraction (classes absent from the real set are never missing).
    """

    fractions: tuple[float, ...]
    real_fractions: tuple[float, ...]
    tv: float
    kl: float
    missing: tuple[int, ...]

    def as_dict(self) -> dict[str, float | list[float] | list[int]]:
        """Return a JSON-friendly dict (tuples become lists)."""
        return {
            "fractions": list(self.fractions),
            "real_fractions": list(self.real_fractions),
            "tv": self.tv,
            "kl": self.kl,
            "missing": list(self.missing),
        }


def _check_num_classes(num_classes: object) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, Integral):
        raise ValueError(f"num_classes must be an integer, got {num_classes!r}.")
    if num_classes < 2:
        raise ValueError(
            f"num_classes must be >= 2 for a class mix to mean anything, got {num_classes}."
        )
    return int(num_classes)


def _check_labels(labels: np.ndarray, num_classes: int, what: str) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(
            f"{what} must be a 1-D array of class indices, got shape {y.shape}; for class "
            "probabilities pass probs.argmax(axis=1)."
        )
    if y.size == 0:
        raise ValueError(f"{what} is empty; pass at least one label.")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"{what} must be integer class indices, got dtype {y.dtype}; for class "
            "probabilities pass probs.argmax(axis=1)."
        )
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"{what} must lie in [0, {num_classes}), found values in [{low}, {high}]; "
            "check num_classes and that the labels come from the right classifier."
        )
    return y.astype(np.int64, copy=False)


def class_mix(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Fraction of labels in each class.

    Parameters
    ----------
    labels : np.ndarray
        1-D integer class indices in ``[0, num_classes)``.
    num_classes : int
        Number of classes, >= 2.

    Returns
    -------
    np.ndarray
        float64 array of shape ``(num_classes,)`` summing to 1.

    Raises
    ------
    ValueError
        If ``labels`` is empty, not 1-D integers, or out of ``[0, num_classes)``,
        or ``num_classes < 2``.
    """
    k = _check_num_classes(num_classes)
    y = _check_labels(labels, k, "labels")
    return np.bincount(y, minlength=k).astype(np.float64) / y.size


def class_coverage(
    fake_labels: np.ndarray, real_labels: np.ndarray, num_classes: int, *,
    missing_below: float = 0.1,
) -> ClassCoverage:
    """Compare the class mix of generated samples with the real one.

    Parameters
    ----------
    fake_labels : np.ndarray
        1-D class indices of generated samples, e.g. the classifier's argmax
        ``TrainedClassifier.features_and_probs(images)[1].argmax(axis=1)``.
    real_labels : np.ndarray
        1-D class indices of the real (held-out) samples.
    num_classes : int
        Number of classes, >= 2.
    missing_below : float
        A class is missing when its generated fraction is below this multiple
        of its real fraction (default 0.1: fewer than a tenth of its share).
        In ``[0, 1]``; 0 never reports a class missing.

    Returns
    -------
    ClassCoverage
        Both mixes, their total variation and KL divergence, and the missing
        classes.

    Raises
    ------
    ValueError
        If a label array is empty, not 1-D integers, or out of
        ``[0, num_classes)``, ``num_classes < 2``, or ``missing_below`` is not
        in ``[0, 1]``.
    """
    k = _check_num_classes(num_classes)
    fake = class_mix(_check_labels(fake_labels, k, "fake_labels"), k)
    real = class_mix(_check_labels(real_labels, k, "real_labels"), k)
    if (isinstance(missing_below, bool) or not isinstance(missing_below, Real)
            or not 0.0 <= float(missing_below) <= 1.0):
        raise ValueError(f"missing_below must be a number in [0, 1], got {missing_below!r}.")
    tv = min(1.0, 0.5 * float(np.abs(fake - real).sum()))
    smoothed = (fake + KL_EPSILON) / (1.0 + k * KL_EPSILON)
    present = real > 0
    kl = float(np.sum(real[present] * np.log(real[present] / smoothed[present])))
    missing = np.flatnonzero(fake < float(missing_below) * real)
    return ClassCoverage(
        fractions=tuple(float(v) for v in fake),
        real_fractions=tuple(float(v) for v in real),
        tv=tv,
        kl=max(0.0, kl),
        missing=tuple(int(c) for c in missing),
    )
