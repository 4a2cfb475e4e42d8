"""Scoring a generator: FID, KID, precision / recall and class coverage in one pass.

One :class:`GeneratorEvaluator` holds the held-out real set's features (computed
once) and scores generators against it. Each evaluation draws ``n_fake`` samples
per latent seed (``seeds`` fixed seeds, the same at every round, so curves compare
like with like), extracts their features once, and computes on those features:

* **FID** (:mod:`flwr_gan.metrics.fid`), the mean over latent seeds and its spread;
* **KID** (:mod:`flwr_gan.metrics.kid`), unbiased, mean and std over subsets;
* **precision and recall** (:mod:`flwr_gan.metrics.prc`, Kynkäänniemi et al. 2019);
* **class coverage** (:mod:`flwr_gan.metrics.coverage`): the classifier's class
  mix of the samples against the real one, and the classes the generator drops;
* the **classifier score** (the Inception-Score formula with the classifier).

The generator's batch-norm layers can be used three ways (``mode``): ``eval``
(its running statistics: for federated families, the device-averaged ones),
``train`` (the statistics of each evaluation batch) or ``recalibrate`` (running
statistics re-estimated on fresh latents before scoring, on a copy).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from flwr_gan.metrics.classifier import ClassifierFeatures, TrainedClassifier, classifier_score
from flwr_gan.metrics.coverage import class_coverage
from flwr_gan.metrics.features import FeatureExtractor
from flwr_gan.metrics.fid import frechet_distance
from flwr_gan.metrics.kid import kernel_inception_distance
from flwr_gan.metrics.prc import precision_recall

if TYPE_CHECKING:
    from flwr_gan.data import ImageDataset

#: How the generator's batch norm is used while sampling (see the module docstring).
EVAL_MODES = ("eval", "train", "recalibrate")
#: Latent batches (of ``batch_size``) that re-estimate running statistics in ``recalibrate``.
RECALIBRATION_BATCHES = 10


@dataclass(frozen=True)
class EvalResult:
    """One evaluation of a generator.

    Attributes
    ----------
    fid : float
        Fréchet distance to the held-out real images, mean over latent seeds.
    score : float or None
        Classifier score (Inception-Score formula), when a classifier is set.
    extractor : str
        Name of the feature extractor that produced the distances.
    n_fake, n_real : int
        Sample counts on each side (per seed for ``n_fake``).
    fid_seed_std : float
        Standard deviation of FID over latent seeds (population, ddof 0; 0 with one seed).
    kid, kid_std : float or None
        KID (mean over subsets and seeds) and its standard deviation over subsets.
    precision, recall : float or None
        Improved precision and recall, mean over seeds.
    class_fractions : list of float or None
        Fraction of samples the classifier puts in each class.
    class_tv : float or None
        Total-variation distance between that mix and the real one.
    classes_missing : list of int or None
        Classes the generator (almost) never produces.
    seeds : int
        Latent seeds averaged over.
    mode : str
        How batch norm was used (:data:`EVAL_MODES`).
    eval_s : float
        Seconds the evaluation took (sampling included).
    fids : list of float
        FID of each latent seed.
    extractor_id : str or None
        Digest of the feature extractor's weights, when they can differ between
        installations (the cached classifier).
    """

    fid: float
    score: float | None
    extractor: str
    n_fake: int
    n_real: int
    fid_seed_std: float = 0.0
    kid: float | None = None
    kid_std: float | None = None
    precision: float | None = None
    recall: float | None = None
    class_fractions: list[float] | None = None
    class_tv: float | None = None
    classes_missing: list[int] | None = None
    seeds: int = 1
    mode: str = "eval"
    eval_s: float = 0.0
    fids: list[float] = field(default_factory=list)
    extractor_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly dict."""
        return asdict(self)

    def record(self) -> dict[str, Any]:
        """Return the fields a ``metrics.jsonl`` record carries (no per-run constants)."""
        out = {k: v for k, v in self.as_dict().items()
               if k not in ("n_fake", "n_real", "seeds", "mode", "fids") and v is not None}
        return out


