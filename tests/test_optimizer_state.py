"""`--optimizer-state local`: a device resumes its own Adam state on the averaged weights."""

import numpy as np
import pytest
import torch

from flwr_gan.algorithms import make_settings
from flwr_gan.cli import main
from flwr_gan.config import ConfigError
from flwr_gan.core.models import build_models
from flwr_gan.core.training import GANTrainer
from flwr_gan.fl.client import make_client_app
from flwr_gan.fl.optstate import LOCAL_OPT_KEYS, restore_optimizers, store_optimizers
from flwr_gan.runtime.records import models_to_arrays
from tests.fegan_fakes import (
    InProcessGrid,
    run_fl_in_process,
    set_task_identity,
)
from tests.fegan_fakes import (
    train_device as train,
)
from tests.test_client_app import ctx


@pytest.fixture(autouse=True)
def _identity(monkeypatch):
    set_task_identity(monkeypatch)




def trainer(preset: str = "small") -> GANTrainer:
    gen, disc = build_models(preset, (1, 28, 28))
    return GANTrainer(gen, disc, seed=0)


def optimizers(t: GANTrainer) -> dict:
    return {"generator": t.opt_g, "discriminator": t.opt_d}


def steps_of(opt: torch.optim.Optimizer) -> set[int]:
    return {int(s["step"]) for s in opt.state.values()}


def test_store_restore_is_exact_and_refuses_another_model():
    c = ctx(0)
    t = trainer()
    assert restore_optimizers(c, optimizers(t)) is False  # nothing kept yet
    batches = iter([torch.rand(8, 1, 28, 28) * 2 - 1 for _ in range(4)])
    t.train(batches, 4)
    store_optimizers(c, optimizers(t))
    fresh = trainer()
    assert restore_optimizers(c, optimizers(fresh)) is True
    for name in ("opt_g", "opt_d"):
        a, b = getattr(t, name), getattr(fresh, name)
        assert steps_of(b) == {4}
        for (pa, sa), (pb, sb) in zip(a.state.items(), b.state.items(), strict=True):
            assert pa.shape == pb.shape
            assert torch.equal(sa["exp_avg"], sb["exp_avg"])
            assert torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    other = trainer("lsgan")  # kept state of another preset: ignored, the device starts fresh
    assert restore_optimizers(c, optimizers(other)) is False
    assert not other.opt_g.state and not other.opt_d.state


def test_device_keeps_its_adam_state_and_the_weights_still_come_from_the_server():
    gen, disc = build_models("small", (1, 28, 28))
    sent = models_to_arrays({"generator": gen, "discriminator": disc})
    kept, reset = ctx(2), ctx(2)
    first_kept = train(kept, sent, 1, **{"optimizer-state": "local"})
    first_reset = train(reset, sent, 1)
    for k in first_kept.keys():  # round 1 starts fresh either way: identical replies
        assert np.array_equal(first_kept[k].numpy(), first_reset[k].numpy())
    assert all(key in kept.state.array_records for key in LOCAL_OPT_KEYS.values())
    assert not any(key in reset.state.array_records for key in LOCAL_OPT_KEYS.values())
    second_kept = train(kept, sent, 2, **{"optimizer-state": "local"})
    second_reset = train(reset, sent, 2)
    g_steps = {int(a.numpy()) for k, a in
               kept.state.array_records[LOCAL_OPT_KEYS["generator"]].items()
               if k.endswith(".step")}
    assert g_steps == {6}  # the step counter went on from round 1 (3 + 3)
    # same weights and batches in round 2; only the Adam state differs, and it shows
    assert any(not np.array_equal(second_kept[k].numpy(), second_reset[k].numpy())
               for k in second_kept.keys() if k.startswith("generator."))


def run_loop(tmp_path, **over) -> tuple[InProcessGrid, list[dict]]:
    settings = make_settings("flgan", num_clients=2, rounds=4, fraction=1.0, model="small",
                             local_steps=25, batch_size=16, partition="iid", eval_every=4,
                             n_eval=200, eval_seeds=1, out=str(tmp_path / "run"),
                             progress=False, **over)
    records, grid = run_fl_in_process(settings, make_client_app())
    return grid, records


def test_a_run_with_local_adam_state_learns_and_differs_from_fresh(tmp_path):
    grid, local = run_loop(tmp_path / "local", optimizer_state="local")
    assert sum(LOCAL_OPT_KEYS["generator"] in c.state.array_records
               for c in grid.contexts.values()) == 2
    fids = [r["fid"] for r in local if r.get("fid") is not None]
    assert len(fids) == 2 and np.isfinite(fids).all() and fids[-1] < 0.6 * fids[0]
    _, fresh = run_loop(tmp_path / "fresh")
    assert [r["d_loss"] for r in fresh[1:2]] == [r["d_loss"] for r in local[1:2]]  # round 1
    assert [r["d_loss"] for r in fresh[2:]] != [r["d_loss"] for r in local[2:]]


def test_bad_values_are_usage_errors(tmp_path, capsys):
    with pytest.raises(ConfigError, match="--resume does not support --optimizer-state local"):
        make_settings("flgan", optimizer_state="local", resume=True)
    with pytest.raises(ConfigError, match="optimizer-state"):
        make_settings("fegan", optimizer_state="kept")
    assert main(["simulate", "--algorithm", "flgan", "--optimizer-state", "global",
                 "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'fresh', 'local'" in err[0]
