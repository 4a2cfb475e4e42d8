"""A small classifier trained once on the real training set and cached.

It gives the cheap per-round metrics that Inception cannot give on a CPU:

* **classifier FID**: the Fréchet distance in the classifier's penultimate
  feature space (the MD-GAN paper's FID for MNIST), and
* **classifier score**: the Inception-Score formula
  ``exp(E_x KL(p(y|x) || p(y)))`` with this classifier (the MD-GAN paper's
  "MNIST score"); 1 for a collapsed generator, up to the number of classes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from flwr_gan.data import ImageDataset

log = logging.getLogger(__name__)

#: Bump when the architecture or training recipe changes: old caches are ignored.
#: Version 2: trained with a fixed torch thread count (:data:`TRAIN_THREADS`); version 1
#: took the caller's count, so two machines (or two tests) could cache different weights.
CLASSIFIER_VERSION = 2
#: Torch threads the classifier trains with, whatever the caller set: CPU kernels split
#: their sums by thread, so the weights (and every FID measured with them) depend on it.
TRAIN_THREADS = 2
FEATURE_DIM = 128


class Classifier(nn.Module):
    """Three 3x3 conv layers (two strided, for CPU speed) and a 128-unit feature layer.

    Parameters
    ----------
    image_shape : tuple of int
        ``(C, H, W)`` with ``H`` and ``W`` divisible by 4.
    num_classes : int
        Number of output classes.
    """

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        c, h, w = image_shape
        self.image_shape = image_shape
        self.num_classes = num_classes
        self.conv = nn.Sequential(
            nn.Conv2d(c, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            nn.Flatten(),
        )
        self.features = nn.Sequential(
            nn.Linear(64 * (h // 4) * (w // 4), FEATURE_DIM), nn.ReLU(inplace=True)
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(FEATURE_DIM, num_classes))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Return the penultimate features, shape ``(N, 128)``."""
        return self.features(self.conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits."""
        return self.head(self.embed(x))


@dataclass
class TrainedClassifier:
    """A trained classifier and what is known about it.

    Attributes
    ----------
    model : Classifier
        The network, in eval mode.
    dataset : str
        Name of the data set it was trained on.
    test_accuracy : float
        Accuracy on the held-out test split.
    path : Path or None
        Cache file it was loaded from / saved to.
    """

    model: Classifier
    dataset: str
    test_accuracy: float
    path: Path | None = None

    @torch.no_grad()
    def _run(self, images: torch.Tensor, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
        self.model.eval()
        feats, probs = [], []
        for start in range(0, images.size(0), batch_size):
            x = _match_channels(images[start:start + batch_size].float(), self.model.image_shape)
            emb = self.model.embed(x)
            feats.append(emb.double().numpy())
            probs.append(F.softmax(self.model.head(emb), dim=1).double().numpy())
        if not feats:
            return np.zeros((0, FEATURE_DIM)), np.zeros((0, self.model.num_classes))
        return np.concatenate(feats), np.concatenate(probs)

    def features_and_probs(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Return penultimate features ``(N, 128)`` and class probabilities ``(N, K)``."""
        return self._run(images)

    def accuracy(self, images: torch.Tensor, labels: np.ndarray) -> float:
        """Return the accuracy on ``images`` (floats in ``[-1, 1]``)."""
        _, probs = self._run(images)
        return float(np.mean(probs.argmax(axis=1) == np.asarray(labels)))


class ClassifierFeatures:
    """:class:`~flwr_gan.metrics.features.FeatureExtractor` backed by a trained classifier."""

    def __init__(self, classifier: TrainedClassifier) -> None:
        self.classifier = classifier
        self.name = f"classifier:{classifier.dataset}"
        #: Which trained weights: two trainings of the classifier (another machine, another
        #: thread count) give slightly different features, so FIDs are comparable only
        #: between runs scored by the same weights.
        self.weights_id = weights_digest(classifier.model)

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        """Return the classifier's penultimate features of ``images``."""
        return self.classifier.features_and_probs(images)[0]


def weights_digest(model: nn.Module) -> str:
    """Return a short digest of a model's parameters and buffers (its identity)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def _match_channels(x: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    if tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(
            f"The classifier expects images of shape {shape}, got {tuple(x.shape[1:])}."
        )
    return x


def classifier_score(probs: np.ndarray, eps: float = 1e-12) -> float:
    """Inception-Score formula on class probabilities.

    ``exp(mean_x KL(p(y|x) || p(y)))`` with ``p(y)`` the mean of ``p(y|x)``.

    Parameters
    ----------
    probs : np.ndarray
        ``(N, K)`` rows of class probabilities.

    Returns
    -------
    float
        Between 1 (every sample has the same prediction) and ``K``
        (confident predictions spread evenly over the classes).
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0:
        raise ValueError(f"probs must be a non-empty (N, K) array, got shape {p.shape}")
    marginal = p.mean(axis=0, keepdims=True)
    kl = np.sum(p * (np.log(p + eps) - np.log(marginal + eps)), axis=1)
    return float(np.exp(kl.mean()))


def train_classifier(
    train: ImageDataset, test: ImageDataset, *, epochs: int = 3, batch_size: int = 128,
    lr: float = 1e-3, seed: int = 0, progress: bool = True,
) -> TrainedClassifier:
    """Train a :class:`Classifier` on ``train`` and measure it on ``test``.

    Uses Adam with a cosine learning-rate decay and light augmentation
    (random 2-pixel shifts) to generalise well in a few CPU epochs. Training
    runs on :data:`TRAIN_THREADS` torch threads and its own random stream, so
    the weights are the same whatever thread count or seed the caller has set
    (both are restored afterwards).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return _train(train, test, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                          progress=progress)
    finally:
        torch.set_num_threads(threads)


def _train(
    train: ImageDataset, test: ImageDataset, *, epochs: int, batch_size: int, lr: float,
    seed: int, progress: bool,
) -> TrainedClassifier:
    model = Classifier(train.image_shape, train.num_classes)
    x = train.to_tensor()
    y = torch.as_tensor(train.labels, dtype=torch.long)
    steps_per_epoch = max(1, x.size(0) // batch_size)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr * 3, total_steps=epochs * steps_per_epoch
    )
    gen = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(x.size(0), generator=gen)
        iterator = range(steps_per_epoch)
        if progress and sys.stderr.isatty():  # a bar on a terminal only: no frames in logs
            from tqdm.auto import tqdm

            iterator = tqdm(iterator, desc=f"classifier {train.name} epoch {epoch + 1}/{epochs}",
                            leave=False)
        for i in iterator:
            idx = order[i * batch_size:(i + 1) * batch_size]
            xb = _random_shift(x[idx], gen)
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    trained = TrainedClassifier(model, train.name, 0.0)
    trained.test_accuracy = trained.accuracy(test.to_tensor(), test.labels)
    log.info("Trained %s classifier in %.0f s: test accuracy %.4f",
             train.name, time.perf_counter() - started, trained.test_accuracy)
    return trained


def _random_shift(x: torch.Tensor, gen: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    dx, dy = (int(v) for v in torch.randint(0, 2 * max_shift + 1, (2,), generator=gen))
    return padded[:, :, dy:dy + x.size(2), dx:dx + x.size(3)]


def dataset_fingerprint(dataset: ImageDataset) -> str:
    """Return a short hash of a data set's images and labels (cache key)."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(dataset.images).tobytes())
    h.update(np.ascontiguousarray(dataset.labels).tobytes())
    return h.hexdigest()[:16]


def load_or_train_classifier(
    train: ImageDataset, test: ImageDataset, *, cache_dir: str | Path | None = None,
    epochs: int = 3, progress: bool = True,
) -> TrainedClassifier:
    """Return the cached classifier for ``train``, training and caching it if needed.

    The cache file (``<cache>/classifiers/<name>-<fingerprint>-v<version>.pt``)
    is keyed by the data's content, so a different data set never reuses a
    classifier. A cache file that cannot be read or does not match is reported
    and replaced by a freshly trained one.
    """
    from flwr_gan.data import default_cache_dir

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    fingerprint = dataset_fingerprint(train)
    path = root / "classifiers" / f"{train.name}-{fingerprint}-v{CLASSIFIER_VERSION}.pt"
    if path.exists():
        try:
            return _load(path, train)
        except (RuntimeError, ValueError, KeyError, OSError, EOFError,
                pickle.UnpicklingError) as err:
            log.warning("Classifier cache %s is unusable (%s); retraining it.", path, err)
    if progress:
        print(f"Training the {train.name} classifier for FID once ({epochs} epochs, about a "
              f"minute on 2 cores); it is cached in {path.parent}", file=sys.stderr, flush=True)
    trained = train_classifier(train, test, epochs=epochs, progress=progress)
    if progress:
        print(f"Classifier trained: test accuracy {trained.test_accuracy:.2%}", file=sys.stderr,
              flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"state_dict": trained.model.state_dict(), "meta": {
        "dataset": train.name, "image_shape": list(train.image_shape),
        "num_classes": train.num_classes, "test_accuracy": trained.test_accuracy,
        "version": CLASSIFIER_VERSION, "fingerprint": fingerprint, "epochs": epochs,
        "threads": TRAIN_THREADS,
    }}, tmp)
    os.replace(tmp, path)
    trained.path = path
    return trained


def _load(path: Path, train: ImageDataset) -> TrainedClassifier:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    meta = blob["meta"]
    if meta.get("version") != CLASSIFIER_VERSION or tuple(meta["image_shape"]) != tuple(
        train.image_shape
    ) or int(meta["num_classes"]) != train.num_classes:
        raise ValueError(f"metadata does not match: {json.dumps(meta)}")
    model = Classifier(train.image_shape, train.num_classes)
    model.load_state_dict(blob["state_dict"])
    model.eval()
    return TrainedClassifier(model, str(meta["dataset"]), float(meta["test_accuracy"]), path)
