"""The one local-training core shared by every algorithm.

Standalone training, FL-GAN / FeGAN clients, Gossip peers and the MD-GAN
client and server all train through the functions and the
:class:`GANTrainer` of this module: a discriminator step, a generator step,
``E`` local steps on a stream of real batches, and the discriminator feedback
``dL_G/dx`` on generated samples (MD-GAN's error feedback).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from flwr_gan.core.losses import GANLoss, get_loss


@dataclass(frozen=True)
class OptimizerConfig:
    """Adam settings for both networks (FeGAN / DCGAN defaults).

    Attributes
    ----------
    lr_g, lr_d : float
        Learning rates of the generator and the discriminator.
    beta1, beta2 : float
        Adam's betas, shared by both networks.
    """

    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999

    def __post_init__(self) -> None:
        """Validate the values."""
        for name in ("lr_g", "lr_d"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value}")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")


def make_optimizer(module: nn.Module, lr: float, config: OptimizerConfig) -> torch.optim.Adam:
    """Return an Adam optimizer over ``module``'s parameters with ``config``'s betas."""
    return torch.optim.Adam(module.parameters(), lr=lr, betas=(config.beta1, config.beta2))


def sample_latent(
    n: int, latent_dim: int, *, device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw ``n`` latent vectors from a standard normal distribution."""
    return torch.randn(n, latent_dim, device=device, generator=generator)


def discriminator_step(
    discriminator: nn.Module, optimizer: torch.optim.Optimizer, loss: GANLoss,
    real: torch.Tensor, fake: torch.Tensor,
) -> float:
    """Update the discriminator once on a real and a fake batch; return its loss.

    ``fake`` is detached: no gradient reaches whatever produced it.
    """
    optimizer.zero_grad(set_to_none=True)
    d_loss = loss.discriminator(discriminator(real), discriminator(fake.detach()))
    d_loss.backward()
    optimizer.step()
    return float(d_loss.detach())


def generator_step(
    generator: nn.Module, discriminator: nn.Module, optimizer: torch.optim.Optimizer,
    loss: GANLoss, z: torch.Tensor,
) -> float:
    """Update the generator once through the discriminator; return its loss.

    Only the generator's optimizer steps; gradients left on the discriminator's
    parameters are cleared by its next :func:`discriminator_step`.
    """
    optimizer.zero_grad(set_to_none=True)
    g_loss = loss.generator(discriminator(generator(z)))
    g_loss.backward()
    optimizer.step()
    return float(g_loss.detach())


def discriminator_feedback(
    discriminator: nn.Module, loss: GANLoss, fake: torch.Tensor
) -> tuple[torch.Tensor, float]:
    """Return the error feedback ``dL_G/dx`` on generated samples, and ``L_G``.

    ``L_G`` is the generator loss (a mean over the batch) of the discriminator's
    scores on ``fake``; the feedback has ``fake``'s shape. The discriminator's
    parameters get no gradient. Back-propagating this feedback through the
    generator (:func:`apply_feedback`) gives exactly the gradient of
    :func:`generator_step`.
    """
    x = fake.detach().requires_grad_(True)
    g_loss = loss.generator(discriminator(x))
    (grad,) = torch.autograd.grad(g_loss, x)
    return grad.detach(), float(g_loss.detach())


def apply_feedback(
    generator: nn.Module, optimizer: torch.optim.Optimizer, z: torch.Tensor,
    feedback: torch.Tensor,
) -> None:
    """Back-propagate error feedback through the generator and step once.

    Parameters
    ----------
    generator : nn.Module
        The generator that produced ``generator(z)``.
    optimizer : torch.optim.Optimizer
        Its optimizer.
    z : torch.Tensor
        The latent vectors of the generated samples (regenerated here so that
        the graph exists, with the generator in the same mode as before).
    feedback : torch.Tensor
        ``dL/dx`` for each generated sample, shape ``generator(z).shape``.
    """
    optimizer.zero_grad(set_to_none=True)
    x = generator(z)
    if feedback.shape != x.shape:
        raise ValueError(f"feedback shape {tuple(feedback.shape)} != samples {tuple(x.shape)}")
    x.backward(gradient=feedback.to(x.dtype))
    optimizer.step()


