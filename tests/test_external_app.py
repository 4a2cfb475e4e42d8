"""FeGAN / FLGAN imported into someone else's minimal Flower app (its own ClientApp).

The app below is written to a temporary folder as an independent package that
only does ``from flwr_gan.strategy import FLGAN, FeGAN``; it runs in Flower's
simulation engine (Ray) in a fresh Python process.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

CLIENT = '''
import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()

@app.train()
def train(msg, context):
    pid = int(context.node_config["partition-id"])
    arrays = msg.content.array_records["arrays"]
    steps = int(msg.content.config_records["config"]["local-steps"])
    new = {k: Array(v.numpy() + pid) for k, v in arrays.items()}
    return Message(RecordDict({"arrays": ArrayRecord(new), "metrics": MetricRecord(
        {"num-examples": 10 * (pid + 1), "compute-s": 0.01, "steps-done": steps})}),
        reply_to=msg)

@app.query("metadata")
def metadata(msg, context):
    pid = int(context.node_config["partition-id"])
    counts = [0, 0, 0]
    counts[pid % 3] = 5 + pid
    return Message(RecordDict({"metadata": ConfigRecord({
        "class-counts": counts, "device-key": f"dev-{pid}",
        "memory-mb": 100.0, "compute-speed": 1.0})}), reply_to=msg)
'''

SERVER = '''
import json, sys
import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord
from flwr.serverapp import ServerApp
from flwr_gan.strategy import FLGAN, FeGAN

OUT = sys.argv[1]
app = ServerApp()

@app.main()
def main(grid, context):
    init = ArrayRecord({"generator.w": Array(np.zeros(4, np.float32)),
                        "discriminator.w": Array(np.zeros(2, np.float32))})
    out = {}
    fl = FLGAN(fraction_train=0.5, min_available_nodes=4, local_steps=7, seed=0)
    res = fl.start(grid=grid, initial_arrays=init, num_rounds=2,
                   train_config=ConfigRecord({"anything": 1}))
    out["flgan"] = {"w": res.arrays["generator.w"].numpy().tolist(),
                    "history": fl.history}
    fe = FeGAN(fraction_train=0.5, min_available_nodes=4, weighting="linear", seed=0)
    res = fe.start(grid=grid, initial_arrays=init, num_rounds=2)
    out["fegan"] = {"w": res.arrays["generator.w"].numpy().tolist(),
                    "history": fe.history, "keys": [d.key for d in fe.devices]}
    with open(OUT, "w") as fh:
        json.dump(out, fh, default=str)
'''

RUNNER = '''
import sys
sys.path.insert(0, sys.argv[2])
from flwr.simulation import run_simulation
from extapp.client_app import app as client
from extapp.server_app import app as server
run_simulation(server_app=server, client_app=client, num_supernodes=4,
               backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}})
'''


@pytest.mark.slow
def test_strategies_work_inside_a_foreign_flower_app(tmp_path):
    pkg = tmp_path / "extapp"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "client_app.py").write_text(textwrap.dedent(CLIENT))
    (pkg / "server_app.py").write_text(textwrap.dedent(SERVER))
    (tmp_path / "run.py").write_text(textwrap.dedent(RUNNER))
    out = tmp_path / "out.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(tmp_path / "run.py"), str(out), str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(out.read_text())
    # FL-GAN: 2 of 4 nodes per round, examples-weighted; the foreign client saw E=7
    for rec in res["flgan"]["history"]:
        assert len(rec["nodes"]) == 2 and rec["failed"] == {}
        assert abs(sum(rec["weights"]) - 1) < 1e-9
    assert res["flgan"]["history"][0]["examples"] > 0
    # FeGAN: metadata from the foreign client, balanced sampling, per-device keys
    assert res["fegan"]["keys"] == ["dev-0", "dev-1", "dev-2", "dev-3"]
    assert all(len(r["nodes"]) == 2 and "kl_seen" in r for r in res["fegan"]["history"])
    assert res["fegan"]["w"][0] > 0  # the model moved
