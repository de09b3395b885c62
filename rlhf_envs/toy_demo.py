"""``rlhf-envs toy-demo``: a random policy against the scripted optimal policy on each toy task.

It needs no training and no language model: it shows what the envs are (prompt, completion,
reward) and that the reward separates a useless policy from a perfect one, in seconds. (The PPO
demo, ``rlhf-envs demo`` / ``make demo``, is :mod:`agents.demo`.)
"""

from __future__ import annotations

from importlib.metadata import version

import gymnasium as gym
import numpy as np

from rlhf_envs.registration import TOY_IDS, register_envs
from rlhf_envs.tasks.base import check_int_range

__all__ = ["TOY_IDS", "play", "run_demo"]


def play(env: gym.Env, policy: str, episodes: int, seed: int) -> tuple[float, float, list[str]]:
    """Run ``episodes`` episodes with the ``"random"`` or ``"optimal"`` policy.

    Returns the mean return, the success rate and the rendered final frames of the first three
    episodes.
    """
    rng = np.random.default_rng(seed)
    tok = env.unwrapped.task.tokenizer
    returns, successes, frames = [], [], []
    obs, info = env.reset(seed=seed)
    for _ in range(episodes):
        plan = list(tok.encode(info["target"])) + [tok.eos_id]
        total, done, t = 0.0, False, 0
        while not done:
            if policy == "random":
                action = int(rng.integers(env.action_space.n))
            else:
                action = plan[t]
            obs, reward, terminated, truncated, info = env.step(action)
            total += reward
            done = terminated or truncated
            t += 1
        returns.append(total)
        successes.append(bool(info.get("success", False)))
        if len(frames) < 3:
            frames.append(env.render())
        obs, info = env.reset()
    return float(np.mean(returns)), float(np.mean(successes)), frames


def run_demo(seed: int = 0, episodes: int = 200) -> int:
    """Print random vs optimal mean reward and success on every toy task.

    ``episodes`` is an int in ``[1, 10**7]`` and ``seed`` an int >= 0; anything else raises
    :class:`~rlhf_envs.errors.ConfigValueError` (or :class:`~rlhf_envs.errors.ConfigError` for a
    non-int) before anything runs.
    """
    check_int_range("--episodes", episodes, 1, 10**7, "toy-demo")
    check_int_range("--seed", seed, 0, 2**63 - 1, "toy-demo")
    register_envs()
    print(f"rlhf_envs {version('rlhf_envs')}: random vs scripted-optimal policy, {episodes} episodes each\n")
    for env_id in TOY_IDS:
        env = gym.make(env_id, render_mode="ansi")
        print(f"{env_id}")
        for policy in ("random", "optimal"):
            mean, success, frames = play(env, policy, episodes, seed)
            print(f"  {policy:8s} mean reward {mean:5.3f}  exact-match success {success:6.1%}")
            print("           e.g. " + "   ".join(frames))
        print()
    return 0
