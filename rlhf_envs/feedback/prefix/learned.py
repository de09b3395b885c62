"""The learned prefix scorer: a reward model's head at every prefix, one causal forward per episode.

``Phi(s_t)`` is :meth:`RewardModel.score_prefixes <rlhf_envs.feedback.learned.RewardModel.score_prefixes>`
at the last token of the state ``s_t`` (prompt plus ``t`` completion tokens), read *as it stands*:
no EOS is appended to a prefix (that would need one pass per prefix). For an episode the policy
ended with EOS the last state ends with that EOS, where :meth:`RewardModel.score` reads too.

Token ids: the env's ids are the model's own when both use the same vocabulary (the language tasks
and the reward models on the embedded model); otherwise :class:`TokenAligner` maps each env token
to the model's tokens for that token's text (cached per id), so every env prefix is a prefix of the
mapped sequence and the one-pass scores stay exactly the per-prefix scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rlhf_envs.errors import FeedbackError
from rlhf_envs.feedback.base import EpisodeBatch
from rlhf_envs.feedback.prefix.base import check_potentials


def _vocab(tok: Any) -> dict[str, int] | None:
    hf = getattr(tok, "hf", tok)
    get = getattr(hf, "get_vocab", None)
    return get() if get is not None else None


class TokenAligner:
    """Map an env tokenizer's ids to a reward model's ids, token by token.

    Args:
        model_tokenizer: the reward model's ``transformers`` tokenizer.
        env_tokenizer: the tokenizer of the ids to map (``None``: they are the model's own ids).
            A tokenizer with the same token -> id table needs no mapping either.
    """

    def __init__(self, model_tokenizer: Any, env_tokenizer: Any = None) -> None:
        self.model_tokenizer = model_tokenizer
        self.env_tokenizer = env_tokenizer
        self.identity = env_tokenizer is None or _vocab(env_tokenizer) == _vocab(model_tokenizer)
        self._table: dict[int, tuple[int, ...]] = {}

    def _piece(self, token: int) -> tuple[int, ...]:
        piece = self._table.get(token)
        if piece is None:
            env = self.env_tokenizer
            if token == env.eos_id:
                eos = self.model_tokenizer.eos_token_id
                piece = () if eos is None else (int(eos),)
            elif token == env.pad_id:
                piece = ()
            else:
                text = env.decode([token])
                piece = (
                    tuple(self.model_tokenizer(text, add_special_tokens=False)["input_ids"]) if text else ()
                )
            self._table[token] = piece
        return piece

    def align(self, prompt_ids: Sequence[int], completion_ids: Sequence[int]) -> tuple[list[int], np.ndarray]:
        """The model's ids of ``prompt + completion`` and, for ``t = 0..len(completion_ids)``, the number
        of those ids that make up the state with ``t`` completion tokens (``ends``, int64)."""
        prompt, comp = [int(i) for i in prompt_ids], [int(i) for i in completion_ids]
        if self.identity:
            return prompt + comp, np.arange(len(comp) + 1, dtype=np.int64) + len(prompt)
        ids: list[int] = []
        for t in prompt:
            ids.extend(self._piece(t))
        ends = [len(ids)]
        for t in comp:
            ids.extend(self._piece(t))
            ends.append(len(ids))
        if ends[0] == 0:
            raise FeedbackError(
                f"the prompt ids {prompt[:10]} map to no reward-model tokens; nothing to score"
            )
        return ids, np.asarray(ends, dtype=np.int64)


class LearnedPrefixScorer:
    """``Phi(s)`` = a reward model's head at the last token of ``s``; every prefix in one pass.

    Args:
        reward_model: a :class:`~rlhf_envs.feedback.learned.RewardModel` (any object with its
            ``score_prefixes(ids)`` and ``tokenizer``).
        tokenizer: the env's tokenizer (``None``: episodes hold the model's own ids).
    """

    def __init__(self, reward_model: Any, tokenizer: Any = None) -> None:
        self.reward_model = reward_model
        self.aligner = TokenAligner(reward_model.tokenizer, tokenizer)

    def _aligned(self, episodes: EpisodeBatch) -> tuple[list[list[int]], list[np.ndarray]]:
        seqs, ends = [], []
        for b in range(len(episodes)):
            ids, e = self.aligner.align(
                episodes.prompt_ids[b, : episodes.prompt_lengths[b]],
                episodes.completion_ids[b, : episodes.completion_lengths[b]],
            )
            seqs.append(ids)
            ends.append(e)
        return seqs, ends

    def score_prefixes(self, episodes: EpisodeBatch) -> np.ndarray:
        """``Phi`` of every prefix of each episode, float32 ``(B, C + 1)``: one forward per batch."""
        seqs, ends = self._aligned(episodes)
        heads = self.reward_model.score_prefixes(seqs) if seqs else []
        width = int(np.asarray(episodes.completion_lengths).max(initial=0)) + 1
        out = np.zeros((len(episodes), width), dtype=np.float32)
        for b, (h, e) in enumerate(zip(heads, ends, strict=True)):
            out[b, : len(e)] = h[e - 1]
        return out

    def score_states(self, episodes: EpisodeBatch) -> np.ndarray:
        """``Phi`` of each episode's whole current prefix, float32 ``(B,)``."""
        seqs, _ = self._aligned(episodes)
        heads = self.reward_model.score_prefixes(seqs) if seqs else []
        return check_potentials([h[-1] for h in heads], len(episodes), self)

    def score_prefixes_one_by_one(self, episodes: EpisodeBatch) -> np.ndarray:
        """The same table as :meth:`score_prefixes`, with one forward pass per prefix length (each pass
        scores that prefix of every episode): the reference the one-pass method is checked and
        timed against."""
        seqs, ends = self._aligned(episodes)
        width = int(np.asarray(episodes.completion_lengths).max(initial=0)) + 1
        out = np.zeros((len(episodes), width), dtype=np.float32)
        for t in range(width):
            rows = [b for b in range(len(episodes)) if t < len(ends[b])]
            heads = self.reward_model.score_prefixes([seqs[b][: ends[b][t]] for b in rows])
            for b, h in zip(rows, heads, strict=True):
                out[b, t] = h[-1]
        return out

    def __repr__(self) -> str:
        return f"LearnedPrefixScorer({self.reward_model!r})"
