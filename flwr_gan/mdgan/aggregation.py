"""Checking and aggregating MD-GAN error feedback.

Every feedback a worker sends is validated (:func:`check_feedback`) before it
touches the generator: a wrong shape, a wrong dtype or a NaN / infinite value
excludes that worker's feedback from the update (it is reported, never
applied). Accepted feedbacks are turned into one generator update by
:func:`generator_update`:

``mean`` (the paper)
    ``Δw = 1/N Σ_n Σ_i e_ni ∂x_i/∂w``: each worker's feedback is the gradient
    of its batch-mean generator loss (so it already holds the paper's
    ``1/b``), the feedbacks on a shared batch are summed, divided by the
    number ``N`` of accepted workers, and back-propagated through G in ONE
    backward pass (:func:`flwr_gan.core.training.apply_feedback`). This is exactly
    the gradient of the average of the workers' generator losses.
``median`` / ``trimmed-mean`` (paper §VII-3, byzantine robustness)
    Each worker's feedback is back-propagated separately into a per-worker
    generator gradient; the update is their coordinate-wise median or
    trimmed mean (Flower's ``FedMedian`` / ``FedTrimmedAvg`` rules, applied to
    gradients). With honest workers and no trimming it equals ``mean``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from flwr.serverapp.strategy.fedtrimmedavg import trim_mean
from torch import nn

from flwr_gan.core.training import apply_feedback
from flwr_gan.runtime.records import InvalidUpdateError

AGGREGATIONS = ("mean", "median", "trimmed-mean")


class InvalidFeedbackError(InvalidUpdateError):
    """A worker's feedback that must not be applied (wrong shape, NaN, ...)."""


def check_feedback(values: np.ndarray, expected_shape: Sequence[int], *, worker: str) -> None:
    """Validate one worker's feedback before it may touch the generator.

    Parameters
    ----------
    values : np.ndarray
        The feedback as received.
    expected_shape : sequence of int
        ``(b, C, H, W)`` of the batch the worker was given as ``X_g``.
    worker : str
        Names the worker in the error message.

    Raises
    ------
    InvalidFeedbackError
        If the shape differs, the values are not floating point, or any value
        is NaN or infinite.
    """
    if tuple(values.shape) != tuple(expected_shape):
        raise InvalidFeedbackError(
            f"{worker}: feedback has shape {tuple(values.shape)}, expected "
            f"{tuple(expected_shape)} (the shape of the X_g batch it was sent)."
        )
    if values.dtype.kind != "f":
        raise InvalidFeedbackError(f"{worker}: feedback has dtype {values.dtype}, expected float.")
    bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
    if bad:
        raise InvalidFeedbackError(f"{worker}: feedback holds {bad} NaN or infinite value(s).")


@dataclass(frozen=True)
class Feedback:
    """One accepted feedback, located in the batches it answers.

    Attributes
    ----------
    worker : int
        Flower node id of the worker.
    wave : int
        Index of the generation wave (the latent block) in ``waves`` of
        :func:`generator_update`.
    batch : int
        Index of the worker's ``X_g`` batch within that wave.
    values : torch.Tensor
        ``dL_G/dx`` on that batch, shape ``(b, C, H, W)``.
    """

    worker: int
    wave: int
    batch: int
    values: torch.Tensor


def _combined(
    waves: Sequence[torch.Tensor], batch_size: int, sample_shape: tuple[int, ...],
    feedbacks: Sequence[Feedback], scale: float,
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Concatenate the waves' latents and place (summed, scaled) feedback on their rows."""
    offsets = [0]
    for z in waves:
        offsets.append(offsets[-1] + int(z.size(0)))
    z_all = torch.cat(list(waves))
    grad = torch.zeros((z_all.size(0), *sample_shape), dtype=torch.float32, device=z_all.device)
    for fb in feedbacks:
        start = offsets[fb.wave] + fb.batch * batch_size
        grad[start:start + batch_size] += fb.values.to(grad.device, torch.float32) * scale
    return z_all, grad, offsets


def generator_update(
    generator: nn.Module, optimizer: torch.optim.Optimizer, waves: Sequence[torch.Tensor],
    batch_size: int, feedbacks: Sequence[Feedback], *, method: str = "mean",
    trim_fraction: float = 0.2,
) -> None:
    """Back-propagate accepted feedback through the generator and step once.

    Parameters
    ----------
    generator : nn.Module
        The server's generator, in the mode it generated the batches with.
    optimizer : torch.optim.Optimizer
        Its optimizer (Adam).
    waves : sequence of torch.Tensor
        The latent blocks the batches were generated from; wave ``j`` holds
        ``kappa_j * batch_size`` rows, batch ``k`` being rows
        ``[k b, (k+1) b)``. All waves are regenerated in one forward pass (in
        synchronous MD-GAN there is exactly one wave, generated the same way,
        so the gradient is exact).
    batch_size : int
        ``b``.
    feedbacks : sequence of Feedback
        The accepted feedbacks (at least one).
    method : str
        ``mean``, ``median`` or ``trimmed-mean`` (module docstring).
    trim_fraction : float
        Fraction cut from EACH end per coordinate for ``trimmed-mean``.

    Raises
    ------
    ValueError
        With no feedback, an unknown method, or a bad trim fraction.
    """
    if not feedbacks:
        raise ValueError("no feedback to apply")
    if method not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {method!r}: choose one of {AGGREGATIONS}")
    sample_shape = tuple(feedbacks[0].values.shape[1:])
    n = len(feedbacks)
    if method == "mean":
        z_all, grad, _ = _combined(waves, batch_size, sample_shape, feedbacks, 1.0 / n)
        apply_feedback(generator, optimizer, z_all, grad)
        return
    if method == "trimmed-mean" and not 0.0 <= trim_fraction < 0.5:
        raise ValueError(f"trim fraction must be in [0, 0.5), got {trim_fraction}")
    params = [p for p in generator.parameters() if p.requires_grad]
    optimizer.zero_grad(set_to_none=True)
    z_all, _, _ = _combined(waves, batch_size, sample_shape, [], 0.0)
    x = generator(z_all)
    per_worker: list[list[np.ndarray]] = []
    for i, fb in enumerate(feedbacks):
        _, grad, _ = _combined(waves, batch_size, sample_shape, [fb], 1.0)
        grads = torch.autograd.grad(x, params, grad_outputs=grad.to(x.dtype),
                                    retain_graph=i < n - 1, allow_unused=True)
        per_worker.append([
            (g if g is not None else torch.zeros_like(p)).detach().cpu().numpy()
            for g, p in zip(grads, params, strict=True)
        ])
    for j, p in enumerate(params):
        stacked = np.stack([w[j] for w in per_worker])
        if method == "median":
            agg = np.median(stacked, axis=0)
        else:
            agg = trim_mean(stacked, trim_fraction)
        p.grad = torch.as_tensor(np.asarray(agg), dtype=p.dtype, device=p.device)
    optimizer.step()
