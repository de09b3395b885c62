"""Whole episodes sampled from a language-model policy, as returned by ``agent.sample_episodes``.

A :class:`SampledEpisodes` holds one completion per sub-env of a text env at token level (the
left-padded prompt plus completion, the chosen tokens, their log-probabilities under the policy
and under its frozen reference) and turns them into what the rest of the suite speaks:
per-episode sums (the KL to the reference is ``log_prob_sums() - ref_log_prob_sums()``) and
:class:`~rlhf_envs.feedback.base.Episode` objects for feedback models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rlhf_envs.feedback.base import Episode
from rlhf_envs.tokenization import decode_batch


@dataclass
class SampledEpisodes:
    """One sampled episode per row.

    Attributes:
        input_ids, attention_mask: ``(B, P + R)`` left-padded prompts followed by the completions.
        completion_ids: ``(B, R)`` the tokens the policy chose (0 after an episode ended).
        completion_mask: ``(B, R)`` bool, True on a completion's real tokens.
        log_probs: ``(B, R)`` the policy's log-probability of each chosen token (0 where masked).
        ref_log_probs: ``(B, R)`` the frozen reference model's log-probability of the same tokens.
        env_rewards: ``(B, R)`` the env's reward per token (the task's score on the last token).
        summaries: the env's per-episode summaries (``return``, ``length``, ``reward_*``).
        seeds: the reset seed of each row's sub-env (``None`` when the env drew them itself).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    log_probs: torch.Tensor
    ref_log_probs: torch.Tensor
    env_rewards: torch.Tensor
    summaries: list[dict[str, Any]] = field(default_factory=list)
    seeds: list[int] | None = None

    def __len__(self) -> int:
        return int(self.completion_ids.shape[0])

    def log_prob_sums(self) -> np.ndarray:
        """float64 ``(B,)``: each completion's log-probability under the policy."""
        return (self.log_probs * self.completion_mask.float()).sum(1).double().cpu().numpy()

    def ref_log_prob_sums(self) -> np.ndarray:
        """float64 ``(B,)``: each completion's log-probability under the frozen reference."""
        return (self.ref_log_probs * self.completion_mask.float()).sum(1).double().cpu().numpy()

    def completion_lengths(self) -> np.ndarray:
        """int64 ``(B,)``: tokens per completion (EOS included when chosen)."""
        return self.completion_mask.long().sum(1).cpu().numpy()

    def prompts(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, lengths)``: each prompt moved to the front of its row (right-padded with 0)."""
        n_prompt = self.input_ids.shape[1] - self.completion_ids.shape[1]
        ids = self.input_ids[:, :n_prompt].cpu().numpy()
        mask = self.attention_mask[:, :n_prompt].cpu().numpy().astype(bool)
        lengths = mask.sum(1)
        rows = np.zeros_like(ids)
        for i in range(len(ids)):
            rows[i, : lengths[i]] = ids[i][mask[i]]
        return rows, lengths

    def to_feedback_episodes(self, tokenizer: Any, seeds: Sequence[int] | None = None) -> list[Episode]:
        """The rows as feedback-model :class:`~rlhf_envs.feedback.base.Episode` objects.

        ``tokenizer`` is the env's (``env.task.tokenizer``): it decodes the texts and names EOS
        (an episode is ``terminated`` when its last token is EOS). ``Episode.seed`` is the row's
        reset seed (``seeds``, default :attr:`seeds`, else 0).
        """
        seeds = self.seeds if seeds is None else list(seeds)
        p_rows, p_len = self.prompts()
        c_ids = self.completion_ids.cpu().numpy()
        c_len = self.completion_lengths()
        prompts = decode_batch(tokenizer, p_rows, p_len)
        completions = decode_batch(tokenizer, c_ids, c_len)
        eos = tokenizer.eos_id
        episodes = []
        for i in range(len(self)):
            cids = tuple(int(x) for x in c_ids[i, : c_len[i]])
            episodes.append(
                Episode(
                    str(prompts[i]),
                    str(completions[i]),
                    tuple(int(x) for x in p_rows[i, : p_len[i]]),
                    cids,
                    bool(cids) and cids[-1] == eos,
                    {},
                    int(seeds[i]) if seeds is not None else 0,
                )
            )
        return episodes
