"""Fréchet distance between feature sets, and a generator evaluator.

The distance itself is pytorch-fid's ``calculate_frechet_distance``; what
changes between backends is the feature extractor
(:mod:`flwr_gan.metrics.classifier` or :mod:`flwr_gan.metrics.inception`).
Every number reports which extractor produced it.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from pytorch_fid.fid_score import calculate_frechet_distance
from scipy.linalg import LinAlgWarning
from torch import nn

from flwr_gan.metrics.classifier import TrainedClassifier, classifier_score
from flwr_gan.metrics.features import FeatureExtractor

if TYPE_CHECKING:
    from flwr_gan.data import ImageDataset


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


@dataclass(frozen=True)
class EvalResult:
    """One evaluation of a generator.

    Attributes
    ----------
    fid : float
        Fréchet distance to the held-out real images.
    score : float or None
        Classifier score (Inception-Score formula), when a classifier is set.
    extractor : str
        Name of the feature extractor that produced ``fid``.
    n_fake, n_real : int
        Sample counts on each side.
    """

    fid: float
    score: float | None
    extractor: str
    n_fake: int
    n_real: int

    def as_dict(self) -> dict[str, float | int | str | None]:
        """Return a JSON-friendly dict."""
        return asdict(self)


class GeneratorEvaluator:
    """Scores generators against a fixed held-out real set.

    Real features are computed once; each call draws ``n_fake`` samples from
    a fixed latent seed, so curves over rounds compare like with like.

    Parameters
    ----------
    real_images : torch.Tensor
        Held-out real images in ``[-1, 1]``, ``(N, C, H, W)``.
    extractor : FeatureExtractor
        Features for the Fréchet distance.
    classifier : TrainedClassifier, optional
        Gives the classifier score when set.
    n_fake : int
        Generated samples per evaluation (default 2,000).
    seed : int
        Latent seed of the evaluation samples.
    batch_size : int
        Generation batch size.
    """

    def __init__(
        self, real_images: torch.Tensor, extractor: FeatureExtractor, *,
        classifier: TrainedClassifier | None = None, n_fake: int = 2000, seed: int = 12345,
        batch_size: int = 500,
    ) -> None:
        if n_fake < 2:
            raise ValueError(f"n_fake must be >= 2, got {n_fake}")
        self.extractor = extractor
        self.classifier = classifier
        self.n_fake = n_fake
        self.seed = seed
        self.batch_size = batch_size
        self.n_real = int(real_images.size(0))
        self.real_features = extractor(real_images)

    @classmethod
    def for_dataset(
        cls, train: ImageDataset, test: ImageDataset, *, backend: str = "classifier",
        n_real: int = 2000, n_fake: int = 2000, seed: int = 12345,
        cache_dir: str | None = None, progress: bool = True,
    ) -> GeneratorEvaluator:
        """Build the default evaluator of a data set.

        Parameters
        ----------
        train, test : ImageDataset
            The classifier is trained on ``train`` (once, cached); real
            statistics come from the first ``n_real`` images of a fixed
            shuffle of ``test``.
        backend : str
            ``"classifier"`` (fast, per round) or ``"inception"`` (pytorch-fid
            InceptionV3 pool3; needs ``flwr-gan fid-weights`` once).
        """
        from flwr_gan.metrics.classifier import ClassifierFeatures, load_or_train_classifier

        if n_real < 2 or n_real > len(test):
            raise ValueError(f"n_real must be in [2, {len(test)}], got {n_real}")
        clf = load_or_train_classifier(train, test, cache_dir=cache_dir, progress=progress)
        order = np.random.default_rng(seed).permutation(len(test))[:n_real]
        real = test.to_tensor(np.sort(order))
        extractor: FeatureExtractor
        if backend == "classifier":
            extractor = ClassifierFeatures(clf)
        elif backend == "inception":
            from flwr_gan.metrics.inception import InceptionFeatures

            extractor = InceptionFeatures()
        else:
            raise ValueError(f"Unknown FID backend {backend!r}: use 'classifier' or 'inception'.")
        return cls(real, extractor, classifier=clf, n_fake=n_fake, seed=seed)

    @torch.no_grad()
    def samples(self, generator: nn.Module) -> torch.Tensor:
        """Draw the evaluation samples (eval mode, fixed latent seed)."""
        was_training = generator.training
        generator.eval()
        try:
            device = next(generator.parameters()).device
            rng = torch.Generator().manual_seed(self.seed)
            out = []
            for start in range(0, self.n_fake, self.batch_size):
                n = min(self.batch_size, self.n_fake - start)
                z = torch.randn(n, int(generator.latent_dim), generator=rng)  # type: ignore[arg-type]
                out.append(generator(z.to(device)).cpu())
            return torch.cat(out)
        finally:
            generator.train(was_training)

    def evaluate(self, generator: nn.Module) -> EvalResult:
        """Return FID (and classifier score) of ``generator``'s samples."""
        return self.evaluate_with_samples(generator)[0]

    def evaluate_with_samples(self, generator: nn.Module) -> tuple[EvalResult, torch.Tensor]:
        """Return the evaluation and the samples it scored (e.g. for a sample grid)."""
        fake = self.samples(generator)
        if not torch.isfinite(fake).all():
            raise ValueError("The generator produced NaN/inf samples: it has diverged.")
        fid = frechet_distance(self.extractor(fake), self.real_features)
        score = None
        if self.classifier is not None:
            score = classifier_score(self.classifier.features_and_probs(fake)[1])
        return EvalResult(fid, score, self.extractor.name, self.n_fake, self.n_real), fake
