import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from flwr_gan.runtime.telemetry import LinkModel, NodeCost, content_nbytes, virtual_round_seconds


def test_content_size_tracks_payload():
    small = RecordDict({"a": ArrayRecord({"x": Array(np.zeros(10, np.float32))})})
    big = RecordDict({"a": ArrayRecord({"x": Array(np.zeros(10_000, np.float32))})})
    assert content_nbytes(big) - content_nbytes(small) == pytest.approx(4 * 9_990, rel=0.01)
    with_cfg = RecordDict({"a": ArrayRecord({"x": Array(np.zeros(10, np.float32))}),
                           "c": ConfigRecord({"lr": 0.1})})
    assert content_nbytes(with_cfg) > content_nbytes(small)


def test_virtual_clock_slowest_node_sets_the_pace():
    link = LinkModel(bandwidth_bps=8e6, latency_s=0.01)  # 1 MB/s
    costs = [NodeCost(1, 2.0, 1_000_000, 0), NodeCost(2, 0.5, 3_000_000, 1_000_000)]
    # node 1: 2 + 1 + 0.02 ; node 2: 0.5 + 4 + 0.02
    assert virtual_round_seconds(costs, server_s=0.3, link=link) == pytest.approx(4.82)
    assert virtual_round_seconds([], server_s=0.3, link=link) == pytest.approx(0.3)


def test_bad_links():
    with pytest.raises(ValueError, match="bandwidth"):
        LinkModel(bandwidth_bps=0)
    with pytest.raises(ValueError, match="latency"):
        LinkModel(latency_s=-1)
