"""Differential privacy through Flower's own DP strategy wrappers and client mods.

>>> from flwr_gan.privacy.strategy import dp_wrapper   # Flower's class for a --dp mode
>>> from flwr_gan.privacy.mods import dp_fixedclipping_mod  # Flower's mod, gated to train
"""
