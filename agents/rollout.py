"""Rollout collection shared by PPO, A2C and REINFORCE: step a vector env, store, compute GAE.

The collector works with any Gymnasium ``VectorEnv`` and each autoreset mode:

* NEXT_STEP (Gymnasium's default, and the rlhf native env's): the step after an episode ends
  resets that sub-env and ignores its action. That step is stored but marked invalid
  (``valid = False``) and left out of every loss and statistic.
* SAME_STEP: the terminal observation comes from ``infos["final_obs"]`` and the final step's info
  from ``infos["final_info"]``.
* DISABLED: the collector resets finished sub-envs itself with ``reset(options={"reset_mask": m})``.

Truncation (a time limit) is bootstrapped by adding ``gamma * V(final_obs)`` to the last reward
(CleanRL / SB3); termination is not. GAE then cuts the chain at every episode end.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from rlhf_envs.errors import ConfigError

TRACKED_FLOAT_PREFIX = "reward_"


def _masked(infos: dict[str, Any], key: str, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(values, mask)`` of a batched info key, or ``None`` if absent."""
    if key not in infos:
        return None
    values = np.asarray(infos[key])
    mask = np.asarray(infos.get(f"_{key}", np.ones(n, dtype=bool)), dtype=bool)
    return values, mask


def action_masks_from_infos(infos: dict[str, Any], n_envs: int, n_actions: int) -> np.ndarray:
    """Bool ``(n_envs, n_actions)`` valid-action masks from a vector env's ``infos["action_mask"]``.

    Rows the info does not cover (``_action_mask`` False) allow every action. Raises
    :class:`ConfigError` when the env reports no mask at all (``use_action_mask`` needs one).
    """
    got = _masked(infos, "action_mask", n_envs)
    if got is None:
        raise ConfigError(
            "use_action_mask=True but the env reports no info['action_mask'] after reset/step; "
            "use an env that does (the rlhf text envs do) or set use_action_mask=False"
        )
    values, rows = got
    masks = np.ones((n_envs, n_actions), dtype=bool)
    if values.dtype != object and values.shape == (n_envs, n_actions):  # one array (native envs)
        masks[rows] = values[rows] != 0
    elif rows.any():  # per-env arrays (e.g. a SyncVectorEnv's object array)
        masks[rows] = np.stack([np.asarray(values[i], dtype=bool) for i in np.flatnonzero(rows)])
    return masks


class EpisodeTracker:
    """Per-sub-env running sums of reward, length and each ``info["reward_<term>"]`` component.

    Finished episodes go to ``completed`` (a bounded deque of dicts with ``return``, ``length``,
    ``reward_*`` sums and ``success`` when the env reports it).
    """

    def __init__(self, n_envs: int, maxlen: int | None = 100) -> None:
        self.n = n_envs
        self.returns = np.zeros(n_envs)
        self.lengths = np.zeros(n_envs, dtype=np.int64)
        self.components: dict[str, np.ndarray] = {}
        self.completed: deque[dict[str, float]] = deque(maxlen=maxlen)
        self.n_completed = 0

    def reset(self) -> None:
        """Forget running episodes (after the envs were reset from outside)."""
        self.returns[:] = 0
        self.lengths[:] = 0
        for v in self.components.values():
            v[:] = 0

    def update(
        self,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        infos: dict[str, Any],
        valid: np.ndarray,
    ) -> np.ndarray:
        """Account one vector step; return the indices of episodes that ended in it."""
        n = self.n
        self.returns += np.where(valid, rewards, 0.0)
        self.lengths += valid
        done = (np.asarray(terminated) | np.asarray(truncated)) & valid
        final = infos.get("final_info") if "final_info" in infos else None
        for source, rows in ((infos, valid & ~done if final is not None else valid), (final, done)):
            if source is None:
                continue
            for key in source:
                if not key.startswith(TRACKED_FLOAT_PREFIX):
                    continue
                got = _masked(source, key, n)
                if got is None or got[0].dtype == object:
                    continue
                values, mask = got
                acc = self.components.setdefault(key, np.zeros(n))
                sel = mask & rows
                acc[sel] += values[sel].astype(np.float64)
        idx = np.flatnonzero(done)
        if idx.size:
            source = final if final is not None else infos
            success = _masked(source, "success", n)
            for i in idx:
                ep = {"return": float(self.returns[i]), "length": int(self.lengths[i])}
                for key, acc in self.components.items():
                    ep[key] = float(acc[i])
                    acc[i] = 0.0
                if success is not None and success[1][i]:
                    ep["success"] = float(bool(success[0][i]))
                self.completed.append(ep)
                self.n_completed += 1
            self.returns[idx] = 0.0
            self.lengths[idx] = 0
        return idx

    def summary(self, episodes: list[dict[str, float]] | None = None) -> dict[str, float]:
        """Means of the tracked quantities over ``episodes`` (default: the recent completed ones)."""
        eps = list(self.completed) if episodes is None else episodes
        return summarize_episodes(eps)


