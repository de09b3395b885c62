"""The critic-free policy-gradient agents for language models (RLOO, GRPO): rollout, KL, update.

RLOO (Ahmadian et al. 2024) and GRPO (Shao et al. 2024) replace PPO's value model with a baseline
computed from other completions of the same prompt. Both run on the custom agent's rollout code
(:class:`agents.lm_collector.EpisodeCollector`: the KV-cached decoder, the env's rewards) and share
everything here; they differ only in how a group's scores become advantages (:mod:`agents.rloo`,
:mod:`agents.grpo`). One iteration:

1. **Groups.** The ``n_envs`` sub-envs form ``n_envs / group_size`` groups of ``group_size`` (k)
   consecutive sub-envs. Every sub-env of a group is reset with the same seed, so it gets the same
   prompt, and the k completions differ only through sampling.
2. **Scores.** Each completion's score is its task return (the env's rewards summed). The per-token
   KL to the frozen reference enters in one of two ways (``kl_mode``):

   * ``"reward"`` (RLOO's paper, TRL's RLOOTrainer): the score is ``return - beta * sum_t KL_t``
     with the k1 (``log pi - log p_ref``) or k3 estimator (``kl_estimator``) of the sampled tokens,
     so the baseline and the advantage already account for the divergence;
   * ``"loss"`` (GRPO's paper, TRL's GRPOTrainer): the score is the task return alone and the
     update adds ``beta * KL`` to the loss, with the k3 estimator ``exp(d) - d - 1``,
     ``d = log p_ref - log pi`` at each sampled token (non-negative, and its gradient is that of the
     KL; k1 as a loss term would have an expected gradient of zero, so ``"loss"`` always uses k3).

   ``beta`` is ``kl_coef``, fixed or adapted (``adaptive_kl``) as for PPO.
3. **Advantages.** The algorithm turns the ``(groups, k)`` scores into one advantage per
   completion, given to every token of it (outcome supervision; no value model, no GAE).
4. **Update.** PPO's clipped surrogate over ``n_epochs`` passes of ``n_minibatches`` shuffled
   minibatches of episodes (one epoch and one minibatch, the defaults, is the plain on-policy
   policy gradient: the ratio is 1 and the clip never binds), plus the KL term in ``"loss"`` mode and
   an optional entropy bonus. Every mean is over the minibatch's real completion tokens (a
   token-level mean, as PPO's here and DAPO's), and the gradient norm is clipped as PPO's.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from agents.base import OnPolicyAgent, whiten
from agents.checks import check_choice, check_float, check_int
from agents.config import OnPolicyConfig
from agents.lm_collector import EpisodeCollector, gather_episodes, training_generation_metrics
from agents.rollout import Batch
from rlhf_envs.errors import ConfigError


@dataclass
class CriticFreeConfig(OnPolicyConfig):
    """Settings of RLOO and GRPO (language-model policies only; ``policy`` defaults to ``"lm"``).

    Without a preset the class's ``LM_PRESET`` applies (lm-human-preferences / TRL's optimiser
    settings of :mod:`agents.presets`, as for PPO). ``n_envs`` episodes per batch, in groups of
    ``group_size`` completions of one prompt; ``gamma``, ``gae_lambda`` and ``vf_coef`` are unused
    (there is no value model and every token of a completion gets its advantage).
    """

    #: completions per prompt (k); ``n_envs`` must be a multiple of it
    group_size: int = 4
    #: where the KL to the reference goes: "reward" (subtracted from each completion's score) or
    #: "loss" (a k3 term ``beta * KL`` added to the loss); see :mod:`agents.critic_free`
    kl_mode: str = "reward"
    #: optimisation passes over each batch (1: the plain policy gradient, ratio 1)
    n_epochs: int = 1
    #: minibatches (of episodes) per pass
    n_minibatches: int = 1
    #: policy-ratio clip range, as PPO's (binds only after the first minibatch step)
    clip_range: float = 0.2
    #: stop the epoch loop early when the k3 approx-KL to the rollout policy exceeds this
    target_kl: float | None = None
    #: advantages are used as the algorithm computes them ("none"); "batch" whitens them over the
    #: batch's real tokens, "minibatch" over each minibatch's
    norm_adv: str = "none"

    ALGO: ClassVar[str | None] = None

    def validate(self) -> None:
        super().validate()
        check_int("group_size", self.group_size, 2)
        check_choice("kl_mode", self.kl_mode, ("reward", "loss"))
        for name in ("n_epochs", "n_minibatches"):
            check_int(name, getattr(self, name), 1)
        check_float("clip_range", self.clip_range, 0.0, low_open=True)
        check_float("target_kl", self.target_kl, 0.0, low_open=True, allow_none=True)
        if self.policy != "lm":
            raise ConfigError(
                f"policy must be 'lm' for the critic-free agents (RLOO, GRPO): they sample groups of "
                f"completions per prompt; got policy={self.policy!r}"
            )
        if self.n_envs % self.group_size:
            raise ConfigError(
                f"n_envs ({self.n_envs}) must be a multiple of group_size ({self.group_size}): "
                "each prompt gets group_size completions (under torchrun n_envs is per rank, and "
                "each rank runs whole groups, so every rank's n_envs must be a multiple)"
            )

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> CriticFreeConfig:
        """As :meth:`OnPolicyConfig.from_kwargs`, with ``policy="lm"`` unless given."""
        kwargs.setdefault("policy", "lm")
        return super().from_kwargs(**kwargs)  # type: ignore[return-value]


@dataclass
class GroupBatch(Batch):
    """A :class:`Batch` of grouped completions that also carries the reference log-probs."""

    ref_log_probs: torch.Tensor | None = None

    def index(self, idx: torch.Tensor) -> GroupBatch:
        sub = super().index(idx)
        fields = {f.name: getattr(sub, f.name) for f in dataclasses.fields(Batch)}
        ref = None if self.ref_log_probs is None else self.ref_log_probs[idx]
        return GroupBatch(**fields, ref_log_probs=ref)


def group_seeds(rng: np.random.Generator, n_envs: int, group_size: int) -> list[int]:
    """One reset seed per sub-env: a fresh seed per group, repeated for its ``group_size`` members."""
    base = rng.integers(2**31, size=n_envs // group_size)
    return [int(base[i // group_size]) for i in range(n_envs)]


class GroupCollector(EpisodeCollector):
    """Samples ``group_size`` completions per prompt and builds the critic-free batch."""

    def collect(self, agent: Any) -> tuple[GroupBatch, int, dict[str, float]]:
        """One batch: grouped rollout, one reference pass, scores, group advantages.

        Data-parallel (an active ``self.world``): the group seeds are one draw for the global
        batch of ``world_size * n_envs`` sub-envs, of which this rank runs its contiguous slice
        (whole groups, as ``n_envs`` is a multiple of ``group_size``); sampling is sharded as in
        :meth:`~agents.lm_collector.EpisodeCollector.rollout`; after the reference pass the
        episodes are all-gathered (:func:`~agents.lm_collector.gather_episodes`), so the group
        baselines, the KL controller and every metric below see the single-process batch.
        """
        cfg = agent.config
        k = cfg.group_size
        world = self.world
        sharded = world is not None and world.active
        n_local = self.env.num_envs
        n_global = n_local * (world.world_size if sharded else 1)
        seeds = group_seeds(agent.np_rng, n_global, k)
        if sharded:
            seeds = seeds[world.rank * n_local : (world.rank + 1) * n_local]
        obs, actions, logp, env_rewards, mask, episodes = self.rollout(
            self.env, seeds, agent.torch_rng, world=world
        )
        with self.phases("rollout.ref_pass"):
            ref_logp = self.policy.ref_logprobs(obs, actions)
        if sharded:  # from here on every rank holds the global batch
            obs, (actions, logp, env_rewards, mask, ref_logp) = gather_episodes(
                world, obs, [actions, logp, env_rewards, mask, ref_logp]
            )
            episodes = [ep for part in world.gather_objects(episodes) for ep in part]
        n = n_global
        m = mask.float()
        log_ratio = (logp - ref_logp) * m
        k3 = (torch.exp(-log_ratio) - 1.0 + log_ratio) * m
        beta = self.kl.value
        task_return = (env_rewards * m).sum(1)
        kl_seq = (log_ratio if cfg.kl_estimator == "k1" else k3).sum(1)
        scores = task_return - beta * kl_seq if cfg.kl_mode == "reward" else task_return
        adv_seq = agent.group_advantages(scores.view(n // k, k)).reshape(n)
        adv = adv_seq[:, None] * m
        kl_k1 = float(log_ratio.sum(1).mean())
        self.kl.update(kl_k1, n)
        for ep in episodes:
            self.tracker.completed.append(ep)
        group_std = scores.view(n // k, k).std(1)
        metrics = {
            **self.tracker.summary(episodes),
            "kl_ref": kl_k1,
            "kl_ref_k3": float(k3.sum(1).mean()),
            "kl_coef": beta,
            "reward_kl_penalty": float(-beta * kl_seq.mean()) if cfg.kl_mode == "reward" else 0.0,
            "mean_total_reward": float(scores.mean()),
            "group_score_std": float(group_std.mean()),
            "groups_without_signal": float((group_std == 0).float().mean()),
            "completion_tokens": float(m.sum(1).mean()),
            **training_generation_metrics(actions, mask, ref_logp, log_ratio, self.env, self.policy),
        }
        zeros = torch.zeros_like(m)
        batch = GroupBatch(
            obs,
            actions,
            logp,
            zeros,
            adv,
            scores[:, None] * m,
            mask,
            env_rewards * m,
            ref_log_probs=ref_logp,
        )
        return batch, int(m.sum()), metrics


def clipped_policy_loss(
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float,
    count: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate ``mean(max(-A r, -A clip(r)))`` over masked tokens, and the ratio.

    ``count``: the divisor of the mean (default: the masked tokens here); a data-parallel share
    passes the whole minibatch's count, so the ranks' parts sum to the minibatch's mean.
    """
    m = mask.to(advantages.dtype)
    ratio = (log_probs - old_log_probs).exp()
    per_token = torch.maximum(-advantages * ratio, -advantages * ratio.clamp(1.0 - clip, 1.0 + clip))
    return (per_token * m).sum() / (m.sum().clamp(min=1.0) if count is None else count), ratio


