"""FL-GAN and FeGAN as a family: settings, the server loop around the strategies, device handlers.

The strategies themselves are Flower strategies in :mod:`flwr_gan.strategy`
(importable by any Flower project); this package runs them as a flwr-gan
experiment (:mod:`.server`) and answers their messages on devices (:mod:`.client`).
"""
