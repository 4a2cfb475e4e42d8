"""A real deployment: flower-superlink and three flower-supernode processes, `flwr run` FeGAN.

One SuperNode is killed with SIGKILL after the first round; the run must finish, with
the dead device recorded under ``failed`` and never aggregated. The second test does
the same over TLS (certificates made here) with SuperNode authentication (keys
registered with ``flwr supernode register``).
"""

from __future__ import annotations

import pytest

from tests.deployment import ROOT, Federation, make_node_key, make_tls, read_records, wait_for

ROUNDS = 3
RUN_CONFIG = (f"num-clients=3 rounds={ROUNDS} model='small' local-steps=3 batch-size=16 "
              "fraction=1.0 max-samples=100 eval-every=3 n-eval=200 eval-seeds=1 timeout=30.0 "
              "stall-timeout=60.0 out='{out}'")


def run_and_kill_one(fed: Federation, tmp_path) -> list[dict]:  # type: ignore[no-untyped-def]
    """Run FeGAN on ``fed``'s three SuperNodes, SIGKILL partition 0 after round 1."""
    out = tmp_path / "run"
    proc = fed.run(str(ROOT / "examples" / "fegan"), RUN_CONFIG.format(out=out))
    metrics = out / "metrics.jsonl"
    wait_for(lambda: any(r["round"] >= 1 for r in read_records(metrics)) or proc.poll()
             is not None, 150, "round 1 of the run")
    assert proc.poll() is None, fed.log("flwr-run")
    fed.kill("supernode-0")
    proc.wait(timeout=150)
    records = read_records(metrics)
    assert [r["round"] for r in records] == list(range(ROUNDS + 1)), fed.log("flwr-run")
    return records


def check_absence_recorded(records: list[dict]) -> None:
    """The killed device trained until killed, then appears only under ``failed``."""
    keys = {"partition-0", "partition-1", "partition-2"}
    assert set(records[1]["nodes"]) == keys  # before the kill all three trained
    last = records[-1]
    # only the dead device, never the SuperLink that answered "Node Unavailable" for it
    assert set(last["failed"]) == {"partition-0"} and "partition-0" not in last["nodes"]
    assert set(last["nodes"]) == {"partition-1", "partition-2"}
    assert last["rejected"] == {}
    assert last["fid"] is not None and last["fid"] > 0  # the model stayed usable


@pytest.mark.slow
def test_superlink_and_supernodes_survive_a_killed_node(tmp_path):
    fed = Federation(tmp_path)
    try:
        fed.start_superlink()
        for i in range(3):
            fed.start_supernode(i, 3)
        records = run_and_kill_one(fed, tmp_path)
    finally:
        fed.stop()
    check_absence_recorded(records)


@pytest.mark.slow
def test_tls_and_supernode_authentication(tmp_path):
    fed = Federation(tmp_path, tls=make_tls(tmp_path), node_auth=True)
    try:
        fed.start_superlink()
        keys = [make_node_key(tmp_path, f"node{i}") for i in range(3)]
        for _, public in keys:
            fed.register(public)
        for i, (private, _) in enumerate(keys):
            fed.start_supernode(i, 3, private_key=private)
        records = run_and_kill_one(fed, tmp_path)
        # a SuperNode whose key was never registered is refused by the SuperLink
        stranger, _ = make_node_key(tmp_path, "stranger")
        fed.start_supernode(3, 4, private_key=stranger)
        wait_for(lambda: fed.procs["supernode-3"].poll() is not None, 60,
                 "the unregistered SuperNode to be refused")
        refused = fed.log("supernode-3")
        code = fed.procs["supernode-3"].returncode
    finally:
        fed.stop()
    check_absence_recorded(records)
    # Flower 1.41 refuses it at activation (exit code 305) while the registered ones trained
    assert code != 0 and "Failed to activate SuperNode" in refused, refused
    assert "SuperNode ID" not in refused
