"""AdaComp uploads and partial sync for Gossip GAN (flwr_gan.gossip.compression)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, Context, Message
from flwr.clientapp import ClientApp

from flwr_gan.algorithms import make_settings
from flwr_gan.compress.wire import MalformedPayload
from flwr_gan.config import Settings
from flwr_gan.gossip import GossipServer, gossip_generator, gossip_info, gossip_step
from flwr_gan.gossip import make_client_app as _app
from flwr_gan.gossip.client import initial_models
from flwr_gan.gossip.compression import (
    STATE_REF,
    UploadReceiver,
    decode_upload,
    encode_upload,
    reference_of,
    sent_kinds,
)
from flwr_gan.runtime.records import GENERATOR, models_to_arrays, split_arrays
from flwr_gan.runtime.telemetry import content_nbytes
from tests.mdgan_fakes import FakeGrid, set_task_identity


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    set_task_identity(monkeypatch)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared
    yield
    torch.set_num_threads(threads)


def _cfg(**kw: Any) -> Settings:
    base: dict[str, Any] = dict(variant="ddl", rounds=3, local_steps=2, batch_size=8,
                                num_clients=3, seed=3, timeout=5.0, eval_workers=0)
    return make_settings("gossip", **(base | kw))


def _run(apps: list[ClientApp] | None = None, **kw: Any
         ) -> tuple[GossipServer, FakeGrid, list[tuple[Message, Message]]]:
    cfg = _cfg(**kw)
    grid = FakeGrid(apps or [_app() for _ in range(cfg.num_clients)])
    seen: list[tuple[Message, Message]] = []
    grid.on_reply = lambda msg, rep: seen.append((msg, rep))
    server = GossipServer(grid, cfg)
    server.run()
    return server, grid, seen


def _inputs(msg: Message) -> dict[str, ArrayRecord]:
    return {k: v for k, v in msg.content.array_records.items() if "-in." in k}


def _generator_arrays(seed: int = 3) -> ArrayRecord:
    gen, _ = initial_models("small", (1, 28, 28), None, seed)
    return models_to_arrays({GENERATOR: gen})


# -- pure helpers ------------------------------------------------------------


def test_sent_kinds_follow_variant_and_sync() -> None:
    assert [sent_kinds("ddl", s) for s in ("both", "generator", "discriminator")] == \
        ["gd", "g", "d"]
    assert sent_kinds("isolated", "both") == ""
    with pytest.raises(ValueError):
        sent_kinds("ddl", "neither")


def test_sender_and_relay_keep_the_same_reference_and_no_update_is_lost() -> None:
    initial = _generator_arrays()
    ref_sender = reference_of(initial)
    ref_server = {k: v.copy() for k, v in ref_sender.items()}
    rng = np.random.default_rng(0)
    model = {k: v.copy() for k, v in ref_sender.items()}
    for _ in range(5):  # five exchanges of a model drifting away from the initial one
        for k in model:
            model[k] = model[k] + rng.normal(scale=0.01, size=model[k].shape).astype(np.float32)
        record = ArrayRecord({k: Array(v) for k, v in model.items()})
        upload, ref_sender = encode_upload(record, ref_sender, 0.05, "float16")
        assert all(k.startswith("adacomp#") for k in upload.keys())
        full, ref_server = decode_upload(upload, ref_server, what="peer")
        for k in model:
            np.testing.assert_array_equal(ref_sender[k], ref_server[k])  # bit for bit
            np.testing.assert_array_equal(full[k].numpy(), ref_server[k])
    # the gap model - ref is the residual: the reference converges when the model stops
    record = ArrayRecord({k: Array(v) for k, v in model.items()})
    gaps = []
    for _ in range(40):
        _, ref_sender = encode_upload(record, ref_sender, 0.05, "float32")
        gaps.append(sum(float(np.abs(model[k] - ref_sender[k]).sum()) for k in model))
    assert gaps[-1] < 1e-3 * gaps[0] + 1e-6


def test_relay_rejects_a_forged_upload_and_asks_for_a_dense_resync() -> None:
    gen, _ = initial_models("small", (1, 28, 28), None, 3)
    receiver = UploadReceiver({"g": gen}, compressed=True)
    model = _generator_arrays()
    upload, _ = encode_upload(model, reference_of(model), 0.01, "float32")
    forged = ArrayRecord({k: Array(upload[k].numpy().copy()) for k in upload.keys()})
    key = "adacomp#v"
    values = forged[key].numpy().copy()
    values[0] = np.nan
    forged[key] = Array(values)
    with pytest.raises(MalformedPayload, match="NaN"):
        receiver.accept(7, "g", forged, what="partition-7")
    assert receiver.config_for(7) == {"upload-resync": "g"}
    assert receiver.config_for(8) == {"upload-resync": ""}
    full = receiver.accept(7, "g", model, what="partition-7")  # the dense resync
    assert full is model and receiver.config_for(7) == {"upload-resync": ""}
    assert UploadReceiver({"g": gen}, compressed=False).config_for(7) == {}


# -- end to end over the in-process grid --------------------------------------


@pytest.mark.parametrize("ratio", [0.1, 0.01])
def test_compressed_uploads_shrink_by_the_ratio_downloads_stay_dense(ratio: float) -> None:
    plain, _, _ = _run()
    comp, grid, seen = _run(compress="adacomp", compress_ratio=ratio)
    for p, c in zip(plain.records, comp.records, strict=True):
        assert (p["bytes_up"], p["compress"]) == (p["bytes_up_dense"], "none")
        assert abs(c["bytes_up_dense"] - p["bytes_up"]) < 200  # the same models, dense
        # float32 values + uint8/16 indices vs float32: a bit over 4 / (5..6 ratio)
        assert c["bytes_up_dense"] / c["bytes_up"] > (5 if ratio == 0.1 else 20)
        assert c["p2p_bytes"] == c["relayed_up"] < p["p2p_bytes"] / 5
        assert c["relayed_down"] == p["relayed_down"]  # forwarded dense (same sizes)
        assert c["exchanged"] == 6 and not c["rejected"]
    # bytes_up is what came back over the wire
    steps = [rep for msg, rep in seen if msg.metadata.message_type == "train.gossip_step"]
    assert sum(r["bytes_up"] for r in comp.records) == sum(content_nbytes(r.content)
                                                           for r in steps)
    # what a receiver gets is the sender's reference, rebuilt by the relay
    keys = {f"partition-{i}": 101 + i for i in range(3)}
    last = comp.records[-1]
    for sender, peers in last["peers"].items():
        ref = grid.contexts[keys[sender]].state.array_records[STATE_REF]
        final = [m for m, _ in seen if m.metadata.dst_node_id == keys[peers["g"]]
                 and bool(m.content.config_records["config"].get("merge-only", False))]
        got = [a for m in final for k, a in _inputs(m).items() if k.startswith("g-")]
        assert any(all(np.array_equal(a[k].numpy(), ref[k].numpy()) for k in a.keys()
                       if k in ref) for a in got)


def test_first_upload_is_already_a_sparse_delta_against_the_initial_model() -> None:
    _, _, seen = _run(rounds=1, compress="adacomp", compress_ratio=0.01)
    first = [rep for msg, rep in seen if msg.metadata.message_type == "train.gossip_step"
             and not msg.content.config_records["config"].get("merge-only", False)]
    assert len(first) == 3
    for rep in first:
        for kind in "gd":
            keys = list(rep.content.array_records[f"{kind}-out"].keys())
            assert "adacomp#n" in keys and "adacomp#v" in keys
            # only batch-norm statistics and counters travel dense
            assert all(k.startswith("adacomp#") or k.endswith((
                "running_mean", "running_var", "num_batches_tracked")) for k in keys)


def _forging_app() -> ClientApp:
    def forge(msg: Message, ctx: Context) -> Message:
        reply = gossip_step(msg, ctx)
        g_out = reply.content.array_records.get("g-out")
        if g_out is not None and "adacomp#i2" in g_out.keys():
            key = "adacomp#i2"
            idx = g_out[key].numpy().copy()
            idx[-1] = 65535  # out of range for the last uint16-indexed layer
            g_out[key] = Array(idx)
        return reply

    app = ClientApp()
    app.train("gossip_step")(forge)
    app.query("gossip_info")(gossip_info)
    app.query("gossip_generator")(gossip_generator)
    return app


def test_forged_upload_is_rejected_never_relayed_and_the_peer_resyncs() -> None:
    server, grid, seen = _run(apps=[_app(), _forging_app(), _app()], rounds=3,
                              compress="adacomp", compress_ratio=0.01)
    recs = server.records
    # round 1: compressed and forged; round 2: dense resync, accepted; round 3: forged again
    assert [[r["node"] for r in rec["rejected"]] for rec in recs] == \
        [["partition-1"], [], ["partition-1"]]
    assert "below" in recs[0]["rejected"][0]["reason"]
    to_102 = [m for m, _ in seen if m.metadata.dst_node_id == 102
              and m.metadata.message_type == "train.gossip_step"]
    assert [m.content.config_records["config"]["upload-resync"] for m in to_102][:3] == \
        ["", "g", ""]
    for msg in grid.sent:
        for arrays in _inputs(msg).values():
            assert all(np.isfinite(a.numpy()).all() for a in arrays.values())
    assert recs[1]["exchanged"] == 6 and recs[0]["exchanged"] == 5


@pytest.mark.parametrize("sync, kind, other", [("generator", "g", "d"),
                                               ("discriminator", "d", "g")])
def test_partial_sync_exchanges_only_the_chosen_network(sync: str, kind: str,
                                                        other: str) -> None:
    server, grid, seen = _run(sync=sync)
    size = {"g": server.g_nbytes, "d": server.d_nbytes}
    for rec in server.records:
        assert rec["sync"] == sync and rec["exchanged"] == 3
        assert rec["p2p_bytes"] == rec["relayed_up"] == 3 * size[kind]
        assert rec["fl_bytes"] == 2 * 3 * size[kind]
        assert all(set(p) == {kind} for p in rec["peers"].values())
    for msg, rep in seen:
        assert not any(k.startswith(f"{other}-") for k in msg.content.array_records)
        assert f"{other}-out" not in rep.content.array_records
        metrics = rep.content.metric_records.get("metrics")
        if metrics is not None and "merged-g" in metrics:
            assert metrics[f"merged-{other}"] == 0
    both, _, _ = _run()
    assert sum(r["bytes_up"] for r in server.records) < sum(r["bytes_up"]
                                                            for r in both.records)


def test_partial_sync_keeps_the_other_network_local() -> None:
    _, grid, _ = _run(sync="generator", rounds=2)
    stored = [grid.contexts[n].state.array_records["gossip.models"] for n in (101, 102, 103)]
    d = [split_arrays(s, "discriminator") for s in stored]
    key = next(k for k in d[0] if k.endswith("weight"))
    assert not np.array_equal(d[0][key], d[1][key])  # trained apart, never averaged


def test_compressed_partial_sync_and_float16() -> None:
    server, _, seen = _run(sync="generator", compress="adacomp", compress_ratio=0.01,
                           compress_dtype="float16")
    for _, rep in seen:
        out = rep.content.array_records.get("g-out")
        if out is not None:
            values = [out[k].numpy() for k in out.keys() if k == "adacomp#v"]
            assert values and all(v.dtype == np.float16 for v in values)
    for rec in server.records:
        assert rec["bytes_up_dense"] / rec["bytes_up"] > 20
        assert rec["d_loss"] is not None and math.isfinite(rec["d_loss"])


def test_compressed_gossip_still_trains() -> None:
    server, grid, _ = _run(rounds=4, local_steps=3, compress="adacomp", compress_ratio=0.1)
    losses = [r["d_loss"] for r in server.records]
    assert all(math.isfinite(v) for v in losses)
    assert len(set(np.round(losses, 6))) > 1  # D's loss moves
    g0, _ = initial_models("small", (1, 28, 28), None, 3)
    per_node: dict[int, float] = defaultdict(float)
    for n in (101, 102, 103):
        state = split_arrays(grid.contexts[n].state.array_records["gossip.models"], GENERATOR)
        for k, v in g0.state_dict().items():
            per_node[n] += float(np.abs(state[k] - v.numpy()).sum())
    assert all(v > 0 for v in per_node.values())


@pytest.mark.slow
def test_compressed_gossip_learns_fid_drops() -> None:
    from flwr_gan.data import load_dataset
    from flwr_gan.metrics.evaluator import GeneratorEvaluator

    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    evaluator = GeneratorEvaluator.for_dataset(train, test, n_real=500, n_fake=500,
                                               progress=False)
    means: list[float] = []

    def evaluate(iteration: int, gens: dict[str, torch.nn.Module]) -> dict[str, Any]:
        means.append(float(np.mean([evaluator.evaluate(g).fid for g in gens.values()])))
        return {"fid": means[-1]}

    cfg = _cfg(variant="ddl", rounds=4, local_steps=30, batch_size=32, num_clients=2, seed=0,
               compress="adacomp", compress_ratio=0.1)
    GossipServer(FakeGrid([_app(), _app()]), cfg, evaluate_fn=evaluate).run()
    print("compressed gossip FID", means)
    assert len(means) == 2 and means[-1] < 0.7 * means[0], means
