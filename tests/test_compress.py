"""AdaComp: the pure selection, the wire format, the client mod and the Strategy wrapper."""

import math

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp.strategy import FedAvg

from flwr_gan.apps import device_app
from flwr_gan.compress.adacomp import (
    compress,
    compress_layer,
    count_selected,
    decompress,
    index_dtype,
    select,
    staleness_scale,
)
from flwr_gan.compress.mod import RESIDUAL_KEY, adacomp_mod
from flwr_gan.compress.strategy import AdaComp, decode_arrays
from flwr_gan.compress.wire import MalformedPayload, decode, encode
from flwr_gan.strategy import FLGAN
from tests.fegan_fakes import InProcessGrid, run_fl_in_process, set_task_identity
from tests.test_simulation import in_process, tiny

# ----------------------------------------------------------------- selection


def test_select_takes_the_largest_magnitudes_per_layer_at_least_one():
    x = np.array([0.1, -5.0, 3.0, 0.0, -0.2, 4.0], dtype=np.float32)
    assert select(x, 0.5).tolist() == [1, 2, 5]
    assert select(x, 0.01).tolist() == [1]          # ceil -> at least one entry
    assert select(x, 1.0).tolist() == list(range(6))
    ties = np.ones(10, dtype=np.float32)
    assert select(ties, 0.3).tolist() == [0, 1, 2]  # deterministic tie-break
    assert count_selected(1000, 0.001) == 1 and count_selected(1000, 0.0105) == 11
    with pytest.raises(ValueError, match="ratio"):
        count_selected(10, 0.0)


def test_index_dtype_is_the_smallest_that_holds_every_position():
    assert index_dtype(256) == np.uint8 and index_dtype(257) == np.uint16
    assert index_dtype(65536) == np.uint16 and index_dtype(65537) == np.uint32


def test_nothing_dropped_is_a_lossless_round_trip():
    rng = np.random.default_rng(0)
    update = {"a": rng.normal(size=(3, 4)).astype(np.float32),
              "b": rng.normal(size=7).astype(np.float32)}
    sent, residual = compress(update, None, 1.0)
    for key, value in decompress(sent).items():
        np.testing.assert_array_equal(value, update[key])
        assert not residual[key].any()


@pytest.mark.parametrize("value_dtype", ["float32", "float16"])
def test_residual_accounting_sent_plus_residual_equals_all_updates(value_dtype):
    rng = np.random.default_rng(1)
    total = np.zeros((20, 30), dtype=np.float64)
    sent_total = np.zeros_like(total)
    residual = None
    for _ in range(25):
        update = rng.normal(size=(20, 30)).astype(np.float32)
        total += update
        sparse, residual = compress({"w": update}, residual, 0.05, value_dtype)
        assert sparse["w"].values.size == 30          # 5% of 600
        assert sparse["w"].values.dtype == np.dtype(value_dtype)
        sent_total += sparse["w"].dense()
    np.testing.assert_allclose(sent_total + residual["w"], total, atol=1e-4)


def test_residual_makes_small_entries_travel_eventually():
    update = np.array([1.0, 0.3], dtype=np.float32)
    residual = None
    sent_second = 0
    for _ in range(6):
        sparse, residual = compress_layer(update, residual, 0.5)
        sent_second += int(1 in sparse.indices.tolist())
    assert sent_second >= 1  # 0.3 accumulates until it beats the fresh 1.0


def test_a_nan_update_is_neither_sent_nor_kept():
    with pytest.raises(ValueError, match="NaN"):
        compress_layer(np.array([1.0, np.nan], dtype=np.float32), None, 0.5)


def test_staleness_scale_divides_by_one_plus_updates_since():
    np.testing.assert_allclose(staleness_scale(np.array([0, 1, 2, 9])), [1, 0.5, 1 / 3, 0.1])
    with pytest.raises(ValueError):
        staleness_scale(np.array([-1]))


# ----------------------------------------------------------------- wire format


def _payload():
    rng = np.random.default_rng(2)
    update = {"w": rng.normal(size=(300,)).astype(np.float32),
              "b": rng.normal(size=(4,)).astype(np.float32)}
    sent, _ = compress(update, None, 0.1)
    return encode(sent), {"w": (300,), "b": (4,)}, sent


def test_wire_round_trip_packs_every_layer_into_few_small_arrays():
    arrays, shapes, sent = _payload()
    # Two layers, one record: counts, one uint16 group (300 entries), one uint8 (4), values.
    assert set(arrays.keys()) == {"adacomp#n", "adacomp#i2", "adacomp#i1", "adacomp#v"}
    assert arrays["adacomp#i2"].numpy().dtype == np.uint16
    assert arrays["adacomp#i1"].numpy().dtype == np.uint8
    assert arrays["adacomp#n"].numpy().tolist() == [30, 1]
    back = decode(arrays, shapes)
    for key in shapes:
        np.testing.assert_array_equal(back[key].dense(), sent[key].dense())


