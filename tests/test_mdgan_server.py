"""MD-GAN server + worker handlers end to end over an in-process Grid (no Ray).

The math checks: the generator update through error feedback equals the
standalone training core's generator step (N=1) and the gradient of the
averaged generator loss (N>1); malformed feedback is never applied; crashes,
timeouts and swaps behave as specified; payloads match the paper's Table III.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, Context, Message
from flwr.clientapp import ClientApp

from flwr_gan.core.losses import get_loss
from flwr_gan.core.models import build_models, count_parameters
from flwr_gan.core.training import (
    OptimizerConfig,
    discriminator_step,
    generator_step,
    make_optimizer,
)
from flwr_gan.data.node import DataConfig, node_training_data
from flwr_gan.mdgan import MDGANServer, make_client_app, register_handlers
from flwr_gan.mdgan.assignment import real_batch_indices
from flwr_gan.mdgan.client import worker_seed
from flwr_gan.runtime.records import load_arrays
from tests.mdgan_fakes import FakeGrid, mdgan, set_task_identity

SHAPE = (1, 28, 28)


@pytest.fixture(autouse=True)
def _task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    set_task_identity(monkeypatch)


def _initial_models(seed: int, model: str = "small") -> tuple[torch.nn.Module, torch.nn.Module]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen, _ = build_models(model, SHAPE)
        torch.manual_seed(seed + 1)
        _, disc = build_models(model, SHAPE)
    return gen, disc


def _real_batch(pid: int, n: int, node_id: int, seed: int, b: int, it: int) -> torch.Tensor:
    node = {"partition-id": pid, "num-partitions": n}
    images = node_training_data(node, DataConfig()).to_tensor()
    idx = real_batch_indices(images.size(0), b, it, worker_seed(seed, f"partition-{pid}"))
    return images[torch.as_tensor(idx)]


def _worker_disc(grid: FakeGrid, node: int, model: str = "small") -> torch.nn.Module:
    _, disc = build_models(model, SHAPE)
    load_arrays(disc, grid.contexts[node].state.array_records["mdgan.disc"], "discriminator")
    return disc


def test_n1_feedback_path_equals_standalone_core() -> None:
    seed, b, iters = 7, 16, 3
    cfg = mdgan(iterations=iters, num_clients=1, batch_size=b, kappa="1", d_steps=1,
                      swap_epochs=0, model="small", seed=seed)
    grid = FakeGrid([make_client_app()])
    server = MDGANServer(grid, cfg)
    gen, disc = _initial_models(seed)
    pairs = zip(gen.state_dict().values(), server.generator.state_dict().values(), strict=True)
    assert all(torch.equal(a, c) for a, c in pairs)
    opt = OptimizerConfig()
    opt_g, opt_d = make_optimizer(gen, opt.lr_g, opt), make_optimizer(disc, opt.lr_d, opt)
    loss = get_loss("bce")
    rng = torch.Generator().manual_seed(seed)
    server.run()
    gen.train()
    for it in range(iters):
        z = torch.randn(b, 32, generator=rng)
        with torch.no_grad():
            fake = gen(z)
        discriminator_step(disc, opt_d, loss, _real_batch(0, 1, 101, seed, b, it), fake)
        generator_step(gen, disc, opt_g, loss, z)
    got_state = server.generator.state_dict().values()
    for (name, ref), got in zip(gen.state_dict().items(), got_state, strict=True):
        assert torch.allclose(ref.float(), got.float(), atol=1e-5, rtol=1e-4), name
    moved = sum(float((p - q).detach().abs().sum()) for p, q in
                zip(gen.parameters(), _initial_models(seed)[0].parameters(), strict=True))
    assert moved > 1e-3  # the comparison is not between two untouched models
    worker_d = _worker_disc(grid, 101)
    worker_state = worker_d.state_dict().values()
    for (name, ref), got in zip(disc.state_dict().items(), worker_state, strict=True):
        assert torch.allclose(ref, got, atol=1e-5, rtol=1e-4), name


def _reference_grad(gen0: torch.nn.Module, discs: list[torch.nn.Module], z: torch.Tensor,
                    g_index: list[int], b: int) -> list[torch.Tensor]:
    """Gradient of mean_n L_G(D_n(G(z)[X_g(n)])) w.r.t. G's parameters."""
    loss = get_loss("bce")
    gen0.train()
    x = gen0(z)
    pairs = zip(discs, g_index, strict=True)
    total = sum(loss.generator(d(x[g * b:(g + 1) * b])) for d, g in pairs)
    total = total / len(discs)
    return list(torch.autograd.grad(total, list(gen0.parameters())))


