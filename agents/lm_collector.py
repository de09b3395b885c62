"""The LM agents' rollout: one sampled completion per sub-env, then the KL-penalised PPO batch.

:class:`EpisodeCollector`, in the order a PPO iteration uses it:

1. :meth:`~EpisodeCollector.rollout` resets every sub-env (seed from the agent's generator) and
   samples one completion per sub-env with the suite's KV-cached decoder: the prompt is encoded
   once, then each step feeds only the new token. Prompts of different lengths are left-padded
   (with matching position ids), so every row writes the same cache slot. Sampling uses the same
   temperature as every later pass, with top-k 0 / top-p 1 (anything else would bias the KL
   estimate), by inverse CDF on one uniform per row from the agent's generator
   (:func:`rlhf_envs.lm.sampling.sample_tokens`). Only the sampled tokens' log-probabilities are
   kept: the buffer never holds vocabulary-sized tensors. Each token is sent to the env, which pays
   the task reward on the final real token.
2. The value head reads the hidden states the sampler computed for each sampled state (no
   separate policy pass); whole sequences (prompt + completion) then go through the frozen
   reference model (log-probs) in one batched pass.
3. Per-token reward: ``env reward - beta * KL_t`` with ``KL_t`` the k1 (``logp - logp_ref``) or k3
   estimator; beta fixed or adapted towards a target (:class:`agents.kl_control.KLController`).
   GAE with gamma 1, lambda 0.95 over the completion tokens; the episode's last real token ends the
   chain.
4. The PPO update (:mod:`agents.ppo`) runs on episodes as samples, with every per-token mean masked
   to real completion tokens.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from agents.envs import autoreset_mode
from agents.generation_metrics import eos_id_of, generation_metrics, merge_batches
from agents.kl_control import KLController
from agents.lm_actor_critic import LMActorCritic
from agents.phase_timer import PhaseTimer
from agents.rollout import Batch, EpisodeTracker, compute_gae
from rlhf_envs.lm.sampling import sample_tokens


class EpisodeCollector:
    """Samples one completion per sub-env with the KV-cached LM and assembles the PPO batch."""

    #: take the rollout's values from the value head on the sampler's hidden states (False: score
    #: them with a separate policy pass over the whole sequences, as before; the same values up to
    #: float rounding, one pass more)
    values_from_sampler: bool = True

    def __init__(self, agent: Any) -> None:
        cfg = agent.config
        self.env = agent.env
        #: the data-parallel world (:class:`agents.distributed.World`); ``None``: one process
        self.world = getattr(agent, "world", None)
        self.policy: LMActorCritic = agent.policy
        self.device = cfg.device
        self.kl = KLController(cfg.kl_coef, cfg.adaptive_kl, cfg.kl_target, cfg.kl_horizon)
        self.tracker = EpisodeTracker(self.env.num_envs)
        #: the agent's phase timer (:mod:`agents.phase_timer`; off unless a benchmark turns it on)
        self.phases: PhaseTimer = getattr(agent, "phases", None) or PhaseTimer()

    def reset(self, seed: int) -> None:
        """Nothing to do: every LM rollout starts by resetting all sub-envs."""

    def state_dict(self) -> dict[str, float]:
        return {"kl_coef": self.kl.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        if "kl_coef" in state:
            self.kl.value = float(state["kl_coef"])

    @torch.no_grad()
    def rollout(
        self,
        env: Any,
        seed: int | list[int],
        generator: torch.Generator,
        deterministic: bool = False,
        world: Any = None,
        with_values: bool = False,
    ) -> tuple[Any, ...]:
        """One episode per sub-env of ``env``.

        Returns ``(obs, actions, log_probs, env_rewards, mask, episodes)``: ``obs`` holds the
        left-padded ``(B, P + R)`` sequences, the others are ``(B, R)`` over completion tokens.

        ``with_values`` (a policy with a value head): a seventh element, the value head's
        estimates ``(B, R)`` at every sampled state, from the hidden states the sampler computed
        anyway (:attr:`~rlhf_envs.lm.decoder.Decoder.last_hidden`). They are the values a separate
        pass over the whole sequences gives (up to float rounding), without that pass.

        ``seed``: one int (sub-env ``i`` gets ``seed + i``), or one seed per sub-env (a list).

        ``world`` (an active :class:`agents.distributed.World`): this rank's share of the global
        rollout. Its sub-envs are reset with ``seed + rank * B`` (a list of seeds is taken to be
        this rank's slice of the global list already), each token is drawn with this
        rank's rows of one uniform draw for the global batch, and afterwards the generator is
        advanced by the draws the global loop made after this rank's episodes had all ended, so
        every rank's generator stays where one process's would be.
        """
        pol, dev = self.policy, self.device
        n = env.num_envs
        mode = autoreset_mode(env)
        sharded = world is not None and world.active
        if sharded and not isinstance(seed, list | tuple):  # per-sub-env seeds are this rank's already
            seed = world.env_seed(seed, n)
        phase = self.phases
        with phase("rollout.env"):
            obs, _ = env.reset(seed=seed)
        ids = torch.as_tensor(obs["input_ids"])
        lens = torch.as_tensor(obs["attention_mask"]).long().sum(1)
        p_max = int(lens.max())
        prompt = torch.zeros(n, p_max, dtype=torch.long)
        pmask = torch.zeros(n, p_max, dtype=torch.long)
        for i in range(n):  # left-pad each prompt (ids arrive right-padded)
            k = int(lens[i])
            prompt[i, p_max - k :] = ids[i, :k]
            pmask[i, p_max - k :] = 1
        prompt, pmask = prompt.to(dev), pmask.to(dev)
        max_new = int(ids.shape[1] - lens.min())
        tracker = EpisodeTracker(n, maxlen=None)
        with phase("rollout.sampling"):
            decoder = pol.decoder(n, p_max + max_new)
            logits = decoder.prefill(prompt, pmask)
        active = np.ones(n, dtype=bool)
        acts, logps, rews, masks, vals = [], [], [], [], []
        value_head = pol.value_head if with_values else None
        if with_values and value_head is None:
            raise ValueError("with_values needs a policy with a value head")
        episodes: list[dict] = []
        for _ in range(max_new):
            u = world.uniforms(n, generator, dev) if sharded and not deterministic else None
            with phase("rollout.sampling"):
                tokens, logp = sample_tokens(logits, generator, deterministic, uniforms=u)
                if value_head is not None:  # V(s_t) from the state the token is sampled in
                    v = value_head(decoder.last_hidden).squeeze(-1).float()
                    vals.append(torch.where(torch.as_tensor(active, device=dev), v, 0.0))
            step_actions = np.where(active, tokens.cpu().numpy(), 0).astype(np.int64)
            with phase("rollout.env"):  # the env's step, with the feedback model's score at the end
                _, rewards, term, trunc, infos = env.step(step_actions)
            ended = tracker.update(np.asarray(rewards, dtype=np.float64), term, trunc, infos, active)
            episodes.extend(list(tracker.completed)[len(tracker.completed) - len(ended) :])
            acts.append(torch.where(torch.as_tensor(active, device=dev), tokens, 0))
            logps.append(torch.where(torch.as_tensor(active, device=dev), logp, 0.0))
            rews.append(torch.as_tensor(np.where(active, rewards, 0.0), dtype=torch.float32, device=dev))
            masks.append(torch.as_tensor(active, device=dev))
            done = (np.asarray(term) | np.asarray(trunc)) & active
            active = active & ~done
            if not active.any():
                break
            if mode == AutoresetMode.DISABLED and done.any():
                with phase("rollout.env"):
                    env.reset(options={"reset_mask": done})
            with phase("rollout.sampling"):
                logits = decoder.step(tokens)
        if sharded and not deterministic:  # the draws of the global loop's remaining steps
            for _ in range(world.max_int(len(acts), "rollout length max") - len(acts)):
                world.uniforms(n, generator, dev)
        actions = torch.stack(acts, 1)
        mask = torch.stack(masks, 1)
        seq = {
            "input_ids": torch.cat([prompt, actions], 1),
            "attention_mask": torch.cat([pmask, mask.long()], 1),
        }
        out = (seq, actions, torch.stack(logps, 1), torch.stack(rews, 1), mask, episodes)
        return (*out, torch.stack(vals, 1)) if with_values else out

    def collect(self, agent: Any) -> tuple[Batch, int, dict[str, float]]:
        """One PPO batch: rollout, reference/value passes, KL-penalised rewards, GAE."""
        cfg = agent.config
        seed = int(agent.np_rng.integers(2**31))
        world = self.world
        with_values = self.values_from_sampler and self.policy.value_head is not None
        out = self.rollout(self.env, seed, agent.torch_rng, world=world, with_values=with_values)
        obs, actions, logp, env_rewards, mask, episodes = out[:6]
        if with_values:
            values = out[6]
            with self.phases("rollout.ref_pass"):
                ref_logp = self.policy.ref_logprobs(obs, actions)
        else:
            with self.phases("rollout.value_and_ref_pass"):
                values, ref_logp = self.policy.values_and_ref_logprobs(obs, actions)
        if world is not None and world.active:  # from here on every rank holds the global batch
            obs, (actions, logp, env_rewards, mask, values, ref_logp) = gather_episodes(
                world, obs, [actions, logp, env_rewards, mask, values, ref_logp]
            )
            episodes = [ep for part in world.gather_objects(episodes) for ep in part]
        m = mask.float()
        log_ratio = (logp - ref_logp) * m  # log(p / p_ref) per token
        k1 = log_ratio
        k3 = (torch.exp(-log_ratio) - 1.0 + log_ratio) * m  # r = p_ref / p: (r - 1) - log r
        beta = self.kl.value
        penalty = -beta * (k1 if cfg.kl_estimator == "k1" else k3)
        rewards = (env_rewards + penalty) * m
        values = values * m
        last = (mask.long().cumsum(1) == mask.long().sum(1, keepdim=True)) & mask  # the final real token
        adv, ret = compute_gae(
            rewards.T,
            values.T,
            last.float().T,
            torch.zeros(len(m), device=m.device),
            cfg.gamma,
            cfg.gae_lambda,
        )
        adv, ret = adv.T * m, ret.T * m
        kl_k1 = float(k1.sum(1).mean())
        kl_k3 = float(k3.sum(1).mean())
        self.kl.update(kl_k1, len(m))
        for ep in episodes:
            self.tracker.completed.append(ep)
        summary = self.tracker.summary(episodes)
        metrics = {
            **summary,
            "kl_ref": kl_k1,
            "kl_ref_k3": kl_k3,
            "kl_coef": beta,
            "reward_kl_penalty": float(penalty.sum(1).mean()),
            "mean_total_reward": float(rewards.sum(1).mean()),
            "completion_tokens": float(m.sum(1).mean()),
            **training_generation_metrics(actions, mask, ref_logp, log_ratio, self.env, self.policy),
        }
        batch = Batch(obs, actions, logp, values, adv, ret, mask, rewards)
        return batch, int(m.sum()), metrics

    def evaluate(
        self, env: Any, n_episodes: int, deterministic: bool, seed: int, generator: torch.Generator
    ) -> list[dict]:
        """``n_episodes`` episodes from batches of ``env.num_envs`` (seeds ``seed``, ``seed + n``, ...)."""
        return self.evaluate_with_metrics(env, n_episodes, deterministic, seed, generator)[0]

    def evaluate_with_metrics(
        self, env: Any, n_episodes: int, deterministic: bool, seed: int, generator: torch.Generator
    ) -> tuple[list[dict], dict[str, float]]:
        """:meth:`evaluate`'s episodes and the generation metrics of the same completions
        (:mod:`agents.generation_metrics`; the KL to the reference is exact at every position)."""
        episodes: list[dict] = []
        parts: list[dict[str, torch.Tensor]] = []
        s = seed
        while len(episodes) < n_episodes:
            obs, actions, _, _, mask, eps = self.rollout(env, s, generator, deterministic)
            # the rollout lists episodes as they end (by length, then sub-env); keep the first
            # sub-envs' (not the first to end, which would favour short episodes) of the last batch
            lengths = mask.long().sum(1).tolist()
            if len(eps) != len(lengths):
                raise RuntimeError(f"{len(eps)} episodes ended for {len(lengths)} sub-envs")
            order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
            by_row = dict(zip(order, eps, strict=True))
            rows = list(range(min(n_episodes - len(episodes), len(lengths))))
            episodes.extend(by_row[r] for r in rows)
            kl, ref_logp = self.policy.kl_and_ref_logprobs(obs, actions)
            parts.append(
                {"completion_ids": actions, "mask": mask.long(), "ref": ref_logp, "kl": kl}
                if len(rows) == len(lengths)
                else {
                    "completion_ids": actions[rows],
                    "mask": mask[rows].long(),
                    "ref": ref_logp[rows],
                    "kl": kl[rows],
                }
            )
            s += env.num_envs
        merged = merge_batches(parts)
        metrics = generation_metrics(
            merged["completion_ids"],
            merged["mask"].bool(),
            merged["ref"],
            merged["kl"],
            eos_id_of(env, self.policy.lm),
        )
        return episodes, metrics


def training_generation_metrics(
    actions: torch.Tensor,
    mask: torch.Tensor,
    ref_logp: torch.Tensor,
    log_ratio: torch.Tensor,
    env: Any,
    policy: LMActorCritic,
) -> dict[str, float]:
    """The generation metrics of a training batch (distinct-1/2, EOS rate, reference perplexity).

    Its KL is the sampled k1 estimate the batch already holds, so it is not repeated here.
    """
    out = generation_metrics(actions, mask, ref_logp, log_ratio, eos_id_of(env, policy.lm))
    out.pop("kl_ref")
    return out


def gather_episodes(
    world: Any, obs: dict[str, torch.Tensor], per_token: list[torch.Tensor]
) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    """Every rank's episodes, laid out as one process's rollout of all of them would be.

    ``obs`` holds ``(B, P + R)`` sequences (prompts left-padded to this rank's longest, ``P``),
    ``per_token`` ``(B, R)`` tensors over completion tokens. Prompts are left-padded to the longest
    prompt of any rank and completions right-padded (zeros, mask False) to the longest rollout of
    any rank before the all-gather, so the rows match the single-process batch column for column.
    """
    r_local = per_token[0].shape[1]
    p_local = obs["input_ids"].shape[1] - r_local
    p_max = world.max_int(p_local, "prompt width max")
    r_max = world.max_int(r_local, "completion width max")

    def pad(t: torch.Tensor, left: int, right: int) -> torch.Tensor:
        if not (left or right):
            return t
        out = t.new_zeros(t.shape[0], left + t.shape[1] + right)
        out[:, left : left + t.shape[1]] = t
        return out

    out_obs = {
        k: world.gather(
            torch.cat([pad(v[:, :p_local], p_max - p_local, 0), pad(v[:, p_local:], 0, r_max - r_local)], 1)
        )
        for k, v in obs.items()
    }
    return out_obs, [world.gather(pad(t, 0, r_max - r_local)) for t in per_token]
