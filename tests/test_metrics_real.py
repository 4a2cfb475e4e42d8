"""The cached classifier and the FID on real data (MNIST, Fashion-MNIST)."""

import numpy as np
import pytest
import torch

from flwr_gan.data import load_dataset
from flwr_gan.metrics import ClassifierFeatures, frechet_distance, load_or_train_classifier
from flwr_gan.metrics.classifier import TRAIN_THREADS, classifier_score, train_classifier


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist", "train"), load_dataset("mnist", "test")


@pytest.fixture(scope="module")
def mnist_classifier(mnist):
    return load_or_train_classifier(*mnist, progress=False)


def test_mnist_classifier_accuracy(mnist, mnist_classifier):
    _, test = mnist
    assert mnist_classifier.test_accuracy >= 0.98
    # the recorded accuracy is the real one
    acc = mnist_classifier.accuracy(test.to_tensor(np.arange(2000)), test.labels[:2000])
    assert acc >= 0.98


def test_fashion_classifier_accuracy():
    train, test = load_dataset("fashion-mnist", "train"), load_dataset("fashion-mnist", "test")
    clf = load_or_train_classifier(train, test, progress=False)
    assert clf.test_accuracy >= 0.88


def test_fid_sanity_on_real_data(mnist, mnist_classifier):
    train, test = mnist
    fashion = load_dataset("fashion-mnist", "test")
    feats = ClassifierFeatures(mnist_classifier)
    rng = np.random.default_rng(0)
    f_train = feats(train.to_tensor(np.sort(rng.choice(len(train), 2000, replace=False))))
    # random subsets: the official test set is ordered by writer group
    f_test = feats(test.to_tensor(np.sort(rng.choice(len(test), 2000, replace=False))))
    f_fashion = feats(fashion.to_tensor(np.sort(rng.choice(len(fashion), 2000, replace=False))))
    assert frechet_distance(f_test, f_test) == pytest.approx(0.0, abs=1e-3)
    same_domain = frechet_distance(f_train, f_test)
    other_domain = frechet_distance(f_test, f_fashion)
    assert same_domain < 15.0
    assert other_domain > 30 * same_domain


def test_real_digits_score_high_and_noise_scores_low(mnist, mnist_classifier):
    _, test = mnist
    _, probs = mnist_classifier.features_and_probs(test.to_tensor(np.arange(2000)))
    assert classifier_score(probs) > 9.0  # 10 balanced, confidently recognised classes
    noise = torch.rand(500, 1, 28, 28) * 2 - 1
    _, noise_probs = mnist_classifier.features_and_probs(noise)
    assert classifier_score(noise_probs) < 3.0


def test_corrupt_classifier_cache_is_replaced(tmp_path, mnist, caplog):
    train, test = mnist
    small_train = train.subset(np.arange(3000))
    small_test = test.subset(np.arange(500))
    first = load_or_train_classifier(small_train, small_test, cache_dir=tmp_path, epochs=1,
                                     progress=False)
    assert first.path is not None and first.path.exists()
    again = load_or_train_classifier(small_train, small_test, cache_dir=tmp_path,
                                     progress=False)
    assert again.test_accuracy == first.test_accuracy  # loaded, not retrained
    first.path.write_bytes(b"not a checkpoint")
    with caplog.at_level("WARNING"):
        fixed = load_or_train_classifier(small_train, small_test, cache_dir=tmp_path, epochs=1,
                                         progress=False)
    assert "unusable" in caplog.text
    assert fixed.test_accuracy > 0.5


def test_classifier_weights_do_not_depend_on_the_callers_threads_or_seed(mnist):
    # CPU kernels split sums by thread: a classifier trained under the caller's
    # thread count differed between tests (and machines), and so did every FID
    train, test = mnist
    small_train, small_test = train.subset(np.arange(1024)), test.subset(np.arange(200))
    weights = []
    for threads, seed in ((1, 7), (TRAIN_THREADS + 1, 99)):
        torch.set_num_threads(threads)
        torch.manual_seed(seed)
        clf = train_classifier(small_train, small_test, epochs=1, progress=False)
        assert torch.get_num_threads() == threads  # restored
        weights.append(clf.model.state_dict())
    torch.set_num_threads(1)
    for name, value in weights[0].items():
        assert torch.equal(value, weights[1][name]), name


def test_classifier_training_leaves_the_global_random_stream_alone(mnist):
    train, test = mnist
    small_train, small_test = train.subset(np.arange(256)), test.subset(np.arange(50))
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    train_classifier(small_train, small_test, epochs=1, progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_classifier_rejects_wrong_image_shape(mnist_classifier):
    with pytest.raises(ValueError, match="expects images of shape"):
        mnist_classifier.features_and_probs(torch.zeros(2, 3, 32, 32))
