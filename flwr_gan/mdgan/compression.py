"""AdaComp on MD-GAN's error feedback (``--compress adacomp``).

MD-GAN's uploads are the workers' error feedbacks ``F_n = dB~(X_g)/dx``, one
tensor of the shape of the ``X_g`` batch the worker was sent. With
``--compress adacomp`` each worker sends, per feedback tensor (one AdaComp
"layer"), the ``ceil(ratio * n)`` entries of largest magnitude
(:func:`flwr_gan.compress.adacomp.compress`) in the wire format of
:mod:`flwr_gan.compress.wire`; the server decodes them against the shape of the
batch it sent (:func:`read_feedback`) and aggregates the dense tensors (zeros
where nothing was sent). A payload that does not decode (wrong dtype, an index
out of range, lengths that differ, NaN) is rejected like malformed dense
feedback: reported, never aggregated.

No residual is carried over. AdaComp's error feedback re-sends later what a
device left out now, which is right for a model update (the next update
refers to the same parameters). A feedback tensor refers to the samples of
one generated batch: at the next iteration those samples no longer exist,
entry ``(i, c, h, w)`` is the gradient at another image, and adding the
leftover there would push the generator along a gradient of a sample it never
produced. The unsent entries are therefore dropped (each feedback is a
per-sample top-k sparsification of the exact gradient, unbiased in its
direction only where it is sent).

Staleness modulation (pipelined mode): feedback computed on a batch generated
``k`` generator versions ago is multiplied by ``staleness_scale(k) = 1/(1+k)``
(AdaComp's per-update learning-rate modulation, :func:`modulate_stale`). It is
part of ``--compress adacomp``; plain runs keep the paper's unscaled feedback.

The settings travel to the workers under ``fb-*`` config keys, never under
``compress``, the key :func:`flwr_gan.compress.mod.adacomp_mod` reads (it acts
only on plain ``train`` messages, so MD-GAN's steps are outside it anyway; the
distinct keys keep it so).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from flwr.app import ArrayRecord

from flwr_gan.compress.adacomp import compress, staleness_scale
from flwr_gan.compress.wire import decode, encode, is_compressed
from flwr_gan.mdgan.aggregation import InvalidFeedbackError, check_feedback
from flwr_gan.runtime.arraycodec import array_of, array_record

#: The one layer of a feedback upload (the dense upload's array name, too).
FEEDBACK = "feedback"
KEY_COMPRESS = "fb-compress"
KEY_RATIO = "fb-compress-ratio"
KEY_DTYPE = "fb-compress-dtype"


def compression_config(settings: Any) -> dict[str, Any]:
    """Return the ConfigRecord entries telling workers how to send their feedback.

    Parameters
    ----------
    settings : flwr_gan.config.Settings
        MD-GAN's settings (``compress``, ``compress_ratio``, ``compress_dtype``).
    """
    return {KEY_COMPRESS: str(settings.compress), KEY_RATIO: float(settings.compress_ratio),
            KEY_DTYPE: str(settings.compress_dtype)}


def compressing(config: Mapping[str, Any]) -> bool:
    """Whether a worker config (or its entries) asks for AdaComp feedback."""
    return str(config.get(KEY_COMPRESS, "none")) == "adacomp"


def feedback_record(feedback: np.ndarray, config: Mapping[str, Any]) -> ArrayRecord:
    """Return the ArrayRecord a worker uploads for ``feedback``.

    Dense (one array ``feedback``) unless ``config`` asks for AdaComp; then the
    sparse encoding of the top ``ratio`` entries (``adacomp#`` arrays of
    :mod:`flwr_gan.compress.wire`), no residual kept (see the module). Feedback holding NaN /
    inf cannot be compressed: it travels dense, so the server rejects it with
    the usual reason instead of the worker failing.
    """
    values = np.ascontiguousarray(feedback)
    if not compressing(config) or not np.all(np.isfinite(values)):
        return array_record({FEEDBACK: array_of(values)})
    sent, _ = compress({FEEDBACK: values}, None, float(config.get(KEY_RATIO, 0.01)),
                       str(config.get(KEY_DTYPE, "float32")))
    return encode(sent)


def read_feedback(record: ArrayRecord | None, expected: Sequence[int], *,
                  worker: str) -> np.ndarray:
    """Return the dense, validated feedback of one reply.

    Parameters
    ----------
    record : ArrayRecord or None
        The reply's ``feedback`` record: dense or AdaComp-encoded.
    expected : sequence of int
        ``(b, C, H, W)`` of the ``X_g`` batch the worker was sent.
    worker : str
        Names the worker in error messages.

    Returns
    -------
    numpy.ndarray
        The feedback, float32 for a compressed upload (zeros where nothing was sent).

    Raises
    ------
    flwr_gan.runtime.records.InvalidUpdateError
        :class:`~flwr_gan.mdgan.aggregation.InvalidFeedbackError` or
        :class:`~flwr_gan.compress.wire.MalformedPayload`: it must not be aggregated.
    """
    if record is None:
        raise InvalidFeedbackError(f"{worker}: reply holds no feedback")
    if is_compressed(record):
        shape = tuple(int(v) for v in expected)
        values = decode(record, {FEEDBACK: shape}, what=f"{worker} feedback")[FEEDBACK].dense()
    elif FEEDBACK in record:
        values = np.array(record[FEEDBACK].numpy())
    else:
        raise InvalidFeedbackError(f"{worker}: reply holds no feedback")
    check_feedback(values, expected, worker=worker)
    return values


def dense_feedback_nbytes(expected: Sequence[int]) -> int:
    """Bytes of the dense float32 feedback tensor of shape ``expected`` (no header)."""
    return 4 * math.prod(int(v) for v in expected)


def stale_scale(staleness: int) -> float:
    """AdaComp's factor ``1 / (1 + staleness)`` for feedback ``staleness`` versions old."""
    return float(staleness_scale(np.asarray([staleness]))[0])


def modulate_stale(values: Any, staleness: int, *, enabled: bool) -> Any:
    """Scale feedback computed ``staleness`` generator versions ago (when ``enabled``).

    Parameters
    ----------
    values : numpy.ndarray or torch.Tensor
        The feedback.
    staleness : int
        Generator versions between the batch's generator and the current one (>= 0).
    enabled : bool
        Whether AdaComp is on; otherwise ``values`` is returned as it is.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        ``values / (1 + staleness)`` (same type), or ``values``.
    """
    if staleness < 0:
        raise ValueError(f"staleness must be >= 0, got {staleness}")
    if not enabled or staleness == 0:
        return values
    return values * stale_scale(staleness)


__all__ = ["FEEDBACK", "KEY_COMPRESS", "KEY_DTYPE", "KEY_RATIO", "compressing",
           "compression_config", "dense_feedback_nbytes", "feedback_record",
           "modulate_stale", "read_feedback", "stale_scale"]
