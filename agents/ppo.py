"""Proximal Policy Optimisation (Schulman et al. 2017), readable top to bottom in CleanRL's style.

The same update serves MLP policies (a sample = one transition) and language-model policies (a
sample = one episode; every per-token tensor carries a ``mask`` of real response tokens), because
every mean below is a masked mean. The rollout, GAE, KL penalty and reward assembly live in
:mod:`agents.rollout` (MLP) and :mod:`agents.lm_collector` (LM); this file is only the update.

Details (numbers refer to CleanRL's list): shuffled minibatches (6), per-minibatch advantage
normalisation or whole-batch whitening for LMs (7), clipped surrogate (8), clipped value loss (9),
entropy bonus (10), global gradient-norm clipping applied before every step (11), approx KL k1/k3,
clip fraction and explained variance logged (12).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from agents.base import OnPolicyAgent, explained_variance, whiten
from agents.config import PPOConfig
from agents.rollout import Batch


class PPO(OnPolicyAgent):
    """PPO agent. ``PPO(env_or_id, seed=0, **config)``; the options are :class:`PPOConfig`'s fields.

    Example::

        agent = PPO("CartPole-v1", seed=0)
        agent.learn(100_000)
        agent.evaluate(20)   # {'mean_return': ..., 'std_return': ..., ...}
        agent.save("runs/cartpole"); agent = PPO.load("runs/cartpole")
    """

    config_class = PPOConfig
    config: PPOConfig

    def __init__(self, env_or_id: Any, seed: int = 0, **config: Any) -> None:
        super().__init__(env_or_id, seed=seed, **config)

    def train(self, batch: Batch, progress_remaining: float) -> dict[str, float]:
        """``n_epochs`` passes of clipped-surrogate updates over shuffled minibatches of ``batch``."""
        cfg = self.config
        clip = cfg.clip_range * (progress_remaining if cfg.anneal_clip else 1.0)
        if cfg.norm_adv == "batch":  # whitening over the whole batch (lm-human-preferences / TRL)
            batch.advantages = whiten(batch.advantages, batch.mask)
        n = len(batch)
        mb_size = math.ceil(n / cfg.n_minibatches)
        stats: dict[str, list[float]] = {}
        stop = False
        for _epoch in range(cfg.n_epochs):
            perm = torch.randperm(n, generator=self.torch_rng, device=self.torch_rng.device).to(
                batch.actions.device
            )
            for start in range(0, n, mb_size):
                mb = batch.index(perm[start : start + mb_size])
                # statistics of the whole minibatch (every rank holds it; see agents.distributed)
                count = mb.mask.to(mb.advantages.dtype).sum().clamp(min=1.0)
                adv = mb.advantages  # 2. advantages (normalised per minibatch for MLPs)
                if cfg.norm_adv == "minibatch" and int(mb.mask.sum()) > 1:
                    adv = whiten(adv, mb.mask)
                # the forward/backward pass runs on this rank's share (all of it in one process)
                rows = self.world.rows(len(mb)) if self.world.active else slice(None)
                mb, adv = self.local_share(mb), adv[rows]
                # the minibatch's own padding is dropped (exact: see Batch.trim_padding)
                mb = mb.trim_padding()
                adv = adv[:, : mb.mask.shape[1]] if adv.dim() == 2 else adv
                mask = mb.mask.to(mb.advantages.dtype)

                def mean(
                    x: torch.Tensor, mask: torch.Tensor = mask, count: torch.Tensor = count
                ) -> torch.Tensor:
                    return (x * mask).sum() / count

                with self.phases("update.forward"):  # the policy's pass and the loss
                    # 1. the current policy's log-probs, entropies and values for the stored actions
                    log_probs, entropy, values = self.evaluate_batch(mb, entropy_grad=cfg.ent_coef != 0)
                    log_ratio = log_probs - mb.log_probs
                    ratio = log_ratio.exp()

                    # 3. clipped surrogate objective
                    pg_loss = mean(torch.maximum(-adv * ratio, -adv * ratio.clamp(1.0 - clip, 1.0 + clip)))

                    # 4. value loss, clipped around the rollout's values
                    if cfg.clip_range_vf is not None:
                        v_clipped = mb.values + (values - mb.values).clamp(
                            -cfg.clip_range_vf, cfg.clip_range_vf
                        )
                        v_loss = 0.5 * mean(
                            torch.maximum((values - mb.returns) ** 2, (v_clipped - mb.returns) ** 2)
                        )
                    else:
                        v_loss = 0.5 * mean((values - mb.returns) ** 2)

                    # 5. entropy bonus
                    ent = mean(entropy)
                    loss = pg_loss - cfg.ent_coef * ent + cfg.vf_coef * v_loss

                # 6. diagnostics: approx KL (k1 and k3 estimators of KL(old || new)) and clip fraction
                with torch.no_grad():
                    approx_kl_k1 = mean(-log_ratio)
                    approx_kl_k3 = mean((ratio - 1.0) - log_ratio)
                    clipfrac = mean(((ratio - 1.0).abs() > clip).to(mask.dtype))

                terms = {"policy_loss": pg_loss, "value_loss": v_loss, "entropy": ent}
                grad_norm = self.optimize(loss, mb, terms)
                names = (
                    "policy_loss",
                    "value_loss",
                    "entropy",
                    "approx_kl_k1",
                    "approx_kl_k3",
                    "clip_fraction",
                )
                parts = [pg_loss, v_loss, ent, approx_kl_k1, approx_kl_k3, clipfrac]
                values = (
                    self.sum_over_ranks(parts) if self.world.active else [float(v.detach()) for v in parts]
                )
                for k, v in zip(names, values, strict=True):
                    stats.setdefault(k, []).append(v)
                stats.setdefault("grad_norm", []).append(grad_norm)
            # 7. optional early stop when the policy moved too far from the rollout policy
            if cfg.target_kl is not None and stats["approx_kl_k3"][-1] > cfg.target_kl:
                stop = True
                break
        out = {k: float(np.mean(v)) for k, v in stats.items()}
        out["explained_variance"] = explained_variance(batch.values, batch.returns, batch.mask)
        out["clip_range"] = clip
        out["early_stop"] = float(stop)
        return out
