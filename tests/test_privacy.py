"""Differential privacy: Flower's DP wrappers and clipping mods around FL-GAN / FeGAN.

Real Messages through Flower's own mods and wrappers, Flower's RDP accountant,
and real `flwr-gan simulate` runs (Ray) for the client-side modes.
"""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Error,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp
from flwr.serverapp.strategy import (
    DifferentialPrivacyClientSideAdaptiveClipping,
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideAdaptiveClipping,
    DifferentialPrivacyServerSideFixedClipping,
)
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM, KEY_NORM_BIT

from flwr_gan.cli import main
from flwr_gan.privacy.accounting import PrivacyLedger
from flwr_gan.privacy.mods import (
    KEY_DP_CLIPPING,
    dp_adaptiveclipping_mod,
    dp_fixedclipping_mod,
)
from flwr_gan.privacy.settings import DPSettings
from flwr_gan.privacy.strategy import DPGuard, account_round, dp_wrapper, make_ledger
from flwr_gan.strategy import FLGAN
from tests.fegan_fakes import InProcessGrid, set_task_identity


@pytest.fixture(autouse=True)
def _identity(monkeypatch):
    set_task_identity(monkeypatch)


def model(value: float = 0.0, steps: int = 0) -> ArrayRecord:
    return ArrayRecord({"w": Array(np.full(50, value, dtype=np.float32)),
                        "bn.num_batches_tracked": Array(np.array(steps, dtype=np.int64)),
                        "bn.running_var": Array(np.ones(4, dtype=np.float32))})


def train_msg(config: dict, arrays: ArrayRecord | None = None) -> Message:
    return Message(RecordDict({"arrays": arrays or model(),
                               "config": ConfigRecord({"server-round": 1} | config)}),
                   message_type="train", dst_node_id=7)


def context() -> Context:
    return Context(run_id=1, node_id=7, node_config={}, state=RecordDict(), run_config={})


def trainer(shift: float = 1.0):
    """A device handler: moves every weight by ``shift`` and counts 5 steps."""
    def handler(msg: Message, _ctx: Context) -> Message:
        received = next(iter(msg.content.array_records.values()))
        out = ArrayRecord({
            "w": Array(received["w"].numpy() + np.float32(shift)),
            "bn.num_batches_tracked": Array(np.asarray(
                received["bn.num_batches_tracked"].numpy() + 5)),
            "bn.running_var": received["bn.running_var"]})
        return Message(RecordDict({"arrays": out,
                                   "metrics": MetricRecord({"num-examples": 10})}),
                       reply_to=msg)
    return handler


def float_update_norm(reply: Message, sent: ArrayRecord) -> float:
    arrays = reply.content.array_records["arrays"]
    return float(np.linalg.norm(arrays["w"].numpy() - sent["w"].numpy()))


# ---------------------------------------------------------------- device mods


@pytest.mark.parametrize("gated", [dp_fixedclipping_mod, dp_adaptiveclipping_mod])
def test_gate_passes_other_messages_through_untouched(gated):
    handler = trainer(1.0)
    plain = train_msg({})  # no clipping norm: an ordinary FL-GAN round
    reply = gated(plain, context(), handler)
    assert not reply.has_error()
    assert float_update_norm(reply, model()) == pytest.approx(math.sqrt(50))
    query = Message(RecordDict({"config": ConfigRecord({})}), message_type="query.metadata",
                    dst_node_id=7)

    def answer(msg: Message, _ctx: Context) -> Message:
        return Message(RecordDict({"metadata": ConfigRecord({"x": 1})}), reply_to=msg)

    out = gated(query, context(), answer)
    assert not out.has_error() and out.content.config_records["metadata"]["x"] == 1
    # a train message of another family layout (no ArrayRecord) without the key
    other = Message(RecordDict({"config": ConfigRecord({"step": 1})}),
                    message_type="train.gossip_step", dst_node_id=7)
    assert not gated(other, context(), answer).has_error()