def _forge(arrays, key, value):
    out = ArrayRecord({k: arrays[k] for k in arrays.keys()})
    if value is None:
        del out[key]
    else:
        out[key] = Array(value)
    return out


_W = list(range(3, 30))  # 27 valid positions of layer "w" (300 entries)


@pytest.mark.parametrize("key, value, message", [
    ("adacomp#i2", np.array([0, 1, 400] + _W, dtype=np.uint16), "below 300"),
    ("adacomp#i2", np.array([5, 5, 6] + _W, dtype=np.uint16), "strictly increasing"),
    ("adacomp#i2", np.arange(29, dtype=np.uint16), "only 29 indices"),
    ("adacomp#i2", np.arange(31, dtype=np.uint16), "left over"),
    ("adacomp#i2", np.arange(30, dtype=np.int32), "must hold uint16"),
    ("adacomp#n", np.array([30, 1], dtype=np.int64), "uint32 counts"),
    ("adacomp#n", np.array([30], dtype=np.uint32), "2 uint32 counts"),
    ("adacomp#n", np.array([29, 1], dtype=np.uint32), "31 values for 30"),
    ("adacomp#v", np.ones(31, dtype=np.float64), "dtype float64"),
    ("adacomp#v", np.array([np.nan] + [1.0] * 30, dtype=np.float32), "NaN"),
    ("adacomp#v", None, "needs"),
    ("adacomp#x", np.ones(1, dtype=np.float32), "unexpected"),
])
def test_malformed_payloads_are_rejected_naming_what_is_wrong(key, value, message):
    arrays, shapes, _ = _payload()
    with pytest.raises(MalformedPayload, match=message):
        decode(_forge(arrays, key, value), shapes, what="node 7")


def test_a_bad_layer_is_named_in_the_error():
    arrays, shapes, _ = _payload()
    forged = _forge(arrays, "adacomp#i1", np.array([9], dtype=np.uint8))  # layer b has 4
    with pytest.raises(MalformedPayload, match="node 7, layer 'b'.*below 4"):
        decode(forged, shapes, what="node 7")


# ------------------------------------------------- mod + wrapper, no Ray


def _toy_app(delta: float) -> ClientApp:
    """A device that adds ``delta * (index + 1)`` to every float array it receives."""
    app = ClientApp(mods=[adacomp_mod])

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        arrays = msg.content.array_records["arrays"]
        out = {}
        for key in arrays.keys():
            value = arrays[key].numpy()
            if np.issubdtype(value.dtype, np.floating):
                value = value + delta * np.arange(1, value.size + 1,
                                                  dtype=value.dtype).reshape(value.shape)
            out[key] = Array(value)
        return Message(RecordDict({"arrays": ArrayRecord(out),
                                   "metrics": MetricRecord({"num-examples": 10})}),
                       reply_to=msg)

    return app


def _start(strategy, grid, rounds=2):
    initial = ArrayRecord({"w": Array(np.zeros((40, 10), dtype=np.float32)),
                           "n": Array(np.array(3, dtype=np.int64))})
    return strategy.start(grid=grid, initial_arrays=initial, num_rounds=rounds,
                          timeout=10).arrays


def test_wrapping_fedavg_with_nothing_dropped_gives_fedavgs_model(monkeypatch):
    set_task_identity(monkeypatch)
    plain = _start(FedAvg(fraction_train=1.0, min_available_nodes=3),
                   InProcessGrid(_toy_app(0.01), 3))
    packed = _start(AdaComp(FedAvg(fraction_train=1.0, min_available_nodes=3), ratio=1.0),
                    InProcessGrid(_toy_app(0.01), 3))
    np.testing.assert_allclose(packed["w"].numpy(), plain["w"].numpy(), rtol=1e-6)
    assert int(packed["n"].numpy()) == 3


def test_sparse_uploads_are_decoded_residuals_kept_bytes_measured(monkeypatch):
    set_task_identity(monkeypatch)
    grid = InProcessGrid(_toy_app(0.01), 2)
    strategy = AdaComp(FedAvg(fraction_train=1.0, min_available_nodes=2), ratio=0.1,
                       value_dtype="float16")
    out = _start(strategy, grid, rounds=1)["w"].numpy().reshape(-1)
    # Every node sends the 40 largest entries of 0.01 * (1..400): positions 360..399.
    expected = np.zeros(400, dtype=np.float32)
    expected[360:] = (0.01 * np.arange(361, 401)).astype(np.float16)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    for context in grid.contexts.values():
        residual = context.state.array_records[RESIDUAL_KEY]["w"].numpy().reshape(-1)
        assert residual[:360].sum() == pytest.approx(0.01 * np.arange(1, 361).sum(), rel=1e-4)
    tele = strategy.telemetry[-1]
    # 400 entries: the arrays' framing dominates; the GAN test below checks real sizes.
    assert tele["compression"] > 2 and tele["bytes_up"] < tele["bytes_up_dense"] / 2
    # The device sent a train reply whose config asked for AdaComp.
    assert grid.sent[0].content.config_records["config"]["compress"] == "adacomp"


