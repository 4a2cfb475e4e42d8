import numpy as np
import pytest

from flwr_gan.data.node import DataConfig, dataset_partition, node_training_data


def test_run_config_roundtrip_and_types():
    cfg = DataConfig.from_run_config({"dataset": "mnist", "partition": "fegan", "max-class": 4,
                                      "alpha": 1, "unrelated": "x"})
    assert cfg.partition == "fegan" and cfg.max_class == 4 and cfg.alpha == 1.0
    assert DataConfig.from_run_config(cfg.to_run_config()) == cfg
    assert DataConfig.from_run_config({}) == DataConfig()
    with pytest.raises(ValueError, match="'max-class': 'many' is invalid: expected an integer"):
        DataConfig.from_run_config({"max-class": "many"})
    with pytest.raises(ValueError, match="'partition': 'noniid' is invalid: expected one of"):
        DataConfig.from_run_config({"partition": "noniid"})
    with pytest.raises(ValueError, match="'alpha': -1 is invalid: expected a number > 0"):
        DataConfig.from_run_config({"alpha": -1})


def test_nodes_take_disjoint_parts_of_real_mnist():
    cfg = DataConfig(dataset="mnist", partition="fegan", max_class=3, max_samples=200)
    part = dataset_partition(cfg, 20)
    a = node_training_data({"partition-id": 19, "num-partitions": 20}, cfg)
    b = node_training_data({"partition-id": 3, "num-partitions": 20}, cfg)
    assert len(a) == part.sizes[19] and len(b) == part.sizes[3]
    np.testing.assert_array_equal(a.class_counts(), part.histograms[19])
    assert not set(part.indices[19].tolist()) & set(part.indices[3].tolist())


def test_the_papers_shared_draw_reaches_the_nodes():
    # The FeGAN reference code's (max_class, max_samples) = (10, 3000) on 80 devices: only the
    # paper's shared draw builds it; nodes then hold overlapping images.
    cfg = DataConfig(dataset="mnist", partition="fegan", max_class=10, max_samples=3000,
                     fegan_draw="shared")
    assert DataConfig.from_run_config(cfg.to_run_config()) == cfg
    part = dataset_partition(cfg, 80)
    last = node_training_data({"partition-id": 79, "num-partitions": 80}, cfg)
    prev = node_training_data({"partition-id": 78, "num-partitions": 80}, cfg)
    np.testing.assert_array_equal(last.class_counts(), part.histograms[79])
    assert len(last) == part.sizes[79] > 3000
    assert set(part.indices[79].tolist()) & set(part.indices[78].tolist())
    assert len(prev) == part.sizes[78]
    with pytest.raises(ValueError, match="devices without samples"):
        dataset_partition(DataConfig(dataset="mnist", partition="fegan", max_class=10,
                                     max_samples=3000), 80)


def test_edge_node_uses_its_own_folder(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (12, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "mine.npz", x=x, y=np.arange(12) % 3)
    data = node_training_data({"data-path": str(tmp_path / "mine.npz")}, DataConfig())
    assert len(data) == 12 and data.image_shape == (1, 28, 28)


def test_node_without_data_gets_a_clear_error():
    with pytest.raises(ValueError, match="data-path="):
        node_training_data({}, DataConfig())
    with pytest.raises(ValueError, match="outside"):
        node_training_data({"partition-id": 5, "num-partitions": 5}, DataConfig())
