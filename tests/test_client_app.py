"""The GAN ClientApp called directly (no Ray): metadata and train handlers."""

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict

from flwr_gan.core.models import build_models
from flwr_gan.data.node import DataConfig, dataset_partition
from flwr_gan.fl.client import (
    ClientSettings,
    device_key,
    handle_train,
    is_weak_device,
    make_client_app,
)
from flwr_gan.runtime.records import InvalidUpdateError, models_to_arrays
from tests.fegan_fakes import set_task_identity

DATA = DataConfig(partition="fegan", max_class=3, max_samples=100)


@pytest.fixture(autouse=True)
def _identity(monkeypatch):
    set_task_identity(monkeypatch)


def ctx(pid: int, n: int = 6, **node) -> Context:
    return Context(run_id=1, node_id=500 + pid,
                   node_config={"partition-id": pid, "num-partitions": n, **node},
                   state=RecordDict(), run_config={})


def msg(content: RecordDict, mtype: str, dst: int) -> Message:
    return Message(content, message_type=mtype, dst_node_id=dst)


def test_metadata_reply_reports_the_partition_and_capabilities():
    app = make_client_app(ClientSettings(data=DATA))
    c = ctx(4)
    reply = app(msg(RecordDict({"config": ConfigRecord({})}), "query.metadata", c.node_id), c)
    meta = reply.content.config_records["metadata"]
    assert meta["class-counts"] == dataset_partition(DATA, 6).histograms[4].tolist()
    assert meta["device-key"] == "partition-4" and meta["num-examples"] == sum(
        meta["class-counts"])
    assert meta["compute-speed"] == 1.0 and meta["memory-mb"] > 0
    # capabilities from node config win
    c2 = ctx(4, **{"memory-mb": 64.0, "compute-speed": 0.3})
    meta2 = app(msg(RecordDict({}), "query.metadata", c2.node_id), c2).content \
        .config_records["metadata"]
    assert (meta2["memory-mb"], meta2["compute-speed"]) == (64.0, 0.3)


def test_emulated_weak_devices_report_half():
    weak = [i for i in range(40) if is_weak_device(i, 40, 0.5, seed=0)]
    assert 10 < len(weak) < 30 and not is_weak_device(3, 40, 0.0, seed=0)
    app = make_client_app(ClientSettings(data=DataConfig(), weak_fraction=0.5, weak_seed=0))
    strong = next(i for i in range(40) if i not in weak)
    m_w = app(msg(RecordDict({}), "query.metadata", 1), ctx(weak[0], 40)).content \
        .config_records["metadata"]
    m_s = app(msg(RecordDict({}), "query.metadata", 1), ctx(strong, 40)).content \
        .config_records["metadata"]
    assert m_w["compute-speed"] == 0.5 * m_s["compute-speed"]
    assert m_w["memory-mb"] == pytest.approx(0.5 * m_s["memory-mb"])


def test_device_key_precedence():
    assert device_key({"device-id": "pi-7", "partition-id": 1}, 9) == "pi-7"
    assert device_key({"partition-id": 1}, 9) == "partition-1"
    assert device_key({"data-path": "/d"}, 9) == "path-/d"
    assert device_key({}, 9) == "node-9"


def _train_message(arrays: ArrayRecord, dst: int, **cfg) -> Message:
    config = {"model": "small", "local-steps": 3, "batch-size": 8, "server-round": 1,
              "num-threads": 1} | cfg
    return msg(RecordDict({"arrays": arrays, "config": ConfigRecord(config)}), "train", dst)


def test_train_handler_trains_with_the_assigned_load():
    torch.manual_seed(0)
    g, d = build_models("small", (1, 28, 28))
    arrays = models_to_arrays({"generator": g, "discriminator": d})
    app = make_client_app(ClientSettings(data=DATA))
    c = ctx(5)
    reply = app(_train_message(arrays, c.node_id), c)
    metrics = reply.content.metric_records["metrics"]
    assert metrics["num-examples"] == 3 * 8 and metrics["local-steps"] == 3
    assert metrics["batch-size"] == 8 and metrics["compute-s"] > 0
    assert np.isfinite(metrics["d-loss"]) and np.isfinite(metrics["g-loss"])
    out = reply.content.array_records["arrays"]
    assert set(out.keys()) == set(arrays.keys())
    changed = [k for k in arrays.keys() if not np.array_equal(arrays[k].numpy(),
                                                              out[k].numpy())]
    assert any(k.startswith("generator.") for k in changed)
    assert any(k.startswith("discriminator.") for k in changed)
    # same message, same node -> same result (seeded from seed / round / device)
    again = app(_train_message(arrays, c.node_id), c).content.array_records["arrays"]
    for k in arrays.keys():
        np.testing.assert_array_equal(out[k].numpy(), again[k].numpy())


def test_train_handler_refuses_foreign_or_nan_arrays():
    g, d = build_models("small", (1, 28, 28))
    arrays = models_to_arrays({"generator": g, "discriminator": d})
    bad = dict(arrays.items())
    key = next(k for k in bad if k.startswith("generator.") and "weight" in k)
    bad[key] = Array(np.full(bad[key].shape, np.nan, dtype=np.float32))
    c = ctx(1)
    with pytest.raises(InvalidUpdateError, match="NaN"):
        handle_train(_train_message(ArrayRecord(bad), c.node_id), c, ClientSettings(data=DATA))
    with pytest.raises(InvalidUpdateError):
        handle_train(_train_message(arrays, c.node_id, model="mlp"), c,
                     ClientSettings(data=DATA))
    with pytest.raises(KeyError, match="ArrayRecord"):
        handle_train(msg(RecordDict({"config": ConfigRecord({})}), "train", c.node_id), c,
                     ClientSettings(data=DATA))


def test_edge_device_trains_on_its_own_folder(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "mine.npz", x=x, y=np.arange(20) % 2)
    c = Context(run_id=1, node_id=77, node_config={"data-path": str(tmp_path / "mine.npz")},
                state=RecordDict(), run_config={})
    app = make_client_app()
    meta = app(msg(RecordDict({}), "query.metadata", 77), c).content.config_records["metadata"]
    assert meta["class-counts"] == [10, 10] and meta["device-key"].startswith("path-")
    g, d = build_models("small", (1, 28, 28))
    reply = app(_train_message(models_to_arrays({"generator": g, "discriminator": d}), 77,
                               **{"batch-size": 50}), c)
    # a device smaller than B trains on its whole data set per batch
    assert reply.content.metric_records["metrics"]["batch-size"] == 20


def test_device_app_serves_fegan_and_mdgan_messages():
    """One SuperNode app answers FeGAN's metadata query and MD-GAN's worker query."""
    from flwr_gan.apps import client_app as device_app

    c = ctx(2, 6)
    c.run_config.update(DATA.to_run_config())
    expected = int(dataset_partition(DATA, 6).sizes[2])
    meta = device_app(msg(RecordDict({}), "query.metadata", c.node_id), c).content \
        .config_records["metadata"]
    assert meta["num-examples"] == expected
    info = device_app(msg(RecordDict({}), "query.mdgan_info", c.node_id), c)
    assert not info.has_error()
    assert info.content.metric_records["metrics"]["num-examples"] == expected
