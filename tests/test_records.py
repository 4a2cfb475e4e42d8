import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord

from flwr_gan.core.models import build_models
from flwr_gan.runtime.records import (
    InvalidUpdateError,
    arrays_nbytes,
    load_arrays,
    models_to_arrays,
    split_arrays,
    validate_arrays,
)


def _models(seed):
    torch.manual_seed(seed)
    g, d = build_models("small", (1, 28, 28))
    return {"generator": g, "discriminator": d}


def test_roundtrip_restores_both_networks():
    src, dst = _models(0), _models(1)
    arrays = models_to_arrays(src)
    assert all(k.startswith(("generator.", "discriminator.")) for k in arrays.keys())
    for name in ("generator", "discriminator"):
        load_arrays(dst[name], arrays, name)
        for k, v in src[name].state_dict().items():
            torch.testing.assert_close(dst[name].state_dict()[k], v)
    n_params = sum(t.numel() * t.element_size() for m in src.values()
                   for t in m.state_dict().values())
    assert arrays_nbytes(arrays) >= n_params


def test_averaged_integer_buffers_are_restored():
    src = _models(0)
    arrays = models_to_arrays(src)
    key = next(k for k in arrays.keys() if k.endswith("num_batches_tracked"))
    arrays[key] = Array(np.asarray(3.0000001))  # what a float average produces
    load_arrays(src["generator"], arrays, "generator")
    buf = dict(src["generator"].named_buffers())[key[len("generator."):]]
    assert buf.dtype == torch.int64 and int(buf) == 3


def test_nan_wrong_shape_and_keys_rejected():
    models = _models(0)
    good = models_to_arrays(models)
    key = next(iter(split_arrays(good, "generator")))
    bad = models_to_arrays(models)
    arr = bad[f"generator.{key}"].numpy().copy()
    arr.flat[0] = np.nan
    bad[f"generator.{key}"] = Array(arr)
    with pytest.raises(InvalidUpdateError, match=f"{key} contains NaN"):
        validate_arrays(models, bad, what="node 7")
    before = {k: v.clone() for k, v in models["generator"].state_dict().items()}
    with pytest.raises(InvalidUpdateError):
        load_arrays(models["generator"], bad, "generator")
    for k, v in models["generator"].state_dict().items():  # nothing was loaded
        assert torch.equal(v, before[k])

    shaped = models_to_arrays(models)
    shaped[f"generator.{key}"] = Array(np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(InvalidUpdateError, match="shape"):
        validate_arrays(models, shaped, what="node 7")

    other = {"generator": build_models("mlp", (1, 28, 28))[0],
             "discriminator": models["discriminator"]}
    with pytest.raises(InvalidUpdateError, match="same --model preset"):
        validate_arrays(models, models_to_arrays(other), what="node 7")
    extra = models_to_arrays(models)
    extra["optimizer.state"] = Array(np.zeros(1, dtype=np.float32))
    with pytest.raises(InvalidUpdateError, match="unexpected"):
        validate_arrays(models, extra, what="node 7")
    assert isinstance(good, ArrayRecord)
