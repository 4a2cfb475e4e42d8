"""The one GAN core every family trains with: model presets, losses, training steps."""
