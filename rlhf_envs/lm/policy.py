"""The base model as a policy: how well does the untrained language model already do on a task?

:class:`LMPolicy` samples the next token for a batch of env observations from a causal LM (top_k=0,
top_p=1, temperature T, as the reference and an RL policy should be sampled), with the suite's one
decoder and sampler: :class:`~rlhf_envs.lm.decoder.PrefixLogits` keeps a KV cache per sub-env (a
sub-env whose observation grew by one token is stepped, one that started a new episode is
prefilled) and :func:`~rlhf_envs.lm.sampling.sample_tokens` draws the tokens.
:func:`evaluate_base_model` runs it on a native vector env and reports the mean task reward, the
number the README quotes as "base model" for each language task.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class LMPolicy:
    """Sample tokens from ``lm`` for right-padded observations ``{"input_ids", "attention_mask"}``.

    Row ``i`` of every call is sub-env ``i``; its KV cache is reused while its observation grows by
    the sampled token and rebuilt when it does not (a new episode).
    """

    def __init__(self, lm: Any, temperature: float = 1.0, seed: int = 0) -> None:
        import torch

        from rlhf_envs.lm.decoder import PrefixLogits

        self.lm = lm
        self.temperature = float(temperature)
        self.generator = torch.Generator().manual_seed(seed)
        self.logits = PrefixLogits(lm, self.temperature)

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """One sampled token per row."""
        from rlhf_envs.lm.sampling import sample_tokens

        lengths = np.asarray(obs["attention_mask"]).astype(np.int64).sum(-1)
        tokens, _ = sample_tokens(self.logits(obs["input_ids"], lengths), self.generator)
        return tokens.cpu().numpy()


def evaluate_base_model(
    env_id: str, episodes: int = 256, num_envs: int = 64, seed: int = 0, **kwargs: Any
) -> dict:
    """Mean and standard error of the task reward when the task's own base model is the policy.

    Uses ``gym.make_vec(env_id, num_envs, autoreset_mode="SameStep")`` and counts the first
    ``episodes`` finished episodes. ``env_id`` must be registered: ``import rlhf_envs`` first (this
    module, part of ``rlhf_envs.lm``, does not import the env suite).
    """
    import gymnasium as gym

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