def infinite_batches(
    images: torch.Tensor, batch_size: int, *, seed: int = 0, skip: int = 0
) -> Iterator[torch.Tensor]:
    """Yield shuffled batches forever, reshuffling at each epoch.

    Every batch has ``batch_size`` images, except when the data set itself is
    smaller: then each batch is the whole (shuffled) data set. The tail of an
    epoch that does not fill a batch is dropped; the next epoch's shuffle
    covers it. ``skip`` starts the stream after its first ``skip`` batches
    (what a resumed run has already drawn) without building them.

    Raises
    ------
    ValueError
        If ``images`` is empty, ``batch_size < 1`` or ``skip < 0``.
    """
    n = images.size(0)
    if n == 0:
        raise ValueError("Cannot draw batches from an empty data set.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if skip < 0:
        raise ValueError(f"skip must be >= 0, got {skip}")
    rng = torch.Generator().manual_seed(seed)
    b = min(batch_size, n)
    starts = range(0, n - b + 1, b)
    epochs, first = divmod(skip, len(starts))
    for _ in range(epochs):
        torch.randperm(n, generator=rng)
    while True:
        order = torch.randperm(n, generator=rng)
        for start in starts[first:]:
            yield images[order[start:start + b]]
        first = 0


@dataclass
class TrainStats:
    """What a run of local steps did.

    Attributes
    ----------
    steps : int
        Generator steps taken.
    examples : int
        Real images consumed by the discriminator.
    d_losses, g_losses : list of float
        Loss of every discriminator / generator step.
    compute_s : float
        Wall seconds spent computing.
    """

    steps: int = 0
    examples: int = 0
    d_losses: list[float] = field(default_factory=list)
    g_losses: list[float] = field(default_factory=list)
    compute_s: float = 0.0

    @property
    def d_loss(self) -> float:
        """Mean discriminator loss (NaN when no step ran)."""
        return float(np.mean(self.d_losses)) if self.d_losses else float("nan")

    @property
    def g_loss(self) -> float:
        """Mean generator loss (NaN when no step ran)."""
        return float(np.mean(self.g_losses)) if self.g_losses else float("nan")


class NonFiniteLossError(FloatingPointError):
    """Raised when training produces a NaN or infinite loss."""


class GANTrainer:
    """A generator / discriminator pair, their Adam optimizers and a loss.

    Parameters
    ----------
    generator : nn.Module or None
        The generator (needs a ``latent_dim`` attribute). ``None`` for a
        discriminator-only worker (MD-GAN client).
    discriminator : nn.Module or None
        The discriminator. ``None`` for a generator-only holder (MD-GAN server).
    loss : str
        ``"bce"`` or ``"lsgan"``.
    optim : OptimizerConfig
        Adam settings.
    d_steps : int
        Discriminator updates (each on a fresh real batch) per generator update.
    device : str or torch.device
        Where to compute.
    seed : int, optional
        Seeds the latent sampling of this trainer (for reproducible runs).
    """

    def __init__(
        self,
        generator: nn.Module | None,
        discriminator: nn.Module | None,
        *,
        loss: str = "bce",
        optim: OptimizerConfig | None = None,
        d_steps: int = 1,
        device: str | torch.device = "cpu",
        seed: int | None = None,
    ) -> None:
        if d_steps < 1:
            raise ValueError(f"d_steps must be >= 1, got {d_steps}")
        self.device = torch.device(device)
        self.loss = get_loss(loss)
        self.optim = optim or OptimizerConfig()
        self.d_steps = d_steps
        self.generator = generator.to(self.device) if generator is not None else None
        self.discriminator = (
            discriminator.to(self.device) if discriminator is not None else None
        )
        self.opt_g = (
            make_optimizer(self.generator, self.optim.lr_g, self.optim)
            if self.generator is not None else None
        )
        self.opt_d = (
            make_optimizer(self.discriminator, self.optim.lr_d, self.optim)
            if self.discriminator is not None else None
        )
        self._rng = torch.Generator(device=self.device)
        if seed is not None:
            self._rng.manual_seed(seed)
        else:
            self._rng.seed()

    # -- building blocks -------------------------------------------------

    def _need_g(self) -> tuple[nn.Module, torch.optim.Optimizer]:
        if self.generator is None or self.opt_g is None:
            raise RuntimeError("This trainer holds no generator.")
        return self.generator, self.opt_g

    def _need_d(self) -> tuple[nn.Module, torch.optim.Optimizer]:
        if self.discriminator is None or self.opt_d is None:
            raise RuntimeError("This trainer holds no discriminator.")
        return self.discriminator, self.opt_d

    @property
    def latent_dim(self) -> int:
        """Latent size of the generator."""
        gen, _ = self._need_g()
        return int(gen.latent_dim)  # type: ignore[arg-type]

    def latent(self, n: int) -> torch.Tensor:
        """Draw ``n`` latent vectors from this trainer's random stream."""
        return sample_latent(n, self.latent_dim, device=self.device, generator=self._rng)

    def generate(self, n: int, z: torch.Tensor | None = None) -> torch.Tensor:
        """Generate ``n`` samples (no gradient), in the generator's current mode."""
        gen, _ = self._need_g()
        with torch.no_grad():
            return gen(self.latent(n) if z is None else z.to(self.device))

    def d_step(self, real: torch.Tensor, fake: torch.Tensor | None = None) -> float:
        """One discriminator update; ``fake`` defaults to fresh generator samples."""
        disc, opt = self._need_d()
        real = real.to(self.device)
        if fake is None:
            fake = self.generate(real.size(0))
        value = discriminator_step(disc, opt, self.loss, real, fake.to(self.device))
        _check_finite(value, "discriminator")
        return value

    def g_step(self, batch_size: int) -> float:
        """One generator update on ``batch_size`` fresh latent vectors."""
        gen, opt = self._need_g()
        disc, _ = self._need_d()
        value = generator_step(gen, disc, opt, self.loss, self.latent(batch_size))
        _check_finite(value, "generator")
        return value

    def feedback(self, fake: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Return ``(dL_G/dx, L_G)`` of this discriminator on ``fake`` (MD-GAN)."""
        disc, _ = self._need_d()
        grad, value = discriminator_feedback(disc, self.loss, fake.to(self.device))
        _check_finite(value, "generator (feedback)")
        return grad, value

    # -- local training --------------------------------------------------

    def train(self, batches: Iterator[torch.Tensor], steps: int) -> TrainStats:
        """Run ``steps`` GAN steps (``d_steps`` D updates, then one G update, each).

        Parameters
        ----------
        batches : iterator of torch.Tensor
            Real batches (e.g. :func:`infinite_batches`).
        steps : int
            Number of generator updates.

        Returns
        -------
        TrainStats

        Raises
        ------
        NonFiniteLossError
            If a loss becomes NaN or infinite (the models are then unusable and
            must not be shared).
        """
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        stats = TrainStats()
        gen, _ = self._need_g()
        disc, _ = self._need_d()
        gen.train()
        disc.train()
        start = time.perf_counter()
        for _ in range(steps):
            batch_size = 0
            for _ in range(self.d_steps):
                real = next(batches)
                batch_size = real.size(0)
                stats.d_losses.append(self.d_step(real))
                stats.examples += batch_size
            stats.g_losses.append(self.g_step(batch_size))
            stats.steps += 1
        stats.compute_s = time.perf_counter() - start
        return stats


def _check_finite(value: float, which: str) -> None:
    if not np.isfinite(value):
        raise NonFiniteLossError(
            f"The {which} loss became {value}: training diverged. Lower the learning rate "
            "or change the loss/preset; the current weights must not be used or shared."
        )