def test_n3_update_is_gradient_of_averaged_generator_loss() -> None:
    seed, b, n = 3, 8, 3
    cfg = mdgan(iterations=1, num_clients=n, batch_size=b, kappa="2", d_steps=2,
                      swap_epochs=0, seed=seed)
    grid = FakeGrid([make_client_app() for _ in range(n)])
    server = MDGANServer(grid, cfg)
    gen0 = copy.deepcopy(server.generator)
    z = torch.randn(2 * b, 32, generator=torch.Generator().manual_seed(seed))
    server.run()
    assert server.records[-1]["nodes"] == ["partition-0", "partition-1", "partition-2"]
    discs = [_worker_disc(grid, node) for node in (101, 102, 103)]
    # paper rule, n = 1..3, kappa = 2: X_g = X^(n mod 2 + 1) -> batches 1, 0, 1
    ref = _reference_grad(gen0, discs, z, [1, 0, 1], b)
    got = [p.grad for p in server.generator.parameters()]
    for r, g in zip(ref, got, strict=True):
        assert g is not None and torch.allclose(r, g, atol=1e-6, rtol=1e-4)
    # and it is NOT the gradient of a single worker (the average matters)
    single = _reference_grad(copy.deepcopy(gen0), discs[:1], z, [1], b)
    assert not all(torch.allclose(s, g, atol=1e-6) for s, g in zip(single, got, strict=True))


def _corrupting_app(kind: str) -> ClientApp:
    def corrupt(msg: Message, ctx: Context, call_next: Any) -> Message:
        reply = call_next(msg, ctx)
        if reply.has_error() or "feedback" not in reply.content.array_records:
            return reply
        fb = reply.content.array_records["feedback"]["feedback"].numpy().copy()
        if kind == "nan":
            fb[0, 0, 0, 0] = np.nan
        elif kind == "shape":
            fb = fb[:, :, :-1]
        reply.content.array_records["feedback"] = ArrayRecord({"feedback": Array(fb)})
        return reply

    return register_handlers(ClientApp(mods=[corrupt]))


def test_bad_feedback_is_rejected_reported_and_never_applied() -> None:
    seed, b = 5, 8
    cfg = mdgan(iterations=2, num_clients=3, batch_size=b, kappa="1", swap_epochs=0,
                      seed=seed)
    grid = FakeGrid([make_client_app(), _corrupting_app("nan"), _corrupting_app("shape")])
    server = MDGANServer(grid, cfg)
    gen0 = copy.deepcopy(server.generator)
    z = torch.randn(b, 32, generator=torch.Generator().manual_seed(seed))
    server.cfg = cfg.replace(iterations=1)
    server.run()
    rec = server.records[-1]
    assert rec["nodes"] == ["partition-0"]
    reasons = {r["node"]: r["reason"] for r in rec["rejected"]}
    assert set(reasons) == {"partition-1", "partition-2"}
    assert "NaN" in reasons["partition-1"] and "shape" in reasons["partition-2"]
    assert server.alive == [101, 102, 103]  # rejected, not dropped
    ref = _reference_grad(gen0, [_worker_disc(grid, 101)], z, [0], b)
    for r, p in zip(ref, server.generator.parameters(), strict=True):
        assert p.grad is not None and torch.allclose(r, p.grad, atol=1e-6, rtol=1e-4)
    assert all(torch.isfinite(p).all() for p in server.generator.parameters())


def test_crash_schedule_timeouts_and_fail_stop() -> None:
    cfg = mdgan(iterations=6, num_clients=4, batch_size=8, kappa="log", swap_epochs=0,
                      crash_schedule=True, timeout=0.5)
    grid = FakeGrid([make_client_app() for _ in range(4)], silent={104})
    server = MDGANServer(grid, cfg)
    server.connect()  # 104 never answers the handshake: dropped before training
    assert server.alive == [101, 102, 103]
    assert server.crash_plan == [2, 4]  # one crash every I/N = 2 iterations
    server.run()
    alive = [r["alive"] for r in server.records]
    assert alive == [3, 2, 2, 1, 1, 1]
    crashed = [r["crashed"][0] for r in server.records if r["crashed"]]
    assert len(crashed) == 2
    for rec in server.records[3:]:
        assert not set(rec["nodes"]) & set(crashed)  # their data left with them
    node_of = {key: node for node, key in server.keys.items()}
    for key in crashed:  # fail-stop: the worker refuses everything afterwards
        state = grid.contexts[node_of[key]].state.config_records["mdgan.meta"]
        assert int(state["crashed-at"]) in (2, 4)
    assert all(r["updated"] for r in server.records)


