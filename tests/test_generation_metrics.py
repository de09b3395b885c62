"""Generation metrics: hand-computed values, and every LM evaluation returns and logs them."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch

import rlhf_envs  # noqa: F401
from agents import GRPO, PPO
from agents.generation_metrics import distinct_n, generation_metrics, merge_batches
from tests.test_agents_lm import tiny_lm

pytestmark = pytest.mark.usefixtures("one_torch_thread")

KEYS = {"distinct_1", "distinct_2", "eos_rate", "ref_perplexity", "kl_ref", "mean_length"}


def test_metrics_by_hand():
    assert distinct_n([np.array([1, 2, 1]), np.array([3])], 1) == 3 / 4
    assert distinct_n([np.array([1, 2, 1]), np.array([3])], 2) == 2 / 2
    assert distinct_n([np.array([4, 4, 4, 4])], 2) == 1 / 3
    assert math.isnan(distinct_n([np.array([5])], 2))
    ids = torch.tensor([[5, 6, 1], [5, 5, 0]])  # eos id 1 ends row 0; row 1 stops at the limit
    mask = torch.tensor([[True, True, True], [True, True, False]])
    ref = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, -9.0]])
    kl = torch.tensor([[0.1, 0.2, 0.3], [1.0, 0.0, 5.0]])
    out = generation_metrics(ids, mask, ref, kl, eos_id=1)
    assert out["distinct_1"] == 3 / 5 and out["distinct_2"] == 3 / 3
    assert out["ref_perplexity"] == pytest.approx(math.exp(7.0 / 5))
    assert out["kl_ref"] == pytest.approx((0.6 + 1.0) / 2)
    assert out["eos_rate"] == 0.5
    assert "eos_rate" not in generation_metrics(ids, mask, ref, kl, eos_id=None)
    merged = merge_batches([{"completion_ids": ids[:, :2]}, {"completion_ids": ids}])
    assert merged["completion_ids"].shape == (4, 3) and merged["completion_ids"][0, 2] == 0


@pytest.mark.parametrize("cls", [PPO, GRPO])
def test_every_lm_evaluation_returns_and_logs_them(tmp_path, cls):
    agent = cls("RLHF/Reverse-v0", seed=0, policy="lm", model=tiny_lm(), n_envs=8, log_dir=str(tmp_path))
    fresh = agent.evaluate(6, deterministic=False)
    assert KEYS <= set(fresh)
    assert fresh["kl_ref"] == pytest.approx(0.0, abs=1e-6)  # the policy is still the reference
    assert 1.0 < fresh["ref_perplexity"] < 30 * 1.5  # about the vocabulary size for an untrained LM
    agent.learn(300, progress_bar=False)
    trained = agent.evaluate(10)  # two batches of 8 sub-envs, merged and cut to 10
    assert trained["kl_ref"] > 0  # exact KL: positive once the policy moved, even for greedy decoding
    with open(tmp_path / "evaluations.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["timesteps"]) for r in rows] == [0.0, float(agent.num_timesteps)]
    assert float(rows[1]["distinct_2"]) == pytest.approx(trained["distinct_2"])
    header = open(tmp_path / "progress.csv").readline().strip().split(",")
    assert {"distinct_1", "distinct_2", "eos_rate", "ref_perplexity", "kl_ref"} <= set(header)


def test_evaluation_keeps_the_first_sub_envs_of_the_last_batch():
    """10 episodes from 8 sub-envs: all of the first batch, sub-envs 0 and 1 of the second (not the
    two that ended first, which would favour short episodes), in sub-env order."""
    agent = PPO("RLHF/Reverse-v0", seed=0, policy="lm", model=tiny_lm(), n_envs=8)
    eps, _ = agent.collector.evaluate_with_metrics(
        agent.env, 10, False, 123, torch.Generator().manual_seed(5)
    )
    gen = torch.Generator().manual_seed(5)
    lengths, returns = [], []
    for seed, rows in ((123, 8), (131, 2)):
        _, _, _, rewards, mask, _ = agent.collector.rollout(agent.env, seed, gen)
        lengths += mask.long().sum(1)[:rows].tolist()
        returns += rewards.sum(1)[:rows].tolist()
    assert [e["length"] for e in eps] == lengths
    assert np.allclose([e["return"] for e in eps], returns, atol=1e-6)
