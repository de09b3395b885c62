"""The simple policy-gradient family: A2C and REINFORCE with a learned baseline.

Both use PPO's rollout code unchanged (:mod:`agents.rollout` / :mod:`agents.lm_collector`) and differ from it
only in the update: one gradient step per rollout on the whole batch, with the unclipped
policy-gradient loss ``-E[A * log pi(a|s)]`` plus a value (baseline) regression and an optional
entropy bonus. A2C uses short rollouts and bootstrapped advantages; REINFORCE uses Monte Carlo
returns (lambda 1) minus the baseline.
"""

from __future__ import annotations

import torch

from agents.base import OnPolicyAgent, explained_variance, whiten
from agents.config import A2CConfig, REINFORCEConfig
from agents.rollout import Batch


class _PolicyGradient(OnPolicyAgent):
    def train(self, batch: Batch, progress_remaining: float) -> dict[str, float]:
        """One full-batch step on ``-A * log pi + vf_coef * (V - R)^2 - ent_coef * H``."""
        cfg = self.config
        adv = batch.advantages
        if cfg.norm_adv != "none":
            adv = whiten(adv, batch.mask)
        count = batch.mask.to(adv.dtype).sum().clamp(min=1.0)  # of the whole (global) batch
        full = batch
        if self.world.active:  # this rank's share; the gradients are summed in optimize
            adv, batch = adv[self.world.rows(len(batch))], self.local_share(batch)
        mask = batch.mask.to(adv.dtype)
        log_probs, entropy, values = self.evaluate_batch(batch)
        pg_loss = -(adv * log_probs * mask).sum() / count
        v_loss = (((values - batch.returns) ** 2) * mask).sum() / count
        ent = (entropy * mask).sum() / count
        loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * ent
        terms = {"policy_loss": pg_loss, "value_loss": v_loss, "entropy": ent}
        grad_norm = self.optimize(loss, batch, terms)
        with torch.no_grad():
            new_logp, _, _ = self.evaluate_batch(batch)
            log_ratio = new_logp - batch.log_probs
            k1 = (-log_ratio * mask).sum() / count
            k3 = (((log_ratio.exp() - 1) - log_ratio) * mask).sum() / count
        parts = [pg_loss, v_loss, ent, k1, k3]
        values = self.sum_over_ranks(parts) if self.world.active else [float(v.detach()) for v in parts]
        return {
            **dict(
                zip(
                    ("policy_loss", "value_loss", "entropy", "approx_kl_k1", "approx_kl_k3"),
                    values,
                    strict=True,
                )
            ),
            "grad_norm": grad_norm,
            "explained_variance": explained_variance(full.values, full.returns, full.mask),
        }


class A2C(_PolicyGradient):
    """Advantage actor-critic (synchronous A3C). Options: :class:`A2CConfig`'s fields."""

    config_class = A2CConfig
    config: A2CConfig


class REINFORCE(_PolicyGradient):
    """REINFORCE with a learned baseline. Options: :class:`REINFORCEConfig`'s fields."""

    config_class = REINFORCEConfig
    config: REINFORCEConfig
