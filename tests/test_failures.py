"""Failure and attack injection (a ClientApp mod), deterministic by device key; Ray-free."""

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from flwr_gan.algorithms import make_settings
from flwr_gan.config import ConfigError
from flwr_gan.fl.failures import (
    failure_mod,
    injected_failure,
    injection_config,
    parse_attacks,
)
from flwr_gan.strategy import FLGAN
from tests.fegan_fakes import InProcessGrid, set_task_identity


@pytest.fixture(autouse=True)
def _identity(monkeypatch):
    set_task_identity(monkeypatch)


def app() -> ClientApp:
    client = ClientApp(mods=[failure_mod])

    @client.train()
    def train(msg: Message, ctx: Context) -> Message:
        return Message(RecordDict({
            "arrays": ArrayRecord({"w": Array(np.ones(4, np.float32)),
                                   "n": Array(np.array([3], np.int64))}),
            "metrics": MetricRecord({"num-examples": 5})}), reply_to=msg)

    return client


def run(num_nodes: int, config: dict, rounds: int = 1, node_ids=None) -> FLGAN:
    grid = InProcessGrid(app(), num_nodes, node_ids=node_ids)
    strategy = FLGAN(fraction_train=1.0, min_available_nodes=num_nodes, seed=0,
                     collect_metadata=False)
    start = ArrayRecord({"w": Array(np.zeros(4, np.float32)), "n": Array(np.array([0], np.int64))})
    result = strategy.start(grid=grid, initial_arrays=start, num_rounds=rounds,
                            train_config=ConfigRecord({"seed": 7} | config))
    strategy.final = result.arrays  # type: ignore[attr-defined]
    return strategy


def part(names, base: int) -> set[int]:
    """Partition ids of records' ``node-<id>`` names (nodes are base + partition)."""
    return {int(n.split("-")[1]) - base for n in names}


def test_failure_draw_is_deterministic_and_has_the_asked_rate():
    keys = [f"partition-{i}" for i in range(4000)]
    draws = [injected_failure(3, 5, k, 0.3) for k in keys]
    assert draws == [injected_failure(3, 5, k, 0.3) for k in keys]
    assert 0.27 < np.mean(draws) < 0.33
    assert draws != [injected_failure(3, 6, k, 0.3) for k in keys]  # a new draw each round
    assert not any(injected_failure(3, 5, k, 0.0) for k in keys)


def test_injected_failures_are_recorded_and_keyed_by_device_not_node_id():
    config = injection_config(0.3, "error", "", timeout=5.0)
    first = run(20, config, rounds=3)
    other = run(20, config, rounds=3, node_ids=list(range(900, 920)))
    for r1, r2 in zip(first.history, other.history, strict=True):
        assert r1["failed"] and all("injected failure" in v for v in r1["failed"].values())
        # the same devices (partitions) fail under other node ids
        assert part(r1["failed"], 101) == part(r2["failed"], 900)
        assert part(r1["failed"], 101) == {i for i in range(20)
                                           if injected_failure(7, r1["round"], f"partition-{i}",
                                                               0.3)}
        assert len(r1["nodes"]) + len(r1["failed"]) == 20 and r1["rejected"] == {}
    expected = sum(injected_failure(7, r, f"partition-{i}", 0.3)
                   for r in (1, 2, 3) for i in range(20))
    assert sum(len(r["failed"]) for r in first.history) == expected


def test_attacks_are_rejected_or_averaged_as_configured():
    config = injection_config(0.0, "error",
                              "partition-0=nan,partition-1=shape,partition-2=scale", 5.0)
    strategy = run(5, config)
    rec = strategy.history[0]
    assert set(rec["rejected"]) == {"node-101", "node-102"}  # partitions 0 and 1
    assert "NaN" in rec["rejected"]["node-101"]
    assert "shape" in rec["rejected"]["node-102"]
    assert set(rec["nodes"]) == {"node-103", "node-104", "node-105"}
    # partition 2 sent global + 1000 x update: FedAvg takes it in (the contrast in bench/)
    assert rec["weights"] == [1 / 3] * 3
    np.testing.assert_allclose(strategy.final["w"].numpy(), (1000 + 1 + 1) / 3)
    assert strategy.final["n"].numpy().tolist() == [3]  # integers are not scaled


def test_timeout_mode_answers_late_instead_of_failing():
    config = injection_config(1.0, "timeout", "", timeout=0.0) | {"fail-delay": 0.05}
    rec = run(2, config).history[0]
    assert rec["failed"] == {} and len(rec["nodes"]) == 2  # the in-process grid waits


def test_injection_settings_are_checked():
    assert parse_attacks(" partition-3=scale ,") == {"partition-3": "scale"}
    with pytest.raises(ConfigError, match="--attack entry 'partition-0' is invalid"):
        make_settings("fegan", attack="partition-0")
    with pytest.raises(ConfigError, match="fail-prob"):
        make_settings("fegan", fail_prob=1.5)
    with pytest.raises(ConfigError, match="fail-mode"):
        make_settings("flgan", fail_mode="crash")
    assert injection_config(0.0, "error", "", 5.0) == {}
