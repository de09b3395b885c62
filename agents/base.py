"""The on-policy agent skeleton shared by PPO, A2C and REINFORCE (SB3's class structure).

:class:`OnPolicyAgent` owns the env, the policy, the optimiser, the generators and the
``learn`` loop (reset -> collect -> update -> log -> checkpoint). A subclass supplies only
``train(batch, progress_remaining)``: the update rule. ``learn`` / ``evaluate`` / ``save`` /
``load`` / ``set_env`` / ``sample_episodes`` are the public surface.

Seeding has no global side effects: the agent draws every random number from its own
``torch.Generator`` objects (network initialisation, action sampling, minibatch shuffling) and its
own ``numpy.random.Generator`` (env seeds). Building or training an agent leaves ``torch``'s and
``numpy``'s global RNGs untouched, and two agents with the same seed produce the same numbers on CPU.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from agents import checkpoint as ckpt
from agents.config import OnPolicyConfig
from agents.distributed import World
from agents.envs import autoreset_mode, is_token_space, make_vector_env, without_env_reference
from agents.episodes import SampledEpisodes
from agents.phase_timer import PhaseTimer
from agents.policies import MLPActorCritic, TransformerActorCritic
from agents.rollout import (
    Batch,
    EpisodeTracker,
    StepCollector,
    action_masks_from_infos,
    summarize_episodes,
)
from agents.run_logger import TrainingLogger
from agents.threads import uses_config_threads
from rlhf_envs.errors import ConfigError, DataError


class TrainingDivergedError(FloatingPointError):
    """A loss or gradient became NaN/inf; training stopped before the weights were touched."""


Callback = Callable[["OnPolicyAgent", dict[str, float]], bool | None]


def whiten(x: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """``(x - mean) / std`` over the entries where ``mask`` is set (masked entries become 0)."""
    if mask is None or bool(mask.all()):
        return (x - x.mean()) / (x.std() + eps) if x.numel() > 1 else x - x.mean()
    m = mask.to(x.dtype)
    n = m.sum().clamp(min=1)
    mean = (x * m).sum() / n
    var = (((x - mean) * m) ** 2).sum() / (n - 1).clamp(min=1)
    return (x - mean) / (var.sqrt() + eps) * m


def fused_adam_ok(params: list[torch.Tensor]) -> bool:
    """Whether ``torch.optim.Adam(fused=True)`` can take ``params`` (floating tensors on CPU or CUDA).

    The fused kernel does one pass over each tensor instead of a dozen elementwise operations:
    on the embedded model's 1.6M parameters an Adam step takes 0.7 ms instead of 2.5 ms (one
    thread, measured), about 6% of a PPO iteration on ``benchmarks/trl_speed.py``'s job. Its
    results equal the default implementation's up to float rounding (3e-8 after 20 steps there;
    ``tests/test_fast_paths.py``), not bit for bit, so a run is reproducible with itself.
    """
    return bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)


def explained_variance(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> float:
    """1 - Var(target - pred) / Var(target) over masked entries (nan when Var(target) = 0)."""
    m = mask.bool()
    p, t = pred[m].double(), target[m].double()
    var = t.var(unbiased=False) if t.numel() else torch.tensor(0.0)
    return float("nan") if var == 0 else float(1 - (t - p).var(unbiased=False) / var)


class OnPolicyAgent:
    """Base class: see the module docstring. Subclasses set ``config_class`` and ``train``."""

    config_class: type[OnPolicyConfig] = OnPolicyConfig

    def __init__(self, env_or_id: Any, seed: int = 0, **config: Any) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
            raise TypeError(f"seed must be an int, got {seed!r}")
        self.config = cfg = self.config_class.from_kwargs(**config)
        self.seed = int(seed)
        #: data-parallel ranks (see :mod:`agents.distributed`): picked up from an initialised
        #: process group; ``n_envs`` is per rank, the global batch is ``world_size`` times larger
        self.world = World.current()
        #: wall time per phase of an iteration, off unless a benchmark switches it on (see
        #: :mod:`agents.phase_timer`)
        self.phases = PhaseTimer()
        # Two generators: one for initialisation (CPU), one for sampling/shuffling on the device.
        self.init_rng = torch.Generator().manual_seed(self.seed)
        self.torch_rng = torch.Generator(device=cfg.device).manual_seed(self.seed + 1)
        self.np_rng = np.random.default_rng(self.seed)
        self.env_id = env_or_id if isinstance(env_or_id, str) else None
        if cfg.policy == "lm":  # the agent computes reference log-probs itself (see the function)
            cfg.env_kwargs = without_env_reference(env_or_id, cfg.env_kwargs)
        self.env = make_vector_env(env_or_id, cfg.n_envs, cfg.env_kwargs)
        self._owns_env = isinstance(env_or_id, str)  # built here from an id: set_env closes it
        self.autoreset = autoreset_mode(self.env)
        self.observation_space = self.env.single_observation_space
        self.action_space = self.env.single_action_space
        token_env = is_token_space(self.observation_space)
        self.bootstrap_truncated = (
            (not token_env) if cfg.bootstrap_truncated is None else cfg.bootstrap_truncated
        )
        self.policy = self._build_policy()
        self.policy.to(cfg.device)
        if self.world.active:  # same settings everywhere, then rank 0's weights everywhere (as DDP)
            self.world.same_on_every_rank((self.seed, cfg.to_json_dict()), "the agent's seed and config")
            self.world.broadcast_parameters(self.policy)
        params = [p for p in self.policy.parameters() if p.requires_grad]
        if cfg.optimizer == "adam":
            self.optimizer = torch.optim.Adam(
                params, lr=cfg.learning_rate, eps=1e-5, fused=fused_adam_ok(params)
            )
        else:
            self.optimizer = torch.optim.RMSprop(params, lr=cfg.learning_rate, alpha=0.99, eps=1e-5)
        self.collector = self._build_collector()
        self.num_timesteps = 0
        self.iteration = 0
        self._total_timesteps = 0
        self._needs_reset = True
        self.last_checkpoint: str | None = None

    # -- construction hooks -----------------------------------------------------------------------

    def _build_policy(self) -> torch.nn.Module:
        cfg = self.config
        if cfg.policy == "lm":
            from agents.lm_actor_critic import LMActorCritic

            return LMActorCritic.from_config(
                cfg, self.observation_space, self.action_space, self.init_rng, env=self.env
            )
        if cfg.policy == "transformer":
            return TransformerActorCritic(
                self.observation_space,
                self.action_space,
                cfg.d_model,
                cfg.n_layers,
                cfg.n_heads,
                self.init_rng,
                use_action_mask=cfg.use_action_mask,
                anchor_token=cfg.anchor_token,
            )
        return MLPActorCritic(
            self.observation_space,
            self.action_space,
            cfg.hidden_sizes,
            cfg.activation,
            cfg.log_std_init,
            self.init_rng,
            token_features=cfg.token_features,
            use_action_mask=cfg.use_action_mask,
        )

    def _build_collector(self) -> Any:
        if self.config.policy == "lm":
            from agents.lm_collector import EpisodeCollector

            return EpisodeCollector(self)
        return StepCollector(
            self.env, self.policy, self.autoreset, self.bootstrap_truncated, self.config.device, self.world
        )

    # -- the update rule (subclasses) -------------------------------------------------------------

    def train(self, batch: Batch, progress_remaining: float) -> dict[str, float]:
        """One update from ``batch``; returns the metrics to log."""
        raise NotImplementedError

    def evaluate_batch(
        self, batch: Batch, entropy_grad: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(log_probs, entropy, values)`` of the current policy for the stored actions.

        ``entropy_grad=False`` (LM policies): the entropies carry no gradient, for a loss whose
        entropy coefficient is 0 (see :meth:`LMActorCritic.evaluate_batch`); ignored otherwise.
        """
        if len(batch) == 0:  # an empty data-parallel share (fewer samples than ranks): zeros whose
            # gradient is zero for every parameter, so this rank still joins the all-reduce
            anchor = sum(p.sum() for p in self.policy.parameters() if p.requires_grad) * 0.0
            z = torch.zeros(batch.log_probs.shape, device=batch.log_probs.device) + anchor
            return z, z, z
        if self.config.policy == "lm":
            return self.policy.evaluate_batch(batch, entropy_grad)
        return self.policy.evaluate_actions(batch.obs, batch.actions, batch.action_masks)

    def local_share(self, batch: Batch) -> Batch:
        """This rank's rows of a (global) minibatch; the whole of it in a single process.

        Losses over the share must divide by the whole minibatch's count: the gradients
        :meth:`optimize` sums over the ranks are then the whole minibatch's.
        """
        return batch.index(self.world.rows(len(batch))) if self.world.active else batch

    def sum_over_ranks(self, values: list[torch.Tensor]) -> list[float]:
        """Sum scalar partials (e.g. this share's part of a mean) over the ranks."""
        t = torch.stack([v.detach().float().reshape(()) for v in values]).cpu()
        self.world.all_reduce_sum_([t], "metrics all-reduce")
        return [float(x) for x in t]

    def optimize(self, loss: torch.Tensor, batch: Batch, terms: dict[str, torch.Tensor]) -> float:
        """Backward, clip the global gradient norm, step. Non-finite loss or gradients raise first.

        Data-parallel: ``loss`` is this rank's part of the minibatch loss; the gradients and the
        loss are summed over the ranks (bucketed all-reduce) before the checks, the clipping and
        the step, so every rank takes the same step (or every rank raises).
        """
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        phase = self.phases
        if self.world.active:
            self.optimizer.zero_grad(set_to_none=True)
            with phase("update.backward"):
                loss.backward()
            total = loss.detach().float().reshape(1).clone()
            self.world.all_reduce_gradients(params, extra=total)
            if not torch.isfinite(total).all():
                self.optimizer.zero_grad(set_to_none=True)
                raise TrainingDivergedError(self._diagnose("loss", batch, terms))
        else:
            if not torch.isfinite(loss):
                raise TrainingDivergedError(self._diagnose("loss", batch, terms))
            self.optimizer.zero_grad(set_to_none=True)
            with phase("update.backward"):
                loss.backward()
        max_norm = self.config.max_grad_norm if self.config.max_grad_norm is not None else math.inf
        with phase("update.clip_grad"):
            grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        if not torch.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            raise TrainingDivergedError(self._diagnose("gradient norm", batch, terms))
        with phase("update.optimizer"):
            self.optimizer.step()
        return float(grad_norm)

    def _diagnose(self, what: str, batch: Batch, terms: dict[str, torch.Tensor]) -> str:
        parts = [f"{k}={float(v.detach()):.4g}" for k, v in terms.items()]
        bad = []
        for name in ("rewards", "values", "advantages", "returns", "log_probs"):
            t = getattr(batch, name)
            n_bad = int((~torch.isfinite(t)).sum())
            if n_bad:
                bad.append(f"{n_bad} non-finite {name}")
        for name, p in self.policy.named_parameters():
            if not torch.isfinite(p).all():
                bad.append(f"non-finite parameter {name}")
                break
        where = f"iteration {self.iteration}, {self.num_timesteps} env steps"
        cause = (
            "; ".join(bad)
            if bad
            else "inputs finite (the update itself overflowed: try a lower learning rate)"
        )
        keep = f"; last checkpoint {self.last_checkpoint!r} is intact" if self.last_checkpoint else ""
        return f"non-finite {what} at {where} ({', '.join(parts)}); {cause}; weights not updated{keep}"

    # -- learning ---------------------------------------------------------------------------------

    @uses_config_threads
    def learn(
        self,
        total_timesteps: int,
        callback: Callback | None = None,
        progress_bar: bool = True,
        reset_num_timesteps: bool = True,
    ) -> OnPolicyAgent:
        """Train for ``total_timesteps`` env steps (generated tokens for LM policies).

        ``callback(agent, metrics)`` runs after every iteration; returning ``False`` stops training.
        To resume a run from a checkpoint: ``agent = PPO.load(path)`` then
        ``agent.learn(total - agent.num_timesteps, reset_num_timesteps=False)`` (SB3's convention):
        it repeats the uninterrupted run exactly on CPU.
        """
        if (
            isinstance(total_timesteps, bool)
            or not isinstance(total_timesteps, int | np.integer)
            or total_timesteps < 0
        ):
            raise ValueError(f"total_timesteps must be a non-negative int, got {total_timesteps!r}")
        cfg = self.config
        if reset_num_timesteps:
            self.num_timesteps = self.iteration = 0
            self._needs_reset = True
        self._total_timesteps = self.num_timesteps + int(total_timesteps)
        main = self.world.is_main  # rank 0 logs and checkpoints
        logger = TrainingLogger(
            cfg.log_dir if main else None,
            self._total_timesteps,
            self.num_timesteps,
            progress_bar and main,
            cfg.tensorboard and main,
        )
        try:
            while self.num_timesteps < self._total_timesteps:
                if self._needs_reset:
                    self.collector.reset(int(self.np_rng.integers(2**31)))
                    self._needs_reset = False
                progress_remaining = 1.0 - self.num_timesteps / self._total_timesteps
                lr = cfg.learning_rate * (progress_remaining if cfg.anneal_lr else 1.0)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                t0 = time.perf_counter()
                self.policy.eval()
                with self.phases("rollout"):
                    batch, n_steps, metrics = self.collector.collect(self)
                t1 = time.perf_counter()
                self.num_timesteps += n_steps
                self.iteration += 1
                self.policy.train()
                with self.phases("update"):
                    metrics.update(self.train(batch, progress_remaining))
                self.policy.eval()
                t2 = time.perf_counter()
                metrics.update(
                    iteration=self.iteration,
                    learning_rate=lr,
                    fps=n_steps / max(t2 - t0, 1e-9),
                    rollout_seconds=t1 - t0,
                    update_seconds=t2 - t1,
                )
                logger.log(self.num_timesteps, metrics, n_steps)
                if cfg.checkpoint_dir is not None and self.iteration % cfg.checkpoint_every == 0:
                    self.save(os.path.join(cfg.checkpoint_dir, "last"))
                    self._needs_reset = True  # see OnPolicyConfig.checkpoint_every
                if callback is not None and callback(self, metrics) is False:
                    break
        finally:
            logger.close()
        return self

    # -- the env ----------------------------------------------------------------------------------

    def set_env(self, env: Any) -> None:
        """Train on ``env`` from the next :meth:`learn` on (Stable-Baselines3's ``set_env``).

        ``env`` is an env id, a Gymnasium ``Env`` or a ``VectorEnv``, as for the constructor. It
        must have the same observation and action spaces and number of sub-envs as the current
        env. The rollout collector switches too (see :meth:`_collector_set_env`) and the next
        ``learn`` call resets the new env. The previous env is closed if the agent built it from
        an id; an env the caller passed in stays open for its owner to close.
        """
        cfg = self.config
        env_kwargs = cfg.env_kwargs
        if cfg.policy == "lm" and isinstance(env, str):
            env_kwargs = without_env_reference(env, env_kwargs)
        new = make_vector_env(env, cfg.n_envs, env_kwargs)
        try:
            self._check_swappable(new)
        except ConfigError:
            if isinstance(env, str):
                new.close()
            raise
        old, owned = self.env, self._owns_env
        cfg.env_kwargs = env_kwargs
        self.env = new
        self.env_id = env if isinstance(env, str) else None
        self._owns_env = isinstance(env, str)
        self.autoreset = autoreset_mode(new)
        self._collector_set_env(new)
        self._needs_reset = True
        if owned and old is not new:
            old.close()

    def _check_swappable(self, new: Any) -> None:
        """Raise :class:`ConfigError` unless ``new`` can replace the current env (see set_env)."""
        if new.num_envs != self.env.num_envs:
            raise ConfigError(
                f"set_env: the new env has {new.num_envs} sub-envs, the agent trains on "
                f"{self.env.num_envs} (n_envs); build it with num_envs={self.env.num_envs}"
            )
        if new.single_action_space != self.action_space:
            raise ConfigError(
                f"set_env: action space {new.single_action_space} differs from the agent's "
                f"{self.action_space}; only an env with the same action space can be swapped in"
            )
        obs_space = new.single_observation_space
        if obs_space != self.observation_space:
            raise ConfigError(
                f"set_env: observation space {obs_space} differs from the agent's "
                f"{self.observation_space}; only an env with the same observation space can be swapped in"
            )
        source = getattr(self.policy, "tokenizer_source", None)
        if source is not None:  # an LM policy whose model came with a tokenizer
            from agents.lm_actor_critic import check_env_tokenizer

            check_env_tokenizer(new, source, source)

    def _collector_set_env(self, env: Any) -> None:
        """Point the rollout collector at ``env``.

        The contract: a collector with running per-env state implements ``set_env(env, mode)``
        (``mode``: the env's :class:`~gymnasium.vector.AutoresetMode`), which switches to ``env``
        and forgets that state (:class:`~agents.rollout.StepCollector` does); a collector whose
        only per-env state is its ``env`` attribute (the LM episode collector, which resets every
        sub-env at the start of each rollout) gets that attribute set.
        """
        if callable(getattr(self.collector, "set_env", None)):
            self.collector.set_env(env, self.autoreset)
        else:
            self.collector.env = env

    # -- sampling and evaluation ------------------------------------------------------------------

    @uses_config_threads
    @torch.no_grad()
    def sample_episodes(
        self,
        env: Any,
        seeds: int | list[int],
        generator_seed: int,
        deterministic: bool = False,
    ) -> SampledEpisodes:
        """One episode per sub-env of ``env`` from the current policy (LM policies).

        ``env`` is a ``VectorEnv`` (or an env id: a vector env with one sub-env per entry of
        ``seeds`` is built and closed again). ``seeds`` resets it: one seed per sub-env, or one int
        (sub-env ``i`` gets ``seeds + i``). Tokens are drawn from a fresh generator seeded with
        ``generator_seed``, so sampling neither changes training nor depends on it. Returns the
        tokens, the policy's and the frozen reference's log-probs of each chosen token, and the
        env's rewards (see :class:`~agents.episodes.SampledEpisodes`).
        """
        cfg = self.config
        if cfg.policy != "lm":
            raise ConfigError(
                "sample_episodes needs an LM policy (policy='lm'): it returns token sequences; "
                "use evaluate() for the episode returns of other policies"
            )
        seed_arg: int | list[int] = (
            int(seeds) if isinstance(seeds, int | np.integer) else [int(s) for s in seeds]
        )
        own = isinstance(env, str)
        if own:
            n = 1 if isinstance(seed_arg, int) else len(seed_arg)
            env = make_vector_env(env, n, cfg.env_kwargs)
        try:
            if isinstance(seed_arg, list) and len(seed_arg) != env.num_envs:
                raise ConfigError(
                    f"sample_episodes: {len(seed_arg)} seeds for an env with {env.num_envs} sub-envs; "
                    "pass one seed per sub-env or one int"
                )
            gen = torch.Generator(device=cfg.device).manual_seed(int(generator_seed))
            self.policy.eval()
            obs, actions, logp, rewards, mask, summaries = self.collector.rollout(
                env, seed_arg, gen, deterministic
            )
            _, ref_logp = self.policy.values_and_ref_logprobs(obs, actions)
        finally:
            if own:
                env.close()
        return SampledEpisodes(
            input_ids=obs["input_ids"],
            attention_mask=obs["attention_mask"],
            completion_ids=actions,
            completion_mask=mask,
            log_probs=logp,
            ref_log_probs=ref_logp,
            env_rewards=rewards,
            summaries=summaries,
            seeds=seed_arg if isinstance(seed_arg, list) else [seed_arg + i for i in range(len(actions))],
        )

    @uses_config_threads
    @torch.no_grad()
    def evaluate(
        self, n_episodes: int = 10, deterministic: bool = True, seed: int | None = None, env: Any = None
    ) -> dict[str, float]:
        """Run ``n_episodes`` episodes and summarise them.

        Returns ``mean_return``, ``std_return``, ``mean_length``, ``n_episodes``, the mean per-episode
        sum of every ``info["reward_<term>"]`` the env reports (``reward_task``, shaping terms), and
        ``success_rate`` when the env reports ``info["success"]``. LM policies add the generation
        metrics of :mod:`agents.generation_metrics` (``distinct_1``, ``distinct_2``, ``eos_rate``,
        ``ref_perplexity``, ``kl_ref``). With a ``log_dir`` the result is also appended to
        ``<log_dir>/evaluations.csv``. Evaluation draws from its own
        generators (``seed``, default ``agent.seed + 1000``), so it does not change training.
        The env is a fresh one built from the env id (or ``env``); an agent built from an env
        instance evaluates on its training env and resets it before training continues.
        """
        if n_episodes < 1:
            raise ValueError(f"n_episodes must be positive, got {n_episodes}")
        seed = self.seed + 1000 if seed is None else int(seed)
        cfg = self.config
        if env is None:
            if self.env_id is not None:
                env = make_vector_env(self.env_id, min(n_episodes, cfg.n_envs), cfg.env_kwargs)
            else:
                env = self.env
                self._needs_reset = True
        elif not hasattr(env, "num_envs"):
            env = make_vector_env(env, 1)
        gen = torch.Generator(device=cfg.device).manual_seed(seed)
        self.policy.eval()
        if cfg.policy == "lm":
            episodes, generation = self.collector.evaluate_with_metrics(
                env, n_episodes, deterministic, seed, gen
            )
            result = {**summarize_episodes(episodes), **generation}
        else:
            result = summarize_episodes(self._evaluate_steps(env, n_episodes, deterministic, seed, gen))
        self._log_evaluation(result)
        return result

    def _log_evaluation(self, result: dict[str, float]) -> None:
        """Append ``result`` to ``<log_dir>/evaluations.csv`` at the current step (with a log_dir)."""
        if self.config.log_dir is None:
            return
        logger = TrainingLogger(
            self.config.log_dir,
            0,
            self.num_timesteps,
            progress_bar=False,
            tensorboard=False,
            filename="evaluations.csv",
        )
        try:
            logger.log(self.num_timesteps, result, 0)
        finally:
            logger.close()

    def _evaluate_steps(
        self, env: Any, n_episodes: int, deterministic: bool, seed: int, gen: torch.Generator
    ) -> list[dict[str, float]]:
        n = env.num_envs
        mode = autoreset_mode(env)
        targets = np.array([(n_episodes + i) // n for i in range(n)])
        counts = np.zeros(n, dtype=np.int64)
        tracker = EpisodeTracker(n, maxlen=None)
        obs, infos = env.reset(seed=seed)
        prev_done = np.zeros(n, dtype=bool)
        episodes: list[dict[str, float]] = []
        pol, dev = self.policy, self.config.device
        masked = self.config.use_action_mask
        while (counts < targets).any():
            am = torch.as_tensor(action_masks_from_infos(infos, n, pol.n_out), device=dev) if masked else None
            out = pol.act(pol.encoder(obs, dev), gen, deterministic=deterministic, action_mask=am)
            obs, rewards, term, trunc, infos = env.step(pol.to_env_actions(out.actions))
            valid = ~prev_done if mode == AutoresetMode.NEXT_STEP else np.ones(n, dtype=bool)
            ended = tracker.update(np.asarray(rewards, dtype=np.float64), term, trunc, infos, valid)
            finished = list(tracker.completed)[len(tracker.completed) - len(ended) :]
            for i, ep in zip(ended, finished, strict=True):
                if counts[i] < targets[i]:
                    episodes.append(ep)
                    counts[i] += 1
            done = (np.asarray(term) | np.asarray(trunc)) & valid
            if mode == AutoresetMode.DISABLED and done.any():
                step_masks = action_masks_from_infos(infos, n, pol.n_out) if masked else None
                obs, infos = env.reset(options={"reset_mask": done})
                if masked:  # keep the stepped rows' masks, take the reset rows' from the reset
                    fresh = action_masks_from_infos(infos, n, pol.n_out)
                    step_masks[done] = fresh[done]
                    infos = {"action_mask": step_masks}
            prev_done = done if mode == AutoresetMode.NEXT_STEP else np.zeros(n, dtype=bool)
        return episodes

    def predict(self, obs: Any, deterministic: bool = True, action_masks: Any = None) -> np.ndarray:
        """Actions for a batch of observations (MLP policies), in the env's format.

        ``action_masks`` (bool ``(B, n_actions)``, e.g. ``info["action_mask"]``) is required when
        the agent was built with ``use_action_mask=True`` and ignored otherwise.
        """
        if self.config.policy == "lm":
            raise NotImplementedError(
                "LM policies act on whole episodes: use evaluate() or agent.policy.sample()"
            )
        dev = self.config.device
        am = None
        if self.config.use_action_mask:
            if action_masks is None:
                raise ValueError("this agent uses action masks: pass action_masks=info['action_mask']")
            am = torch.as_tensor(np.asarray(action_masks, dtype=bool), device=dev)
        with torch.no_grad():
            out = self.policy.act(
                self.policy.encoder(obs, dev), self.torch_rng, deterministic, action_mask=am
            )
        return self.policy.to_env_actions(out.actions)

    # -- checkpoints ------------------------------------------------------------------------------

    def save(self, path: str) -> str:
        """Write a checkpoint directory at ``path`` atomically (see :mod:`agents.checkpoint`).

        Data-parallel: only rank 0 writes (every rank holds the same state); the others just record
        the path. Call ``agent.world.barrier()`` before another rank reads the checkpoint.
        """
        if not self.world.is_main:
            self.last_checkpoint = path
            return path
        tensors, optim_meta = ckpt.optimizer_state(self.optimizer)
        tensors["rng.init"] = self.init_rng.get_state()
        tensors["rng.torch"] = self.torch_rng.get_state().cpu()
        extra_tensors, extra_meta = self._checkpoint_extras()
        tensors.update(extra_tensors)
        meta = {
            "algorithm": type(self).__name__,
            "config": self.config.to_json_dict(),
            "seed": self.seed,
            "env_id": self.env_id,
            "num_timesteps": self.num_timesteps,
            "iteration": self.iteration,
            "world_size": self.world.world_size,
            "total_timesteps": self._total_timesteps,
            "np_rng": self.np_rng.bit_generator.state,
            "optimizer": optim_meta,
            "policy": self.policy.checkpoint_meta() if hasattr(self.policy, "checkpoint_meta") else {},
            "collector": self.collector.state_dict() if hasattr(self.collector, "state_dict") else {},
            **extra_meta,
        }
        ckpt.write_checkpoint(path, self.policy, tensors, meta)
        self.last_checkpoint = path
        return path

    def _checkpoint_extras(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Further tensors and ``config.json`` entries a subclass saves with every checkpoint
        (:class:`agents.dpo.DPO`: its preference data and its position in it); none here."""
        return {}, {}

    def _restore_checkpoint_extras(self, ck: Any) -> None:
        """Read back what :meth:`_checkpoint_extras` saved (``ck``: the read checkpoint)."""

    @classmethod
    def load(
        cls, path: str, env: Any = None, *, allow_import: bool = False, **overrides: Any
    ) -> OnPolicyAgent:
        """Rebuild an agent from a checkpoint written by :meth:`save`.

        ``env`` is needed when the agent was trained on an env instance (no id to rebuild from).
        ``overrides`` replace config fields (e.g. ``log_dir``, ``device``, ``env_kwargs``).

        Loading never imports a module or reads a file that only the checkpoint names (see
        :func:`agents.checkpoint.check_saved_env`): the saved env id must be registered (its
        ``"module:Id"`` form is refused unless ``allow_import=True``), the saved ``env_kwargs``
        must be arguments the env accepts, and ones that name files (``prompts=``, ``model=``,
        ``proxy=``, ``reference=``) must be passed again as ``env_kwargs=``. A corrupt checkpoint
        raises :class:`~agents.checkpoint.CheckpointError` naming the file, after trying the
        ``<path>.bak`` copy an interrupted save may have left (loaded with a warning).
        """
        if not isinstance(allow_import, bool):
            raise ConfigError(f"allow_import must be True or False, got {allow_import!r}")
        return ckpt.first_readable(
            path, lambda directory: cls._load_dir(str(path), directory, env, allow_import, overrides)
        )

    @classmethod
    def _load_dir(
        cls, path: str, directory: Any, env: Any, allow_import: bool, overrides: dict[str, Any]
    ) -> OnPolicyAgent:
        """:meth:`load` from one checkpoint directory (``path`` itself or its ``.bak`` copy)."""
        ck = ckpt.read_checkpoint_dir(directory)
        meta, config_file = ck.meta, ck.file("config.json")
        if meta["algorithm"] != cls.__name__:
            raise DataError(
                f"checkpoint {path!r} holds a {meta['algorithm']} agent, not {cls.__name__}; "
                f"load it with {meta['algorithm']}.load"
            )
        config = dict(meta["config"])
        names = {f.name for f in dataclasses.fields(cls.config_class)}
        unknown = sorted(set(config) - names)
        if unknown:
            raise ckpt.CheckpointError(
                f"checkpoint file {config_file!r}: unknown {cls.config_class.__name__} field(s) "
                f"{', '.join(map(repr, unknown))}"
            )
        bad = sorted(set(overrides) - names)
        if bad:
            raise ConfigError(
                f"unknown {cls.config_class.__name__} option(s) {', '.join(map(repr, bad))} given to "
                f"load; allowed: {', '.join(sorted(names))}"
            )
        if isinstance(config.get("hidden_sizes"), list):
            config["hidden_sizes"] = tuple(config["hidden_sizes"])
        try:  # the saved settings alone must be valid (the caller's overrides are checked below)
            cls.config_class(**{k: v for k, v in config.items() if k != "preset"})
        except ConfigError as exc:
            raise ckpt.CheckpointError(f"checkpoint file {config_file!r}: {exc}") from None
        saved_id = meta["env_id"]
        ckpt.check_saved_env(
            config_file,
            saved_id if env is None else None,
            config.get("env_kwargs", {}),
            allow_import=allow_import,
            check_files="env_kwargs" not in overrides,
        )
        target_env = env if env is not None else saved_id
        if target_env is None:
            raise ConfigError(f"checkpoint {path!r} was trained on an env instance; pass env= to load it")
        if config.get("policy") == "lm" and "model" not in overrides:
            from agents.lm_actor_critic import model_from_meta

            config["model"] = ckpt.rebuild_lm(config_file, meta.get("policy"), model_from_meta)
        preset = config.pop("preset", None)
        config.update(overrides)
        agent = cls(target_env, seed=meta["seed"], **config)
        agent.config.preset = overrides.get("preset", preset)
        if env is not None and isinstance(env, str):
            agent.env_id = env
        elif env is None:
            agent.env_id = saved_id.split(":", 1)[-1]
        ckpt.load_weights(agent.policy, ck.model_file)
        ckpt.load_saved_state(agent, ck)
        agent._restore_checkpoint_extras(ck)
        agent._needs_reset = True
        agent.last_checkpoint = path
        return agent

    def close(self) -> None:
        """Close the env."""
        self.env.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(env={self.env_id or type(self.env).__name__}, seed={self.seed}, policy={self.config.policy})"
