"""``python -m flwr_gan.mdgan``: run MD-GAN in Flower's simulation engine."""

from flwr_gan.mdgan.cli import main

raise SystemExit(main())
