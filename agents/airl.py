"""Adversarial inverse RL (AIRL; Fu, Luo and Levine 2018) on the token MDP, alternating with PPO.

The reward network ``f(s, a)`` (:class:`~rlhf_envs.feedback.inverse_rl.TokenReward`, a causal
transformer backbone with a one-output head) and the policy ``pi`` play AIRL's game:

* the discriminator ``D(s, a) = exp f(s, a) / (exp f(s, a) + pi(a | s))``, i.e. the logit
  ``f(s, a) - log pi(a | s)`` (:func:`discriminator_logits`), is trained by logistic regression to
  tell the demonstrations' transitions (label 1) from the current policy's (label 0); ``log pi`` is
  the current policy's, held fixed during the discriminator step;
* the policy is the custom PPO (:class:`agents.PPO`) trained on an env that pays the learned
  return ``sum_t f(s_t, a_t)`` of each episode: ``gym.make_vec(id, feedback=reward)``, the same
  object the discriminator updates, so every PPO round sees the latest ``f``.

AIRL's policy reward is ``log D - log(1 - D) = f - log pi``: the ``- log pi`` part is a
maximum-entropy bonus. For policies trained from scratch the training env pays exactly that
(:class:`MaxEntReward`: ``sum_t f - log pi`` of the current policy, on the final token); for
language-model policies it pays ``f`` and the per-token KL penalty to the frozen reference,
``- beta (log pi - log pi_ref)``, supplies the ``- log pi`` term (with the reference as prior).
What is exported is ``f`` alone (:attr:`AIRL.reward`, a :class:`TokenReward`: a feedback model any
env accepts through ``gym.make(id, feedback=...)``), AIRL's re-optimisable reward.

One round of :meth:`AIRL.learn`: sample ``episodes_per_round`` fresh episodes of the current policy
on the demonstrations' own prompts (a random subset each round, reset with the demonstrations'
seeds; on an env paying the task's true reward, which AIRL never reads except to report it), keep
them in a replay of the last ``replay_rounds`` rounds, take ``disc_updates`` discriminator steps on balanced
minibatches (``disc_batch`` demonstrations and ``disc_batch`` policy episodes, per-token logistic loss
averaged over the tokens of each side), then ``steps_per_round`` PPO env steps. The first round
fits the discriminator against the initial policy before PPO moves.

Why the policy's episodes for the discriminator use the demonstrations' prompts: AIRL assumes both
sides start from the same initial-state distribution. A finite set of demonstrations has its own
prompts, and a policy sampled on fresh prompts (almost never one of them) hands the discriminator a
feature that separates the two sides perfectly whatever the completions are: the prompt itself.
The optimal ``f = log pi_E(a | s) + log rho_E(s) / rho_pi(s)`` then carries a large positive term on
the demonstrations' prompts and a negative one elsewhere; on ``RLHF/Copy-v0`` a first run learned
exactly that (after round one, the learned return of the demonstrations was 16.1, of the replayed
policy episodes -15.0, and of correct and sampled completions of unseen prompts about 7 alike) and
PPO, paid a negative ``f`` per token on unseen prompts, learned to stop at once. On the same
prompts only the completions differ. ``negatives_on_demo_prompts=False`` restores fresh prompts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from agents import checkpoint as ckpt
from agents.demonstrations import load_episodes, policy_token_logprobs, sample_episodes, save_episodes
from agents.envs import make_vector_env, without_env_reference
from agents.ppo import PPO
from agents.threads import torch_threads, training_threads
from rlhf_envs import atomic_io
from rlhf_envs.errors import ConfigError, DataError
from rlhf_envs.feedback.base import Episode
from rlhf_envs.feedback.inverse_rl import TokenReward

_STATE_FILE = "airl.json"


def discriminator_logits(f: torch.Tensor, log_pi: torch.Tensor) -> torch.Tensor:
    """AIRL's discriminator logit ``log D - log(1 - D) = f(s, a) - log pi(a | s)`` (elementwise)."""
    return f - log_pi


