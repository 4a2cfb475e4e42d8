"""Generator evaluation: Fréchet distances on classifier or Inception features, scores."""

from flwr_gan.metrics.classifier import (
    Classifier,
    ClassifierFeatures,
    TrainedClassifier,
    classifier_score,
    load_or_train_classifier,
    train_classifier,
)
from flwr_gan.metrics.features import FeatureExtractor
from flwr_gan.metrics.fid import (
    EvalResult,
    GeneratorEvaluator,
    feature_statistics,
    frechet_distance,
)

__all__ = [
    "Classifier",
    "ClassifierFeatures",
    "EvalResult",
    "FeatureExtractor",
    "GeneratorEvaluator",
    "TrainedClassifier",
    "classifier_score",
    "feature_statistics",
    "frechet_distance",
    "load_or_train_classifier",
    "train_classifier",
]