def k3_kl_loss(
    log_probs: torch.Tensor,
    ref_log_probs: torch.Tensor,
    mask: torch.Tensor,
    count: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over masked tokens of ``exp(d) - d - 1``, ``d = log p_ref - log pi`` (GRPO's KL term);
    ``count`` as for :func:`clipped_policy_loss`."""
    m = mask.to(log_probs.dtype)
    d = ref_log_probs - log_probs
    return ((d.exp() - d - 1.0) * m).sum() / (m.sum().clamp(min=1.0) if count is None else count)


class CriticFreeAgent(OnPolicyAgent):
    """The shared skeleton of RLOO and GRPO; subclasses supply :meth:`group_advantages`."""

    config_class: type[CriticFreeConfig] = CriticFreeConfig
    config: CriticFreeConfig

    def __init__(self, env_or_id: Any, seed: int = 0, **config: Any) -> None:
        super().__init__(env_or_id, seed=seed, **config)
        k = self.config.group_size
        if self.env.num_envs % k:
            raise ConfigError(f"the env has {self.env.num_envs} sub-envs, not a multiple of group_size ({k})")

    def _build_policy(self) -> torch.nn.Module:
        from agents.lm_actor_critic import LMActorCritic

        return LMActorCritic.from_config(
            self.config,
            self.observation_space,
            self.action_space,
            self.init_rng,
            env=self.env,
            value_head=False,
        )

    def _build_collector(self) -> GroupCollector:
        return GroupCollector(self)

    def group_advantages(self, scores: torch.Tensor) -> torch.Tensor:
        """``(groups, k)`` completion scores -> ``(groups, k)`` advantages (RLOO's leave-one-out
        baseline in :mod:`agents.rloo`, GRPO's group normalisation in :mod:`agents.grpo`)."""
        raise NotImplementedError(f"{type(self).__name__} must define group_advantages")

    def train(self, batch: Batch, progress_remaining: float) -> dict[str, float]:
        """``n_epochs`` passes of clipped policy-gradient steps over shuffled episode minibatches."""
        cfg = self.config
        assert isinstance(batch, GroupBatch)
        if cfg.norm_adv == "batch":
            batch.advantages = whiten(batch.advantages, batch.mask)
        beta = self.collector.kl.value
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
                adv = mb.advantages
                if cfg.norm_adv == "minibatch" and int(mb.mask.sum()) > 1:
                    adv = whiten(adv, mb.mask)
                # the forward/backward pass runs on this rank's share (all of it in one process),
                # every mean divided by the whole minibatch's count, as PPO's
                rows = self.world.rows(len(mb)) if self.world.active else slice(None)
                mb, adv = self.local_share(mb), adv[rows]
                mb = mb.trim_padding()  # the minibatch's own padding (exact: Batch.trim_padding)
                adv = adv[:, : mb.mask.shape[1]]
                mask = mb.mask.to(mb.advantages.dtype)
                with self.phases("update.forward"):  # the policy's pass and the loss
                    log_probs, entropy, _ = self.evaluate_batch(mb, entropy_grad=cfg.ent_coef != 0)
                    pg_loss, ratio = clipped_policy_loss(
                        log_probs, mb.log_probs, adv, mb.mask, cfg.clip_range, count
                    )
                    ent = (entropy * mask).sum() / count
                    loss = pg_loss - cfg.ent_coef * ent
                    terms = {"policy_loss": pg_loss, "entropy": ent}
                    if cfg.kl_mode == "loss":
                        kl_loss = k3_kl_loss(log_probs, mb.ref_log_probs, mb.mask, count)
                        loss = loss + beta * kl_loss
                        terms["kl_loss"] = kl_loss
                with torch.no_grad():
                    log_ratio = log_probs - mb.log_probs
                    terms_log = {
                        "approx_kl_k1": (-log_ratio * mask).sum() / count,
                        "approx_kl_k3": (((ratio - 1.0) - log_ratio) * mask).sum() / count,
                        "clip_fraction": (((ratio - 1.0).abs() > cfg.clip_range).to(mask.dtype) * mask).sum()
                        / count,
                    }
                grad_norm = self.optimize(loss, mb, terms)
                parts = {**terms, **terms_log}
                values = (  # the ranks' partial means add up to the minibatch's (same on every rank)
                    self.sum_over_ranks(list(parts.values()))
                    if self.world.active
                    else [float(v.detach()) for v in parts.values()]
                )
                for key, v in zip(parts, values, strict=True):
                    stats.setdefault(key, []).append(v)
                stats.setdefault("grad_norm", []).append(grad_norm)
            if cfg.target_kl is not None and stats["approx_kl_k3"][-1] > cfg.target_kl:
                stop = True
                break
        out = {k: float(np.mean(v)) for k, v in stats.items()}
        out["early_stop"] = float(stop)
        return out


def check_group_scores(scores: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``scores`` is ``(groups, k)`` with ``k >= 2``."""
    if scores.dim() != 2 or scores.shape[1] < 2:
        raise ValueError(f"group scores must be (groups, k) with k >= 2, got shape {tuple(scores.shape)}")


__all__ = [
    "CriticFreeConfig",
    "CriticFreeAgent",
    "GroupBatch",
    "GroupCollector",
    "clipped_policy_loss",
    "group_seeds",
    "k3_kl_loss",
]
