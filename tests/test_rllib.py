"""Ray RLlib's PPO (new API stack) with 2 env runners trains on a registered RLHF id and beats random.

Needs the ``[rllib]`` extra (ray[rllib]==2.60.0, which pins gymnasium 1.2.2): ``make test-rllib``
builds ``.venv-rllib`` with it and runs this file (``.ci/run`` does). Skipped where ray is missing;
marked slow (Ray start-up plus training: about a minute or two on 2 cores), so ``make test`` stays
fast.

The task: ``RLHF/Copy-v0`` with one of two letters to copy (``min_length = max_length = 1``,
``n_symbols = 2``): the answer is the letter and EOS, reward 1.0 for it and partial credit per
correct position. A uniformly random policy over the 30-token vocabulary earns about 0.03.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray", reason="needs the [rllib] extra (make test-rllib)")

ENV_CONFIG = {"min_length": 1, "max_length": 1, "n_symbols": 2}
ITERATIONS = 16


def random_return(n: int = 400) -> float:
    """Mean return of uniformly random tokens on the same task (the env's own vector env)."""
    import gymnasium as gym

    import rlhf_envs  # noqa: F401

    env = gym.make_vec("RLHF/Copy-v0", num_envs=n, vectorization_mode="vector_entry_point", **ENV_CONFIG)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    total = np.zeros(n)
    done = np.zeros(n, dtype=bool)
    while not done.all():
        _, r, term, trunc, _ = env.step(rng.integers(0, env.single_action_space.n, n))
        total += np.where(done, 0.0, r)
        done |= np.asarray(term) | np.asarray(trunc)
    env.close()
    return float(total.mean())


def test_rllib_ppo_with_two_env_runners_beats_random():
    from ray.rllib.algorithms.ppo import PPOConfig

    from agents.rllib import flatten_observations, register_rllib_envs

    ids = register_rllib_envs()
    assert "RLHF/Copy-v0" in ids and "RLHF/Sentiment-v0" in ids
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    try:
        config = (
            PPOConfig()
            .environment("RLHF/Copy-v0", env_config=ENV_CONFIG)
            .env_runners(
                num_env_runners=2,
                num_envs_per_env_runner=4,
                gym_env_vectorize_mode="vector_entry_point",  # the suite's native vector env
                rollout_fragment_length=64,
                env_to_module_connector=flatten_observations,
            )
            .training(
                train_batch_size_per_learner=512,
                minibatch_size=128,
                num_epochs=4,
                lr=1e-3,
                entropy_coeff=0.01,
            )
            .debugging(seed=0)
        )
        algo = config.build_algo()
        returns, steps = [], 0
        for _ in range(ITERATIONS):
            result = algo.train()
            runners = result["env_runners"]
            returns.append(runners.get("episode_return_mean", float("nan")))
            steps = result.get(
                "num_env_steps_sampled_lifetime", runners.get("num_env_steps_sampled_lifetime", 0)
            )
        algo.stop()
    finally:
        ray.shutdown()
    baseline = random_return()
    first, last = returns[0], float(np.nanmean(returns[-3:]))
    print(
        f"RLlib PPO, 2 env runners: return {first:.3f} -> {last:.3f} in {steps} env steps; random {baseline:.3f}"
    )
    assert last > baseline + 0.15, (returns, baseline)
    assert last > first + 0.1, returns
