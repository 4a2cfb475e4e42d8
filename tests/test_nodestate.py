"""Node state across messages: the Array codec, the per-process cache, the relay's polling.

The cache must never change results: a node's messages may be handled by
different processes (Ray actors), so a step after another process wrote the
state must rebuild from ``context.state``, and every path must give the same
discriminator and Adam state bit for bit.
"""

from __future__ import annotations

import pickle
import time
import uuid
from typing import Any

import numpy as np
import pytest
import torch
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    Metadata,
    MetricRecord,
    RecordDict,
)
from flwr.common.serde import recorddict_from_proto, recorddict_to_proto
from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents

import flwr_gan.runtime.nodestate as nodestate
from flwr_gan.core.models import build_models
from flwr_gan.mdgan.client import STEP_TYPE, forget_cached_state, make_client_app
from flwr_gan.runtime.arraycodec import OutOfBandArray, array_of, array_record, view_of
from flwr_gan.runtime.nodestate import load_optimizer_arrays, optimizer_to_arrays
from flwr_gan.runtime.relay import Relay
from flwr_gan.runtime.telemetry import content_nbytes
from tests.mdgan_fakes import set_task_identity

SAMPLES = [
    np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32),
    np.asarray(np.float32(2.5)), np.arange(5), np.zeros((0, 3), np.float32),
    np.random.default_rng(1).standard_normal((2, 3)).astype(">f8"),
    np.array([True, False]), np.ones((3, 4), np.float16),
    np.asfortranarray(np.random.default_rng(2).standard_normal((3, 4))),
    np.random.default_rng(3).standard_normal((4, 4))[:, ::2], np.array(["ab", "c"]),
]


@pytest.fixture(autouse=True)
def _task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    set_task_identity(monkeypatch)


@pytest.mark.parametrize("arr", SAMPLES, ids=lambda a: f"{a.dtype}{a.shape}")
def test_array_of_is_byte_identical_to_flower(arr: np.ndarray) -> None:
    for _ in range(2):  # the first call of a dtype/shape fills the header cache
        ours, ref = array_of(arr), Array(arr)
        assert (ours.dtype, tuple(ours.shape), ours.stype, ours.data) == (
            ref.dtype, tuple(ref.shape), ref.stype, ref.data)
        got = view_of(ours)
        assert got.dtype == arr.dtype and got.shape == arr.shape and np.array_equal(got, arr)


def test_out_of_band_array_is_an_array_everywhere() -> None:
    arr = np.random.default_rng(0).standard_normal((64, 28)).astype(np.float32)
    x = array_of(arr)
    assert isinstance(x, OutOfBandArray) and x == Array(arr) and Array(arr) == x
    for protocol in (2, 4, 5):  # in band
        assert pickle.loads(pickle.dumps(x, protocol=protocol)) == x
    buffers: list[pickle.PickleBuffer] = []
    stream = pickle.dumps(x, protocol=5, buffer_callback=buffers.append)
    assert len(buffers) == 1 and len(stream) < 200  # the bytes travel out of band
    y = pickle.loads(stream, buffers=[memoryview(b.raw()).toreadonly() for b in buffers])
    assert isinstance(y.raw, memoryview) and np.array_equal(view_of(y), arr)
    assert isinstance(y.data, bytes) and y == x  # reading .data gives bytes
    # Flower's serialisations see a plain Array: proto, and deflated objects
    plain = RecordDict({"r": ArrayRecord({"k": Array(arr)})})
    oob = RecordDict({"r": array_record({"k": y})})
    assert content_nbytes(oob) == content_nbytes(plain)  # honest bytes
    back = recorddict_from_proto(recorddict_to_proto(oob))
    assert np.array_equal(back.array_records["r"]["k"].numpy(), arr)
    record = array_record({"k": x})
    objects: dict[str, bytes] = {}

    def deflate(obj: Any) -> None:
        objects[obj.object_id] = obj.deflate()
        for child in (obj.children or {}).values():
            deflate(child)

    deflate(record)
    inflated = inflate_object_from_contents(record.object_id, objects,
                                            keep_object_contents=False)
    assert type(inflated["k"]) is Array and np.array_equal(inflated["k"].numpy(), arr)


def test_optimizer_arrays_roundtrip_exactly() -> None:
    _, disc = build_models("mlp", (1, 28, 28))
    opt = torch.optim.Adam(disc.parameters(), lr=1e-3)
    disc(torch.randn(4, 1, 28, 28)).sum().backward()
    opt.step()
    arrays = optimizer_to_arrays(opt)
    assert all(isinstance(a, OutOfBandArray) for a in arrays.values())
    fresh = torch.optim.Adam(disc.parameters(), lr=1e-3)
    load_optimizer_arrays(fresh, arrays)
    for p in disc.parameters():
        for name, value in opt.state[p].items():
            assert torch.equal(value, fresh.state[p][name]), name


# -- the per-process cache ------------------------------------------------------

def _step(it: int, seed: int = 0) -> Message:
    gen = torch.Generator().manual_seed(100 + it)
    x_g = torch.rand(8, 1, 28, 28, generator=gen) * 2 - 1
    x_d = torch.rand(8, 1, 28, 28, generator=gen) * 2 - 1
    config = ConfigRecord({
        "model": "mlp", "loss": "bce", "image-shape": [1, 28, 28], "disc-steps": 1,
        "lr-g": 2e-4, "lr-d": 2e-4, "beta1": 0.5, "beta2": 0.999, "batch-size": 8,
        "seed": seed, "iteration": it, "send-disc": False, "crash": False})
    meta = Metadata(run_id=1, message_id=uuid.uuid4().hex, src_node_id=1, dst_node_id=7,
                    reply_to_message_id="", group_id=str(it), created_at=time.time(),
                    ttl=3600.0, message_type=STEP_TYPE)
    content = RecordDict({"config": config, "batches": ArrayRecord(
        {"x_g": Array(x_g.numpy()), "x_d": Array(x_d.numpy())})})
    return Message(metadata=meta, content=content)


