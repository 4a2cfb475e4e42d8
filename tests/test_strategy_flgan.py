"""FL-GAN aggregation, exclusion of bad updates and telemetry, Ray-free."""

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from flwr_gan.strategy import FLGAN, check_update, weighted_average
from tests.fegan_fakes import InProcessGrid, set_task_identity

KEYS = {"generator.w": np.zeros((2, 3), np.float32),
        "discriminator.b": np.zeros(3, np.float32),
        "generator.bn.num_batches_tracked": np.array(0, np.int64)}



def ids(keys):
    """Node ids of the fakes (101 + partition) from the device keys records name."""
    out = [101 + int(k.split("-")[1]) if k.startswith("partition-") else int(k.split("-")[1])
           for k in keys]
    return dict(zip(out, keys.values(), strict=True)) if isinstance(keys, dict) else out

def initial() -> ArrayRecord:
    return ArrayRecord({k: Array(v.copy()) for k, v in KEYS.items()})


def constant_client(examples: dict[int, int], metadata: dict[int, list[int]] | None = None
                    ) -> ClientApp:
    """Each node returns arrays filled with its node id and `examples[node]` examples."""
    app = ClientApp()

    @app.train()
    def train(msg: Message, ctx: Context) -> Message:
        arrays = msg.content.array_records["arrays"]
        out = {k: Array(np.full(v.shape, float(ctx.node_id), dtype=v.numpy().dtype))
               for k, v in arrays.items()}
        cfg = msg.content.config_records["config"]
        return Message(RecordDict({
            "arrays": ArrayRecord(out),
            "metrics": MetricRecord({"num-examples": examples[ctx.node_id], "compute-s": 0.5,
                                     "d-loss": 1.0, "g-loss": 2.0,
                                     "local-steps": int(cfg["local-steps"])}),
        }), reply_to=msg)

    @app.query("metadata")
    def meta(msg: Message, ctx: Context) -> Message:
        counts = (metadata or {}).get(ctx.node_id, [1, 1])
        return Message(RecordDict({"metadata": ConfigRecord({
            "class-counts": counts,
            "device-key": str(ctx.node_config.get("key", f"partition-{ctx.node_id - 101}")),
            "memory-mb": 1000.0 if ctx.node_id != 104 else 250.0,
            "compute-speed": 1.0 if ctx.node_id != 104 else 0.25})}), reply_to=msg)

    return app


@pytest.fixture(autouse=True)
def _identity(monkeypatch):
    set_task_identity(monkeypatch)


def test_examples_weighted_average_is_exact():
    examples = {101: 10, 102: 30, 103: 60}
    grid = InProcessGrid(constant_client(examples), 3)
    strategy = FLGAN(fraction_train=1.0, min_available_nodes=3, seed=0)
    result = strategy.start(grid=grid, initial_arrays=initial(), num_rounds=1)
    expected = (101 * 10 + 102 * 30 + 103 * 60) / 100
    np.testing.assert_allclose(result.arrays["generator.w"].numpy(), expected, rtol=1e-6)
    assert result.arrays["generator.w"].numpy().dtype == np.float32
    nbt = result.arrays["generator.bn.num_batches_tracked"].numpy()
    assert nbt.dtype == np.int64 and nbt == round(expected)
    rec = strategy.history[0]
    assert sorted(ids(rec["nodes"])) == [101, 102, 103] and ids(rec["failed"]) == {}
    assert rec["examples"] == 100 and rec["compute_s_max"] == 0.5
    assert rec["bytes_up"] > 3 * 2 * 3 * 4 and rec["bytes_down"] > 0
    assert rec["virtual_s"] >= 0.5 and rec["wall_s"] > 0
    assert "kl_seen" not in rec  # no metadata asked
    # the round's train messages carried E and B
    cfg = grid.sent[0].content.config_records["config"]
    assert cfg["local-steps"] == 30 and cfg["batch-size"] == 50 and cfg["server-round"] == 1


