"""flwr-gan: distributed GAN training (FL-GAN, FeGAN, MD-GAN, Gossip GAN) on Flower."""

__version__ = "0.1.0"

__all__ = ["__version__"]