def discriminator_loss(
    f_expert: torch.Tensor,
    logp_expert: torch.Tensor,
    mask_expert: torch.Tensor,
    f_policy: torch.Tensor,
    logp_policy: torch.Tensor,
    mask_policy: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Logistic loss: demonstration tokens labelled 1, policy tokens 0, each side a masked token mean."""
    le = discriminator_logits(f_expert, logp_expert)
    lp = discriminator_logits(f_policy, logp_policy)
    me, mp = mask_expert.float(), mask_policy.float()
    loss_e = (
        F.binary_cross_entropy_with_logits(le, torch.ones_like(le), reduction="none") * me
    ).sum() / me.sum().clamp(min=1)
    loss_p = (
        F.binary_cross_entropy_with_logits(lp, torch.zeros_like(lp), reduction="none") * mp
    ).sum() / mp.sum().clamp(min=1)
    with torch.no_grad():
        acc_e = float(((le > 0).float() * me).sum() / me.sum().clamp(min=1))
        acc_p = float(((lp < 0).float() * mp).sum() / mp.sum().clamp(min=1))
    return 0.5 * (loss_e + loss_p), {"disc_acc_expert": acc_e, "disc_acc_policy": acc_p}


class MaxEntReward:
    """A feedback model paying ``sum_t [f(s_t, a_t) - log pi(a_t | s_t)]``: AIRL's policy reward.

    ``f`` is a :class:`TokenReward`; ``pi`` is :attr:`agent`'s current policy (set after the agent
    is built: the agent needs the env and the env needs this reward). The sum over tokens of the
    discriminator's logit ``log D - log(1 - D)``, paid on the final token (gamma 1 makes that the
    same return as paying it per token). Absorbing steps have ``log pi = 0``.
    """

    def __init__(self, reward: TokenReward, agent: Any = None) -> None:
        self.reward, self.agent = reward, agent

    def score(self, episodes: Sequence[Episode]) -> np.ndarray:
        if self.agent is None:
            raise ConfigError("MaxEntReward.agent is not set: assign the agent whose policy pi is")
        if len(episodes) == 0:
            return np.zeros(0, dtype=np.float32)
        eps = list(episodes)
        was_training = self.agent.policy.training
        self.agent.policy.eval()
        try:
            with torch.no_grad():
                logp, mask = policy_token_logprobs(self.agent, eps)
        finally:
            self.agent.policy.train(was_training)
        entropy_term = -(logp * mask).sum(1).double().cpu().numpy()
        return (self.reward.score(eps).astype(np.float64) + entropy_term).astype(np.float32)


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"{name} must be a positive int, got {value!r}")
    return int(value)


class AIRL:
    """AIRL with the custom PPO as the generator (see the module docstring).

    Args:
        env_id: a registered text env id (e.g. ``"RLHF/Copy-v0"``, ``"RLHF/Sentiment-v0"``).
        demonstrations: the expert's episodes (:class:`~rlhf_envs.feedback.base.Episode`, token ids
            of this env's tokenizer), e.g. from :mod:`agents.demonstrations`.
        seed: seeds the policy, the reward network, sampling and minibatches.
        reward: a ready :class:`TokenReward`; default a fresh one on ``reward_model`` with
            ``anchor_token``.
        ppo: keyword arguments of :class:`agents.PPO` (``preset``, ``policy``, ``n_envs``, ...).
            ``anneal_lr`` defaults to ``False``: PPO's schedule would restart every round.
        env_kwargs: task parameters for both envs (e.g. ``max_new_tokens``).
        steps_per_round: PPO env steps (generated tokens) between discriminator updates.
        episodes_per_round: fresh policy episodes sampled for the discriminator each round.
        disc_updates, disc_batch, disc_lr, disc_weight_decay: the discriminator's steps per round,
            episodes per side per step, AdamW learning rate and weight decay.
        disc_warmup_updates: extra discriminator steps in the first round, so the first PPO round
            already sees a reward that tells demonstrations from the initial policy.
        replay_rounds: rounds of policy episodes the discriminator sees as negatives.
        sample_envs: sub-envs of the sampling env.
        negatives_on_demo_prompts: sample the policy's episodes for the discriminator on the
            demonstrations' prompts (reset with each demonstration's ``seed``, which must reproduce
            its prompt; see the module docstring). ``False``: fresh prompts.
        entropy_reward: pay PPO AIRL's full reward ``f - log pi`` (:class:`MaxEntReward`) instead
            of ``f``; default ``True`` for policies trained from scratch and ``False`` for LM
            policies, whose KL penalty already holds the ``- log pi`` term.
    """

    def __init__(
        self,
        env_id: str,
        demonstrations: Sequence[Episode],
        seed: int = 0,
        *,
        reward: TokenReward | None = None,
        reward_model: Any = None,
        anchor_token: int | None = None,
        ppo: dict[str, Any] | None = None,
        env_kwargs: dict[str, Any] | None = None,
        steps_per_round: int = 8192,
        episodes_per_round: int = 256,
        disc_updates: int = 32,
        disc_warmup_updates: int = 0,
        disc_batch: int = 64,
        disc_lr: float = 1e-3,
        disc_weight_decay: float = 0.0,
        replay_rounds: int = 3,
        sample_envs: int = 64,
        negatives_on_demo_prompts: bool = True,
        entropy_reward: bool | None = None,
    ) -> None:
        if not isinstance(env_id, str):
            raise ConfigError(f"env_id must be a registered env id string, got {env_id!r}")
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
            raise ConfigError(f"seed must be an int, got {seed!r}")
        demos = list(demonstrations)
        if not demos or not all(isinstance(e, Episode) for e in demos):
            raise ConfigError("demonstrations must be a non-empty sequence of Episode objects")
        self.env_id, self.seed, self.demonstrations = env_id, int(seed), demos
        self.settings = {
            "steps_per_round": _check_positive_int("steps_per_round", steps_per_round),
            "episodes_per_round": _check_positive_int("episodes_per_round", episodes_per_round),
            "disc_updates": _check_positive_int("disc_updates", disc_updates),
            "disc_warmup_updates": int(disc_warmup_updates),
            "disc_batch": _check_positive_int("disc_batch", disc_batch),
            "replay_rounds": _check_positive_int("replay_rounds", replay_rounds),
            "sample_envs": _check_positive_int("sample_envs", sample_envs),
            "disc_lr": float(disc_lr),
            "disc_weight_decay": float(disc_weight_decay),
            "negatives_on_demo_prompts": bool(negatives_on_demo_prompts),
        }
        if not (
            np.isfinite(disc_lr) and disc_lr > 0 and np.isfinite(disc_weight_decay) and disc_weight_decay >= 0
        ):
            raise ConfigError(
                f"disc_lr must be > 0 and disc_weight_decay >= 0, got {disc_lr!r}, {disc_weight_decay!r}"
            )
        self.ppo_kwargs = {"anneal_lr": False, **(ppo or {})}
        self.env_kwargs = dict(env_kwargs or {})
        self.reward = (
            reward
            if reward is not None
            else TokenReward(reward_model, anchor_token=anchor_token, seed=self.seed)
        )
        if not isinstance(self.reward, TokenReward):
            raise ConfigError(f"reward must be a TokenReward, got {type(self.reward).__name__}")
        kwargs = self._env_kwargs()
        n_envs = int(self.ppo_kwargs.get("n_envs", 64))
        lm = self.ppo_kwargs.get("policy") == "lm"
        self.entropy_reward = (not lm) if entropy_reward is None else bool(entropy_reward)
        self.training_reward = MaxEntReward(self.reward) if self.entropy_reward else None
        self.env = gym.make_vec(
            env_id,
            num_envs=n_envs,
            vectorization_mode="vector_entry_point",
            feedback=self.training_reward or self.reward,
            **kwargs,
        )
        self.sample_env = make_vector_env(env_id, self.settings["sample_envs"], kwargs)
        if self.reward.horizon is None:  # absorbing steps up to the env's completion budget
            self.reward.horizon = int(self.env.task.max_new_tokens)
        self.agent = PPO(self.env, seed=self.seed, **self.ppo_kwargs)
        if self.training_reward is not None:
            self.training_reward.agent = self.agent
        self.optimizer = torch.optim.AdamW(
            self.reward.net.parameters(),
            lr=self.settings["disc_lr"],
            weight_decay=self.settings["disc_weight_decay"],
        )
        self.np_rng = np.random.default_rng([self.seed, 0xA1])
        self.replay: list[list[Episode]] = []
        self.rounds = 0
        self.history: list[dict[str, float]] = []

    def _env_kwargs(self) -> dict[str, Any]:
        kwargs = dict(self.env_kwargs)
        if self.ppo_kwargs.get("policy") == "lm":  # the agent computes reference log-probs itself
            kwargs = without_env_reference(self.env_id, kwargs)
        return kwargs

    @property
    def num_timesteps(self) -> int:
        """PPO env steps taken so far."""
        return int(self.agent.num_timesteps)

    # -- the discriminator --------------------------------------------------------------------------

    @torch.no_grad()
    def _logprobs(self, episodes: Sequence[Episode], chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        """The current policy's ``log pi`` of every completion token, ``(B, C)``, in chunks."""
        self.agent.policy.eval()
        parts = [
            policy_token_logprobs(self.agent, episodes[i : i + chunk]) for i in range(0, len(episodes), chunk)
        ]
        width = max(p[0].shape[1] for p in parts)
        logp = torch.cat([F.pad(p[0], (0, width - p[0].shape[1])) for p in parts])
        mask = torch.cat([F.pad(p[1], (0, width - p[1].shape[1])) for p in parts])
        return logp, mask

    def _sample_on_demo_prompts(self, seed: int) -> tuple[list[Episode], np.ndarray, np.ndarray]:
        """``episodes_per_round`` policy episodes on the prompts of randomly chosen demonstrations
        (without repeats while there are enough), each reset with its demonstration's seed."""
        n, demos = self.settings["episodes_per_round"], self.demonstrations
        order = np.concatenate([self.np_rng.permutation(len(demos)) for _ in range(-(-n // len(demos)))])[:n]
        eps, returns, success = sample_episodes(
            self.agent, self.sample_env, n, seed, reset_seeds=[int(demos[i].seed) for i in order]
        )
        for e, i in zip(eps, order, strict=True):
            if tuple(e.prompt_ids) != tuple(demos[i].prompt_ids):
                raise DataError(
                    f"AIRL: demonstration {int(i)}'s seed {demos[i].seed} does not reproduce its prompt "
                    f"{demos[i].prompt!r} on {self.env_id} (got {e.prompt!r}); the discriminator's policy "
                    "episodes are sampled on the demonstrations' prompts: give each demonstration its "
                    "env reset seed, or pass negatives_on_demo_prompts=False"
                )
        return eps, returns, success

    def update_reward(self) -> dict[str, float]:
        """One discriminator phase: sample the policy, then ``disc_updates`` logistic-regression steps."""
        s = self.settings
        seed = int(self.np_rng.integers(2**31))
        if s["negatives_on_demo_prompts"]:
            eps, returns, success = self._sample_on_demo_prompts(seed)
        else:
            eps, returns, success = sample_episodes(
                self.agent, self.sample_env, s["episodes_per_round"], seed
            )
        self.replay.append(eps)
        self.replay = self.replay[-s["replay_rounds"] :]
        negatives = [e for r in self.replay for e in r]
        logp_e, _ = self._logprobs(self.demonstrations)
        logp_p, _ = self._logprobs(negatives)
        net = self.reward.net
        net.train()
        stats: dict[str, list[float]] = {}
        if s["disc_warmup_updates"] < 0:
            raise ConfigError(f"disc_warmup_updates must be >= 0, got {s['disc_warmup_updates']}")
        n_updates = s["disc_updates"] + (s["disc_warmup_updates"] if self.rounds == 0 else 0)
        for _ in range(n_updates):
            ie = self.np_rng.integers(0, len(self.demonstrations), s["disc_batch"])
            ip = self.np_rng.integers(0, len(negatives), s["disc_batch"])
            f_e, m_e = self.reward.completion_rewards([self.demonstrations[i] for i in ie])
            f_p, m_p = self.reward.completion_rewards([negatives[i] for i in ip])
            le = _fit(logp_e[torch.as_tensor(ie)], f_e.shape[1])
            lp = _fit(logp_p[torch.as_tensor(ip)], f_p.shape[1])
            loss, acc = discriminator_loss(f_e, le, m_e, f_p, lp, m_p)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"AIRL: discriminator loss became {float(loss)} in round {self.rounds}"
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            self.optimizer.step()
            for k, v in {"disc_loss": float(loss.detach()), **acc}.items():
                stats.setdefault(k, []).append(v)
        net.eval()
        out = {k: float(np.mean(v)) for k, v in stats.items()}
        out.update(
            policy_true_return=float(np.mean(returns)),
            policy_learned_return=float(np.mean(self.reward.score(eps))),
            expert_learned_return=float(
                np.mean(self.reward.score(self.demonstrations[: s["episodes_per_round"]]))
            ),
        )
        if np.isfinite(success).any():
            out["policy_success"] = float(np.nanmean(success))
        return out

    # -- training -----------------------------------------------------------------------------------

    def pretrain_reward(self, tokens: int, lr: float = 1e-3, batch_size: int = 64) -> float:
        """Warm-start ``f`` by maximum likelihood: its action head trained as a policy on the demonstrations.

        AIRL's discriminator is optimal at ``f(s, a) = log pi_E(a | s)`` (up to shaping), so a
        head whose softmax imitates the demonstrations starts ``f`` near that point; the
        adversarial rounds then calibrate it against the policy's own mistakes. Own AdamW, this
        run's generator; ``tokens`` demonstration tokens; returns the last minibatch's mean NLL.
        """
        _check_positive_int("tokens", tokens)
        net = self.reward.net
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.0)
        per_episode = max(1.0, float(np.mean([len(e.completion_ids) for e in self.demonstrations])))
        steps = max(1, int(np.ceil(tokens / (per_episode * batch_size))))
        nll = float("nan")
        net.train()
        with torch_threads(training_threads(self.agent.config.threads)):
            for _ in range(steps):
                idx = self.np_rng.permutation(len(self.demonstrations))[:batch_size]
                loss = -self.reward.action_log_likelihood([self.demonstrations[i] for i in idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                opt.step()
                nll = float(loss.detach())
        net.eval()
        return nll

    def pretrain_bc(self, tokens: int, lr: float = 1e-3, batch_size: int = 64) -> float:
        """Behaviour-clone the policy on the demonstrations for ``tokens`` demonstration tokens.

        GAIL/AIRL practice: a generator that starts near the demonstrations gives the discriminator
        hard negatives (near misses) from the first round. Uses its own Adam (PPO's optimiser
        state is untouched) and this run's generator; returns the last minibatch's mean NLL.
        """
        _check_positive_int("tokens", tokens)
        opt = torch.optim.Adam([p for p in self.agent.policy.parameters() if p.requires_grad], lr=lr)
        done, nll = 0, float("nan")
        with torch_threads(training_threads(self.agent.config.threads)):
            while done < tokens:
                idx = self.np_rng.permutation(len(self.demonstrations))[:batch_size]
                logp, mask = policy_token_logprobs(self.agent, [self.demonstrations[i] for i in idx])
                m = mask.float()
                loss = -(logp * m).sum() / m.sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.agent.policy.parameters(), 1.0)
                opt.step()
                done += int(m.sum())
                nll = float(loss.detach())
        self.agent.policy.eval()
        return nll

    def _learn_ppo(self, steps: int) -> None:
        self.agent._needs_reset = True  # every round starts fresh episodes (a resumed run does too)
        self.agent.learn(steps, progress_bar=False, reset_num_timesteps=False)

    def learn(
        self, total_timesteps: int, callback: Callable[[AIRL, dict[str, float]], bool | None] | None = None
    ) -> AIRL:
        """Alternate discriminator phases and PPO until ``total_timesteps`` more PPO env steps are taken.

        ``callback(airl, metrics)`` runs after every round; returning ``False`` stops. To resume:
        ``AIRL.load(path).learn(total - airl.num_timesteps)`` repeats the uninterrupted run.
        """
        if (
            isinstance(total_timesteps, bool)
            or not isinstance(total_timesteps, int | np.integer)
            or total_timesteps < 0
        ):
            raise ValueError(f"total_timesteps must be a non-negative int, got {total_timesteps!r}")
        target = self.num_timesteps + int(total_timesteps)
        with torch_threads(training_threads(self.agent.config.threads)):
            while self.num_timesteps < target:
                metrics = self.update_reward()
                self._learn_ppo(min(self.settings["steps_per_round"], target - self.num_timesteps))
                self.rounds += 1
                metrics.update(round=self.rounds, timesteps=self.num_timesteps)
                self.history.append(metrics)
                if callback is not None and callback(self, metrics) is False:
                    break
        return self

    def evaluate(
        self, n_episodes: int = 100, deterministic: bool = True, seed: int | None = None
    ) -> dict[str, float]:
        """The policy on the task's *true* reward (a fresh env): :meth:`agents.PPO.evaluate`'s summary."""
        env = make_vector_env(self.env_id, min(n_episodes, self.settings["sample_envs"]), self._env_kwargs())
        try:
            return self.agent.evaluate(n_episodes, deterministic=deterministic, seed=seed, env=env)
        finally:
            env.close()

    # -- persistence --------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> str:
        """Write directory ``path``: the PPO checkpoint, the reward, demonstrations, replay and state."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.agent.save(str(path / "policy"))
        self.reward.save(path / "reward")
        save_episodes(path / "demonstrations.json", self.demonstrations)
        for i, eps in enumerate(self.replay):
            save_episodes(path / f"replay_{i}.json", eps)
        tensors, optim_meta = ckpt.optimizer_state(self.optimizer)
        from safetensors.torch import save_file

        save_file(tensors, str(path / "disc_optimizer.safetensors"))
        ppo_json = {
            k: v for k, v in self.ppo_kwargs.items() if isinstance(v, str | int | float | bool | type(None))
        }
        if len(ppo_json) != len(self.ppo_kwargs):
            raise ConfigError("AIRL.save: ppo options must be JSON values (pass model paths, not instances)")
        state = {
            "env_id": self.env_id,
            "seed": self.seed,
            "settings": self.settings,
            "ppo": ppo_json,
            "env_kwargs": self.env_kwargs,
            "rounds": self.rounds,
            "n_replay": len(self.replay),
            "np_rng": self.np_rng.bit_generator.state,
            "optimizer": optim_meta,
            "history": self.history,
        }
        atomic_io.write_json(path / _STATE_FILE, state, indent=2)  # last: marks a complete save
        return str(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> AIRL:
        """Rebuild an AIRL run written by :meth:`save`; ``learn`` then continues it exactly (CPU)."""
        from safetensors.torch import load_file

        path = Path(path)
        state_file = path / _STATE_FILE
        try:
            state = json.loads(state_file.read_text(encoding="utf-8"))
            settings = dict(state["settings"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"AIRL file {str(state_file)!r} is missing or malformed ({exc!r})") from None
        reward = TokenReward.load(path / "reward")
        airl = cls(
            state["env_id"],
            load_episodes(path / "demonstrations.json"),
            state["seed"],
            reward=reward,
            ppo=state["ppo"],
            env_kwargs=state["env_kwargs"],
            **settings,
        )
        old = airl.agent
        airl.agent = PPO.load(str(path / "policy"), env=airl.env)
        if airl.training_reward is not None:
            airl.training_reward.agent = airl.agent  # pi in f - log pi is the loaded policy
        del old
        try:
            ckpt.load_optimizer_state(
                airl.optimizer, load_file(str(path / "disc_optimizer.safetensors")), state["optimizer"]
            )
            airl.np_rng.bit_generator.state = state["np_rng"]
        except Exception as exc:
            raise DataError(
                f"AIRL {str(path)!r}: the saved optimiser or generator state does not fit ({exc})"
            ) from None
        airl.replay = [load_episodes(path / f"replay_{i}.json") for i in range(int(state["n_replay"]))]
        airl.rounds = int(state["rounds"])
        airl.history = list(state["history"])
        return airl

    def close(self) -> None:
        """Close both envs."""
        self.env.close()
        self.sample_env.close()


def _fit(x: torch.Tensor, width: int) -> torch.Tensor:
    """``x`` cut or zero-padded to ``width`` columns (absorbing steps have ``log pi = 0``)."""
    return x[:, :width] if x.shape[1] >= width else F.pad(x, (0, width - x.shape[1]))
