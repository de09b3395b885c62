"""The natively batched text-generation vector env.

All sub-envs live in one ``(num_envs, L)`` id array, so a step is a handful of numpy operations
whatever the number of envs; the only Python loops run over the episodes that *end* in a step (to
build their records for the single batched feedback call and to draw their next prompts). Each
sub-env owns its own RNG seeded like gymnasium's ``SyncVectorEnv`` seeds its copies
(``seed + i``), so sub-env ``i`` replays exactly what ``TextGenerationEnv`` does under
``reset(seed=seed + i)`` with the same actions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from rlhf_envs.errors import ConfigError, EpisodeFinishedError, InvalidActionError, check_known_keys
from rlhf_envs.envs.shaping import make_shaping, reset_terms
from rlhf_envs.envs.text_env import observation_space
from rlhf_envs.feedback.base import score_episodes
from rlhf_envs.tasks.base import Prompt, Task, episodes_from_ids, make_task


def _autoreset_mode(mode: Any) -> AutoresetMode:
    if isinstance(mode, AutoresetMode):
        return mode
    try:
        return AutoresetMode(mode)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in AutoresetMode)
        raise ConfigError(f"autoreset_mode must be one of {allowed} (or an AutoresetMode), got {mode!r}") from None


class TextGenerationVectorEnv(VectorEnv):
    """``num_envs`` copies of :class:`~rlhf_envs.envs.TextGenerationEnv` stepped as one batch.

    Args:
        task: task name or :class:`~rlhf_envs.tasks.Task`, as for the single env.
        num_envs: number of sub-envs.
        autoreset_mode: ``"NextStep"`` (default), ``"SameStep"`` or ``"Disabled"`` (or an
            ``AutoresetMode``). NEXT_STEP: the step after an episode ends resets that sub-env and
            ignores its action. SAME_STEP: the reset happens in the same step; the terminal
            observation and info are in ``infos["final_obs"]`` / ``infos["final_info"]``.
            DISABLED: call ``reset(options={"reset_mask": mask})`` yourself; stepping a finished
            sub-env raises.
        render_mode: ``None`` or ``"ansi"``.
        shaping: as for the single env.
        **task_kwargs: task parameters.

    Info keys match what ``SyncVectorEnv`` builds from the single env's infos (each key with a
    ``_key`` mask), so code written against one works with the other.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        task: str | Task,
        num_envs: int = 1,
        autoreset_mode: Any = AutoresetMode.NEXT_STEP,
        render_mode: str | None = None,
        shaping: Any = None,
        **task_kwargs: Any,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer) or num_envs < 1:
            raise ConfigError(f"num_envs must be a positive int, got {num_envs!r}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.task = make_task(task, **task_kwargs)
        self.num_envs = int(num_envs)
        self.autoreset_mode = _autoreset_mode(autoreset_mode)
        self.metadata = {**self.metadata, "autoreset_mode": self.autoreset_mode}
        self.render_mode = render_mode
        self.shaping = make_shaping(shaping)

        tok = self.task.tokenizer
        self.vocab_size, self.pad_id, self.eos_id = tok.vocab_size, tok.pad_id, tok.eos_id
        self.max_new_tokens = self.task.max_new_tokens
        self.max_length = self.task.max_prompt_tokens + self.max_new_tokens
        self.single_observation_space = observation_space(self.task)
        self.single_action_space = spaces.Discrete(self.vocab_size)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

        n = self.num_envs
        self._ids = np.full((n, self.max_length), self.pad_id, dtype=np.int64)
        self._lengths = np.zeros(n, dtype=np.int64)
        self._prompt_lens = np.zeros(n, dtype=np.int64)
        self._episode_seeds = np.zeros(n, dtype=np.int64)
        self._needs_reset = np.ones(n, dtype=bool)
        self._prompts: list[Prompt | None] = [None] * n
        self._rngs: list[np.random.Generator] = [seeding.np_random(None)[0] for _ in range(n)]
        self._positions = np.arange(self.max_length)
        self._rows = np.arange(n)
        self._mask = self.task.action_mask()
        self._masks = np.broadcast_to(self._mask, (n, self.vocab_size))
        self._all = np.ones(n, dtype=bool)
        self._reset_called = False

    # -- Gymnasium API ------------------------------------------------------------------------------

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        options = dict(options or {})
        check_known_keys(options, {"reset_mask"}, "vector reset options")
        n = self.num_envs
        mask = options.get("reset_mask")
        if mask is None:
            mask = self._all.copy()
        else:
            mask = np.asarray(mask)
            if mask.dtype != np.bool_ or mask.shape != (n,):
                raise ConfigError(f"reset_mask must be a bool array of shape ({n},), got {mask.dtype} {mask.shape}")
            if not self._reset_called and not mask.all():
                raise ConfigError("the first reset must reset every sub-env (omit reset_mask)")
        if seed is None:
            seeds = [None] * n
        elif isinstance(seed, int | np.integer) and not isinstance(seed, bool):
            seeds = [int(seed) + i for i in range(n)]
        elif isinstance(seed, list | tuple) and len(seed) == n:
            seeds = list(seed)
        else:
            raise ConfigError(f"seed must be None, an int or a list of {n} ints/None, got {seed!r}")
        idx = np.flatnonzero(mask)
        for i in idx:
            if seeds[i] is not None:
                self._rngs[i] = seeding.np_random(seeds[i])[0]
        self._reset_called = True
        infos: dict[str, Any] = {}
        self._reset_envs(idx, infos)
        return self._obs(), infos

    def step(self, actions: Any):
        if not self._reset_called:
            raise EpisodeFinishedError("step() called before reset(); call reset() first")
        actions = self._check_actions(actions)
        n = self.num_envs
        infos: dict[str, Any] = {}
        rewards = np.zeros(n, dtype=np.float32)

        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            reset_idx = np.flatnonzero(self._needs_reset)
            active = ~self._needs_reset
        else:
            if self._needs_reset.any():
                bad = np.flatnonzero(self._needs_reset).tolist()
                raise EpisodeFinishedError(
                    f"sub-envs {bad} finished their episodes and were not reset; with "
                    f"autoreset_mode={self.autoreset_mode.value!r} call reset(options={{'reset_mask': mask}}) first"
                )
            reset_idx = np.zeros(0, dtype=np.int64)
            active = self._all

        act_idx = np.flatnonzero(active)
        a = actions[act_idx]
        self._ids[act_idx, self._lengths[act_idx]] = a
        self._lengths[act_idx] += 1
        n_new = self._lengths - self._prompt_lens
        terminated = np.zeros(n, dtype=bool)
        terminated[act_idx] = a == self.eos_id
        truncated = active & ~terminated & (n_new >= self.max_new_tokens)

        step_values: dict[str, np.ndarray] = {}
        for term in self.shaping:
            r = np.zeros(n, dtype=np.float32)
            if act_idx.size:
                r[act_idx] = term(self._ids[act_idx], self._lengths[act_idx], a)
            rewards += r
            step_values[f"reward_{term.name}"] = r.astype(np.float64)

        done = terminated | truncated
        done_idx = np.flatnonzero(done)
        task_reward = np.zeros(n, dtype=np.float32)
        episodes = []
        if done_idx.size:
            episodes = episodes_from_ids(
                [self._prompts[i] for i in done_idx],
                [self._ids[i, self._prompt_lens[i] : self._lengths[i]].tolist() for i in done_idx],
                terminated[done_idx],
                self._episode_seeds[done_idx],
                self.task.tokenizer,
            )
            task_reward[done_idx] = score_episodes(self.task.feedback, episodes)
        rewards += task_reward
        step_values["reward_task"] = task_reward.astype(np.float64)
        step_values["action_mask"] = self._masks.copy()

        if self.autoreset_mode == AutoresetMode.SAME_STEP:
            # Like SyncVectorEnv: a finished sub-env reports its reset info; its last step's info and
            # observation go to infos["final_info"] / infos["final_obs"].
            if done_idx.size:
                final_info: dict[str, Any] = {}
                self._put_episode_infos(final_info, done_idx, episodes)
                for key, value in step_values.items():
                    self._put(final_info, key, value, done)
                obs = self._obs()
                final_obs = np.full(n, None, dtype=object)
                for i in done_idx:
                    final_obs[i] = {k: v[i] for k, v in obs.items()}
                infos["final_obs"], infos["_final_obs"] = final_obs, done.copy()
                infos["final_info"], infos["_final_info"] = final_info, done.copy()
                self._reset_envs(done_idx, infos)
            for key, value in step_values.items():
                self._put(infos, key, value, ~done)
        else:
            if done_idx.size:
                self._put_episode_infos(infos, done_idx, episodes)
            for key, value in step_values.items():
                self._put(infos, key, value, active)
            if reset_idx.size:
                self._reset_envs(reset_idx, infos)
            self._needs_reset = done

        return self._obs(), rewards.astype(np.float64), terminated, truncated, infos

    def render(self) -> tuple[str, ...] | None:
        if self.render_mode != "ansi":
            return None
        out = []
        for i, p in enumerate(self._prompts):
            if p is None:
                out.append("")
                continue
            gen = self._ids[i, self._prompt_lens[i] : self._lengths[i]]
            end = " <eos>" if len(gen) and gen[-1] == self.eos_id else ""
            out.append(f"{p.text}|{self.task.tokenizer.decode(gen)}{end}")
        return tuple(out)

    def action_masks(self) -> np.ndarray:
        """Bool masks of shape ``(num_envs, vocab_size)`` (for MaskablePPO-style agents)."""
        return self._masks.astype(bool)

    # -- helpers ------------------------------------------------------------------------------------

    def _check_actions(self, actions: Any) -> np.ndarray:
        arr = np.asarray(actions)
        if arr.shape != (self.num_envs,):
            raise InvalidActionError(
                f"actions must have shape ({self.num_envs},) (one token id per sub-env), got {arr.shape}"
            )
        if arr.dtype.kind not in "iu":
            raise InvalidActionError(f"actions must be integer token ids, got dtype {arr.dtype}")
        if arr.size and (arr.min() < 0 or arr.max() >= self.vocab_size):
            bad = int(np.flatnonzero((arr < 0) | (arr >= self.vocab_size))[0])
            raise InvalidActionError(
                f"action {int(arr[bad])} of sub-env {bad} is out of range; allowed token ids are [0, {self.vocab_size})"
            )
        return arr.astype(np.int64, copy=False)

    def _reset_envs(self, idx: np.ndarray, infos: dict[str, Any]) -> None:
        """Draw new prompts for sub-envs ``idx`` and add their reset infos."""
        if not idx.size:
            return
        ids, lengths = self._ids, self._lengths
        ids[idx] = self.pad_id
        prompt_texts = np.full(self.num_envs, None, dtype=object)
        meta: dict[str, np.ndarray] = {}
        for i in idx:
            rng = self._rngs[i]
            self._episode_seeds[i] = rng.integers(2**31)
            p = self.task.sample_prompt(rng)
            self._prompts[i] = p
            k = len(p.ids)
            ids[i, :k] = p.ids
            lengths[i] = self._prompt_lens[i] = k
            prompt_texts[i] = p.text
            for key, value in p.metadata.items():
                meta.setdefault(key, np.full(self.num_envs, None, dtype=object))[i] = value
        self._needs_reset[idx] = False
        reset_terms(self.shaping, idx, ids[idx], lengths[idx])
        sel = np.zeros(self.num_envs, dtype=bool)
        sel[idx] = True
        self._put(infos, "prompt", prompt_texts, sel)
        for key, arr in meta.items():
            self._put(infos, key, arr, sel)
        self._put(infos, "episode_seed", self._episode_seeds.copy(), sel)
        self._put(infos, "action_mask", self._masks.copy(), sel)

    def _put_episode_infos(self, infos: dict[str, Any], idx: np.ndarray, episodes: list) -> None:
        sel = np.zeros(self.num_envs, dtype=bool)
        sel[idx] = True
        prompts = np.full(self.num_envs, None, dtype=object)
        comps = np.full(self.num_envs, None, dtype=object)
        extra: dict[str, list] = {}
        for i, ep in zip(idx, episodes, strict=True):
            prompts[i], comps[i] = ep.prompt, ep.completion
            for key, value in self.task.episode_info(ep).items():
                extra.setdefault(key, []).append((i, value))
        self._put(infos, "prompt", prompts, sel)
        self._put(infos, "completion", comps, sel)
        for key, pairs in extra.items():
            arr = np.zeros(self.num_envs, dtype=type(pairs[0][1])) if isinstance(
                pairs[0][1], bool | int | float
            ) else np.full(self.num_envs, None, dtype=object)
            for i, v in pairs:
                arr[i] = v
            self._put(infos, key, arr, sel)

    def _put(self, infos: dict[str, Any], key: str, values: np.ndarray, mask: np.ndarray) -> None:
        """Merge ``values[mask]`` into ``infos[key]`` and its ``_key`` mask (SyncVectorEnv layout)."""
        if key in infos:
            infos[key][mask] = values[mask]
            infos[f"_{key}"] = infos[f"_{key}"] | mask
        else:
            arr = np.zeros_like(values) if values.dtype != object else np.full(values.shape, None, dtype=object)
            arr[mask] = values[mask]
            infos[key], infos[f"_{key}"] = arr, mask.copy()

    def _obs(self) -> dict[str, np.ndarray]:
        return {
            "input_ids": self._ids.copy(),
            "attention_mask": (self._positions < self._lengths[:, None]).astype(np.int8),
        }