def test_fixed_gate_clips_the_float_update_and_keeps_the_counters():
    sent = model()
    msg = train_msg({KEY_CLIPPING_NORM: 0.5, KEY_DP_CLIPPING: "fixed"}, sent)
    reply = dp_fixedclipping_mod(msg, context(), trainer(1.0))
    assert not reply.has_error()
    assert float_update_norm(reply, sent) == pytest.approx(0.5, rel=1e-5)
    counter = reply.content.array_records["arrays"]["bn.num_batches_tracked"].numpy()
    assert counter.dtype == np.int64 and int(counter) == 5
    assert KEY_NORM_BIT not in reply.content.metric_records["metrics"]
    # the adaptive gate stays out of a fixed-clipping round
    untouched = dp_adaptiveclipping_mod(msg, context(), trainer(1.0))
    assert float_update_norm(untouched, sent) == pytest.approx(math.sqrt(50))


def test_adaptive_gate_clips_and_reports_the_norm_bit():
    sent = model()
    for shift, bit in ((1.0, 1), (0.001, 0)):
        msg = train_msg({KEY_CLIPPING_NORM: 0.5, KEY_DP_CLIPPING: "adaptive"}, sent)
        reply = dp_adaptiveclipping_mod(msg, context(), trainer(shift))
        assert float_update_norm(reply, sent) <= 0.5 + 1e-6
        assert reply.content.metric_records["metrics"][KEY_NORM_BIT] == bit


def test_the_device_app_registers_the_gated_mods_after_adacomp():
    from flwr_gan.apps import device_app
    from flwr_gan.compress.mod import adacomp_mod
    from flwr_gan.fl.failures import failure_mod

    mods = device_app()._mods  # noqa: SLF001 - the registration order is the contract
    assert mods[-4:] == [adacomp_mod, failure_mod, dp_fixedclipping_mod,
                         dp_adaptiveclipping_mod]


# ---------------------------------------------------------------- accountant


def test_epsilon_grows_with_rounds_and_shrinks_with_noise():
    def run(z: float, rounds: int) -> list[float]:
        ledger = PrivacyLedger(1e-5, population=10)
        eps = []
        for _ in range(rounds):
            ledger.release(noise_std=z * 1.0 / 2, clipping_norm=1.0, weights=[0.5, 0.5])
            eps.append(ledger.epsilon())
        return eps

    low, high = run(1.0, 4), run(2.0, 4)
    assert all(b > a for a, b in zip(low, low[1:], strict=False))
    assert all(h < lo for h, lo in zip(high, low, strict=True))


def test_dropouts_and_weights_change_what_is_accounted():
    ledger = PrivacyLedger(1e-5, population=10)
    assert ledger.epsilon() is None  # nothing released yet
    # z C / m noise over 1 of m = 2 updates: the release has noise multiplier z / 2
    assert ledger.release(noise_std=0.5, clipping_norm=1.0, weights=[3.0]) == 0.5
    assert ledger.epsilon() is not None
    ledger.release(noise_std=0.5, clipping_norm=1.0, weights=[0.9, 0.1])
    assert ledger.epsilon() is None and "non-uniform" in (ledger.void or "")
    # Client-side clipping does not bound AdaComp's residual: no run gets that far.
    from flwr_gan.algorithms import make_settings
    from flwr_gan.config import ConfigError

    with pytest.raises(ConfigError, match="--dp client-fixed with --compress adacomp"):
        make_settings("fegan", dp="client-fixed", compress="adacomp")
    assert make_settings("fegan", dp="server-fixed", compress="adacomp").privacy.dp


def test_adaptive_count_noise_costs_budget():
    plain, adaptive = PrivacyLedger(1e-5, 10), PrivacyLedger(1e-5, 10)
    plain.release(noise_std=0.5, clipping_norm=1.0, weights=[0.5, 0.5])
    adaptive.release(noise_std=0.5, clipping_norm=1.0, weights=[0.5, 0.5], count_stddev=1.0)
    assert adaptive.epsilon() > plain.epsilon()  # type: ignore[operator]


# ---------------------------------------------------------------- server wrappers


