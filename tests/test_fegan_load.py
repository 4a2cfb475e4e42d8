import pytest

from flwr_gan.strategy import Capabilities, Load, MetadataError, assign_loads, parse_metadata
from flwr_gan.strategy.metadata import order_devices


def test_linear_load_rule_exact():
    caps = [Capabilities(1000, 1.0), Capabilities(1000, 1.0), Capabilities(500, 1.0),
            Capabilities(250, 0.25), Capabilities(0, 0)]
    loads = assign_loads(caps, batch_size=50, local_steps=30)
    # median memory = 750, median speed = 1.0 (unknown values ignored)
    assert loads[0] == Load(50, 30)
    assert loads[2] == Load(33, 30)          # round(50 * 500/750)
    assert loads[3] == Load(25, 15)          # floors: ceil(0.5*50), ceil(0.5*30)
    assert loads[4] == Load(50, 30)          # reports nothing -> full load
    assert loads[3].units == 375


def test_equal_devices_get_full_load_and_bad_args():
    assert assign_loads([Capabilities(8, 2)] * 3, batch_size=50, local_steps=30) == \
        [Load(50, 30)] * 3
    with pytest.raises(ValueError):
        assign_loads([], batch_size=0, local_steps=30)
    with pytest.raises(ValueError):
        assign_loads([], batch_size=5, local_steps=3, min_fraction=0)


def good(**over):
    rec = {"class-counts": [3, 0, 2], "device-key": "partition-1", "memory-mb": 512.0,
           "compute-speed": 1.0}
    rec.update(over)
    return rec


def test_metadata_parsing_and_validation():
    info = parse_metadata(7, good(), 3)
    assert info.class_counts == (3, 0, 2) and info.num_examples == 5
    assert info.capabilities == Capabilities(512.0, 1.0) and info.key == "partition-1"
    assert parse_metadata(7, good(**{"device-key": ""}), 3).key == "node-7"
    cases = {
        "negative": good(**{"class-counts": [3, -1, 2]}),
        "reported 2 class counts": good(**{"class-counts": [3, 2]}),
        "holds no samples": good(**{"class-counts": [0, 0, 0]}),
        "integers": good(**{"class-counts": [1.5, 0, 2]}),
        "no 'class-counts'": {"device-key": "x"},
        "memory-mb": good(**{"memory-mb": -3.0}),
    }
    for message, rec in cases.items():
        with pytest.raises(MetadataError, match=message):
            parse_metadata(7, rec, 3)


def test_duplicate_device_keys_and_natural_order():
    a = parse_metadata(1, good(**{"device-key": "partition-10"}), 3)
    b = parse_metadata(2, good(**{"device-key": "partition-9"}), 3)
    assert [d.key for d in order_devices([a, b])] == ["partition-9", "partition-10"]
    with pytest.raises(MetadataError, match="both report"):
        order_devices([a, parse_metadata(3, good(**{"device-key": "partition-10"}), 3)])


def test_processed_load_counts_the_images_a_small_device_really_uses():
    load = Load(batch_size=50, local_steps=30)
    assert load.units == 1500
    assert load.processed(20) == 20 * 30  # a batch is the whole 20-image set
    assert load.processed(50) == load.processed(5000) == 1500
    assert load.processed(0) == 0
