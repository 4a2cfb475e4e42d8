"""The feature-extractor contract shared by every FID backend."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch


class FeatureExtractor(Protocol):
    """Maps images to feature vectors for the Fréchet distance.

    Attributes
    ----------
    name : str
        Human-readable identifier written next to every FID it produces,
        e.g. ``"classifier:mnist"`` or ``"inception-v3-pool3"``.
    """

    name: str

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        """Return float64 features of shape ``(N, D)``.

        Parameters
        ----------
        images : torch.Tensor
            Float images in ``[-1, 1]``, shape ``(N, C, H, W)``, any resolution
            and 1 or 3 channels (the extractor resizes / converts as it needs).
        """
        ...
