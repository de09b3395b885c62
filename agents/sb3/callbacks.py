"""Callbacks that give SB3's on-policy algorithms the RLHF objective of the custom PPO.

The per-token reward of RLHF is ``r_t = task_t - beta * (log pi(a_t|s_t) - log pi_ref(a_t|s_t))``.
The env reports ``log pi_ref(a_t|s_t)`` of every taken token as ``info["ref_logprob"]`` (language
tasks, :mod:`rlhf_envs.envs.reference`); only the agent knows ``log pi(a_t|s_t)``. SB3's PPO, A2C and
sb3-contrib's MaskablePPO store exactly that in ``rollout_buffer.log_probs`` (the policy's
log-probability of the sampled action at collection time), so :class:`KLPenaltyCallback`:

1. on every step, records ``info["ref_logprob"]`` of each sub-env at the buffer position the step
   will be stored at (for a sub-env whose episode ended, the adapter puts its last step's info in
   ``infos[i]``, so the terminal token's value is used, not the next episode's);
2. at the end of the rollout, subtracts ``beta * (log_probs - ref_logprob)`` (the k1 estimator, as in
   lm-human-preferences / TRL) from ``rollout_buffer.rewards`` and recomputes returns and advantages
   with the buffer's own GAE (the values and the last-value bootstrap are unchanged);
3. optionally adapts beta towards a per-episode KL target (Ziegler et al. 2019).

DQN has no policy log-probs (its behaviour policy is epsilon-greedy over argmax Q), so the penalty
cannot be applied there; :func:`agents.sb3.train_baseline` refuses ``kl_coef > 0`` for DQN.
With MaskablePPO the stored log-probs are those of the masked (renormalised) distribution, so the
penalty is the KL of the masked policy to the unmasked reference, as in NLPO.
"""

from __future__ import annotations

import numpy as np
import torch
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.utils import obs_as_tensor

from rlhf_envs.errors import ConfigError

#: the info key with the reference model's log-prob of the taken token (see rlhf_envs.envs.reference)
REF_LOGPROB_KEY = "ref_logprob"


class KLPenaltyCallback(BaseCallback):
    """Per-token KL penalty to the reference model, computed with the SB3 policy's own log-probs.

    Args:
        kl_coef: initial beta (>= 0).
        info_key: the info key holding the reference log-prob of the taken token.
        adaptive: adapt beta with the proportional controller of Ziegler et al. (2019):
            ``beta *= 1 + clip(KL / target - 1, -0.2, 0.2) * n_episodes / horizon``, with ``KL`` the
            mean per-episode KL of the rollout.
        target: per-episode KL target (nats) for ``adaptive``.
        horizon: controller horizon in episodes.

    Logged every rollout: ``kl/ref_kl_token`` (mean k1 per token), ``kl/ref_kl_episode``,
    ``kl/penalty_mean`` (mean per-token penalty) and ``kl/coef``.
    """

    def __init__(
        self,
        kl_coef: float = 0.05,
        info_key: str = REF_LOGPROB_KEY,
        adaptive: bool = False,
        target: float = 6.0,
        horizon: int = 10_000,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        if not kl_coef >= 0:
            raise ConfigError(f"kl_coef must be >= 0, got {kl_coef!r}")
        self.kl_coef = float(kl_coef)
        self.info_key = info_key
        self.adaptive, self.target, self.horizon = bool(adaptive), float(target), int(horizon)
        self._ref: np.ndarray | None = None
        self._seen: np.ndarray | None = None
        self._episodes = 0
        self.last_stats: dict[str, float] = {}

    def _on_training_start(self) -> None:
        buf = getattr(self.model, "rollout_buffer", None)
        if not isinstance(buf, RolloutBuffer) and not hasattr(buf, "log_probs"):
            raise ConfigError(
                f"KLPenaltyCallback needs an on-policy algorithm with a rollout buffer of log-probs (PPO, A2C, "
                f"MaskablePPO); {type(self.model).__name__} has none"
            )

    def _on_rollout_start(self) -> None:
        buf = self.model.rollout_buffer
        self._ref = np.zeros((buf.buffer_size, buf.n_envs), dtype=np.float32)
        self._seen = np.zeros((buf.buffer_size, buf.n_envs), dtype=bool)
        self._episodes = 0

    def _on_step(self) -> bool:
        pos = self.model.rollout_buffer.pos
        infos = self.locals["infos"]
        for i, info in enumerate(infos):
            value = info.get(self.info_key)
            if value is None:
                raise ConfigError(
                    f"KLPenaltyCallback: sub-env {i} reported no info[{self.info_key!r}]; the env must report the "
                    "reference log-prob of every taken token (language tasks do unless ref_logprobs=False)"
                )
            self._ref[pos, i] = float(value)
            self._seen[pos, i] = True
        self._episodes += int(np.sum(self.locals["dones"]))
        return True

    def _on_rollout_end(self) -> None:
        buf = self.model.rollout_buffer
        if not self._seen.all():
            raise RuntimeError(
                "KLPenaltyCallback: some rollout steps were not recorded (callback added mid-rollout?)"
            )
        kl = buf.log_probs - self._ref  # k1 per token, (n_steps, n_envs)
        penalty = self.kl_coef * kl
        buf.rewards -= penalty.astype(buf.rewards.dtype)
        # Same bootstrap as the algorithm's own call: V(last obs), masked where the last step ended.
        with torch.no_grad():
            last_values = self.model.policy.predict_values(
                obs_as_tensor(self.model._last_obs, self.model.device)
            )
        buf.compute_returns_and_advantage(last_values=last_values, dones=self.model._last_episode_starts)
        n_ep = max(self._episodes, 1)
        kl_episode = float(kl.sum() / n_ep) if self._episodes else float(kl.mean() * buf.buffer_size)
        self.last_stats = {
            "kl/ref_kl_token": float(kl.mean()),
            "kl/ref_kl_episode": kl_episode,
            "kl/penalty_mean": float(penalty.mean()),
            "kl/coef": self.kl_coef,
        }
        for key, value in self.last_stats.items():
            self.logger.record(key, value)
        if self.adaptive:
            err = float(np.clip(kl_episode / self.target - 1.0, -0.2, 0.2))
            self.kl_coef *= 1.0 + err * n_ep / self.horizon


class EpisodeStatsCallback(BaseCallback):
    """Logs the mean of per-episode task facts the env reports at episode end (``success``, ``reward_task``).

    SB3 logs ``rollout/ep_rew_mean`` (the total reward, shaping included); this adds
    ``rollout/<key>_mean`` over the episodes that ended during each rollout, so the task reward
    stays visible next to the shaped sum. Values are also kept in ``history`` as
    ``(num_timesteps, {key: mean})`` rows (learning curves without TensorBoard).
    """

    def __init__(self, keys: tuple[str, ...] = ("reward_task", "success"), verbose: int = 0) -> None:
        super().__init__(verbose)
        self.keys = keys
        self._acc: dict[str, list[float]] = {}
        self.history: list[tuple[int, dict[str, float]]] = []

    def _on_rollout_start(self) -> None:
        self._acc = {k: [] for k in self.keys}

    def _on_step(self) -> bool:
        for info, done in zip(self.locals["infos"], self.locals["dones"], strict=True):
            if done:
                for k in self.keys:
                    if k in info:
                        self._acc[k].append(float(info[k]))
        return True

    def _on_rollout_end(self) -> None:
        row = {k: float(np.mean(v)) for k, v in self._acc.items() if v}
        for k, v in row.items():
            self.logger.record(f"rollout/{k}_mean", v)
        if row:
            self.history.append((self.num_timesteps, row))
