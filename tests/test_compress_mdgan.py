"""AdaComp on MD-GAN's error feedback (flwr_gan.mdgan.compression), over an in-process Grid."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, Context, Message
from flwr.clientapp import ClientApp

from flwr_gan.compress.adacomp import compress
from flwr_gan.compress.wire import MalformedPayload, encode
from flwr_gan.mdgan import MDGANServer, make_client_app, register_handlers
from flwr_gan.mdgan.aggregation import InvalidFeedbackError
from flwr_gan.mdgan.compression import (
    feedback_record,
    modulate_stale,
    read_feedback,
    stale_scale,
)
from flwr_gan.runtime.telemetry import content_nbytes
from tests.mdgan_fakes import FakeGrid, mdgan, set_task_identity

SHAPE = (8, 1, 28, 28)
ADACOMP = {"fb-compress": "adacomp", "fb-compress-ratio": 0.01, "fb-compress-dtype": "float32"}


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    set_task_identity(monkeypatch)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared
    yield
    torch.set_num_threads(threads)


def _feedback(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=SHAPE).astype(np.float32)


# -- pure helpers ------------------------------------------------------------


def test_feedback_record_round_trip_keeps_the_largest_entries() -> None:
    fb = _feedback()
    record = feedback_record(fb, ADACOMP)
    assert set(record.keys()) == {"adacomp#n", "adacomp#i2", "adacomp#v"}
    got = read_feedback(record, SHAPE, worker="w")
    k = math.ceil(0.01 * fb.size)
    assert np.count_nonzero(got) == k
    top = np.sort(np.abs(fb).ravel())[-k:]
    np.testing.assert_array_equal(np.sort(np.abs(got[got != 0])), top)
    np.testing.assert_array_equal(got[got != 0], fb[got != 0])
    # plain runs (and feedback that cannot be compressed) travel dense
    dense = feedback_record(fb, {"fb-compress": "none"})
    assert list(dense.keys()) == ["feedback"]
    np.testing.assert_array_equal(read_feedback(dense, SHAPE, worker="w"), fb)
    bad = fb.copy()
    bad[0, 0, 0, 0] = np.nan
    assert list(feedback_record(bad, ADACOMP).keys()) == ["feedback"]
    with pytest.raises(InvalidFeedbackError, match="NaN"):
        read_feedback(feedback_record(bad, ADACOMP), SHAPE, worker="w")


def test_float16_values_halve_the_value_bytes() -> None:
    fb = _feedback()
    f32 = feedback_record(fb, ADACOMP)
    f16 = feedback_record(fb, ADACOMP | {"fb-compress-dtype": "float16"})
    assert f16["adacomp#v"].numpy().dtype == np.float16
    assert len(f16["adacomp#v"].data) < len(f32["adacomp#v"].data)
    np.testing.assert_allclose(read_feedback(f16, SHAPE, worker="w"),
                               read_feedback(f32, SHAPE, worker="w"), rtol=1e-3)


def _forged(kind: str) -> ArrayRecord:
    record = encode(compress({"feedback": _feedback()}, None, 0.01)[0])
    idx, val = record["adacomp#i2"].numpy().copy(), record["adacomp#v"].numpy().copy()
    counts = record["adacomp#n"].numpy().copy()
    if kind == "dtype":
        val = val.astype(np.float64)
    elif kind == "index":
        idx[-1] = math.prod(SHAPE)  # one past the end
    elif kind == "length":
        val = val[:-1]
    elif kind == "nan":
        val[3] = np.nan
    elif kind == "repeat":
        idx[1] = idx[0]
    elif kind == "layer":
        counts = np.array([counts[0], 1], dtype=np.uint32)  # a second, unknown layer
    return ArrayRecord({"adacomp#n": Array(counts), "adacomp#i2": Array(idx),
                        "adacomp#v": Array(val)})


@pytest.mark.parametrize("kind, match", [
    ("dtype", "dtype"), ("index", "below"), ("length", "values for"), ("nan", "NaN"),
    ("repeat", "increasing"), ("layer", "one per layer"),
])
def test_server_decode_rejects_forged_payloads(kind: str, match: str) -> None:
    with pytest.raises(MalformedPayload, match=match):
        read_feedback(_forged(kind), SHAPE, worker="worker 7")


def test_a_well_formed_payload_of_another_shape_is_rejected() -> None:
    sent, _ = compress({"feedback": np.ones((4, 1, 28, 28), np.float32)}, None, 1.0)
    with pytest.raises(MalformedPayload):  # more entries than the batch sent has
        read_feedback(encode(sent), (2, 1, 28, 28), worker="w")


def test_staleness_modulation_is_one_over_one_plus_k() -> None:
    assert [stale_scale(k) for k in (0, 1, 3)] == [1.0, 0.5, 0.25]
    fb = torch.ones(2, 3)
    assert modulate_stale(fb, 2, enabled=False) is fb
    assert modulate_stale(fb, 0, enabled=True) is fb
    assert torch.allclose(modulate_stale(fb, 2, enabled=True), fb / 3)
    np.testing.assert_allclose(modulate_stale(np.ones(3), 1, enabled=True), 0.5)
    with pytest.raises(ValueError):
        modulate_stale(fb, -1, enabled=True)


# -- end to end over the in-process grid --------------------------------------


def _run(n: int = 3, iterations: int = 3, **kw: Any) -> tuple[MDGANServer, FakeGrid,
                                                               list[Message]]:
    cfg = mdgan(iterations=iterations, num_clients=n, batch_size=8, kappa="1", swap_epochs=0,
                seed=1, model="small", **kw)
    grid = FakeGrid([make_client_app() for _ in range(n)])
    replies: list[Message] = []
    grid.on_reply = lambda msg, rep: replies.append(rep) \
        if msg.metadata.message_type == "train.mdgan_step" else None
    server = MDGANServer(grid, cfg)
    server.run()
    return server, grid, replies


@pytest.mark.parametrize("ratio", [0.1, 0.01])
def test_feedback_bytes_drop_by_the_ratio_and_bytes_up_is_the_wire(ratio: float) -> None:
    plain, _, _ = _run()
    comp, _, replies = _run(compress="adacomp", compress_ratio=ratio)
    n, d = 3, math.prod(SHAPE)
    k = math.ceil(ratio * d)
    for p, c in zip(plain.records, comp.records, strict=True):
        assert c["compress"] == "adacomp" and p["compress"] == "none"
        assert c["payload_up_dense"] == p["payload_up_dense"] == n * 4 * d
        # k uint16 indices + k float32 values per worker (+ counts, three ~128-byte headers)
        assert 0 <= c["payload_up"] - n * 6 * k <= n * 3 * 160
        assert p["payload_up"] / c["payload_up"] >= 4 * d / (6 * k + 3 * 160)  # ~4/(6 ratio)
        assert c["payload_down"] == p["payload_down"]  # downloads are untouched
        assert abs(c["bytes_down"] - p["bytes_down"]) <= 10 * n  # only the config differs
        assert p["bytes_up"] / c["bytes_up"] > (5 if ratio == 0.1 else 15)
        assert c["nodes"] == ["partition-0", "partition-1", "partition-2"] and not c["rejected"]
    # bytes_up is the serialized size of the replies that came back
    assert sum(r["bytes_up"] for r in comp.records) == sum(content_nbytes(m.content)
                                                           for m in replies)


def test_compressed_feedback_still_trains_the_generator() -> None:
    plain, _, _ = _run(n=2, iterations=4)
    comp, _, _ = _run(n=2, iterations=4, compress="adacomp", compress_ratio=0.1)
    before = MDGANServer(FakeGrid([make_client_app()]), mdgan(seed=1, model="small")).generator
    moved = [float((a - b).detach().abs().sum()) for a, b in
             zip(comp.generator.parameters(), before.parameters(), strict=True)]
    assert all(m > 0 for m in moved)
    # the workers' discriminators train the same way (their losses are comparable)
    assert all(r["d_loss"] is not None and np.isfinite(r["d_loss"]) for r in comp.records)
    assert abs(comp.records[-1]["d_loss"] - plain.records[-1]["d_loss"]) < 0.5


def _forging_app(kind: str) -> ClientApp:
    def forge(msg: Message, ctx: Context, call_next: Any) -> Message:
        reply = call_next(msg, ctx)
        if not reply.has_error():
            reply.content.array_records["feedback"] = _forged(kind)
        return reply

    return register_handlers(ClientApp(mods=[forge]))


def test_malformed_compressed_feedback_is_excluded_with_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    cfg = mdgan(iterations=2, num_clients=3, batch_size=8, kappa="1", swap_epochs=0, seed=1,
                compress="adacomp", compress_ratio=0.01)
    grid = FakeGrid([make_client_app(), _forging_app("index"), _forging_app("nan")])
    server = MDGANServer(grid, cfg)
    with caplog.at_level(logging.WARNING, logger="flwr_gan.mdgan.server"):
        server.run()
    for rec in server.records:
        assert rec["nodes"] == ["partition-0"] and rec["updated"]
        assert {r["node"] for r in rec["rejected"]} == {"partition-1", "partition-2"}
    assert server.alive == [101, 102, 103]  # rejected, not dropped
    assert sum("NaN" in r.message for r in caplog.records) == 2
    assert all(torch.isfinite(p).all() for p in server.generator.parameters())


def test_pipelined_mode_with_compression_runs_with_bounded_staleness() -> None:
    server, _, _ = _run(n=3, iterations=4, mode="pipelined", max_staleness=1,
                        compress="adacomp", compress_ratio=0.01)
    assert [r["round"] for r in server.records] == [1, 2, 3, 4]
    assert all(r["staleness_max"] <= 1 and r["payload_up"] < r["payload_up_dense"] / 20
               for r in server.records)


@pytest.mark.slow
def test_compressed_mdgan_learns_fid_drops() -> None:
    from flwr_gan.data import load_dataset
    from flwr_gan.metrics.evaluator import GeneratorEvaluator

    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    evaluator = GeneratorEvaluator.for_dataset(train, test, n_real=500, n_fake=500,
                                               progress=False)
    fids: list[float] = []

    def evaluate(it: int, gen: torch.nn.Module) -> dict[str, Any]:
        fids.append(evaluator.evaluate(gen).fid)
        return {"fid": fids[-1]}

    cfg = mdgan(iterations=150, num_clients=2, batch_size=32, kappa="2", model="small",
                swap_epochs=0.05, seed=0, compress="adacomp", compress_ratio=0.1)
    server = MDGANServer(FakeGrid([make_client_app(), make_client_app()]), cfg,
                         evaluate_fn=evaluate)
    server.run()
    print("compressed MD-GAN FID", fids)
    assert len(fids) == 2 and fids[-1] < 0.7 * fids[0], fids
