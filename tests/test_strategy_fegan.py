"""FeGAN strategy: metadata validation, sampling, load assignment, weights, resume. Ray-free."""

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, RecordDict

from flwr_gan.strategy import (
    BalancedSampler,
    FeGAN,
    MetadataError,
    assign_loads,
    combine_weights,
    kl_scores,
    kl_weights,
)
from flwr_gan.strategy.load import Capabilities
from tests.fegan_fakes import InProcessGrid, set_task_identity
from tests.test_strategy_flgan import constant_client, initial

# Node 101 + i is device partition-i. Node 105 reports negative counts, 106 the wrong length.
META = {101: [40, 0, 0], 102: [0, 30, 0], 103: [10, 0, 20], 104: [0, 5, 5],
        105: [3, -1, 0], 106: [1, 1]}
EXAMPLES = {n: 10 for n in META}


def ids(keys):
    """Node ids of the fakes (101 + partition) from the device keys records name."""
    out = [101 + int(k.split("-")[1]) if k.startswith("partition-") else int(k.split("-")[1])
           for k in keys]
    return dict(zip(out, keys.values(), strict=True)) if isinstance(keys, dict) else out


@pytest.fixture(autouse=True)
def _identity(monkeypatch):
    set_task_identity(monkeypatch)


def test_metadata_round_excludes_invalid_devices_and_assigns_loads():
    grid = InProcessGrid(constant_client(EXAMPLES, META), 6)
    strategy = FeGAN(fraction_train=1.0, min_available_nodes=6, num_classes=3, seed=0)
    strategy.start(grid=grid, initial_arrays=initial(), num_rounds=1)
    assert [d.node_id for d in strategy.devices] == [101, 102, 103, 104]
    assert "negative" in strategy.excluded[105] and "reported 2" in strategy.excluded[106]
    assert set(ids(strategy.history[0]["intended"])) == {101, 102, 103, 104}
    # node 104 reports a quarter of the memory and compute: B, E floored at half
    train_msgs = [m for m in grid.sent if m.metadata.message_type == "train"]
    cfg = {m.metadata.dst_node_id: m.content.config_records["config"] for m in train_msgs}
    assert (cfg[104]["batch-size"], cfg[104]["local-steps"]) == (25, 15)
    assert (cfg[101]["batch-size"], cfg[101]["local-steps"]) == (50, 30)
    assert strategy.metadata_telemetry["devices"] == 4


def test_aggregation_uses_kl_weights_times_load_of_the_nodes_that_replied():
    grid = InProcessGrid(constant_client(EXAMPLES, META), 6, drop=[102])
    strategy = FeGAN(fraction_train=1.0, min_available_nodes=6, num_classes=3,
                     weighting="linear", seed=0)
    result = strategy.start(grid=grid, initial_arrays=initial(), num_rounds=1)
    counts = [META[n] for n in (101, 102, 103, 104)]
    scores = kl_scores(counts)
    replied = [0, 2, 3]  # 102 never answers
    loads = assign_loads([Capabilities(1000, 1), Capabilities(1000, 1), Capabilities(1000, 1),
                          Capabilities(250, 0.25)], batch_size=50, local_steps=30)
    # every device here holds fewer images than its batch: it trains on all of them,
    # min(B_k, n_k) * E_k images per step, and is weighted by that, not by B_k * E_k
    processed = [loads[i].processed(sum(counts[i])) for i in replied]
    assert processed == [40 * 30, 30 * 30, 10 * 15]
    w = combine_weights(kl_weights(scores[replied], "linear"), processed)
    expected = float(np.dot(w, [101, 103, 104]))
    np.testing.assert_allclose(result.arrays["generator.w"].numpy(), expected, rtol=1e-6)
    rec = strategy.history[0]
    assert sorted(ids(rec["nodes"])) == [101, 103, 104] and 102 in ids(rec["failed"])
    np.testing.assert_allclose(sorted(rec["weights"]), sorted(w))
    # the data the server has seen: the three replying devices, not the intended four
    seen = np.sum([counts[i] for i in replied], axis=0)
    assert rec["coverage"] == pytest.approx(seen.sum() / np.sum(counts))


def test_balanced_sampling_follows_the_sampler_and_ablations_are_independent():
    grid = InProcessGrid(constant_client(EXAMPLES, META), 6)
    strategy = FeGAN(fraction_train=0.5, min_available_nodes=6, num_classes=3, seed=0,
                     weighting="none", load_weighting=False)
    strategy.start(grid=grid, initial_arrays=initial(), num_rounds=3)
    ref = BalancedSampler([META[n] for n in (101, 102, 103, 104)])
    for rec in strategy.history:
        assert ids(rec["nodes"]) == [101 + i for i in ref.sample(2)]
        np.testing.assert_allclose(rec["weights"], [0.5, 0.5])  # w=0, no load weighting
    rand = FeGAN(fraction_train=0.5, min_available_nodes=6, num_classes=3, seed=0,
                 sampling="random", weighting="exp")
    rand.start(grid=grid, initial_arrays=initial(), num_rounds=2)
    assert all(len(ids(r["nodes"])) == 2 for r in rand.history)


def test_no_usable_metadata_is_a_clear_error():
    grid = InProcessGrid(constant_client(EXAMPLES, {n: [0, 0, 0] for n in META}), 6)
    with pytest.raises(MetadataError, match="none of the 6 nodes"):
        FeGAN(fraction_train=1.0, min_available_nodes=6, seed=0).start(
            grid=grid, initial_arrays=initial(), num_rounds=1)


