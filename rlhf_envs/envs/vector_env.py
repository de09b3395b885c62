"""The natively batched text-generation vector env.

All sub-envs live in one ``(num_envs, L)`` id array, so a step is a fixed handful of numpy
operations whatever the number of envs. Episodes that end in a step are scored with one feedback
call on an :class:`~rlhf_envs.feedback.EpisodeBatch`. Sub-env ``i`` of an env reset with ``seed=s``
replays exactly what :class:`~rlhf_envs.envs.TextGenerationEnv` does under ``reset(seed=s + i)`` with
the same actions, which is also how gymnasium's ``SyncVectorEnv`` seeds its copies.

Prompts come from counter-based random streams (:mod:`rlhf_envs.seeding`): episode ``k`` of a
sub-env is a pure function of its stream key and ``k``. That lets the env draw prompts *ahead*: each
sub-env owns a block of ``Task.prompt_prefetch`` slots holding its next prompts (ids, length, text,
metadata, feedback seed), and blocks that run low are refilled for many sub-envs at once by one
batched :meth:`Task.sample_prompts` call. Starting an episode is then a few array gathers. The
prompts are the same whether they are drawn one by one or a block at a time, so prefetching changes
the cost, never the episodes.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from rlhf_envs.envs.rendering import RENDER_MODES, check_render_mode, text_frame
from rlhf_envs.envs.scoring import episode_batch, finish_episodes, reset_info_keys
from rlhf_envs.envs.shaping import bind_tokenizer, call_term, make_shaping, reset_terms, task_terms
from rlhf_envs.envs.spaces import check_options, check_seed, make_env_task, observation_space
from rlhf_envs.errors import (
    ActionTypeError,
    ConfigError,
    ConfigValueError,
    EpisodeFinishedError,
    InvalidActionError,
    OptionValueError,
)
from rlhf_envs.seeding import episode_keys, key_to_seed, stream_key
from rlhf_envs.tasks.base import Task


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
        render_mode: ``None``, ``"ansi"`` or ``"rgb_array"`` (``render()`` returns one text or one
            frame per sub-env).
        shaping: as for the single env.
        feedback: as for the single env (``None`` or a model with ``score(episodes)``).
        **task_kwargs: task parameters.

    Seeding and resetting follow ``SyncVectorEnv``: ``reset(seed=s)`` seeds sub-env ``i`` with
    ``s + i`` (so ``np_random_seed`` is ``(s, s + 1, ...)``), a list gives one seed (or ``None``) per
    sub-env, and ``reset(options={"reset_mask": mask})`` resets the sub-envs where ``mask`` (a bool
    array of shape ``(num_envs,)`` with at least one True) is True; a mask of the wrong shape or with
    no True value raises ``ValueError``, one of another dtype ``TypeError``. Actions are an integer
    array of shape ``(num_envs,)`` in any byte order; a scalar raises ``TypeError``.

    Info keys match what ``SyncVectorEnv`` builds from the single env's infos (each key with a
    ``_key`` mask), so code written against one works with the other.
    """

    metadata = {"render_modes": RENDER_MODES, "render_fps": 4}

    def __init__(
        self,
        task: str | Task,
        num_envs: int = 1,
        autoreset_mode: Any = AutoresetMode.NEXT_STEP,
        render_mode: str | None = None,
        shaping: Any = None,
        feedback: Any = None,
        **task_kwargs: Any,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer):
            raise ConfigError(f"num_envs must be a positive int, got {type(num_envs).__name__} {num_envs!r}")
        if num_envs < 1:
            raise ConfigValueError(f"num_envs must be a positive int, got {num_envs!r}")
        self.render_mode = check_render_mode(render_mode)
        self.task = make_env_task(task, feedback, task_kwargs)
        _check_memory(self.task, int(num_envs))
        self.num_envs = n = int(num_envs)
        self.autoreset_mode = _autoreset_mode(autoreset_mode)
        self.metadata = {**self.metadata, "autoreset_mode": self.autoreset_mode}
        self.shaping = bind_tokenizer(make_shaping(shaping, self.task), self.task.tokenizer) + task_terms(
            self.task
        )

        tok = self.task.tokenizer
        self.vocab_size, self.pad_id, self.eos_id = tok.vocab_size, tok.pad_id, tok.eos_id
        self.max_prompt_tokens = self.task.max_prompt_tokens
        self.max_new_tokens = self.task.max_new_tokens
        self.max_length = length = self.max_prompt_tokens + self.max_new_tokens
        self.single_observation_space = observation_space(self.task)
        self.single_action_space = spaces.Discrete(self.vocab_size)
        self.observation_space = batch_space(self.single_observation_space, n)
        self.action_space = batch_space(self.single_action_space, n)

        # Token state: one (n, L) id array, left-aligned and right-padded; episode i's tokens are
        # _ids[i, :_lengths[i]] and it is truncated when _lengths[i] reaches _ends[i] (its prompt
        # length plus max_new_tokens). The attention mask is not stored: observations look it up
        # from the lengths. Steps write through a flat view, so every row's action goes in with one
        # indexed assignment; completions are read through a sliding-window view of it.
        self._ids = np.full((n, length), self.pad_id, dtype=np.int64)
        self._lengths = np.zeros(n, dtype=np.int64)
        self._ends = np.zeros(n, dtype=np.int64)
        self._needs_reset = np.ones(n, dtype=bool)
        self._any_needs_reset = True
        self._row_offsets = np.arange(n, dtype=np.int64) * length
        self._row_last = self._row_offsets + (length - 1)
        self._attention_rows = (np.arange(length) < np.arange(length + 1)[:, None]).astype(np.int8)
        self._make_views()

        # Prompt blocks (see the module docstring): sub-env i owns K slots from _block_start[i]
        # plus one sentinel slot after them whose length is -1; the slots hold episodes _base[i],
        # _base[i] + 1, ... of its stream, and _slot[i] is the slot of its current episode. A block
        # is refilled (rebased at the current episode) when a reset reaches the sentinel.
        self._prefetch = k = _prefetch_size(self.task, n)
        self._streams = np.zeros(n, dtype=np.uint64)
        self._block_start = np.arange(n, dtype=np.int64) * (k + 1)
        self._slot = self._block_start + (k - 1)
        self._base = np.full(n, -k, dtype=np.int64)  # current episode -1: the next one is episode 0
        size = n * (k + 1)
        self._pool_ids = np.full((size, length), self.pad_id, dtype=np.int64)
        self._pool_lengths = np.zeros(size, dtype=np.int64)
        self._pool_lengths[self._block_start + k] = -1
        self._pool_ends = np.zeros(size, dtype=np.int64)  # prompt length + max_new_tokens
        self._pool_texts = np.full(size, "", dtype=object)
        self._pool_seeds = np.zeros(size, dtype=np.int64)
        self._pool_meta: dict[str, np.ndarray] = {}
        self._info_keys: list[str] = []

        self._rows = np.arange(n)
        self._eos = np.full(n, self.eos_id, dtype=np.int64)
        self._ones = np.ones(n, dtype=np.int64)
        self._mask = self.task.action_mask()
        self._masks = np.ascontiguousarray(np.broadcast_to(self._mask, (n, self.vocab_size)))
        self._all = np.ones(n, dtype=bool)
        self._none = np.full(n, None, dtype=object)
        self._reset_called = False
        # each sub-env's np_random seed, as SyncVectorEnv reports it (None: not drawn yet)
        self._np_seeds: list[int | None] = [None] * n

    def _make_views(self) -> None:
        """Views of ``_ids`` used by ``step`` (rebuilt after unpickling, which copies arrays)."""
        self._ids_flat = self._ids.reshape(-1)
        self._windows = np.lib.stride_tricks.sliding_window_view(self._ids_flat, self.max_new_tokens)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_ids_flat"], state["_windows"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._make_views()

    # -- Gymnasium API ------------------------------------------------------------------------------

    @property
    def np_random_seed(self) -> tuple[int, ...]:
        """Each sub-env's seed, as ``SyncVectorEnv`` reports it: ``(s, s + 1, ...)`` after
        ``reset(seed=s)``; a random seed for a sub-env never seeded (drawn on first use and then
        used by the first reset, as a single env does)."""
        for i, s in enumerate(self._np_seeds):
            if s is None:
                self._np_seeds[i] = int(np.random.SeedSequence().entropy)
        return tuple(self._np_seeds)

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        options = check_options(options, {"reset_mask"}, "vector reset options")
        n = self.num_envs
        mask = options.get("reset_mask")
        if mask is None:
            mask = self._all
        else:
            mask = self._check_reset_mask(mask)
        if seed is None:
            seeds = [None] * n
        elif isinstance(seed, list | tuple):
            if len(seed) != n:
                raise ConfigValueError(f"seed: a list of seeds needs one per sub-env ({n}), got {len(seed)}")
            seeds = [check_seed(s, f"seed[{i}]") for i, s in enumerate(seed)]
        else:
            try:
                first = check_seed(seed)
            except ConfigError as exc:
                raise type(exc)(f"{exc} (or a list of {n} such seeds)") from None
            seeds = [first + i for i in range(n)]
        idx = np.flatnonzero(mask)
        for i in idx:
            # Like the single env: a new stream when seeded (or on the very first reset), which
            # also throws away the sub-env's prefetched prompts.
            if seeds[i] is not None or not self._reset_called:
                s = seeds[i] if seeds[i] is not None else self._np_seeds[i]
                rng, self._np_seeds[i] = seeding.np_random(s)
                self._streams[i] = stream_key(rng)
                self._base[i], self._slot[i] = -self._prefetch, self._block_start[i] + self._prefetch - 1
        self._reset_called = True
        infos: dict[str, Any] = {}
        self._reset_envs(idx, mask, infos)
        self._any_needs_reset = bool(self._needs_reset.any())
        masks = self._masks.copy() if mask.all() else np.where(mask[:, None], self._masks, 0).astype(np.int8)
        infos["action_mask"], infos["_action_mask"] = masks, mask.copy()
        return self._obs(), infos

    def step(self, actions: Any):
        if not self._reset_called:
            raise EpisodeFinishedError("step() called before reset(); call reset() first")
        actions = self._check_actions(actions)
        n = self.num_envs
        mode = self.autoreset_mode
        pending = self._needs_reset
        lengths = self._lengths
        where = self._row_offsets + lengths
        if self._any_needs_reset:
            if mode != AutoresetMode.NEXT_STEP:
                bad = np.flatnonzero(pending).tolist()
                raise EpisodeFinishedError(
                    f"sub-envs {bad} finished their episodes and were not reset; with "
                    f"autoreset_mode={mode.value!r} call reset(options={{'reset_mask': mask}}) first"
                )
            # NEXT_STEP: these sub-envs are reset below and their actions are ignored. Their
            # writes stay inside their own rows (a full row would write one past its end).
            active = ~pending
            reset_idx = pending.nonzero()[0]
            np.minimum(where, self._row_last, out=where)
        else:
            active = reset_idx = None

        # Append every row's action at its position (one indexed write, no gather of the active rows).
        self._ids_flat[where] = actions
        lengths += self._ones  # (an array operand is cheaper than a Python scalar)
        terminated = actions == self._eos
        done = lengths >= self._ends
        done |= terminated
        if active is not None:
            terminated &= active
            done &= active
        truncated = done ^ terminated

        step_values: dict[str, np.ndarray] = {}
        if self.shaping:
            rewards = np.zeros(n, dtype=np.float32)
            act_idx = self._rows if active is None else active.nonzero()[0]
            ids, lens, acts = self._ids[act_idx], lengths[act_idx], actions[act_idx]
            built: list = []

            def episodes():  # noqa: ANN202 - the active rows' prefixes, built once per step if asked for
                if not built:
                    built.append(self._current_episodes(act_idx, terminated[act_idx]))
                return built[0]

            for term in self.shaping:
                r = np.zeros(n, dtype=np.float32)
                rs, extra = call_term(term, ids, lens, acts, act_idx, episodes)
                r[act_idx] = rs
                rewards += r
                step_values[f"reward_{term.name}"] = r.astype(np.float64)
                for key, value in extra.items():
                    step_values[key] = np.zeros(n, dtype=np.float64)
                    step_values[key][act_idx] = value

        # One feedback call for every episode that ended in this step.
        done_idx = done.nonzero()[0]
        n_done = done_idx.size
        task_reward = np.zeros(n, dtype=np.float64)
        end_info: dict[str, np.ndarray] = {}
        if n_done:
            scores, end_info = self._finish(done_idx, terminated[done_idx])
            task_reward[done_idx] = scores
            if self.shaping:
                rewards[done_idx] += scores  # float32, as the single env adds them
        # Without shaping the reward is the task reward (a float32 score, reported as float64).
        rewards = rewards.astype(np.float64) if self.shaping else task_reward.copy()

        infos: dict[str, Any] = {}
        if mode == AutoresetMode.SAME_STEP and n_done:
            # Like SyncVectorEnv: a finished sub-env reports its reset info; its last step's info and
            # observation go to infos["final_info"] / infos["final_obs"].
            final_info: dict[str, Any] = {}
            self._put_rows(final_info, end_info, done_idx, done)
            for key, value in step_values.items():
                self._put(final_info, key, value, done)
            final_info["reward_task"], final_info["_reward_task"] = task_reward.copy(), done.copy()
            self._put(final_info, "action_mask", self._masks, done)
            obs = self._obs()
            final_obs = self._none.copy()
            for i in done_idx:
                final_obs[i] = {k: v[i] for k, v in obs.items()}
            infos["final_obs"], infos["_final_obs"] = final_obs, done.copy()
            infos["final_info"], infos["_final_info"] = final_info, done.copy()
            self._reset_envs(done_idx, done, infos)
            keep = ~done
            step_values["reward_task"] = task_reward
            for key, value in step_values.items():
                self._put(infos, key, value, keep)
        else:
            if n_done:
                self._put_rows(infos, end_info, done_idx, done)
            sel = self._all if active is None else active
            for key, value in step_values.items():
                self._put(infos, key, value, sel)
            # Every active sub-env reports reward_task; it is 0 outside them (they scored nothing).
            if reset_idx is None or reset_idx.size < n:
                infos["reward_task"], infos["_reward_task"] = task_reward, sel.copy()
            if reset_idx is not None:
                self._reset_envs(reset_idx, pending, infos)
            self._needs_reset = done
            self._any_needs_reset = n_done > 0
        infos["action_mask"], infos["_action_mask"] = self._masks.copy(), self._all.copy()

        return self._obs(), rewards, terminated, truncated, infos

    def render(self) -> tuple[str, ...] | tuple[np.ndarray, ...] | None:
        if self.render_mode is None:
            return None
        decode = self.task.tokenizer.decode
        out = []
        for i in range(self.num_envs):
            if not self._reset_called:
                prompt, completion = "", ""
            else:
                slot = self._slot[i]
                gen = self._ids[i, self._pool_lengths[slot] : self._lengths[i]]
                end = " <eos>" if len(gen) and gen[-1] == self.eos_id else ""
                prompt, completion = self._pool_texts[slot], decode(gen.tolist()) + end
            out.append(
                text_frame(prompt, completion)
                if self.render_mode == "rgb_array"
                else f"{prompt}|{completion}"
            )
        return tuple(out)

    def action_masks(self) -> np.ndarray:
        """Bool masks of shape ``(num_envs, vocab_size)`` (for MaskablePPO-style agents)."""
        return self._masks.astype(bool)

    # -- helpers ------------------------------------------------------------------------------------

    def _check_reset_mask(self, mask: Any) -> np.ndarray:
        """The ``reset_mask`` option, checked as ``SyncVectorEnv`` checks it (shape and no True ->
        ``ValueError``; dtype -> ``TypeError``)."""
        n = self.num_envs
        try:
            mask = np.asarray(mask)
        except (TypeError, ValueError):
            raise ConfigError(
                f"reset_mask must be a bool array of shape ({n},), got {mask!r}"[:300]
            ) from None
        if mask.shape != (n,):
            raise OptionValueError(
                f"reset_mask must be a bool array of shape ({n},) (one entry per sub-env), got shape {mask.shape}"
            )
        if mask.dtype != np.bool_:
            raise ConfigError(f"reset_mask must be a bool array of shape ({n},), got dtype {mask.dtype}")
        if not mask.any():
            raise OptionValueError(
                "reset_mask must have at least one True entry (as in gymnasium's vector envs); to reset "
                "nothing, do not call reset"
            )
        if not self._reset_called and not mask.all():
            raise OptionValueError("the first reset must reset every sub-env (omit reset_mask)")
        return mask.copy()

    def _check_actions(self, actions: Any) -> np.ndarray:
        try:
            arr = np.asarray(actions)
        except (TypeError, ValueError) as exc:  # ragged nesting, unconvertible objects
            raise ActionTypeError(
                f"actions must be an integer array of shape ({self.num_envs},), got {type(actions).__name__} ({exc})"
            ) from None
        if arr.ndim == 0:
            raise ActionTypeError(
                f"actions must be an array of {self.num_envs} token ids (one per sub-env), got the scalar "
                f"{actions!r}; SyncVectorEnv raises TypeError here too"[:300]
            )
        if arr.shape != (self.num_envs,):
            raise InvalidActionError(
                f"actions must have shape ({self.num_envs},) (one token id per sub-env), got {arr.shape}"
            )
        kind = arr.dtype.kind
        if kind not in "iu":
            raise InvalidActionError(f"actions must be integer token ids, got dtype {arr.dtype}")
        if arr.dtype != np.int64 and arr.dtype != np.uint64:
            # every other integer dtype (other widths, either byte order: '>i8' is legal) is exact
            # in int64; the unsigned view below needs it, or int8 -1 would pass as 255
            arr = arr.astype(np.int64)
        elif not arr.dtype.isnative:
            arr = arr.astype(arr.dtype.newbyteorder("="))
        # One reduction checks both ends: viewed as unsigned, negative ids become huge.
        unsigned = arr.view(np.uint64)
        if unsigned[unsigned.argmax()] >= self.vocab_size:
            bad = int(np.flatnonzero(unsigned >= self.vocab_size)[0])
            raise InvalidActionError(
                f"action {int(arr[bad])} of sub-env {bad} is out of range; allowed token ids are [0, {self.vocab_size})"
            )
        return arr.astype(np.int64, copy=False)

    def _finish(self, idx: np.ndarray, terminated: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Score the episodes that just ended in sub-envs ``idx``; return scores and end infos."""
        slot = self._slot[idx]
        prompt_lengths = self._pool_lengths[slot]
        # Completions start right after the prompt; entries past an episode's end are pad.
        starts = self._row_offsets[idx] + prompt_lengths
        scores, _, end_info = finish_episodes(
            self.task,
            self._pool_ids.take(slot, axis=0)[:, : self.max_prompt_tokens],
            prompt_lengths,
            self._pool_texts[slot],
            self._windows[starts],  # (indexing beats take() on this strided view)
            self._lengths[idx] - prompt_lengths,
            terminated,
            self._pool_seeds[slot],
            {k: v.take(slot, axis=0) for k, v in self._pool_meta.items()},
        )
        return scores, end_info

    def _current_episodes(self, idx: np.ndarray, terminated: np.ndarray) -> Any:
        """Sub-envs ``idx``'s episodes so far (prompt plus completion up to this step), as a batch."""
        slot = self._slot[idx]
        prompt_lengths = self._pool_lengths[slot]
        starts = self._row_offsets[idx] + prompt_lengths
        return episode_batch(
            self.task,
            self._pool_ids.take(slot, axis=0)[:, : self.max_prompt_tokens],
            prompt_lengths,
            self._pool_texts[slot],
            self._windows[starts].copy(),
            self._lengths[idx] - prompt_lengths,
            terminated,
            self._pool_seeds[slot],
            {k: v.take(slot, axis=0) for k, v in self._pool_meta.items()},
        )

    def _reset_envs(self, idx: np.ndarray, sel: np.ndarray, infos: dict[str, Any]) -> None:
        """Start new episodes in sub-envs ``idx`` (``sel`` is the same as a bool mask).

        Adds the reset infos (``prompt`` and the task's public metadata); the caller adds
        ``action_mask``, which every sub-env reports on every step.
        """
        slot = self._slot[idx] + 1
        self._slot[idx] = slot
        lengths = self._pool_lengths[slot]
        if lengths[lengths.argmin()] < 0:  # some block is used up (its sentinel slot)
            self._refill()
            slot = self._slot[idx]
            lengths = self._pool_lengths[slot]
        self._ids[idx] = self._pool_ids.take(slot, axis=0)
        self._lengths[idx] = lengths
        self._ends[idx] = self._pool_ends[slot]
        if self.shaping:
            reset_terms(self.shaping, idx, self._ids[idx], lengths)
        rows = {"prompt": self._pool_texts[slot]}
        for key in self._info_keys:
            rows[key] = self._pool_meta[key].take(slot, axis=0)
        self._put_rows(infos, rows, idx, sel)
        self._needs_reset[idx] = False  # last: ``sel`` may be this very array

    def _refill(self) -> None:
        """Refill every prompt block that is at most a quarter left (at least one is used up).

        A refilled block is rebased at its sub-env's current episode (whose prompt is drawn again,
        identically, since it is a function of its key) and holds the next ``K - 1`` episodes after
        it. Refilling many blocks at once turns many small :meth:`Task.sample_prompts` calls into
        one large one.
        """
        k = self._prefetch
        rows = np.flatnonzero((self._block_start + k - self._slot) * 4 <= k)
        start = self._block_start[rows]
        cur = self._base[rows] + self._slot[rows] - start
        offsets = np.arange(k)
        counters = (cur[:, None] + offsets).ravel()
        keys = episode_keys(np.repeat(self._streams[rows], k), counters)
        batch = self.task.sample_prompts(keys)
        width = batch.ids.shape[1]
        if width > self.max_prompt_tokens or len(batch) != len(keys):
            raise ValueError(
                f"{self.task.name}: sample_prompts returned ids of shape {batch.ids.shape} for {len(keys)} "
                f"keys; it must return one row per key, at most max_prompt_tokens={self.max_prompt_tokens} wide"
            )
        slots = (start[:, None] + offsets).ravel()
        self._pool_ids[slots, :width] = batch.ids
        if width < self.max_prompt_tokens:
            self._pool_ids[slots, width : self.max_prompt_tokens] = self.pad_id
        self._pool_lengths[slots] = batch.lengths
        self._pool_ends[slots] = batch.lengths + self.max_new_tokens
        self._pool_texts[slots] = batch.texts
        self._pool_seeds[slots] = key_to_seed(keys)
        self._info_keys = reset_info_keys(self.task, batch.metadata)
        for key, value in batch.metadata.items():
            store = self._pool_meta.get(key)
            if store is None:
                store = np.zeros((len(self._pool_texts), *value.shape[1:]), dtype=value.dtype)
                self._pool_meta[key] = store
            store[slots] = value
        self._base[rows] = cur
        self._slot[rows] = start

    def _put_rows(
        self, infos: dict[str, Any], rows: dict[str, np.ndarray], idx: np.ndarray, sel: np.ndarray
    ) -> None:
        """Merge per-row values (``values[j]`` belongs to sub-env ``idx[j]``) into ``infos``."""
        for key, values in rows.items():
            arr = infos.get(key)
            if arr is not None:
                arr[idx] = values
                mask_key = "_" + key
                infos[mask_key] = infos[mask_key] | sel
                continue
            if values.dtype == object:
                arr = np.empty(self.num_envs, dtype=object)  # (filled with None)
            else:
                arr = np.zeros((self.num_envs, *values.shape[1:]), dtype=values.dtype)
            arr[idx] = values
            infos[key], infos["_" + key] = arr, sel.copy()

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
        return {
            "input_ids": self._ids.copy(),
            "attention_mask": self._attention_rows.take(self._lengths, axis=0),
        }


#: at most this many prefetched prompts in all (num_envs * block size), to bound memory
MAX_PREFETCHED_PROMPTS = 1 << 16


def _check_memory(task: Task, num_envs: int) -> None:
    """Raise :class:`ConfigValueError` before allocating if ``num_envs`` sub-envs' arrays (ids,
    observations, masks, prompt blocks; models and KV caches not counted) would not fit in the
    machine's memory."""
    length = task.max_prompt_tokens + task.max_new_tokens
    per_env = 8 * length * 5 + length + 2 * task.tokenizer.vocab_size + 256
    need = per_env * num_envs
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not POSIX: a fixed bound
        total = 1 << 40
    if need > total:
        raise ConfigValueError(
            f"num_envs={num_envs} needs about {need / 2**30:.3g} GiB for the env's own arrays "
            f"({per_env} bytes per sub-env), more than this machine's {total / 2**30:.3g} GiB of memory; "
            "use fewer sub-envs"
        )


def _prefetch_size(task: Task, num_envs: int) -> int:
    """Prompts per sub-env block: ``Task.prompt_prefetch`` (checked), capped so that all blocks
    together hold at most :data:`MAX_PREFETCHED_PROMPTS` prompts (for the toy tasks, ids plus two
    short strings each: about 10 MB). The cap changes the cost, never the episodes."""
    k = getattr(task, "prompt_prefetch", 1)
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ConfigError(f"{task.name}: prompt_prefetch must be a positive int, got {k!r}")
    return int(max(1, min(k, MAX_PREFETCHED_PROMPTS // num_envs)))
