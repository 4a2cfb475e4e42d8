"""The harness's evaluation of several generators (gossip: one per worker)."""

import numpy as np
import pytest
import torch

from flwr_gan.algorithms import make_settings
from flwr_gan.core.models import build_models
from flwr_gan.runtime.experiment import prepare


def test_several_generators_are_averaged_field_by_field(tmp_path):
    settings = make_settings("gossip", num_clients=2, model="small", n_eval=200,
                             eval_seeds=2, out=str(tmp_path / "run"), progress=False)
    exp = prepare(settings, unit="round", total=1, federated=True)
    exp.open()
    torch.manual_seed(0)
    gens = {"partition-0": build_models("small", (1, 28, 28))[0],
            "partition-1": build_models("small", (1, 28, 28))[0]}
    out = exp.evaluate(0, gens)
    single = {k: exp.evaluate(0, {k: g}) for k, g in gens.items()}
    exp.close()
    for key in ("fid", "kid", "precision", "recall", "class_tv", "fid_seed_std"):
        assert out[key] == pytest.approx(np.mean([single[k][key] for k in gens]))
    assert out["fid_workers"] == {k: pytest.approx(single[k]["fid"]) for k in gens}
    assert out["fid_best"] == min(out["fid_workers"].values())
    assert out["class_fractions"] == pytest.approx(
        np.mean([single[k]["class_fractions"] for k in gens], axis=0))
    missing = [set(single[k]["classes_missing"]) for k in gens]
    assert out["classes_missing"] == sorted(missing[0] | missing[1])
    assert out["eval_s"] > 0 and len(out["extractor_id"]) == 12
    assert (tmp_path / "run" / "samples" / "round_000000.png").exists()
