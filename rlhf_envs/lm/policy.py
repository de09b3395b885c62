"""The base model as a policy: how well does the untrained language model already do on a task?

:class:`LMPolicy` samples the next token for a batch of env observations from a causal LM (top_k=0,
top_p=1, temperature T, as the reference and an RL policy should be sampled). It recomputes the
prefix each call (no cache): it is an evaluation tool, not the fast path.
:func:`evaluate_base_model` runs it on a native vector env and reports the mean task reward, the
number the README quotes as "base model" for each language task.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class LMPolicy:
    """Sample tokens from ``lm`` for right-padded observations ``{"input_ids", "attention_mask"}``."""

    def __init__(self, lm: Any, temperature: float = 1.0, seed: int = 0) -> None:
        import torch

        self.lm = lm
        self.temperature = float(temperature)
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """One sampled token per row."""
        import torch

        ids = torch.as_tensor(obs["input_ids"])
        mask = torch.as_tensor(obs["attention_mask"]).long()
        lengths = mask.sum(-1)
        width = int(lengths.max())
        with torch.no_grad():
            logits = self.lm(input_ids=ids[:, :width], attention_mask=mask[:, :width]).logits
            last = logits[torch.arange(len(ids)), lengths - 1].float() / self.temperature
            probs = torch.softmax(last, dim=-1)
            return torch.multinomial(probs, 1, generator=self.generator)[:, 0].numpy()


def evaluate_base_model(
    env_id: str, episodes: int = 256, num_envs: int = 64, seed: int = 0, **kwargs: Any
) -> dict:
    """Mean and standard error of the task reward when the task's own base model is the policy.

    Uses ``gym.make_vec(env_id, num_envs, autoreset_mode="SameStep")`` and counts the first
    ``episodes`` finished episodes.
    """
    import gymnasium as gym

    import rlhf_envs  # noqa: F401

    vec = gym.make_vec(env_id, num_envs=num_envs, autoreset_mode="SameStep", ref_logprobs=False, **kwargs)
    policy = LMPolicy(vec.unwrapped.task.lm, seed=seed)
    obs, _ = vec.reset(seed=seed)
    rewards: list[float] = []
    extra: dict[str, list[float]] = {}
    while len(rewards) < episodes:
        obs, r, term, trunc, info = vec.step(policy(obs))
        done = term | trunc
        for i in np.flatnonzero(done):
            rewards.append(float(info["final_info"]["reward_task"][i]))
            for key in ("coverage", "n_words"):
                if key in info["final_info"]:
                    extra.setdefault(key, []).append(float(info["final_info"][key][i]))
            extra.setdefault("terminated", []).append(float(term[i]))
    r = np.asarray(rewards[:episodes])
    out = {
        "env_id": env_id,
        "episodes": len(r),
        "mean_reward": float(r.mean()),
        "stderr": float(r.std(ddof=1) / np.sqrt(len(r))),
    }
    out.update({f"mean_{k}": float(np.mean(v[:episodes])) for k, v in extra.items()})
    vec.close()
    return out