def test_state_dict_resume_continues_the_same_schedule():
    grid = InProcessGrid(constant_client(EXAMPLES, META), 6)
    full = FeGAN(fraction_train=0.5, min_available_nodes=6, num_classes=3, seed=1)
    full.start(grid=grid, initial_arrays=initial(), num_rounds=4)
    first = FeGAN(fraction_train=0.5, min_available_nodes=6, num_classes=3, seed=1)
    first.start(grid=grid, initial_arrays=initial(), num_rounds=2)
    # a "restarted server": new node ids, same devices (keys and counts)
    moved = {n + 1000: c for n, c in META.items()}
    grid2 = InProcessGrid(constant_client({n: 10 for n in moved}, {
        n: META[n - 1000] for n in moved}), 6)
    grid2.nodes = list(moved)
    grid2.contexts = {n + 1000: Context(run_id=1, node_id=n + 1000,
                                        node_config={"key": f"partition-{n - 101}"},
                                        state=RecordDict(), run_config={})
                      for n in META}
    second = FeGAN(fraction_train=0.5, min_available_nodes=6, num_classes=3, seed=1)
    second.load_state_dict(first.state_dict())
    second.start(grid=grid2, initial_arrays=initial(), num_rounds=2)
    assert second.rounds_done == 4 and [r["round"] for r in second.history] == [1, 2, 3, 4]
    assert [r["devices"] for r in second.history] == [r["devices"] for r in full.history]
    assert second.history[-1]["kl_seen"] == pytest.approx(full.history[-1]["kl_seen"])
    # different devices -> refuse to resume
    third = FeGAN(fraction_train=0.5, min_available_nodes=6, num_classes=3, seed=1)
    state = first.state_dict()
    state["devices"][0]["class_counts"] = [1, 2, 3]
    third.load_state_dict(state)
    with pytest.raises(MetadataError, match="differ from the checkpoint"):
        third.start(grid=grid, initial_arrays=initial(), num_rounds=1)


def test_constructor_validation():
    with pytest.raises(ValueError, match="sampling"):
        FeGAN(sampling="greedy")
    with pytest.raises(ValueError, match="weighting"):
        FeGAN(weighting="softmax")
    with pytest.raises(ValueError, match="fraction_train"):
        FeGAN(fraction_train=0.0)


@pytest.mark.slow
def test_fegan_with_the_real_client_app_learns_mnist(monkeypatch):
    """Eight MNIST devices (FeGAN partition), real training in-process: FID must drop."""
    import torch

    from flwr_gan.core.models import build_models
    from flwr_gan.data import load_dataset
    from flwr_gan.data.node import DataConfig, load_training_set
    from flwr_gan.fl.client import ClientSettings, make_client_app
    from flwr_gan.metrics.evaluator import GeneratorEvaluator
    from flwr_gan.runtime.records import load_arrays, models_to_arrays

    torch.manual_seed(0)
    torch.set_num_threads(1)
    data = DataConfig(partition="fegan", max_class=3, max_samples=300)
    grid = InProcessGrid(make_client_app(ClientSettings(data=data)), 8)
    g, d = build_models("small", (1, 28, 28))
    strategy = FeGAN(fraction_train=0.25, min_available_nodes=8, local_steps=25,
                     batch_size=32, seed=0)
    result = strategy.start(
        grid=grid, initial_arrays=models_to_arrays({"generator": g, "discriminator": d}),
        num_rounds=10, train_config=ConfigRecord({"model": "small", "num-threads": 1}))
    ev = GeneratorEvaluator.for_dataset(load_training_set("mnist"), load_dataset("mnist", "test"),
                                        n_real=500, n_fake=500, progress=False)
    before = ev.evaluate(g).fid
    load_arrays(g, result.arrays, "generator")
    after = ev.evaluate(g).fid
    assert after < 0.75 * before, (before, after)  # measured: 1077 -> 611
    assert all(ids(r["failed"]) == {} for r in strategy.history)
    assert strategy.history[-1]["coverage"] > strategy.history[0]["coverage"]


def test_real_client_metadata_matches_partition():
    from flwr_gan.data.node import DataConfig, dataset_partition
    from flwr_gan.fl.client import ClientSettings, make_client_app

    data = DataConfig(partition="fegan", max_class=3, max_samples=100)
    grid = InProcessGrid(make_client_app(ClientSettings(data=data)), 6)
    strategy = FeGAN(fraction_train=0.5, min_available_nodes=6, seed=0)
    devices = strategy.query_metadata(grid)
    hist = dataset_partition(data, 6).histograms
    assert [d.key for d in devices] == [f"partition-{i}" for i in range(6)]
    for i, dev in enumerate(devices):
        assert list(dev.class_counts) == hist[i].tolist()


def test_kl_seen_against_a_reference_distribution():
    grid = InProcessGrid(constant_client(EXAMPLES, META), 6)
    strategy = FeGAN(fraction_train=0.25, min_available_nodes=6, num_classes=3, seed=0,
                     kl_reference=[1, 1, 1])
    strategy.start(grid=grid, initial_arrays=initial(), num_rounds=1)
    from flwr_gan.strategy import kl_divergence

    rec = strategy.history[0]
    seen = np.sum([META[n] for n in ids(rec["nodes"])], axis=0)
    assert rec["kl_seen_reference"] == pytest.approx(kl_divergence(seen, [1, 1, 1]))
