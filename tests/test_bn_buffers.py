"""`--bn-buffers local`: devices keep their BatchNorm statistics, the global ones never move."""

import numpy as np
import pytest
import torch

from flwr_gan.algorithms import make_settings
from flwr_gan.cli import main
from flwr_gan.config import ConfigError
from flwr_gan.core.models import build_models
from flwr_gan.fl.bn import (
    LOCAL_BUFFERS_KEY,
    buffer_keys,
    echo_global_buffers,
    restore_local_buffers,
    store_local_buffers,
)
from flwr_gan.fl.client import make_client_app
from flwr_gan.runtime.records import models_to_arrays
from tests.fegan_fakes import (
    InProcessGrid,
    run_fl_in_process,
    set_task_identity,
)
from tests.fegan_fakes import (
    train_device as train,
)
from tests.test_client_app import ctx


@pytest.fixture(autouse=True)
def _identity(monkeypatch):
    set_task_identity(monkeypatch)




def test_store_restore_and_echo_are_exact():
    gen, disc = build_models("small", (1, 28, 28))
    models = {"generator": gen}
    keys = buffer_keys(models)
    assert keys and all(k.startswith("generator.") for k in keys)
    assert any(k.endswith("running_var") for k in keys)
    c = ctx(0)
    assert restore_local_buffers(c, models) is False  # nothing stored yet
    with torch.no_grad():
        for t in (*gen.buffers(), *gen.parameters()):
            t.add_(3)
    store_local_buffers(c, models)
    fresh, _ = build_models("small", (1, 28, 28))
    assert restore_local_buffers(c, {"generator": fresh}) is True
    for (_, a), (_, b) in zip(gen.named_buffers(), fresh.named_buffers(), strict=True):
        assert torch.equal(a, b)
    # stored buffers of another model are ignored, not forced in
    mlp, _ = build_models("lsgan", (1, 28, 28))
    assert restore_local_buffers(c, {"generator": mlp}) is False
    received = models_to_arrays({"generator": build_models("small", (1, 28, 28))[0]})
    out = echo_global_buffers(models_to_arrays(models), received, keys)
    for k in out.keys():
        same = np.array_equal(out[k].numpy(), received[k].numpy())
        assert same == (k in keys)  # buffers echoed, weights the device's own


def test_device_trains_with_its_own_statistics_and_echoes_the_global_ones():
    gen, disc = build_models("small", (1, 28, 28))
    sent = models_to_arrays({"generator": gen, "discriminator": disc})
    keys = buffer_keys({"generator": gen, "discriminator": disc})
    c = ctx(2)
    reply = train(c, sent, 1, **{"bn-buffers": "local"})
    for k in keys:  # the reply carries the received statistics
        assert np.array_equal(reply[k].numpy(), sent[k].numpy())
    stored = c.state.array_records[LOCAL_BUFFERS_KEY]
    means = [k for k in keys if k.endswith("running_mean")]
    assert any(not np.array_equal(stored[k].numpy(), sent[k].numpy()) for k in means)
    # round 2 starts from the device's statistics: its counter keeps counting
    counter = next(k for k in keys if k.endswith("num_batches_tracked"))
    first = int(stored[counter].numpy())
    train(c, sent, 2, **{"bn-buffers": "local"})
    assert int(c.state.array_records[LOCAL_BUFFERS_KEY][counter].numpy()) == 2 * first
    # averaged (default): the statistics travel and nothing is kept
    c2 = ctx(2)
    reply = train(c2, sent, 1)
    assert not np.array_equal(reply[means[0]].numpy(), sent[means[0]].numpy())
    assert LOCAL_BUFFERS_KEY not in c2.state.array_records


def run_loop(tmp_path, **over):
    settings = make_settings("fegan", num_clients=6, rounds=4, fraction=0.34, model="small",
                             local_steps=25, batch_size=16, max_class=3, max_samples=100,
                             eval_every=4, n_eval=200, eval_seeds=1, out=str(tmp_path / "run"),
                             progress=False, **over)
    records, grid = run_fl_in_process(settings, make_client_app())
    return grid, records


def global_means(grid: InProcessGrid) -> list[np.ndarray]:
    """The generator's running means in the last train message the server sent."""
    last = [m for m in grid.sent if m.metadata.message_type == "train"][-1]
    arrays = last.content.array_records["arrays"]
    return [arrays[k].numpy() for k in arrays.keys()
            if k.startswith("generator.") and k.endswith("running_mean")]


def test_server_keeps_initial_statistics_and_training_is_unchanged(tmp_path):
    grid, recs = run_loop(tmp_path / "local", bn_buffers="local", eval_mode="recalibrate")
    assert all(np.all(m == 0) for m in global_means(grid))  # never averaged in
    holders = [c for c in grid.contexts.values() if LOCAL_BUFFERS_KEY in c.state.array_records]
    assert holders  # the devices that trained keep theirs
    fids = [r["fid"] for r in recs if r.get("fid") is not None]
    assert len(fids) == 2 and np.isfinite(fids).all() and fids[-1] < 0.6 * fids[0]
    grid, avg = run_loop(tmp_path / "avg", eval_mode="recalibrate")
    assert any(np.any(m != 0) for m in global_means(grid))  # averaged: they move
    # training never reads running statistics (both networks train in train mode), so
    # the weights, and the recalibrated scores, are the same either way
    assert [r["fid"] for r in avg if r.get("fid") is not None] == fids
    assert [r["d_loss"] for r in avg[1:]] == [r["d_loss"] for r in recs[1:]]


def test_bad_combinations_are_usage_errors(tmp_path, capsys):
    with pytest.raises(ConfigError, match="--bn-buffers local needs --eval-mode recalibrate"):
        make_settings("fegan", bn_buffers="local")
    with pytest.raises(ConfigError, match="--resume does not support --bn-buffers local"):
        make_settings("flgan", bn_buffers="local", eval_mode="train", resume=True)
    with pytest.raises(ConfigError, match="bn"):
        make_settings("fegan", bn_buffers="global", eval_mode="train")
    assert main(["simulate", "--algorithm", "fegan", "--bn-buffers", "local",
                 "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--eval-mode recalibrate or train" in err[0]