@pytest.mark.parametrize("mode, cls", [
    ("server-fixed", DifferentialPrivacyServerSideFixedClipping),
    ("client-fixed", DifferentialPrivacyClientSideFixedClipping),
    ("server-adaptive", DifferentialPrivacyServerSideAdaptiveClipping),
    ("client-adaptive", DifferentialPrivacyClientSideAdaptiveClipping),
])
def test_dp_wrapper_returns_flowers_own_class(mode, cls):
    inner = FLGAN(fraction_train=0.5)
    dp = dp_wrapper(inner, DPSettings(dp=mode, noise_multiplier=1.0, clipping_norm=0.3), 2)
    assert type(dp) is cls and dp.strategy is inner and dp.num_sampled_clients == 2
    assert dp.clipping_norm == 0.3


def device(mods: list) -> ClientApp:
    app = ClientApp(mods=mods)
    tamper = {102: float("nan")}

    @app.train()
    def _train(msg: Message, ctx: Context) -> Message:
        reply = trainer(tamper.get(ctx.node_id, 1.0))(msg, ctx)
        if ctx.node_id == 103:
            raise RuntimeError("device crashed")
        return reply

    return app


@pytest.mark.parametrize("mode", ["server-fixed", "client-fixed", "server-adaptive",
                                  "client-adaptive"])
def test_nan_and_error_replies_are_excluded_not_fatal(mode):
    """4 devices: one NaN update, one crash; the round still averages the 2 good ones."""
    inner = FLGAN(fraction_train=1.0, min_available_nodes=4, seed=0)
    guard = DPGuard(dp_wrapper(inner, DPSettings(dp=mode, noise_multiplier=0.1,
                                                 clipping_norm=0.5), 4))
    grid = InProcessGrid(device([dp_fixedclipping_mod, dp_adaptiveclipping_mod]), 4)
    result = guard.start(grid=grid, initial_arrays=model(), num_rounds=1, timeout=10)
    record = inner.history[-1]
    assert len(record["nodes"]) == 2, record
    excluded = guard.rounds[-1]["excluded"]
    assert set(excluded) == {102, 103} and "NaN" in excluded[102] and "crashed" in excluded[103]
    out = result.arrays
    counter = out["bn.num_batches_tracked"].numpy()
    assert counter.dtype == np.int64 and int(counter) == 5  # counters: not clipped nor noised
    assert (out["bn.running_var"].numpy() >= 0).all()
    # the update is clipped to 0.5 (then noised with std 0.1 * C / 4 per entry)
    norm = float(np.linalg.norm(out["w"].numpy()))
    assert norm < 0.5 + 6 * 0.1 * guard.rounds[-1]["next_clipping_norm"] / 4 * math.sqrt(50)
    assert norm < math.sqrt(50) / 2
    fields = account_round(guard, make_ledger(DPSettings(dp=mode), 4), record["weights"])
    assert fields["dp"] == mode and fields["dp_epsilon"] > 0


def test_dp_flags_exist_only_for_fegan_and_flgan(tmp_path, capsys):
    for algo in ("mdgan", "gossip"):
        assert main(["simulate", "--algorithm", algo, "--dp", "client-fixed",
                     "--out", str(tmp_path / algo)]) == 2
        assert "--dp" in capsys.readouterr().err
    assert main(["simulate", "--algorithm", "flgan", "--dp", "client-fixed",
                 "--noise-multiplier", "0", "--out", str(tmp_path / "z")]) == 2
    assert "noise-multiplier" in capsys.readouterr().err


# ---------------------------------------------------------------- real runs


