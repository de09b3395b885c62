"""The single text-generation environment: one episode = one completion of one prompt."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rlhf_envs.errors import EpisodeFinishedError, InvalidActionError, check_known_keys
from rlhf_envs.feedback.base import score_episodes
from rlhf_envs.envs.shaping import make_shaping, reset_terms
from rlhf_envs.tasks.base import Prompt, Task, episodes_from_ids, make_task


def observation_space(task: Task) -> spaces.Dict:
    """The Dict observation shared by the single and vector envs."""
    length = task.max_prompt_tokens + task.max_new_tokens
    vocab = task.tokenizer.vocab_size
    return spaces.Dict(
        {
            "input_ids": spaces.Box(0, vocab - 1, shape=(length,), dtype=np.int64),
            "attention_mask": spaces.Box(0, 1, shape=(length,), dtype=np.int8),
        }
    )


def check_action(action: Any, vocab_size: int) -> int:
    """Return ``action`` as an int, or raise :class:`InvalidActionError` saying what is allowed."""
    if isinstance(action, np.ndarray) and action.shape == ():
        action = action[()]
    if isinstance(action, bool | np.bool_) or not isinstance(action, int | np.integer):
        raise InvalidActionError(
            f"action must be an integer token id in [0, {vocab_size}), got {type(action).__name__} {action!r}"
        )
    if not 0 <= action < vocab_size:
        raise InvalidActionError(f"action {int(action)} is out of range; allowed token ids are [0, {vocab_size})")
    return int(action)


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

    A prompt drawn by the task from the env's ``np_random`` (or given with
    ``reset(options={"prompt": text})``). Reset ``info`` holds ``prompt``, the task metadata
    (for toy tasks ``target``), ``episode_seed`` and ``action_mask``.

    ## Episode End

    Terminated when the policy emits EOS; truncated when ``max_new_tokens`` tokens have been
    generated without EOS. The final step's ``info`` adds ``prompt``, ``completion`` and task facts
    such as ``success``. Calling ``step`` after the end raises
    :class:`~rlhf_envs.errors.EpisodeFinishedError`.

    ## Arguments

    * ``task``: a registered task name (``"copy"``, ``"reverse"``, ``"sort"``, ``"addition"``, ...)
      or a :class:`~rlhf_envs.tasks.Task` instance.
    * ``render_mode``: ``None`` or ``"ansi"`` (``render()`` returns ``"prompt|completion"``).
    * ``shaping``: ``None``, ``{"step_penalty": c, "repeat_penalty": c}``, or a list of
      :class:`~rlhf_envs.envs.shaping.ShapingTerm`.
    * any other keyword is a task parameter (e.g. ``max_length`` for Copy); unknown ones raise.

    ## Version History

    * v0: initial release.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        task: str | Task,
        render_mode: str | None = None,
        shaping: Any = None,
        **task_kwargs: Any,
    ) -> None:
        self.task = make_task(task, **task_kwargs)
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.render_mode = render_mode
        self.shaping = make_shaping(shaping)
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
        self._prompt: Prompt | None = None
        self._episode_seed = 0
        self._done = True
        self._completion = ""

    # -- Gymnasium API ------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = options or {}
        check_known_keys(options, {"prompt"}, "reset options")
        # Drawn first so that a given prompt does not shift later episodes' random streams.
        self._episode_seed = int(self.np_random.integers(2**31))
        if "prompt" in options:
            self._prompt = self.task.prompt_from_text(options["prompt"])
        else:
            self._prompt = self.task.sample_prompt(self.np_random)
        n = len(self._prompt.ids)
        self._ids[:] = self.pad_id
        self._ids[:n] = self._prompt.ids
        self._length = n
        self._done = False
        self._completion = ""
        reset_terms(self.shaping, np.zeros(1, dtype=np.int64), self._ids[None], np.array([n]))
        info = {"prompt": self._prompt.text, **self._prompt.metadata, "episode_seed": self._episode_seed}
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
        n_new = self._length - len(self._prompt.ids)
        terminated = a == self.eos_id
        truncated = not terminated and n_new >= self.max_new_tokens
        info: dict[str, Any] = {}

        reward = np.float32(0.0)
        for term in self.shaping:
            r = np.float32(term(self._ids[None], np.array([self._length]), np.array([a]))[0])
            info[f"reward_{term.name}"] = float(r)
            reward += r
        task_reward = np.float32(0.0)
        if terminated or truncated:
            self._done = True
            (episode,) = episodes_from_ids(
                [self._prompt],
                [self._ids[len(self._prompt.ids) : self._length].tolist()],
                [terminated],
                [self._episode_seed],
                self.task.tokenizer,
            )
            task_reward = score_episodes(self.task.feedback, [episode])[0]
            self._completion = episode.completion
            info["prompt"] = episode.prompt
            info["completion"] = episode.completion
            info.update(self.task.episode_info(episode))
        info["reward_task"] = float(task_reward)
        info["action_mask"] = self._mask.copy()
        return self._obs(), float(reward + task_reward), bool(terminated), bool(truncated), info

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        if self._prompt is None:
            return ""
        gen = self._ids[len(self._prompt.ids) : self._length]
        text = self.task.tokenizer.decode(gen)
        end = " <eos>" if self._length and self._ids[self._length - 1] == self.eos_id and len(gen) else ""
        return f"{self._prompt.text}|{text}{end}"

    def action_masks(self) -> np.ndarray:
        """The action mask as a bool array (the name sb3-contrib's MaskablePPO looks for)."""
        return self._mask.astype(bool)

    # -- helpers ------------------------------------------------------------------------------------

    def _obs(self) -> dict[str, np.ndarray]:
        mask = np.zeros(self.max_length, dtype=np.int8)
        mask[: self._length] = 1
        return {"input_ids": self._ids.copy(), "attention_mask": mask}
