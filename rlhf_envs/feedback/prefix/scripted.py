"""The scripted prefix scorer: the task's own score of every prefix of an episode.

``Phi(s_t)`` is the feedback model's score of the episode cut after ``t`` completion tokens. By
default each prefix is scored *as if the policy had stopped there* (``as_finished=True``: an EOS is
appended to a prefix that does not already end with one, and the episode counts as terminated), so
rules that only pay finished texts (``StopAtWordCount``: 0 unless the text ended with EOS) still
give every prefix a meaningful value: "how good would the answer be if it ended now". With
``as_finished=False`` prefixes are scored as they stand (unfinished).

Cost: ``score_states`` is one feedback call on the batch; ``score_prefixes`` one feedback call on
all ``sum(T_b + 1)`` prefixes at once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlhf_envs.feedback.base import EpisodeBatch, FeedbackModel, score_episodes
from rlhf_envs.feedback.prefix.base import all_prefixes, scatter, take_rows


class ScriptedPrefixScorer:
    """``Phi(s)`` = ``feedback``'s score of the prefix ``s`` (see the module docstring).

    Args:
        feedback: any :class:`~rlhf_envs.feedback.FeedbackModel` (the task's, for the env option
            ``shaping={"potential": "scripted"}``).
        tokenizer: the env's tokenizer (decodes each prefix's text; its ``eos_id`` ends a prefix).
        as_finished: score each prefix as if it ended with EOS there (default) or as it stands.
    """

    def __init__(self, feedback: FeedbackModel, tokenizer: Any, as_finished: bool = True) -> None:
        self.feedback = feedback
        self.tokenizer = tokenizer
        self.as_finished = bool(as_finished)

    def _finished(self, batch: EpisodeBatch) -> EpisodeBatch:
        """``batch`` with an EOS appended to every prefix that does not end with one."""
        if not self.as_finished:
            return batch
        n = np.asarray(batch.completion_lengths, dtype=np.int64)
        open_rows = ~np.asarray(batch.terminated, dtype=bool)
        ids = np.pad(batch.completion_ids, ((0, 0), (0, 1)), constant_values=batch.pad_id)
        ids[np.flatnonzero(open_rows), n[open_rows]] = self.tokenizer.eos_id
        return take_rows(
            EpisodeBatch(
                batch.prompts, batch.completions, batch.prompt_ids, batch.prompt_lengths, ids,
                n + open_rows, batch.terminated, batch.seeds, batch.metadata, batch.pad_id,
            ),
            np.arange(len(batch)),
            n + open_rows,
            self.tokenizer,
        )  # fmt: skip

    def score_states(self, episodes: EpisodeBatch) -> np.ndarray:
        """``Phi`` of each episode as it stands: float32 ``(B,)``."""
        return score_episodes(self.feedback, self._finished(episodes))

    def score_prefixes(self, episodes: EpisodeBatch) -> np.ndarray:
        """``Phi`` of every prefix: float32 ``(B, C + 1)`` (one feedback call in all)."""
        prefixes, rows, cols = all_prefixes(episodes, self.tokenizer)
        return scatter(self.score_states(prefixes), rows, cols, episodes)

    def __repr__(self) -> str:
        return f"ScriptedPrefixScorer({type(self.feedback).__name__}, as_finished={self.as_finished})"
