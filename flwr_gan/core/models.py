"""Generator and discriminator presets, by name.

Every preset adapts to the image shape ``(C, H, W)`` of the data set (square
images with ``H`` divisible by 4: 28x28x1 for MNIST / Fashion-MNIST, 32x32x3 for
CIFAR-10). Generators map a latent vector ``z ~ N(0, I)`` to images in
``[-1, 1]`` (tanh); discriminators return one raw score (logit) per image, and
the loss (:mod:`flwr_gan.core.losses`) decides how it is read.

Discriminators deliberately contain no batch normalisation: MD-GAN's error
feedback ``dL/dx`` must be a per-sample quantity, and batch statistics would
couple the samples of a batch (and leak across the real/fake batches).

Presets
-------
``mlp``
    The MD-GAN paper's MNIST MLP (G: 512-512-784, D: 512-512-1). The paper's D
    has 11 outputs (ACGAN: real/fake + 10 classes); ours is unconditional.
``lsgan``
    FeGAN's LSGAN network (their reference follows eriklindernoren/PyTorch-GAN):
    G = one fully connected layer + three convolutions (nearest-neighbour
    upsampling, batch norm, LeakyReLU, tanh out); D = four strided
    convolutions with LeakyReLU + one fully connected layer.
``dcgan``
    FeGAN's DCGAN shape (G = FC + three (transposed) convolutions, D = four
    convolutions + FC), with transposed convolutions as in Radford et al.
``mdgan-cnn``
    The MD-GAN paper's MNIST CNN: G = FC of 128x7x7 then transposed
    convolutions of 32 and C kernels (5x5); D = six 3x3 convolutions of
    16...512 kernels + FC (the paper's minibatch-discrimination layer is left out).
``small``
    A two-layer convolutional pair sized for CPU tests and demos.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch
from torch import nn

ImageShape = tuple[int, int, int]


class Generator(nn.Module):
    """A generator: ``forward(z)`` maps ``(N, latent_dim)`` to ``(N, C, H, W)`` in ``[-1, 1]``.

    Parameters
    ----------
    body : nn.Module
        Network mapping the latent vectors to images (already ending in tanh).
    latent_dim : int
        Size of the latent vector.
    image_shape : tuple of int
        ``(C, H, W)`` of the produced images.
    """

    def __init__(self, body: nn.Module, latent_dim: int, image_shape: ImageShape) -> None:
        super().__init__()
        self.body = body
        self.latent_dim = latent_dim
        self.image_shape = image_shape

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Generate images from latent vectors."""
        return self.body(z).view(z.size(0), *self.image_shape)


