"""The natively batched text-generation vector env.

All sub-envs live in one ``(num_envs, L)`` id array, so a step is a fixed handful of numpy
operations whatever the number of envs. Episodes that end in a step are scored with one feedback
call on an :class:`~rlhf_envs.feedback.EpisodeBatch`, and the sub-envs that reset draw their
prompts with one batched :meth:`Task.sample_prompts` call from counter-based random streams
(:mod:`rlhf_envs.seeding`). Sub-env ``i`` of an env reset with ``seed=s`` replays exactly what
:class:`~rlhf_envs.envs.TextGenerationEnv` does under ``reset(seed=s + i)`` with the same actions,
which is also how gymnasium's ``SyncVectorEnv`` seeds its copies.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from rlhf_envs.envs.common import finish_episodes, observation_space, reset_info_keys
from rlhf_envs.envs.shaping import call_term, make_shaping, reset_terms, task_terms
from rlhf_envs.errors import ConfigError, EpisodeFinishedError, InvalidActionError, check_known_keys
from rlhf_envs.seeding import episode_keys, stream_key
from rlhf_envs.tasks.base import Task, make_task


def _autoreset_mode(mode: Any) -> AutoresetMode:
    if isinstance(mode, AutoresetMode):
        return mode
    try:
        return AutoresetMode(mode)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in AutoresetMode)
        raise ConfigError(
            f"autoreset_mode must be one of {allowed} (or an AutoresetMode), got {mode!r}"
        ) from None


class TextGenerationVectorEnv(VectorEnv):
    """``num_envs`` copies of :class:`~rlhf_envs.envs.TextGenerationEnv` stepped as one batch.

    Args:
        task: task name or :class:`~rlhf_envs.tasks.Task`, as for the single env.
        num_envs: number of sub-envs.
        autoreset_mode: ``"NextStep"`` (default), ``"SameStep"`` or ``"Disabled"`` (or an
            ``AutoresetMode``). NEXT_STEP: the step after an episode ends resets that sub-env and
            ignores its action (its reward is 0 and both flags are False). SAME_STEP: the reset
            happens in the same step; the terminal observation and info are in
            ``infos["final_obs"]`` / ``infos["final_info"]``. DISABLED: call
            ``reset(options={"reset_mask": mask})`` yourself; stepping a finished sub-env raises.
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
        self.num_envs = n = int(num_envs)
        self.autoreset_mode = _autoreset_mode(autoreset_mode)
        self.metadata = {**self.metadata, "autoreset_mode": self.autoreset_mode}
        self.render_mode = render_mode
        self.shaping = make_shaping(shaping) + task_terms(self.task)

        tok = self.task.tokenizer
        self.vocab_size, self.pad_id, self.eos_id = tok.vocab_size, tok.pad_id, tok.eos_id
        self.max_prompt_tokens = self.task.max_prompt_tokens
        self.max_new_tokens = self.task.max_new_tokens
        self.max_length = self.max_prompt_tokens + self.max_new_tokens
        self.single_observation_space = observation_space(self.task)
        self.single_action_space = spaces.Discrete(self.vocab_size)
        self.observation_space = batch_space(self.single_observation_space, n)
        self.action_space = batch_space(self.single_action_space, n)

        self._ids = np.full((n, self.max_length), self.pad_id, dtype=np.int64)
        self._attn = np.zeros((n, self.max_length), dtype=np.int8)
        self._gen = np.full((n, self.max_new_tokens), self.pad_id, dtype=np.int64)
        self._lengths = np.zeros(n, dtype=np.int64)
        self._prompt_lens = np.zeros(n, dtype=np.int64)
        self._n_gen = np.zeros(n, dtype=np.int64)
        self._needs_reset = np.ones(n, dtype=bool)
        self._streams = np.zeros(n, dtype=np.uint64)
        self._counters = np.zeros(n, dtype=np.uint64)
        self._keys = np.zeros(n, dtype=np.uint64)
        self._texts = np.full(n, None, dtype=object)
        self._meta: dict[str, np.ndarray] = {}
        self._rows = np.arange(n)
        self._positions = np.arange(self.max_length)
        self._mask = self.task.action_mask()
        self._masks = np.ascontiguousarray(np.broadcast_to(self._mask, (n, self.vocab_size)))
        self._all = np.ones(n, dtype=bool)
        self._reset_called = False

    # -- Gymnasium API ------------------------------------------------------------------------------

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        options = dict(options or {})
        check_known_keys(options, {"reset_mask"}, "vector reset options")
        n = self.num_envs
        mask = options.get("reset_mask")
        if mask is None:
            mask = self._all
        else:
            mask = np.asarray(mask)
            if mask.dtype != np.bool_ or mask.shape != (n,):
                raise ConfigError(
                    f"reset_mask must be a bool array of shape ({n},), got {mask.dtype} {mask.shape}"
                )
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
            # Like the single env: a new stream when seeded (or on the very first reset).
            if seeds[i] is not None or not self._reset_called:
                self._streams[i] = stream_key(seeding.np_random(seeds[i])[0])
                self._counters[i] = 0
        self._reset_called = True
        infos: dict[str, Any] = {}
        self._reset_envs(idx, mask, infos)
        masks = self._masks.copy() if mask.all() else np.where(mask[:, None], self._masks, 0).astype(np.int8)
        infos["action_mask"], infos["_action_mask"] = masks, mask.copy()
        return self._obs(), infos

    def step(self, actions: Any):
        if not self._reset_called:
            raise EpisodeFinishedError("step() called before reset(); call reset() first")
        actions = self._check_actions(actions)
        n = self.num_envs
        next_step = self.autoreset_mode == AutoresetMode.NEXT_STEP
        if next_step:
            reset_sel = self._needs_reset.copy()
            active = ~reset_sel
            act_idx = np.flatnonzero(active)
        else:
            if self._needs_reset.any():
                bad = np.flatnonzero(self._needs_reset).tolist()
                raise EpisodeFinishedError(
                    f"sub-envs {bad} finished their episodes and were not reset; with "
                    f"autoreset_mode={self.autoreset_mode.value!r} call reset(options={{'reset_mask': mask}}) first"
                )
            active, act_idx = self._all, self._rows

        # Append the actions of the active sub-envs.
        a = actions[act_idx]
        pos = self._lengths[act_idx]
        self._ids[act_idx, pos] = a
        self._attn[act_idx, pos] = 1
        self._gen[act_idx, self._n_gen[act_idx]] = a
        self._lengths[act_idx] += 1
        self._n_gen[act_idx] += 1
        terminated = np.zeros(n, dtype=bool)
        terminated[act_idx] = a == self.eos_id
        truncated = active & ~terminated & (self._n_gen >= self.max_new_tokens)
        done = terminated | truncated

        rewards = np.zeros(n, dtype=np.float32)
        step_values: dict[str, np.ndarray] = {}
        for term in self.shaping:
            r = np.zeros(n, dtype=np.float32)
            rs, extra = call_term(term, self._ids[act_idx], self._lengths[act_idx], a, act_idx)
            r[act_idx] = rs
            rewards += r
            step_values[f"reward_{term.name}"] = r.astype(np.float64)
            for key, value in extra.items():
                step_values[key] = np.zeros(n, dtype=np.float64)
                step_values[key][act_idx] = value

        # One feedback call for every episode that ended in this step.
        end_info: dict[str, np.ndarray] = {}
        done_idx = np.flatnonzero(done)
        task_reward = np.zeros(n, dtype=np.float64)
        if done_idx.size:
            scores, _, end_info = finish_episodes(
                self.task,
                self._ids[done_idx, : self.max_prompt_tokens],
                self._prompt_lens[done_idx],
                self._texts[done_idx],
                self._gen[done_idx],
                self._n_gen[done_idx],
                terminated[done_idx],
                self._keys[done_idx],
                {k: v[done_idx] for k, v in self._meta.items()},
            )
            rewards[done_idx] += scores
            task_reward[done_idx] = scores
        step_values["reward_task"] = task_reward

        infos: dict[str, Any] = {}
        if self.autoreset_mode == AutoresetMode.SAME_STEP and done_idx.size:
            # Like SyncVectorEnv: a finished sub-env reports its reset info; its last step's info and
            # observation go to infos["final_info"] / infos["final_obs"].
            final_info: dict[str, Any] = {}
            self._put_rows(final_info, end_info, done_idx, done)
            for key, value in step_values.items():
                self._put(final_info, key, value, done)
            self._put(final_info, "action_mask", self._masks, done)
            obs = self._obs()
            final_obs = np.full(n, None, dtype=object)
            for i in done_idx:
                final_obs[i] = {k: v[i] for k, v in obs.items()}
            infos["final_obs"], infos["_final_obs"] = final_obs, done.copy()
            infos["final_info"], infos["_final_info"] = final_info, done.copy()
            self._reset_envs(done_idx, done, infos)
            keep = ~done
            for key, value in step_values.items():
                self._put(infos, key, value, keep)
        else:
            if done_idx.size:
                self._put_rows(infos, end_info, done_idx, done)
            for key, value in step_values.items():
                self._put(infos, key, value, active)
            if next_step:
                if not active.all():
                    self._reset_envs(np.flatnonzero(reset_sel), reset_sel, infos)
                    rewards[reset_sel] = 0.0
            self._needs_reset = done
        infos["action_mask"], infos["_action_mask"] = self._masks.copy(), self._all.copy()

        return self._obs(), rewards.astype(np.float64), terminated, truncated, infos

    def render(self) -> tuple[str, ...] | None:
        if self.render_mode != "ansi":
            return None
        decode = self.task.tokenizer.decode
        out = []
        for i in range(self.num_envs):
            gen = self._gen[i, : self._n_gen[i]]
            end = " <eos>" if len(gen) and gen[-1] == self.eos_id else ""
            out.append(f"{self._texts[i] or ''}|{decode(gen.tolist())}{end}")
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
        if arr.min() < 0 or arr.max() >= self.vocab_size:
            bad = int(np.flatnonzero((arr < 0) | (arr >= self.vocab_size))[0])
            raise InvalidActionError(
                f"action {int(arr[bad])} of sub-env {bad} is out of range; allowed token ids are [0, {self.vocab_size})"
            )
        return arr.astype(np.int64, copy=False)

    def _reset_envs(self, idx: np.ndarray, sel: np.ndarray, infos: dict[str, Any]) -> None:
        """Start new episodes in sub-envs ``idx`` (``sel`` is the same as a bool mask).

        Adds the reset infos (``prompt`` and the task's public metadata); the caller adds
        ``action_mask``, which every sub-env reports on every step.
        """
        keys = episode_keys(self._streams[idx], self._counters[idx])
        self._keys[idx] = keys
        self._counters[idx] += np.uint64(1)
        batch = self.task.sample_prompts(keys)
        width = batch.ids.shape[1]
        self._ids[idx] = self.pad_id
        self._ids[idx, :width] = batch.ids
        self._attn[idx] = self._positions < batch.lengths[:, None]
        self._gen[idx] = self.pad_id
        self._lengths[idx] = self._prompt_lens[idx] = batch.lengths
        self._n_gen[idx] = 0
        self._texts[idx] = batch.texts
        for key, value in batch.metadata.items():
            store = self._meta.get(key)
            if store is None:
                store = self._meta[key] = np.zeros((self.num_envs, *value.shape[1:]), dtype=value.dtype)
            store[idx] = value
        self._needs_reset[idx] = False
        reset_terms(self.shaping, idx, self._ids[idx], self._lengths[idx])
        rows = {"prompt": batch.texts}
        for key in reset_info_keys(self.task, batch.metadata):
            rows[key] = batch.metadata[key]
        self._put_rows(infos, rows, idx, sel)

    def _put_rows(
        self, infos: dict[str, Any], rows: dict[str, np.ndarray], idx: np.ndarray, sel: np.ndarray
    ) -> None:
        """Merge per-row values (``values[j]`` belongs to sub-env ``idx[j]``) into ``infos``."""
        n = self.num_envs
        for key, values in rows.items():
            if key in infos:
                infos[key][idx] = values
                infos[f"_{key}"] = infos[f"_{key}"] | sel
            else:
                if values.dtype == object:
                    arr = np.full(n, None, dtype=object)
                else:
                    arr = np.zeros((n, *values.shape[1:]), dtype=values.dtype)
                arr[idx] = values
                infos[key], infos[f"_{key}"] = arr, sel.copy()

    @staticmethod
    def _put(infos: dict[str, Any], key: str, values: np.ndarray, sel: np.ndarray) -> None:
        """Merge ``values[sel]`` (full-width arrays) into ``infos[key]`` and its ``_key`` mask."""
        if not sel.any():
            return
        if key in infos:
            infos[key][sel] = values[sel]
            infos[f"_{key}"] = infos[f"_{key}"] | sel
        elif sel.all():
            infos[key], infos[f"_{key}"] = values.copy(), sel.copy()
        else:
            infos[key], infos[f"_{key}"] = (
                np.where(sel.reshape(-1, *[1] * (values.ndim - 1)), values, 0),
                sel.copy(),
            )

    def _obs(self) -> dict[str, np.ndarray]:
        return {"input_ids": self._ids.copy(), "attention_mask": self._attn.copy()}
