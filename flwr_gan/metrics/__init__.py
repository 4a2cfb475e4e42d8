"""Generator evaluation: FID, KID, precision / recall, class coverage and scores."""

from flwr_gan.metrics.classifier import (
    Classifier,
    ClassifierFeatures,
    TrainedClassifier,
    classifier_score,
    load_or_train_classifier,
    train_classifier,
)
from flwr_gan.metrics.coverage import ClassCoverage, class_coverage, class_mix
from flwr_gan.metrics.evaluator import EVAL_MODES, EvalResult, GeneratorEvaluator
from flwr_gan.metrics.features import FeatureExtractor
from flwr_gan.metrics.fid import feature_statistics, frechet_distance
from flwr_gan.metrics.kid import KIDResult, kernel_inception_distance
from flwr_gan.metrics.prc import PrecisionRecall, precision_recall

__all__ = [
    "Classifier",
    "ClassifierFeatures",
    "ClassCoverage",
    "EVAL_MODES",
    "EvalResult",
    "FeatureExtractor",
    "GeneratorEvaluator",
    "KIDResult",
    "PrecisionRecall",
    "TrainedClassifier",
    "class_coverage",
    "class_mix",
    "classifier_score",
    "feature_statistics",
    "frechet_distance",
    "kernel_inception_distance",
    "load_or_train_classifier",
    "precision_recall",
    "train_classifier",
]