def summarize_episodes(eps: list[dict[str, float]]) -> dict[str, float]:
    """``mean_return``, ``std_return``, ``mean_length``, per-component means, ``success_rate``."""
    if not eps:
        return {}
    returns = np.array([e["return"] for e in eps])
    out = {
        "n_episodes": len(eps),
        "mean_return": float(returns.mean()),
        "std_return": float(returns.std()),
        "mean_length": float(np.mean([e["length"] for e in eps])),
    }
    keys = sorted({k for e in eps for k in e if k.startswith(TRACKED_FLOAT_PREFIX)})
    for k in keys:
        out[k] = float(np.mean([e.get(k, 0.0) for e in eps]))
    succ = [e["success"] for e in eps if "success" in e]
    if succ:
        out["success_rate"] = float(np.mean(succ))
    return out


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    last_values: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over a ``(T, N)`` rollout.

    ``dones[t]`` is 1 when the episode ended at step ``t`` (its successor is not bootstrapped;
    truncations were already bootstrapped into ``rewards``). Returns ``(advantages, returns)``.
    """
    T = rewards.shape[0]
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(last_values)
    for t in reversed(range(T)):
        next_v = last_values if t == T - 1 else values[t + 1]
        nonterminal = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_v * nonterminal - values[t]
        last = delta + gamma * gae_lambda * nonterminal * last
        adv[t] = last
    return adv, adv + values


@dataclass
class Batch:
    """One rollout, flattened to the samples the update iterates over.

    For MLP policies a sample is one valid transition (``obs`` is ``(M, F)``, the rest ``(M,)``);
    for LM policies a sample is one episode (``obs`` is a dict of ``(M, S)`` tensors and the
    per-token fields are ``(M, R)`` with ``mask`` marking real tokens).
    """

    obs: Any
    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    mask: torch.Tensor
    rewards: torch.Tensor
    #: bool ``(M, n_actions)`` valid-action masks of the observations (``use_action_mask`` only)
    action_masks: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    def index(self, idx: torch.Tensor) -> Batch:
        """The sub-batch of samples ``idx``."""
        obs = {k: v[idx] for k, v in self.obs.items()} if isinstance(self.obs, dict) else self.obs[idx]
        return Batch(
            obs,
            self.actions[idx],
            self.log_probs[idx],
            self.values[idx],
            self.advantages[idx],
            self.returns[idx],
            self.mask[idx],
            self.rewards[idx],
            None if self.action_masks is None else self.action_masks[idx],
        )

    def trim_padding(self) -> Batch:
        """An LM batch without the columns none of its episodes uses (any other batch: itself).

        An LM batch holds ``(M, P + R)`` sequences, prompts left-padded to the rollout's longest
        and completions right-padded to its longest; a minibatch's own longest are often shorter.
        Dropping the leading prompt columns that are padding in every row and the trailing
        completion columns that no row reached changes nothing a loss sees: position ids come
        from the mask's cumulative sum, padded keys are masked out of attention, and every
        per-token mean multiplies the dropped positions by a zero mask. Per-token fields (every
        ``(M, R)`` tensor, a subclass's included) lose the same trailing columns.
        """
        am = self.obs.get("attention_mask") if isinstance(self.obs, dict) else None
        if am is None or self.mask.dim() != 2 or len(self) == 0:
            return self
        r = self.mask.shape[1]
        p = am.shape[1] - r
        used_prompt = am[:, :p].bool().any(0).nonzero()
        used_completion = self.mask.bool().any(0).nonzero()
        # keep one prompt column at least: the last one's hidden state predicts the first token
        first = min(int(used_prompt[0]) if len(used_prompt) else p, max(p - 1, 0))
        keep = int(used_completion[-1]) + 1 if len(used_completion) else r
        if first == 0 and keep == r:
            return self
        changes: dict[str, Any] = {"obs": {k: v[:, first : p + keep] for k, v in self.obs.items()}}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name != "obs" and isinstance(v, torch.Tensor) and v.shape == self.mask.shape:
                changes[f.name] = v[:, :keep]
        return dataclasses.replace(self, **changes)


class StepCollector:
    """Steps a vector env with an MLP policy for ``n_steps`` and builds a :class:`Batch`.

    It keeps the current observation and the "previous step ended an episode" flags between calls,
    so episodes run across rollout boundaries.
    """

    def __init__(  # noqa: ANN001
        self, env, policy, mode: AutoresetMode, bootstrap_truncated: bool, device: str, world: Any = None
    ) -> None:
        self.env, self.policy, self.mode = env, policy, mode
        #: the data-parallel world (:class:`agents.distributed.World`); ``None``: one process
        self.world = world
        self.bootstrap_truncated = bootstrap_truncated
        self.device = device
        self.n = env.num_envs
        self.tracker = EpisodeTracker(self.n)
        self.obs: Any = None
        self.prev_done = np.zeros(self.n, dtype=bool)
        #: valid-action masks of ``self.obs`` (only when the policy uses action masks)
        self.action_masks: np.ndarray | None = None

    @property
    def uses_masks(self) -> bool:
        """Whether the policy samples from the env's action masks."""
        return bool(getattr(self.policy, "use_action_mask", False))

    def _update_masks(self, infos: dict[str, Any]) -> None:
        if self.uses_masks:
            self.action_masks = action_masks_from_infos(infos, self.n, self.policy.n_out)

    def set_env(self, env, mode: AutoresetMode) -> None:  # noqa: ANN001
        """Step ``env`` (same number of sub-envs) from now on; :meth:`reset` must run before collecting."""
        if env.num_envs != self.n:
            raise ConfigError(f"StepCollector.set_env: {env.num_envs} sub-envs, expected {self.n}")
        self.env, self.mode = env, mode
        self.obs = None
        self.action_masks = None
        self.prev_done[:] = False
        self.tracker.reset()

    @property
    def _distributed(self) -> bool:
        return self.world is not None and self.world.active

    def reset(self, seed: int) -> None:
        """Reset every sub-env (sub-env ``i`` gets ``seed + i``) and forget running episodes.

        On data-parallel rank ``r`` sub-env ``i`` gets ``seed + r * n_envs + i``: the ranks
        together reset the global vector env.
        """
        if self._distributed:
            seed = self.world.env_seed(seed, self.n)
        self.obs, infos = self.env.reset(seed=seed)
        self._update_masks(infos)
        self.prev_done[:] = False
        self.tracker.reset()

    def _final_obs(self, next_obs: Any, infos: dict[str, Any], rows: np.ndarray) -> torch.Tensor:
        enc = self.policy.encoder
        if self.mode == AutoresetMode.SAME_STEP:
            finals = [infos["final_obs"][i] for i in rows]
            if isinstance(finals[0], dict):
                stacked = {k: np.stack([f[k] for f in finals]) for k in finals[0]}
            else:
                stacked = np.stack(finals)
            return enc(stacked, self.device)
        if isinstance(next_obs, dict):
            return enc({k: v[rows] for k, v in next_obs.items()}, self.device)
        return enc(np.asarray(next_obs)[rows], self.device)

    def collect(self, agent) -> tuple[Batch, int, dict[str, float]]:  # noqa: ANN001
        """One rollout for ``agent``: ``(batch, env steps taken, episode statistics)``."""
        cfg = agent.config
        batch = self.collect_steps(cfg.n_steps, cfg.gamma, cfg.gae_lambda, agent.torch_rng)
        if self._distributed:  # episode means over every rank's recent episodes
            recent = [ep for part in self.world.gather_objects(list(self.tracker.completed)) for ep in part]
            return batch, cfg.n_steps * self.n * self.world.world_size, summarize_episodes(recent)
        return batch, cfg.n_steps * self.n, self.tracker.summary()

    @torch.no_grad()
    def collect_steps(
        self, n_steps: int, gamma: float, gae_lambda: float, generator: torch.Generator
    ) -> Batch:
        """Run ``n_steps`` vector steps and return the flattened batch of valid transitions.

        Data-parallel: the ``(n_steps, n_envs)`` tensors of every rank are gathered along the
        sub-env axis before flattening, so every rank returns the global batch in the order one
        process stepping all ranks' sub-envs would have produced.
        """
        n, dev, pol = self.n, self.device, self.policy
        obs_buf, act_buf, logp_buf, val_buf, rew_buf, done_buf, valid_buf = [], [], [], [], [], [], []
        mask_buf: list[torch.Tensor] = []
        for _ in range(n_steps):
            x = pol.encoder(self.obs, dev)
            am = None
            if self.uses_masks:
                am = torch.as_tensor(self.action_masks, device=dev)
                mask_buf.append(am)
            out = pol.act(x, generator, action_mask=am, world=self.world)
            next_obs, rewards, terminated, truncated, infos = self.env.step(pol.to_env_actions(out.actions))
            terminated, truncated = np.asarray(terminated, bool), np.asarray(truncated, bool)
            valid = ~self.prev_done if self.mode == AutoresetMode.NEXT_STEP else np.ones(n, dtype=bool)
            rewards = np.asarray(rewards, dtype=np.float32).copy()
            self.tracker.update(rewards, terminated, truncated, infos, valid)
            trunc_rows = np.flatnonzero(truncated & ~terminated & valid)
            if self.bootstrap_truncated and trunc_rows.size:
                rewards[trunc_rows] += (
                    gamma * pol.value(self._final_obs(next_obs, infos, trunc_rows)).cpu().numpy()
                )
            done = (terminated | truncated) & valid
            obs_buf.append(x)
            act_buf.append(out.actions)
            logp_buf.append(out.log_probs)
            val_buf.append(out.values)
            rew_buf.append(torch.as_tensor(rewards, device=dev))
            done_buf.append(torch.as_tensor(done, dtype=torch.float32, device=dev))
            valid_buf.append(torch.as_tensor(valid, device=dev))
            self._update_masks(infos)
            if self.mode == AutoresetMode.DISABLED and done.any():
                next_obs, reset_infos = self.env.reset(options={"reset_mask": done})
                if self.uses_masks:
                    fresh = action_masks_from_infos(reset_infos, n, pol.n_out)
                    self.action_masks[done] = fresh[done]
            self.prev_done = done if self.mode == AutoresetMode.NEXT_STEP else np.zeros(n, dtype=bool)
            self.obs = next_obs
        last_values = pol.value(pol.encoder(self.obs, dev))
        values = torch.stack(val_buf)
        rewards_t = torch.stack(rew_buf)
        adv, ret = compute_gae(rewards_t, values, torch.stack(done_buf), last_values, gamma, gae_lambda)
        steps = {
            "valid": torch.stack(valid_buf),
            "obs": torch.stack(obs_buf),
            "actions": torch.stack(act_buf),
            "log_probs": torch.stack(logp_buf),
            "values": values,
            "advantages": adv,
            "returns": ret,
            "rewards": rewards_t,
        }
        if mask_buf:
            steps["action_masks"] = torch.stack(mask_buf)
        if self._distributed:  # (T, n, ...) per rank -> (T, world_size * n, ...) on every rank
            steps = {k: self.world.gather(v, dim=1) for k, v in steps.items()}
        n_rows = steps["valid"].shape[0] * steps["valid"].shape[1]
        idx = torch.nonzero(steps["valid"].reshape(-1)).squeeze(-1)

        def flat(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(n_rows, *t.shape[2:])[idx]

        def flat2d(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(n_rows, -1)[idx]

        return Batch(
            flat2d(steps["obs"]),
            flat(steps["actions"]),
            flat(steps["log_probs"]),
            flat(steps["values"]),
            flat(steps["advantages"]),
            flat(steps["returns"]),
            torch.ones(idx.numel(), dtype=torch.bool, device=dev),
            flat(steps["rewards"]),
            flat2d(steps["action_masks"]) if mask_buf else None,
        )
