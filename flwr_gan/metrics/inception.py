"""Offline Inception-v3 (pool3) features for FID, compatible with pytorch-fid.

:class:`InceptionFeatures` runs pytorch-fid's unmodified FID ``InceptionV3`` on
weights found offline. The weights come from :mod:`flwr_gan.metrics.inception_weights`
(where they live, ``flwr-gan fid-weights``, verification), converted from the
TorchScript port described in :mod:`flwr_gan.metrics.inception_port`; the names
of both are re-exported here. Only pool3 features (FID) are valid from the
converted weights: their ``fc`` layer is NaN, so logits / Inception Score are not.

See ``docs/fid-weights.md`` for the user-facing description.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from flwr_gan.metrics.inception_port import (
    FID_HELPER_SHA1,
    INSTALL_HINT,
    find_fid_helper_model,
)
from flwr_gan.metrics.inception_weights import (
    POOL3_DIM,
    WEIGHTS_FILENAME,
    add_cli_arguments,
    convert_fid_helper_weights,
    default_weights_path,
    inception_weights_available,
    load_pool3_model,
    run_cli,
    verify_weights,
)

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
        self.model = load_pool3_model(self.weights).to(self.device, memory_format=memory_format)

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
            return np.zeros((0, POOL3_DIM), dtype=np.float64)
        return np.concatenate(chunks, axis=0)
