"""The single text-generation environment: one episode = one completion of one prompt."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rlhf_envs.envs.rendering import RENDER_MODES, check_render_mode, text_frame
from rlhf_envs.envs.scoring import episode_batch, finish_episodes, reset_info_keys
from rlhf_envs.envs.shaping import bind_tokenizer, call_term, make_shaping, reset_terms, task_terms
from rlhf_envs.envs.spaces import check_action, check_options, check_seed, make_env_task, observation_space
from rlhf_envs.errors import EpisodeFinishedError
from rlhf_envs.seeding import episode_keys, key_to_seed, stream_key
from rlhf_envs.tasks.base import PromptBatch, Task, check_prompt_text


def _python(value: Any) -> Any:
    """numpy scalars -> Python scalars, so SyncVectorEnv batches infos with the natural dtypes."""
    return value.item() if isinstance(value, np.generic) else value


class TextGenerationEnv(gym.Env):
    """Generate a completion token by token; the feedback model scores it when the episode ends.

    ## Description

    The state is the token prefix (prompt followed by the tokens generated so far) and the action
    is the next token. What the prompt is and how the completion is judged is set by the *task*
    (``RLHF/Copy-v0`` uses the copy task, for example); this class is the same for all of them.

    ## Action Space

    ``Discrete(vocab_size)``. Every id is accepted; ``info["action_mask"]`` (and
    :meth:`action_masks`) marks the tokens the task considers sensible (for the toy tasks, the
    task's output symbols and EOS). Non-integer or out-of-range actions raise
    :class:`~rlhf_envs.errors.InvalidActionError`.

    ## Observation Space

    ``Dict(input_ids=Box(0, vocab_size - 1, (L,), int64), attention_mask=Box(0, 1, (L,), int8))``
    with ``L = max_prompt_tokens + max_new_tokens``. The prefix is left-aligned and right-padded
    with the tokenizer's pad id; ``attention_mask`` is 1 on real tokens. Arrays are fresh copies.

    ## Rewards

    On the final step (terminated or truncated) the task reward is the feedback model's score of
    the finished episode; on other steps it is 0. Optional per-token shaping terms (``shaping=``)
    add to every step's reward. ``info["reward_task"]`` and ``info["reward_<term>"]`` always report
    each component separately.

    ## Starting State

    A prompt drawn by the task from the env's seeded random stream (or given with
    ``reset(options={"prompt": text})``). Reset ``info`` holds ``prompt``, the task's public
    metadata (for toy tasks ``target``) and ``action_mask``.

    ## Episode End

    Terminated when the policy emits EOS; truncated when ``max_new_tokens`` tokens have been
    generated without EOS. The final step's ``info`` adds ``prompt``, ``completion`` and task facts
    such as ``success``. Calling ``step`` after the end raises
    :class:`~rlhf_envs.errors.EpisodeFinishedError`.

    ## Arguments

    * ``task``: a registered task name (``"copy"``, ``"reverse"``, ``"sort"``, ``"addition"``, ...)
      or a :class:`~rlhf_envs.tasks.Task` instance.
    * ``render_mode``: ``None``, ``"ansi"`` (``render()`` returns ``"prompt|completion"``) or
      ``"rgb_array"`` (that text drawn on an image, :mod:`rlhf_envs.envs.rendering`; what SB3's
      ``make_vec_env`` asks for, and what ``gym.make`` builds ``"human"`` on).
    * ``shaping``: ``None``, ``{"step_penalty": c, "repeat_penalty": c}`` (coefficients finite, in
      ``[0, 1e6]``), or a list of :class:`~rlhf_envs.envs.shaping.ShapingTerm`. The key
      ``"potential"`` adds potential-based shaping from a prefix scorer,
      ``F_t = scale * (gamma * Phi(s_{t+1}) - Phi(s_t))`` (``reward_potential`` in ``info``):
      ``{"potential": "scripted"}`` (the task's own score of every prefix), ``"marks"`` (a
      simulated person marking tokens good or bad), ``"learned"`` (a reward-model feedback's head at
      every prefix), a prefix scorer object, or ``{"potential": {"scorer": ..., "gamma": 1.0,
      "scale": 1.0}}``; ``gamma`` (in ``[0, 1]``, default 1) must be the learner's discount
      (:class:`~rlhf_envs.envs.shaping.PotentialShaping`).
    * ``feedback``: ``None`` (the task's own) or any object with ``score(episodes) -> float[B]``
      (a :class:`~rlhf_envs.feedback.FeedbackModel`): it replaces the task's feedback model, so
      ``gym.make(id, feedback=my_model)`` scores the task's episodes with ``my_model``.
    * any other keyword is a task parameter (e.g. ``max_length`` for Copy); unknown ones raise.

    ## Seeding

    ``reset(seed=s)`` seeds ``np_random``, which draws a 64-bit stream key; episode ``k`` after it
    uses ``episode_keys(stream, k)`` (:mod:`rlhf_envs.seeding`) for its prompt and for
    ``Episode.seed``, the seed random feedback models use. Sub-env ``i`` of the vector env seeded
    with ``s`` therefore replays this env seeded with ``s + i``.

    ## Version History

    * v0: initial release.
    """

    metadata = {"render_modes": RENDER_MODES, "render_fps": 4}

    def __init__(
        self,
        task: str | Task,
        render_mode: str | None = None,
        shaping: Any = None,
        feedback: Any = None,
        **task_kwargs: Any,
    ) -> None:
        self.render_mode = check_render_mode(render_mode)
        self.task = make_env_task(task, feedback, task_kwargs)
        self.shaping = bind_tokenizer(make_shaping(shaping, self.task), self.task.tokenizer) + task_terms(
            self.task
        )
        self._env0 = np.zeros(1, dtype=np.int64)
        tok = self.task.tokenizer
        self.vocab_size = tok.vocab_size
        self.pad_id, self.eos_id = tok.pad_id, tok.eos_id
        self.max_new_tokens = self.task.max_new_tokens
        self.max_length = self.task.max_prompt_tokens + self.task.max_new_tokens
        self.observation_space = observation_space(self.task)
        self.action_space = spaces.Discrete(self.vocab_size)
        self._mask = self.task.action_mask()
        self._ids = np.full(self.max_length, self.pad_id, dtype=np.int64)
        self._length = 0
        self._prompt_len = 0
        self._prompt: PromptBatch | None = None
        self._stream: np.uint64 | None = None
        self._counter = 0
        self._key = np.zeros(1, dtype=np.uint64)
        self._done = True

    # -- Gymnasium API ------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=check_seed(seed))
        options = check_options(options, {"prompt"}, "reset options")
        if seed is not None or self._stream is None:
            self._stream, self._counter = stream_key(self.np_random), 0
        self._key = episode_keys(np.array([self._stream]), np.array([self._counter]))
        self._counter += 1
        if "prompt" in options:
            p = self.task.prompt_from_text(check_prompt_text(options["prompt"], "reset option 'prompt'"))
            self._prompt = PromptBatch.from_prompts([p], self.pad_id)
        else:
            self._prompt = self.task.sample_prompts(self._key)
        n = int(self._prompt.lengths[0])
        self._ids[:] = self.pad_id
        self._ids[:n] = self._prompt.ids[0, :n]
        self._length = self._prompt_len = n
        self._done = False
        reset_terms(self.shaping, np.zeros(1, dtype=np.int64), self._ids[None], np.array([n]))
        info: dict[str, Any] = {"prompt": self._prompt.texts[0]}
        for key in reset_info_keys(self.task, self._prompt.metadata):
            info[key] = _python(self._prompt.metadata[key][0])
        info["action_mask"] = self._mask.copy()
        return self._obs(), info

    def step(self, action: Any):
        if self._done:
            raise EpisodeFinishedError(
                "step() called after the episode ended (terminated or truncated); call reset() first"
            )
        a = check_action(action, self.vocab_size)
        self._ids[self._length] = a
        self._length += 1
        terminated = a == self.eos_id
        truncated = not terminated and self._length - self._prompt_len >= self.max_new_tokens
        info: dict[str, Any] = {}

        reward = np.float32(0.0)
        for term in self.shaping:
            rs, extra = call_term(
                term,
                self._ids[None],
                np.array([self._length]),
                np.array([a]),
                self._env0,
                self._current_episode,
            )
            r = np.float32(rs[0])
            info[f"reward_{term.name}"] = float(r)
            info.update({key: float(value[0]) for key, value in extra.items()})
            reward += r
        task_reward = np.float32(0.0)
        if terminated or truncated:
            self._done = True
            p = self._prompt
            scores, _, end_info = finish_episodes(
                self.task,
                p.ids,
                p.lengths,
                p.texts,
                self._ids[None, self._prompt_len : self._length],
                np.array([self._length - self._prompt_len]),
                np.array([terminated]),
                key_to_seed(self._key),
                p.metadata,
            )
            task_reward = scores[0]
            info.update({k: _python(v[0]) for k, v in end_info.items()})
        info["reward_task"] = float(task_reward)
        info["action_mask"] = self._mask.copy()
        return self._obs(), float(reward + task_reward), bool(terminated), bool(truncated), info

    def render(self) -> str | np.ndarray | None:
        if self.render_mode is None:
            return None
        if self._prompt is None:
            if self.render_mode == "ansi":
                return ""
            prompt, completion = "", ""
        else:
            gen = self._ids[self._prompt_len : self._length]
            end = " <eos>" if len(gen) and gen[-1] == self.eos_id else ""
            prompt, completion = self._prompt.texts[0], self.task.tokenizer.decode(gen.tolist()) + end
        if self.render_mode == "rgb_array":
            return text_frame(prompt, completion)
        return f"{prompt}|{completion}"

    def action_masks(self) -> np.ndarray:
        """The action mask as a bool array (the name sb3-contrib's MaskablePPO looks for)."""
        return self._mask.astype(bool)

    # -- helpers ------------------------------------------------------------------------------------

    def _current_episode(self):  # noqa: ANN202
        """The episode so far (prompt plus the completion up to this step) as a batch of one."""
        p = self._prompt
        n = self._length - self._prompt_len
        comp = self._ids[None, self._prompt_len : self._length].copy()
        done = bool(n and comp[0, -1] == self.eos_id)
        return episode_batch(
            self.task, p.ids, p.lengths, p.texts, comp, np.array([n]), np.array([done]),
            key_to_seed(self._key), p.metadata,
        )  # fmt: skip

    def _obs(self) -> dict[str, np.ndarray]:
        mask = np.zeros(self.max_length, dtype=np.int8)
        mask[: self._length] = 1
        return {"input_ids": self._ids.copy(), "attention_mask": mask}
