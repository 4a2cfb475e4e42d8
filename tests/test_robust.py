"""Validation, robust aggregation (Flower's own), min replies and stalls, Ray-free."""

import time

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from flwr_gan.algorithms import make_settings
from flwr_gan.config import ConfigError
from flwr_gan.strategy import FLGAN
from flwr_gan.strategy.aggregate import StallError, update_norm
from flwr_gan.strategy.robust import RobustAggregation
from tests.fegan_fakes import InProcessGrid, set_task_identity

SHAPES = {"generator.w": (4, 5), "discriminator.b": (6,)}


@pytest.fixture(autouse=True)
def _identity(monkeypatch):
    set_task_identity(monkeypatch)


def initial() -> ArrayRecord:
    arrays = {k: Array(np.zeros(s, np.float32)) for k, s in SHAPES.items()}
    return ArrayRecord(arrays | {"generator.bn.num_batches_tracked": Array(np.array(0, np.int64))})


def honest_value(node_id: int, key: str) -> np.ndarray:
    """Each node's honest model: 1 plus small node-specific noise."""
    rng = np.random.default_rng([node_id, len(key)])
    return (1.0 + 0.01 * rng.standard_normal(SHAPES[key])).astype(np.float32)


def honest_app() -> ClientApp:
    app = ClientApp()

    @app.train()
    def train(msg: Message, ctx: Context) -> Message:
        out = {k: Array(honest_value(ctx.node_id, k)) for k in SHAPES}
        out["generator.bn.num_batches_tracked"] = Array(np.array(ctx.node_id, np.int64))
        return Message(RecordDict({"arrays": ArrayRecord(out),
                                   "metrics": MetricRecord({"num-examples": 10})}),
                       reply_to=msg)

    return app


def attack(nid: int, reply: Message) -> Message:
    """Node 101 sends NaN, 102 a wrong shape, 103 a x1000 update."""
    if nid not in (101, 102, 103) or reply.has_error():
        return reply
    arrays = dict(reply.content.array_records["arrays"].items())
    if nid == 101:
        arrays["generator.w"] = Array(np.full(SHAPES["generator.w"], np.nan, np.float32))
    elif nid == 102:
        arrays["discriminator.b"] = Array(np.zeros((3, 3), np.float32))
    else:
        arrays = {k: Array(np.asarray(v.numpy() * 1000, dtype=v.numpy().dtype))
                  for k, v in arrays.items()}
    reply.content["arrays"] = ArrayRecord(arrays)
    return reply


def one_round(num_nodes: int = 9, tamper=attack, **kw):
    grid = InProcessGrid(honest_app(), num_nodes, tamper=tamper)
    strategy = FLGAN(fraction_train=1.0, min_available_nodes=num_nodes, seed=0,
                     collect_metadata=False, **kw)
    result = strategy.start(grid=grid, initial_arrays=initial(), num_rounds=1)
    return strategy, result.arrays, grid


def test_invalid_replies_are_rejected_apart_from_failures():
    strategy, arrays, _ = one_round()
    rec = strategy.history[0]
    assert set(rec["rejected"]) == {"node-101", "node-102"}
    assert "NaN" in rec["rejected"]["node-101"] and "shape" in rec["rejected"]["node-102"]
    assert rec["rejected"]["node-101"].startswith("node-101: ")  # no random node id
    assert rec["failed"] == {} and len(rec["nodes"]) == 7
    # plain FedAvg averages the x1000 update in: the model is dragged far from 1
    assert float(np.mean(arrays["generator.w"].numpy())) > 100


@pytest.mark.parametrize("method,f", [("median", 0), ("trimmed-mean", 0), ("krum", 1),
                                      ("multikrum", 1), ("bulyan", 1)])
def test_robust_aggregators_resist_the_scaled_update(method, f):
    strategy, arrays, _ = one_round(aggregation=RobustAggregation(method, 0.2, f))
    for key in SHAPES:
        value = arrays[key].numpy()
        assert np.isfinite(value).all() and np.abs(value - 1.0).max() < 0.1, (method, key)
    # integer buffers keep their dtype through Flower's float aggregation
    counter = arrays["generator.bn.num_batches_tracked"].numpy()
    assert counter.dtype == np.int64 and counter.shape == ()
    assert strategy.history[0]["rejected"].keys() == {"node-101", "node-102"}


def test_aggregates_are_flowers_own():
    """Median is the element-wise median; Krum returns one device's model unchanged."""
    honest = [104, 105, 106, 107, 108, 109]
    _, median, _ = one_round(tamper=None, aggregation=RobustAggregation("median"))
    expect = np.median(np.stack([honest_value(n, "generator.w")
                                 for n in [101, 102, 103, *honest]]), axis=0)
    np.testing.assert_allclose(median["generator.w"].numpy(), expect, rtol=1e-6)
    _, krum, _ = one_round(aggregation=RobustAggregation("krum", num_malicious=1))
    got = krum["generator.w"].numpy()
    assert any(np.array_equal(got, honest_value(n, "generator.w")) for n in honest)