class GeneratorEvaluator:
    """Scores generators against a fixed held-out real set.

    Parameters
    ----------
    real_images : torch.Tensor
        Held-out real images in ``[-1, 1]``, ``(N, C, H, W)``.
    extractor : FeatureExtractor
        Features for FID, KID and precision / recall.
    classifier : TrainedClassifier, optional
        Gives the classifier score and class coverage when set.
    real_labels : numpy.ndarray, optional
        Labels of ``real_images``: the real class mix for coverage (else uniform).
    n_fake : int
        Generated samples per seed and evaluation (default 2,000).
    seed : int
        First latent seed; seed ``seed + i`` gives the i-th sample set.
    seeds : int
        Latent seeds to average FID and KID over (default 1).
    mode : str
        Batch-norm use while sampling, one of :data:`EVAL_MODES`.
    batch_size : int
        Generation batch size.
    kid_subsets : int
        KID subsets (default 100, the KID paper's).
    kid_subset_size : int, optional
        Samples per side in a KID subset; default ``min(1000, n / 2)`` for the
        smaller side ``n``, so that subsets differ and ``kid_std`` means something.
    """

    def __init__(
        self, real_images: torch.Tensor, extractor: FeatureExtractor, *,
        classifier: TrainedClassifier | None = None, real_labels: np.ndarray | None = None,
        n_fake: int = 2000, seed: int = 12345, seeds: int = 1, mode: str = "eval",
        batch_size: int = 500, kid_subsets: int = 100, kid_subset_size: int | None = None,
    ) -> None:
        if n_fake < 2:
            raise ValueError(f"n_fake must be >= 2, got {n_fake}")
        if seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {seeds}")
        if mode not in EVAL_MODES:
            raise ValueError(f"mode must be one of {', '.join(EVAL_MODES)}, got {mode!r}")
        self.extractor = extractor
        self.classifier = classifier
        self.n_fake, self.seed, self.seeds, self.mode = n_fake, seed, seeds, mode
        self.batch_size = batch_size
        self.n_real = int(real_images.size(0))
        self.kid_subsets = kid_subsets
        self.kid_subset_size = kid_subset_size or max(2, min(1000, min(n_fake, self.n_real) // 2))
        self.real_features = extractor(real_images)
        self.real_labels = None if real_labels is None else np.asarray(real_labels)
        # the classifier backend's features come with the class probabilities in one pass
        self._shared = isinstance(extractor, ClassifierFeatures) and (
            classifier is None or extractor.classifier is classifier)

    @classmethod
    def for_dataset(
        cls, train: ImageDataset, test: ImageDataset, *, backend: str = "classifier",
        n_real: int = 2000, n_fake: int = 2000, seed: int = 12345, seeds: int = 1,
        mode: str = "eval", cache_dir: str | None = None, progress: bool = True,
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
        from flwr_gan.metrics.classifier import load_or_train_classifier

        if n_real < 2 or n_real > len(test):
            raise ValueError(f"n_real must be in [2, {len(test)}], got {n_real}")
        clf = load_or_train_classifier(train, test, cache_dir=cache_dir, progress=progress)
        order = np.sort(np.random.default_rng(seed).permutation(len(test))[:n_real])
        real = test.to_tensor(order)
        extractor: FeatureExtractor
        if backend == "classifier":
            extractor = ClassifierFeatures(clf)
        elif backend == "inception":
            from flwr_gan.metrics.inception import InceptionFeatures

            extractor = InceptionFeatures()
        else:
            raise ValueError(f"Unknown FID backend {backend!r}: use 'classifier' or 'inception'.")
        return cls(real, extractor, classifier=clf, real_labels=test.labels[order],
                   n_fake=n_fake, seed=seed, seeds=seeds, mode=mode)

    @torch.no_grad()
    def samples(self, generator: nn.Module, seed_index: int = 0) -> torch.Tensor:
        """Draw the evaluation samples of latent seed ``seed + seed_index``."""
        with self._sampling(generator) as gen:
            return self._draw(gen, self.seed + seed_index, self.n_fake)

    def _draw(self, gen: nn.Module, seed: int, n: int) -> torch.Tensor:
        device = next(gen.parameters()).device
        rng = torch.Generator().manual_seed(seed)
        out = []
        for start in range(0, n, self.batch_size):
            z = torch.randn(min(self.batch_size, n - start), int(gen.latent_dim),  # type: ignore[arg-type]
                            generator=rng)
            out.append(gen(z.to(device)).cpu())
        return torch.cat(out)

    @contextmanager
    def _sampling(self, generator: nn.Module) -> Iterator[nn.Module]:
        """Yield the generator set up for sampling in :attr:`mode`; restore it after."""
        if self.mode == "recalibrate":
            gen = copy.deepcopy(generator)
            for m in gen.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.reset_running_stats()
                    m.momentum = None  # a cumulative average over the recalibration batches
            gen.train()
            self._draw(gen, self.seed - 1, RECALIBRATION_BATCHES * self.batch_size)
            gen.eval()
            yield gen
            return
        was_training = generator.training
        generator.train(self.mode == "train")
        saved = _bn_buffers(generator) if self.mode == "train" else None
        try:
            yield generator
        finally:
            if saved is not None:  # train-mode sampling must not move the running stats
                _restore_bn_buffers(generator, saved)
            generator.train(was_training)

    def evaluate(self, generator: nn.Module) -> EvalResult:
        """Return the scores of ``generator``'s samples."""
        return self.evaluate_with_samples(generator)[0]

    @torch.no_grad()
    def evaluate_with_samples(self, generator: nn.Module) -> tuple[EvalResult, torch.Tensor]:
        """Return the evaluation and the first seed's samples (e.g. for a sample grid)."""
        started = time.perf_counter()
        fids, kids, kid_stds, precs, recs, scores, labels = [], [], [], [], [], [], []
        first: torch.Tensor | None = None
        with self._sampling(generator) as gen:
            for i in range(self.seeds):
                fake = self._draw(gen, self.seed + i, self.n_fake)
                if not torch.isfinite(fake).all():
                    raise ValueError("The generator produced NaN/inf samples: it has diverged.")
                first = fake if first is None else first
                probs = None
                if self._shared:
                    feats, probs = self.extractor.classifier.features_and_probs(fake)  # type: ignore[attr-defined]
                else:
                    feats = self.extractor(fake)
                    if self.classifier is not None:
                        probs = self.classifier.features_and_probs(fake)[1]
                fids.append(frechet_distance(feats, self.real_features))
                kid = kernel_inception_distance(feats, self.real_features,
                                                subsets=self.kid_subsets,
                                                subset_size=self.kid_subset_size, seed=i)
                kids.append(kid.mean)
                kid_stds.append(kid.std)
                pr = precision_recall(feats, self.real_features)
                precs.append(pr.precision)
                recs.append(pr.recall)
                if probs is not None:
                    scores.append(classifier_score(probs))
                    labels.append(probs.argmax(axis=1))
        assert first is not None
        coverage = None
        if labels and self.classifier is not None:
            k = int(self.classifier.model.num_classes)
            real = self.real_labels if self.real_labels is not None else np.arange(k)
            coverage = class_coverage(np.concatenate(labels), real, k)
        result = EvalResult(
            fid=float(np.mean(fids)), score=float(np.mean(scores)) if scores else None,
            extractor=self.extractor.name, n_fake=self.n_fake, n_real=self.n_real,
            fid_seed_std=float(np.std(fids)), kid=float(np.mean(kids)),
            # pooled over seeds: the subsets' spread plus the seeds' spread
            kid_std=float(np.sqrt(np.mean(np.square(kid_stds)) + np.var(kids))),
            precision=float(np.mean(precs)), recall=float(np.mean(recs)),
            class_fractions=None if coverage is None else list(coverage.fractions),
            class_tv=None if coverage is None else coverage.tv,
            classes_missing=None if coverage is None else list(coverage.missing),
            seeds=self.seeds, mode=self.mode, eval_s=time.perf_counter() - started,
            fids=[float(f) for f in fids],
            extractor_id=getattr(self.extractor, "weights_id", None))
        return result, first


def _bn_buffers(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: buf.clone() for name, buf in module.named_buffers()}


def _restore_bn_buffers(module: nn.Module, saved: dict[str, torch.Tensor]) -> None:
    for name, buf in module.named_buffers():
        buf.copy_(saved[name])