def test_swaps_are_relayed_derangements_and_counted_twice() -> None:
    b, n = 8, 3
    cfg = mdgan(iterations=3, num_clients=n, batch_size=b, swap_epochs=1e-9, seed=2,
                      model="mlp")
    outs: dict[tuple[int, int], np.ndarray] = {}
    grid = FakeGrid([make_client_app() for _ in range(n)])

    def capture(msg: Message, reply: Message) -> None:
        if "disc-out" in reply.content.array_records:
            it = int(msg.content.config_records["config"]["iteration"])
            arr = reply.content.array_records["disc-out"]["discriminator.body.1.weight"]
            outs[(it, msg.metadata.dst_node_id)] = arr.numpy()

    grid.on_reply = capture
    server = MDGANServer(grid, cfg)
    server.run()
    assert server.period == 1
    # |theta| in float32 (+ a ~128-byte .npy header per tensor, 6 tensors)
    theta_bytes = count_parameters(server.reference_disc) * 4
    for rec in server.records:
        assert 0 <= rec["swap_bytes_up"] - n * theta_bytes <= n * 6 * 160  # all send ...
        assert rec["swaps"] == 1
    assert server.records[0]["swap_bytes_down"] == 0
    for rec in server.records[1:]:
        assert rec["swap_bytes_down"] == rec["swap_bytes_up"]  # ... and all receive one
    for msg in grid.sent:
        it = int(msg.content.config_records["config"].get("iteration", 0))
        if it < 2:
            assert "disc-in" not in msg.content.array_records
            continue
        got = msg.content.array_records["disc-in"]["discriminator.body.1.weight"].numpy()
        givers = [node for (i, node), arr in outs.items() if i == it - 1
                  and np.array_equal(arr, got)]
        assert len(givers) == 1 and givers[0] != msg.metadata.dst_node_id


@pytest.mark.parametrize("model", ["mlp", "mdgan-cnn"])
def test_payloads_match_table_iii(model: str) -> None:
    b, n = 10, 2
    d = math.prod(SHAPE)
    cfg = mdgan(iterations=1, num_clients=n, batch_size=b, kappa="2", swap_epochs=0,
                      model=model)
    server = MDGANServer(FakeGrid([make_client_app() for _ in range(n)]), cfg)
    server.run()
    rec = server.records[-1]
    # 2bd down and bd up per worker, float32 (+ a ~128-byte .npy header per array)
    assert 0 <= rec["payload_down"] - n * 2 * b * d * 4 <= n * 2 * 160
    assert 0 <= rec["payload_up"] - n * b * d * 4 <= n * 160
    assert 0 < rec["bytes_down"] - rec["payload_down"] < 2000 * n  # framing + config only
    assert 0 < rec["bytes_up"] - rec["payload_up"] < 2000 * n


def test_pipelined_mode_bounded_staleness() -> None:
    cfg = mdgan(iterations=5, num_clients=3, batch_size=8, kappa="2", swap_epochs=1e-9,
                      mode="pipelined", max_staleness=1, crash_schedule=True)
    grid = FakeGrid([make_client_app() for _ in range(3)])
    server = MDGANServer(grid, cfg)
    before = [p.detach().clone() for p in server.generator.parameters()]
    server.run()
    assert [r["round"] for r in server.records] == [1, 2, 3, 4, 5]
    assert all(r["staleness_max"] <= 1 for r in server.records)
    assert len(server.alive) == 1  # two crashes (I/N) in 5 versions
    assert any(r["swaps"] for r in server.records)
    after = list(server.generator.parameters())
    assert any(not torch.equal(a, p) for a, p in zip(before, after, strict=True))


def test_subset_sampling_uses_fewer_discriminators_per_iteration() -> None:
    cfg = mdgan(iterations=8, num_clients=4, batch_size=8, kappa="log",
                      workers_per_iteration=2, swap_epochs=1e-9, seed=4)
    grid = FakeGrid([make_client_app() for _ in range(4)])
    server = MDGANServer(grid, cfg)
    server.run()
    assert all(len(r["nodes"]) == 2 for r in server.records)
    assert len({tuple(r["nodes"]) for r in server.records}) > 1  # the subset changes
    touched = {n for r in server.records for n in r["nodes"]}
    assert touched == {f"partition-{i}" for i in range(4)}
    for rec in server.records:  # only the participants' messages were sent
        assert rec["messages"] == 2