def test_norm_bound_rejects_the_scaled_update():
    strategy, arrays, _ = one_round(max_update_norm=50.0)
    rec = strategy.history[0]
    assert "exceeds --max-update-norm 50" in rec["rejected"]["node-103"]
    assert np.abs(arrays["generator.w"].numpy() - 1.0).max() < 0.1
    ref = initial()
    upd = ArrayRecord({k: Array(np.ones(s, np.float32)) for k, s in SHAPES.items()}
                      | {"generator.bn.num_batches_tracked": Array(np.array(7, np.int64))})
    assert update_norm(ref, upd) == pytest.approx(np.sqrt(20 + 6))  # integers left out


def test_too_few_valid_replies_keep_the_model():
    strategy, arrays, grid = one_round(num_nodes=4, min_replies=3)  # 2 valid of 4
    rec = strategy.history[0]
    assert rec["skipped"].startswith("2 valid update(s), 3 needed")
    assert len(arrays) == 0  # no new model
    strategy, _, _ = one_round(num_nodes=5, aggregation=RobustAggregation("krum", 0.2, 1))
    assert "5 needed by krum" in strategy.history[0]["skipped"]


def test_waiting_for_devices_that_never_come_stops_promptly():
    grid = InProcessGrid(honest_app(), 2)
    strategy = FLGAN(fraction_train=1.0, min_available_nodes=5, seed=0,
                     collect_metadata=False, wait_timeout=0.3)
    t0 = time.monotonic()
    with pytest.raises(StallError, match="waited 0 s for 5 devices to connect, only 2 did"):
        strategy.start(grid=grid, initial_arrays=initial(), num_rounds=1)
    assert time.monotonic() - t0 < 5


def test_bad_robustness_settings_are_usage_errors():
    with pytest.raises(ConfigError, match="--aggregator bulyan with --num-malicious 1 needs 7"):
        make_settings("fegan", aggregator="bulyan", num_malicious=1, num_clients=10,
                      fraction=0.3)
    make_settings("fegan", aggregator="bulyan", num_malicious=1, num_clients=10, fraction=0.7)
    with pytest.raises(ConfigError, match="--min-replies 4 needs 4 valid updates"):
        make_settings("flgan", min_replies=4, num_clients=10, fraction=0.2)
    with pytest.raises(ConfigError, match="aggregator"):
        make_settings("fegan", aggregator="mean")
    with pytest.raises(ConfigError, match="trim-beta"):
        make_settings("fegan", trim_beta=0.5)
    with pytest.raises(ValueError, match="min_replies"):
        FLGAN(min_replies=0)


def test_an_error_the_superlink_sends_for_a_dead_node_is_that_nodes():
    """A gone node's "Node Unavailable" error comes from the SuperLink, not from it."""
    from flwr.app import Error

    from flwr_gan.strategy.aggregate import destinations, sender

    sent = Message(RecordDict(), dst_node_id=7, message_type="train")
    sent.metadata.__dict__["_message_id"] = "m-7"  # set on push, as Flower's grids do
    reply = Message(Error(code=0, reason="Node Unavailable"), reply_to=sent)
    reply.metadata.__dict__["_src_node_id"] = 1  # the SuperLink's own id
    assert reply.metadata.src_node_id == 1
    assert sender(reply, destinations([sent])) == 7
    assert sender(reply, {}) == 1  # unknown message: fall back to the source


def test_error_reasons_drop_rays_traceback():
    from flwr_gan.strategy.aggregate import short_reason

    ray = ("<class 'ray.exceptions.RayTaskError(ClientAppException)'>:<'\x1b[36mray::"
           "ClientAppActor.run()\x1b[39m (pid=20392, ip=192.0.2.2, actor_id=d41180)\n"
           "  File x\nException ClientAppException occurred. Message: injected failure of "
           "partition-4 in round 2 (--fail-prob 0.3)'>")
    assert short_reason(ray) == "injected failure of partition-4 in round 2 (--fail-prob 0.3)"
    assert short_reason("plain reason\n") == "plain reason"


class ReversedGrid(InProcessGrid):
    """Replies come back in the reverse order (as devices finishing at other times)."""

    def send_and_receive(self, messages, *, timeout=None):  # type: ignore[no-untyped-def]
        return list(reversed(super().send_and_receive(messages, timeout=timeout)))


def test_reply_order_changes_nothing_bit_for_bit():
    def run(grid_type):  # type: ignore[no-untyped-def]
        grid = grid_type(honest_app(), 9)
        strategy = FLGAN(fraction_train=1.0, min_available_nodes=9, seed=0,
                         collect_metadata=False)
        arrays = strategy.start(grid=grid, initial_arrays=initial(), num_rounds=1).arrays
        return strategy.history[0], arrays

    (rec_a, arr_a), (rec_b, arr_b) = run(InProcessGrid), run(ReversedGrid)
    assert rec_a["nodes"] == rec_b["nodes"] and rec_a["weights"] == rec_b["weights"]
    for key in SHAPES:
        assert np.array_equal(arr_a[key].numpy(), arr_b[key].numpy())
