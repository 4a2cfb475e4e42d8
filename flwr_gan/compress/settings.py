"""The knobs of what devices upload: AdaComp compression and partial synchronisation."""

from __future__ import annotations

from dataclasses import dataclass

from flwr_gan.config import knob

COMPRESSORS = ("none", "adacomp")
VALUE_DTYPES = ("float32", "float16")
SYNCS = ("both", "generator", "discriminator")


@dataclass(frozen=True)
class CompressSettings:
    """AdaComp (Hardy et al., NCA 2017) on everything devices upload (docs/compression.md)."""

    compress: str = knob("none", "compress uploads: none, or adacomp (per-layer selection of "
                         "the largest accumulated update entries, the rest kept as a residual)",
                         choices=COMPRESSORS)
    compress_ratio: float = knob(0.01, "adacomp: fraction of each layer's entries sent "
                                 "(1: lossless)", gt=0, le=1)
    compress_dtype: str = knob("float32", "adacomp: dtype of the sent values (float16 halves "
                               "them; the rounding error stays in the residual)",
                               choices=VALUE_DTYPES)


@dataclass(frozen=True)
class SyncSettings:
    """Partial synchronisation (Plato's ``network_to_sync``)."""

    sync: str = knob("both", "networks that travel and are averaged: both, generator or "
                     "discriminator (the other stays on each device)", choices=SYNCS)