class Discriminator(nn.Module):
    """A discriminator: ``forward(x)`` returns one raw score per image, shape ``(N,)``.

    Parameters
    ----------
    body : nn.Module
        Network mapping images to an ``(N, 1)`` score.
    image_shape : tuple of int
        ``(C, H, W)`` of the accepted images.
    """

    def __init__(self, body: nn.Module, image_shape: ImageShape) -> None:
        super().__init__()
        self.body = body
        self.image_shape = image_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Score images (higher means "real")."""
        return self.body(x).view(x.size(0))


def _lrelu() -> nn.LeakyReLU:
    return nn.LeakyReLU(0.2, inplace=True)


def _mlp(shape: ImageShape, latent_dim: int) -> tuple[nn.Module, nn.Module]:
    d = math.prod(shape)
    gen = nn.Sequential(
        nn.Linear(latent_dim, 512), _lrelu(),
        nn.Linear(512, 512), _lrelu(),
        nn.Linear(512, d), nn.Tanh(),
    )
    disc = nn.Sequential(
        nn.Flatten(),
        nn.Linear(d, 512), _lrelu(),
        nn.Linear(512, 512), _lrelu(),
        nn.Linear(512, 1),
    )
    return gen, disc


def _conv_disc(
    widths: tuple[int, ...], strides: tuple[int, ...], shape: ImageShape, kernel: int = 3
) -> nn.Module:
    layers: list[nn.Module] = []
    c_in, size = shape[0], shape[1]
    for width, stride in zip(widths, strides, strict=True):
        layers += [nn.Conv2d(c_in, width, kernel, stride, kernel // 2), _lrelu()]
        c_in = width
        size = (size + 2 * (kernel // 2) - kernel) // stride + 1
    layers += [nn.Flatten(), nn.Linear(c_in * size * size, 1)]
    return nn.Sequential(*layers)


def _lsgan(shape: ImageShape, latent_dim: int) -> tuple[nn.Module, nn.Module]:
    c, h, _ = shape
    s = h // 4
    gen = nn.Sequential(
        nn.Linear(latent_dim, 128 * s * s),
        nn.Unflatten(1, (128, s, s)),
        nn.BatchNorm2d(128),
        nn.Upsample(scale_factor=2),
        nn.Conv2d(128, 128, 3, 1, 1), nn.BatchNorm2d(128), _lrelu(),
        nn.Upsample(scale_factor=2),
        nn.Conv2d(128, 64, 3, 1, 1), nn.BatchNorm2d(64), _lrelu(),
        nn.Conv2d(64, c, 3, 1, 1), nn.Tanh(),
    )
    disc = _conv_disc((16, 32, 64, 128), (2, 2, 2, 2), shape)
    return gen, disc


def _dcgan(shape: ImageShape, latent_dim: int) -> tuple[nn.Module, nn.Module]:
    c, h, _ = shape
    s = h // 4
    gen = nn.Sequential(
        nn.Linear(latent_dim, 256 * s * s),
        nn.Unflatten(1, (256, s, s)),
        nn.BatchNorm2d(256), _lrelu(),
        nn.ConvTranspose2d(256, 128, 4, 2, 1), nn.BatchNorm2d(128), _lrelu(),
        nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.BatchNorm2d(64), _lrelu(),
        nn.Conv2d(64, c, 3, 1, 1), nn.Tanh(),
    )
    disc = _conv_disc((32, 64, 128, 256), (2, 2, 2, 2), shape)
    return gen, disc


def _mdgan_cnn(shape: ImageShape, latent_dim: int) -> tuple[nn.Module, nn.Module]:
    c, h, _ = shape
    s = h // 4
    gen = nn.Sequential(
        nn.Linear(latent_dim, 128 * s * s),
        nn.Unflatten(1, (128, s, s)),
        nn.BatchNorm2d(128), nn.ReLU(inplace=True),
        nn.ConvTranspose2d(128, 32, 5, 2, 2, output_padding=1), nn.BatchNorm2d(32),
        nn.ReLU(inplace=True),
        nn.ConvTranspose2d(32, c, 5, 2, 2, output_padding=1), nn.Tanh(),
    )
    disc = _conv_disc((16, 32, 64, 128, 256, 512), (2, 1, 2, 1, 2, 1), shape)
    return gen, disc


def _small(shape: ImageShape, latent_dim: int) -> tuple[nn.Module, nn.Module]:
    c, h, _ = shape
    s = h // 4
    gen = nn.Sequential(
        nn.Linear(latent_dim, 64 * s * s),
        nn.Unflatten(1, (64, s, s)),
        nn.BatchNorm2d(64), _lrelu(),
        nn.Upsample(scale_factor=2),
        nn.Conv2d(64, 32, 3, 1, 1), nn.BatchNorm2d(32), _lrelu(),
        nn.Upsample(scale_factor=2),
        nn.Conv2d(32, c, 3, 1, 1), nn.Tanh(),
    )
    disc = _conv_disc((32, 64), (2, 2), shape)
    return gen, disc


@dataclass(frozen=True)
class Preset:
    """A named model family.

    Attributes
    ----------
    name : str
        Preset name.
    build : callable
        ``build(image_shape, latent_dim) -> (generator_body, discriminator_body)``.
    latent_dim : int
        Default latent size.
    loss : str
        The loss the source paper used with it.
    description : str
        One line for ``--help`` and the docs.
    """

    name: str
    build: Callable[[ImageShape, int], tuple[nn.Module, nn.Module]]
    latent_dim: int
    loss: str
    description: str


PRESETS: Mapping[str, Preset] = MappingProxyType({
    p.name: p
    for p in (
        Preset("mlp", _mlp, 100, "bce", "MD-GAN paper MLP, G 512-512-784 / D 512-512-1"),
        Preset("lsgan", _lsgan, 100, "lsgan", "FeGAN LSGAN: G FC+3 conv, D 4 conv+FC"),
        Preset("dcgan", _dcgan, 100, "bce", "FeGAN DCGAN: G FC+3 (transposed) conv, D 4 conv+FC"),
        Preset("mdgan-cnn", _mdgan_cnn, 100, "bce", "MD-GAN paper MNIST CNN (no minibatch layer)"),
        Preset("small", _small, 32, "bce", "two-conv CPU preset for tests and demos"),
    )
})


def validate_image_shape(image_shape: tuple[int, ...]) -> ImageShape:
    """Check that ``image_shape`` is ``(C, H, H)`` with ``C`` in {1, 3} and ``H % 4 == 0``.

    Raises
    ------
    ValueError
        With the offending shape and what is supported.
    """
    if len(image_shape) != 3:
        raise ValueError(f"image_shape must be (C, H, W), got {image_shape!r}")
    c, h, w = (int(v) for v in image_shape)
    if c not in (1, 3) or h != w or h % 4 != 0 or h < 8:
        raise ValueError(
            f"Unsupported image shape {(c, h, w)}: the model presets need square images with 1 "
            "or 3 channels and a side divisible by 4 (e.g. 1x28x28, 3x32x32). Resize your data."
        )
    return c, h, w


def build_models(
    preset: str, image_shape: tuple[int, ...], latent_dim: int | None = None
) -> tuple[Generator, Discriminator]:
    """Build a fresh generator and discriminator.

    Parameters
    ----------
    preset : str
        One of :data:`PRESETS`.
    image_shape : tuple of int
        ``(C, H, W)`` of the data.
    latent_dim : int, optional
        Latent size; the preset's default when omitted.

    Returns
    -------
    tuple of (Generator, Discriminator)

    Raises
    ------
    ValueError
        For an unknown preset, an unsupported shape or a non-positive latent size.
    """
    if preset not in PRESETS:
        raise ValueError(f"Unknown model preset {preset!r}: choose one of {sorted(PRESETS)}.")
    spec = PRESETS[preset]
    shape = validate_image_shape(image_shape)
    zdim = spec.latent_dim if latent_dim is None else int(latent_dim)
    if zdim < 1:
        raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
    g_body, d_body = spec.build(shape, zdim)
    return Generator(g_body, zdim, shape), Discriminator(d_body, shape)


def seeded_models(
    preset: str, image_shape: tuple[int, ...], latent_dim: int | None, seed: int
) -> tuple[Generator, Discriminator]:
    """Build the run's initial pair: :func:`build_models` after ``torch.manual_seed(seed)``.

    Devices that must start from the server's weights without receiving them
    (gossip peers, a partial-sync device's local network) build them with this.
    The caller's torch random state is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_models(preset, image_shape, latent_dim)


def count_parameters(module: nn.Module) -> int:
    """Return the number of trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
