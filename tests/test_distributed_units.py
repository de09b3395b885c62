"""The single-process pieces of agents.distributed (fast; the 2-rank runs are in test_distributed.py)."""

from __future__ import annotations

import pytest
import torch

from agents.distributed import World, init_from_env
from rlhf_envs.errors import ConfigError


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_rows_split_every_batch_into_contiguous_shares(world_size):
    for n in (0, 1, 5, 16, 17):
        shares = [World(r, world_size).rows(n) for r in range(world_size)]
        covered = [i for s in shares for i in range(n)[s]]
        assert covered == list(range(n))
        sizes = [len(range(n)[s]) for s in shares]
        assert max(sizes) - min(sizes) <= 1


def test_rank_draws_are_its_rows_of_the_single_process_draw():
    """Each rank keeps its rows of one draw for the global batch, and every rank's generator ends
    where one process's does: the ranks' samples together are the single process's."""
    n_local, world_size = 3, 2
    ref = torch.Generator().manual_seed(7)
    expected_u = torch.rand(n_local * world_size, 1, generator=ref)
    expected_z = torch.randn(n_local * world_size, 4, generator=ref)
    after = torch.rand(5, generator=ref)
    for rank in range(world_size):
        g = torch.Generator().manual_seed(7)
        w = World(rank, world_size)
        u = w.uniforms(n_local, g, "cpu")
        z = w.normals((n_local, 4), g, "cpu")
        assert torch.equal(u, expected_u[rank * n_local : (rank + 1) * n_local])
        assert torch.equal(z, expected_z[rank * n_local : (rank + 1) * n_local])
        assert torch.equal(torch.rand(5, generator=g), after)


def test_env_seeds_tile_the_global_vector_env():
    assert [World(r, 4).env_seed(100, 8) for r in range(4)] == [100, 108, 116, 124]


def test_single_process_world_is_a_no_op(monkeypatch):
    for k in ("WORLD_SIZE", "RANK"):
        monkeypatch.delenv(k, raising=False)
    w = init_from_env()
    assert (w.rank, w.world_size, w.active, w.is_main) == (0, 1, False, True)
    t = torch.ones(3)
    w.all_reduce_sum_([t])
    assert torch.equal(t, torch.ones(3)) and torch.equal(w.gather(t), t)
    assert w.gather_objects({"a": 1}) == [{"a": 1}]
    assert w.max_int(4) == 4


def test_bad_timeout_is_a_config_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RLHF_DIST_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="RLHF_DIST_TIMEOUT must be a number of seconds"):
        init_from_env()
    with pytest.raises(ConfigError, match="positive number of seconds"):
        init_from_env(timeout_s=0)
    with pytest.raises(ConfigError, match="backend must be 'gloo'"):
        init_from_env(backend="mpi", timeout_s=5)


def test_an_empty_share_gives_zero_gradients_and_joins_the_update():
    """A rank whose share of a minibatch is empty (fewer samples than ranks) still computes a loss
    connected to every parameter, with zero gradient, so it can join the all-reduce."""
    from agents import PPO

    agent = PPO("RLHF/Copy-v0", seed=0, n_envs=2, n_steps=4)
    try:
        agent.collector.reset(0)
        batch, _, _ = agent.collector.collect(agent)
        empty = batch.index(torch.arange(0))
        log_probs, entropy, values = agent.evaluate_batch(empty)
        assert log_probs.shape == (0,)
        loss = log_probs.sum() + entropy.sum() + values.sum()
        loss.backward()
        grads = [p.grad for p in agent.policy.parameters() if p.requires_grad]
        assert all(g is not None and not g.any() for g in grads)
    finally:
        agent.close()