def simulate(tmp_path, algorithm: str, mode: str, *extra: str) -> list[dict]:
    out = tmp_path / f"{algorithm}-{mode}"
    cmd = [sys.executable, "-m", "flwr_gan.cli", "simulate", "--algorithm", algorithm,
           "--num-clients", "4", "--partition", "iid", "--fraction", "0.5",
           "--local-steps", "5", "--model", "small", "--rounds", "2", "--eval-every", "2",
           "--n-eval", "200", "--eval-seeds", "1", "--dp", mode, "--noise-multiplier", "0.5",
           "--clipping-norm", "0.1", *extra, "--out", str(out), "--overwrite", "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("algorithm, mode, extra", [
    ("flgan", "client-fixed", ()),
    ("flgan", "client-adaptive", ()),
    ("fegan", "server-fixed", ("--weighting", "none", "--no-load-weighting")),
])
def test_simulate_with_dp_reports_a_growing_budget(tmp_path, algorithm, mode, extra):
    recs = simulate(tmp_path, algorithm, mode, *extra)[1:]
    assert [r["round"] for r in recs] == [1, 2]
    assert all(r["dp"] == mode and r["failed"] == {} and len(r["nodes"]) == 2 for r in recs)
    assert recs[0]["clipping_norm"] == 0.1
    assert 0 < recs[0]["dp_epsilon"] < recs[1]["dp_epsilon"]
    assert recs[-1]["fid"] is not None and math.isfinite(recs[-1]["fid"])
    if mode.endswith("fixed"):  # Flower's noise is z C / m = 0.5 * 0.1 / 2
        assert all(r["dp_noise_std"] == pytest.approx(0.025) for r in recs)
    else:  # the adaptive norm moved and the next round clipped with it
        assert recs[1]["clipping_norm"] == recs[0]["dp_next_clipping_norm"] != 0.1


def test_a_dp_run_repeats_exactly_with_the_same_seed(tmp_path, monkeypatch):
    """Flower draws the noise from numpy's global generator: the run seeds it."""
    from flwr_gan.apps import device_app
    from flwr_gan.fl.server import run_federated
    from flwr_gan.runtime.experiment import prepare
    from tests.test_simulation import tiny

    set_task_identity(monkeypatch)

    def once(name: str) -> list[dict]:
        settings = tiny(tmp_path / name, algorithm="flgan", rounds=2, eval_every=2,
                        dp="server-fixed", noise_multiplier=0.5, clipping_norm=1.0)
        exp = prepare(settings, unit="round", total=settings.rounds, federated=True)
        grid = InProcessGrid(device_app(), settings.num_clients,
                             run_config=settings.to_run_config())
        records = run_federated(grid, exp)
        exp.close()
        return records

    from tests.test_determinism import untimed

    a, b = once("a"), once("b")
    assert untimed(a) == untimed(b)
    assert a[-1]["dp_noise_std"] > 0 and a[-1]["fid"] == b[-1]["fid"]


class SuperLinkAnswersForDeadNode(InProcessGrid):
    """Messages get ids (as Flower's grids give them); node 104 is gone, and the
    SuperLink answers for it with an error under its own id, wrapped as Ray does."""

    def send_and_receive(self, messages, *, timeout=None):  # type: ignore[no-untyped-def]
        messages = list(messages)
        for i, msg in enumerate(messages):
            msg.metadata.__dict__["_message_id"] = f"m{i}"
        replies = super().send_and_receive(messages, timeout=timeout)
        for i in range(len(replies)):
            if messages[i].metadata.dst_node_id == 104:
                error = Message(Error(code=0, reason="\x1b[36mpid=7\x1b[39m\nException X "
                                      "occurred. Message: Node Unavailable'>"),
                                reply_to=messages[i])
                error.metadata.__dict__["_src_node_id"] = 1
                replies[i] = error
        return replies


def test_guard_names_the_dead_node_not_the_superlink():
    inner = FLGAN(fraction_train=1.0, min_available_nodes=4, seed=0)
    guard = DPGuard(dp_wrapper(inner, DPSettings(dp="server-fixed", noise_multiplier=0.1,
                                                 clipping_norm=0.5), 4))
    grid = SuperLinkAnswersForDeadNode(device([]), 4)
    guard.start(grid=grid, initial_arrays=model(), num_rounds=1, timeout=10)
    excluded = guard.rounds[-1]["excluded"]
    assert 1 not in excluded and excluded[104] == "error: Node Unavailable"
