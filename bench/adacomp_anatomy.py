"""Where AdaComp's bytes and FID go: one FeGAN device's round, taken apart.

Trains one device's round as in ``bench/upload.py`` (the ``small`` preset, 50
local steps of batch 50 on 340 MNIST images, the size of one of 176 FeGAN
devices) and, for each compression level,

* splits the encoded upload into index bytes, value bytes, the dense batch-norm
  statistics and counters, and the framing of Flower's records (what remains of
  the serialized reply), measured with the real encoder and serializer;
* measures how much of the round's update the selection keeps: the fraction of
  its squared L2 norm ("energy") per network, and the cosine between the sent
  and the full update.

Writes ``bench/results/adacomp_anatomy.json``::

    python bench/adacomp_anatomy.py        # ~20 s
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from flwr.app import MetricRecord, RecordDict

from flwr_gan.compress.adacomp import compress
from flwr_gan.compress.mod import float_arrays
from flwr_gan.compress.wire import encode
from flwr_gan.core.models import build_models
from flwr_gan.core.training import GANTrainer, OptimizerConfig, infinite_batches
from flwr_gan.data import load_dataset
from flwr_gan.runtime.records import DISCRIMINATOR, GENERATOR, models_to_arrays
from flwr_gan.runtime.telemetry import content_nbytes

ROOT = Path(__file__).resolve().parent.parent
LEVELS = [(1.0, "float32"), (0.1, "float32"), (0.01, "float16"), (0.001, "float16")]


def main() -> int:
    """Train one round, take its upload apart at each level, write the JSON."""
    torch.set_num_threads(1)
    images = load_dataset("mnist").to_tensor()[:340]
    torch.manual_seed(0)
    gen, disc = build_models("small", (1, 28, 28), None)
    before = models_to_arrays({GENERATOR: gen, DISCRIMINATOR: disc})
    trainer = GANTrainer(gen, disc, loss="bce", optim=OptimizerConfig(2e-4, 2e-4, 0.5, 0.999),
                         d_steps=1, seed=0)
    trainer.train(infinite_batches(images, 50, seed=0), 50)
    after = models_to_arrays({GENERATOR: gen, DISCRIMINATOR: disc})
    metrics = MetricRecord({"num-examples": 2500, "d-loss": 0.5, "g-loss": 0.5,
                            "compute-s": 1.0, "local-steps": 50, "batch-size": 50})
    dense_reply = content_nbytes(RecordDict({"arrays": after, "metrics": metrics}))
    base, new = float_arrays(before), float_arrays(after)
    update = {k: new[k] - base[k] for k in base}
    rows = []
    for ratio, dtype in LEVELS:
        sent, _ = compress(update, None, ratio, dtype)
        record = encode(sent)
        for key in after.keys():
            if key not in base:
                record[key] = after[key]
        reply = content_nbytes(RecordDict({"arrays": record, "metrics": metrics}))
        index_b = sum(s.indices.nbytes for s in sent.values())
        value_b = sum(s.values.nbytes for s in sent.values())
        dense_b = sum(after[k].numpy().nbytes for k in after.keys() if k not in base)
        row = {"ratio": ratio, "dtype": dtype, "reply_bytes": reply,
               "reduction": dense_reply / reply, "index_bytes": index_b,
               "value_bytes": value_b, "dense_stats_bytes": dense_b,
               "framing_bytes": reply - index_b - value_b - dense_b}
        for net in (GENERATOR, DISCRIMINATOR):
            keys = [k for k in update if k.startswith(net + ".")]
            full = np.concatenate([update[k].reshape(-1) for k in keys])
            kept = np.concatenate([sent[k].dense().reshape(-1) for k in keys])
            row[f"{net}_energy_kept"] = float((kept ** 2).sum() / (full ** 2).sum())
            row[f"{net}_cosine"] = float(kept @ full / np.linalg.norm(kept) / np.linalg.norm(full))
        rows.append(row)
        print(json.dumps(row))
    out = ROOT / "bench" / "results" / "adacomp_anatomy.json"
    out.write_text(json.dumps({"dense_reply_bytes": dense_reply, "params": {
        k: int(v.size) for k, v in update.items()}, "levels": rows}, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