def test_bad_updates_are_excluded_and_reported():
    examples = {101: 10, 102: 10, 103: 10, 104: 10}

    def tamper(nid, reply):
        if nid == 102:  # NaN weights
            arrays = reply.content.array_records["arrays"]
            bad = {k: Array(np.full(v.shape, np.nan, dtype=np.float32)) if v.numpy().dtype.kind
                   == "f" else v for k, v in arrays.items()}
            return Message(RecordDict({"arrays": ArrayRecord(bad),
                                       "metrics": reply.content.metric_records["metrics"]}),
                           reply_to=grid.sent[-1])
        if nid == 103:  # wrong shape
            arrays = reply.content.array_records["arrays"]
            bad = dict(arrays.items())
            bad["generator.w"] = Array(np.zeros((3, 3), np.float32))
            return Message(RecordDict({"arrays": ArrayRecord(bad),
                                       "metrics": reply.content.metric_records["metrics"]}),
                           reply_to=grid.sent[-1])
        return reply

    grid = InProcessGrid(constant_client(examples), 5, tamper=tamper, drop=[105])
    strategy = FLGAN(fraction_train=1.0, min_available_nodes=5, seed=0)
    result = strategy.start(grid=grid, initial_arrays=initial(), num_rounds=1)
    np.testing.assert_allclose(result.arrays["generator.w"].numpy(), (101 + 104) / 2)
    rec = strategy.history[0]
    assert sorted(ids(rec["nodes"])) == [101, 104]
    assert set(ids(rec["intended"])) == {101, 102, 103, 104, 105}
    assert "NaN" in ids(rec["rejected"])[102] and "shape" in ids(rec["rejected"])[103]
    assert list(ids(rec["failed"])) == [105] and "no reply" in ids(rec["failed"])[105]
    assert result.train_metrics_clientapp[1]["num-failed"] == 1
    assert result.train_metrics_clientapp[1]["num-rejected"] == 2


def test_error_replies_and_a_round_with_no_valid_update_keep_the_model():
    app = ClientApp()

    @app.train()
    def boom(msg, ctx):
        raise RuntimeError("device crashed")

    grid = InProcessGrid(app, 2)
    strategy = FLGAN(fraction_train=1.0, min_available_nodes=2, seed=0)
    result = strategy.start(grid=grid, initial_arrays=initial(), num_rounds=2)
    assert strategy.rounds_done == 2
    assert all("device crashed" in r for r in strategy.history[0]["failed"].values())
    assert len(result.arrays) == 0  # no round produced a model
    # round 2 was sent the untouched initial model
    np.testing.assert_array_equal(
        grid.sent[-1].content.array_records["arrays"]["generator.w"].numpy(), 0.0)


def test_sampling_count_seed_and_kl_seen_telemetry():
    examples = {n: 5 for n in range(101, 141)}
    meta = {n: ([4, 0] if n % 2 else [0, 4]) for n in range(101, 141)}
    grid = InProcessGrid(constant_client(examples, meta), 40)
    a = FLGAN(fraction_train=0.025, min_available_nodes=40, collect_metadata=True, seed=3)
    a.start(grid=grid, initial_arrays=initial(), num_rounds=3)
    assert [len(ids(r["nodes"])) for r in a.history] == [1, 1, 1]  # ceil(0.025 * 40) = 1
    assert all(r["kl_seen"] is not None and 0 <= r["coverage"] <= 1 for r in a.history)
    b = FLGAN(fraction_train=0.025, min_available_nodes=40, collect_metadata=True, seed=3)
    b.start(grid=grid, initial_arrays=initial(), num_rounds=3)
    assert [ids(r["nodes"]) for r in a.history] == [ids(r["nodes"]) for r in b.history]


def test_check_update_and_weighted_average_directly():
    ref = initial()
    with pytest.raises(ValueError, match="missing"):
        check_update(ref, ArrayRecord({"generator.w": Array(np.zeros((2, 3), np.float32))}),
                     what="x")
    out = weighted_average(ref, [initial(), initial()], [1.0, 3.0])
    assert set(out.keys()) == set(ref.keys())
    with pytest.raises(ValueError, match="not all zero"):
        weighted_average(ref, [initial()], [0.0])


def test_flgan_without_usable_metadata_still_trains():
    examples = {101: 5, 102: 5}
    grid = InProcessGrid(constant_client(examples, {101: [0, 0], 102: [-1, 3]}), 2)
    strategy = FLGAN(fraction_train=1.0, min_available_nodes=2, collect_metadata=True, seed=0)
    strategy.start(grid=grid, initial_arrays=initial(), num_rounds=1)
    assert sorted(ids(strategy.history[0]["nodes"])) == [101, 102]
    assert "kl_seen" not in strategy.history[0] and not strategy.collect_metadata