def _context() -> Context:
    return Context(run_id=1, node_id=7, node_config={"partition-id": 0, "num-partitions": 20},
                   state=RecordDict(), run_config={})


def _ship(context: Context) -> Context:
    """What Ray does to a Context between the engine and an actor (out of band)."""
    buffers: list[pickle.PickleBuffer] = []
    stream = pickle.dumps(context, protocol=5, buffer_callback=buffers.append)
    return pickle.loads(stream, buffers=[memoryview(b.raw()).toreadonly() for b in buffers])


def _state(context: Context) -> dict[str, np.ndarray]:
    return {f"{name}/{k}": np.array(v.numpy()) for name in ("mdgan.disc", "mdgan.opt")
            for k, v in context.state.array_records[name].items()}


def _run(steps: int, schedule: str, hits: list[bool] | None = None) -> dict[str, np.ndarray]:
    """Run ``steps`` messages; ``schedule[i]`` names the process (cache) handling message i."""
    load = nodestate.NodeStore.load

    def counting(self: nodestate.NodeStore, *args: Any, **kwargs: Any) -> Any:
        objects, hit = load(self, *args, **kwargs)
        if hits is not None:
            hits.append(hit)
        return objects, hit

    nodestate.NodeStore.load = counting  # type: ignore[method-assign]
    try:
        return _run_steps(steps, schedule)
    finally:
        nodestate.NodeStore.load = load  # type: ignore[method-assign]


def _run_steps(steps: int, schedule: str) -> dict[str, np.ndarray]:
    app = make_client_app()
    caches: dict[str, Any] = {}
    ctx = _context()
    for it in range(1, steps + 1):
        process = schedule[it - 1]
        nodestate._CACHE.clear()
        nodestate._CACHE.update(caches.get(process, {}))
        reply = app(_step(it), ctx)
        assert not reply.has_error(), reply.error
        caches[process] = dict(nodestate._CACHE)
        ctx = _ship(ctx)
    nodestate.clear_cache()
    return _state(ctx)


def test_cache_gives_the_same_state_whichever_process_handles_each_message() -> None:
    nodestate.clear_cache()
    hits: list[bool] = []
    always_same = _run(5, "AAAAA", hits)
    assert hits == [False, True, True, True, True]
    for schedule, expected in (("ABABA", [False] * 5), ("AABBA", [False, True, False, True,
                                                                   False]),
                               ("ABCDE", [False] * 5)):
        hits = []
        other = _run(5, schedule, hits)
        assert hits == expected, schedule
        assert other.keys() == always_same.keys()
        assert all(np.array_equal(other[k], always_same[k]) for k in always_same), schedule


def test_failed_step_and_replaced_state_are_not_served_from_the_cache() -> None:
    nodestate.clear_cache()
    app, ctx = make_client_app(), _context()
    app(_step(1), ctx)
    before = _state(ctx)
    bad = _step(2)
    bad.content.array_records["disc-in"] = ArrayRecord({"discriminator.0.weight": Array(
        np.zeros(3, np.float32))})
    with pytest.raises(Exception, match="relayed discriminator"):
        app(bad, ctx)
    assert all(np.array_equal(v, before[k]) for k, v in _state(ctx).items())
    # replacing the stored state (a checkpoint restore) and forgetting the cache
    ctx2 = _context()
    app(_step(1, seed=3), ctx2)
    for name in ("mdgan.disc", "mdgan.opt"):
        ctx.state.array_records[name] = ctx2.state.array_records[name]
    forget_cached_state(ctx)
    reply = app(_step(2, seed=0), ctx)
    fresh = _context()
    fresh.state = _ship(ctx2).state
    ref = app(_step(2, seed=0), fresh)
    assert reply.content.array_records["feedback"]["feedback"].data == \
        ref.content.array_records["feedback"]["feedback"].data


# -- polling --------------------------------------------------------------------

class _SlowGrid:
    """Answers every message ``delay`` seconds after it was pushed; counts pulls."""

    def __init__(self, delay: float) -> None:
        self.delay, self.pulls = delay, 0
        self.pushed: dict[str, tuple[float, Message]] = {}

    def push_messages(self, messages: list[Message]) -> list[str]:
        ids = []
        for msg in messages:
            mid = uuid.uuid4().hex
            self.pushed[mid] = (time.perf_counter(), msg)
            ids.append(mid)
        return ids

    def pull_messages(self, ids: list[str]) -> list[Message]:
        self.pulls += 1
        now, out = time.perf_counter(), []
        for mid in ids:
            sent, msg = self.pushed[mid]
            if now - sent >= self.delay:
                reply = Message(RecordDict({"m": MetricRecord({"x": 1})}), reply_to=msg)
                reply.metadata.__dict__["_reply_to_message_id"] = mid
                out.append(reply)
        return out


def test_relay_polls_back_off_while_nothing_arrives() -> None:
    grid = _SlowGrid(0.3)
    relay = Relay(grid, timeout=5.0, poll_interval=0.005)  # type: ignore[arg-type]
    msg = Message(RecordDict({"c": ConfigRecord({"a": 1})}), 7, "query.x", ttl=60.0)
    started = time.perf_counter()
    (reply,) = relay.exchange([msg])
    waited = time.perf_counter() - started
    assert reply.ok and 0.3 <= waited < 0.3 + 2 * relay.max_poll_interval + 0.05
    assert grid.pulls <= 0.3 / relay.max_poll_interval + 6  # not 0.3 / 0.005 = 60