def test_a_forged_upload_is_excluded_and_reported_never_averaged(monkeypatch):
    set_task_identity(monkeypatch)

    def tamper(nid, reply):
        if nid == 102 and reply.has_content():
            arrays = reply.content.array_records["arrays"]
            idx = arrays["adacomp#i2"].numpy().copy()
            idx[-1] = 60000  # out of range for 400 entries
            arrays["adacomp#i2"] = Array(idx)
        return reply

    grid = InProcessGrid(_toy_app(0.01), 2, tamper=tamper)
    inner = FLGAN(fraction_train=1.0, min_available_nodes=2, collect_metadata=False)
    strategy = AdaComp(inner, ratio=0.1)
    out = _start(strategy, grid, rounds=1)["w"].numpy().reshape(-1)
    rec = inner.history[-1]
    assert rec["failed"] == {} and list(rec["rejected"]) == ["node-102"]
    assert "below 400" in rec["rejected"]["node-102"]
    assert rec["nodes"] == ["node-101"]
    assert np.isfinite(out).all() and out[:360].sum() == 0
    # FLGAN counts what arrived on the wire (not the decoded model) for the valid
    # reply; both replies have the same layout, so that is half of what arrived.
    assert rec["bytes_up"] * 2 == strategy.telemetry[-1]["bytes_up"]


def test_the_mod_leaves_other_messages_alone(monkeypatch):
    set_task_identity(monkeypatch)
    grid = InProcessGrid(_toy_app(0.01), 1)
    msg = Message(RecordDict({"arrays": ArrayRecord({"w": Array(np.zeros(5, np.float32))}),
                              "config": ConfigRecord({"server-round": 1})}),
                  dst_node_id=101, message_type="train")
    reply = grid.send_and_receive([msg])[0]
    assert set(reply.content.array_records["arrays"].keys()) == {"w"}
    assert RESIDUAL_KEY not in grid.contexts[101].state.array_records


def test_decode_arrays_needs_the_dense_non_float_arrays():
    reference = ArrayRecord({"w": Array(np.zeros(4, np.float32)),
                             "n": Array(np.array(1, dtype=np.int64))})
    sent, _ = compress({"w": np.ones(4, np.float32)}, None, 0.5)
    with pytest.raises(MalformedPayload, match="'n' is missing"):
        decode_arrays(encode(sent), reference, what="node 1")


# ------------------------------------------- the GAN families on the harness


def _run(settings, monkeypatch):
    set_task_identity(monkeypatch)
    return run_fl_in_process(settings, device_app())


def test_fegan_with_adacomp_uploads_far_fewer_bytes(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    recs, grid = _run(tiny(tmp_path, compress="adacomp", compress_ratio=0.01, rounds=3,
                           eval_every=0), monkeypatch)
    plain = in_process(tiny(tmp_path / "plain", rounds=1, eval_every=0), monkeypatch)
    for r in recs[1:]:
        assert r["failed"] == {} and math.isfinite(r["d_loss"])
        assert r["compression"] == pytest.approx(r["bytes_up_dense"] / r["bytes_up"])
        assert r["compression"] > 20 and r["bytes_up"] * 20 < plain[1]["bytes_up"]
        # Downloads stay dense (only the three AdaComp keys of the config are added).
        assert 0 < r["bytes_down"] - plain[1]["bytes_down"] < 100 * len(r["nodes"])
    assert recs[-1]["fid"] != recs[0]["fid"]
    assert any(RESIDUAL_KEY in c.state.array_records for c in grid.contexts.values())


def test_fegan_with_nothing_dropped_learns_exactly_as_without(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    over = dict(rounds=6, eval_every=3, local_steps=10)
    plain, _ = _run(tiny(tmp_path / "a", **over), monkeypatch)
    packed, _ = _run(tiny(tmp_path / "b", compress="adacomp", compress_ratio=1.0, **over),
                     monkeypatch)
    fids = [r["fid"] for r in packed if r.get("fid") is not None]
    assert fids[-1] < 0.8 * fids[0]  # it learns (FID 1170 -> about 840 here)
    for a, b in zip(plain, packed, strict=True):
        if a.get("fid") is not None:
            assert b["fid"] == pytest.approx(a["fid"], rel=0.02)
        if a["round"] > 0:
            assert b["d_loss"] == pytest.approx(a["d_loss"], rel=0.02)
