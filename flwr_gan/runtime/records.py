"""Models <-> Flower records.

A GAN travels as ONE :class:`~flwr.app.ArrayRecord` whose keys carry a
network prefix (``generator.body.0.weight``, ``discriminator.body.0.bias``), so
Flower's stock aggregation (one ArrayRecord per reply) averages G and D
together. Everything a client sends is validated here before it touches a
model: missing / extra keys, wrong shapes and non-finite values are rejected
with a message that names the offending tensor.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from flwr.app import Array, ArrayRecord
from torch import nn

GENERATOR = "generator"
DISCRIMINATOR = "discriminator"


class InvalidUpdateError(ValueError):
    """A model update that must not be applied (malformed, NaN, wrong shape)."""


#: Reason prefix of an error reply a server-side wrapper made of a reply it rejected
#: (e.g. a malformed AdaComp upload): strategies report it under ``rejected``, not ``failed``.
REJECTED_PREFIX = "rejected: "


def models_to_arrays(models: Mapping[str, nn.Module]) -> ArrayRecord:
    """Pack several networks into one ArrayRecord with ``<name>.`` key prefixes.

    Parameters
    ----------
    models : mapping
        Prefix -> module, e.g. ``{"generator": g, "discriminator": d}``.
    """
    arrays: dict[str, Array] = {}
    for prefix, module in models.items():
        for key, tensor in module.state_dict().items():
            arrays[f"{prefix}.{key}"] = Array(tensor.detach().cpu().numpy())
    return ArrayRecord(arrays)


def split_arrays(arrays: ArrayRecord, prefix: str) -> dict[str, np.ndarray]:
    """Return the arrays of one network (``prefix.``-keys, prefix stripped)."""
    head = f"{prefix}."
    return {k[len(head):]: v.numpy() for k, v in arrays.items() if k.startswith(head)}


def check_state(
    reference: Mapping[str, torch.Tensor], incoming: Mapping[str, np.ndarray], *, what: str
) -> None:
    """Validate ``incoming`` arrays against a reference ``state_dict``.

    Raises
    ------
    InvalidUpdateError
        On missing or unexpected keys, a shape mismatch, or NaN / inf values.
    """
    missing = sorted(set(reference) - set(incoming))
    extra = sorted(set(incoming) - set(reference))
    if missing or extra:
        raise InvalidUpdateError(
            f"{what}: keys do not match the model (missing {missing[:3]}, unexpected "
            f"{extra[:3]}). Are the server and clients using the same --model preset?"
        )
    for key, ref in reference.items():
        arr = np.asarray(incoming[key])
        if tuple(arr.shape) != tuple(ref.shape):
            raise InvalidUpdateError(
                f"{what}: {key} has shape {tuple(arr.shape)}, expected {tuple(ref.shape)}."
            )
        if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
            raise InvalidUpdateError(f"{what}: {key} contains NaN or infinite values.")


def load_arrays(
    module: nn.Module, arrays: ArrayRecord, prefix: str, *, what: str | None = None
) -> None:
    """Validate and load one network's arrays into ``module`` (in place).

    Integer buffers (BatchNorm's ``num_batches_tracked``) that an average turned
    into floats are rounded back to their dtype.
    """
    reference = module.state_dict()
    incoming = split_arrays(arrays, prefix)
    check_state(reference, incoming, what=what or prefix)
    state = {}
    for key, ref in reference.items():
        arr = np.asarray(incoming[key])
        if not ref.dtype.is_floating_point:
            arr = np.rint(arr)
        state[key] = torch.as_tensor(arr).to(ref.dtype)
    module.load_state_dict(state)


def validate_arrays(models: Mapping[str, nn.Module], arrays: ArrayRecord, *, what: str) -> None:
    """Check that ``arrays`` holds exactly the networks of ``models``, finite and well shaped."""
    expected = {f"{p}.{k}" for p, m in models.items() for k in m.state_dict()}
    extra = sorted(set(arrays.keys()) - expected)
    if extra:
        raise InvalidUpdateError(
            f"{what}: unexpected arrays {extra[:3]}. Are the server and clients using the "
            "same --model preset?"
        )
    for prefix, module in models.items():
        check_state(module.state_dict(), split_arrays(arrays, prefix), what=f"{what} {prefix}")


def arrays_nbytes(arrays: ArrayRecord) -> int:
    """Return the payload size of an ArrayRecord in bytes (serialized tensor data)."""
    return int(sum(len(a.data) for a in arrays.values()))
