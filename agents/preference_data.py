"""Preference data for offline training (DPO, IPO): pairs of completions of one prompt and a label.

A :class:`PreferencePairs` holds, per pair, the prompt's token ids, the token ids of the two
completions A and B, and ``prob_a``: the probability that A is preferred (1 = A, 0 = B, 0.5 = a
tie, anything in between = a soft label, e.g. the share of raters who chose A). It is built from
what the suite's raters already produce:

* :meth:`PreferencePairs.from_comparisons`: two lists of :class:`~rlhf_envs.feedback.base.Episode`
  and the answers, exactly what ``RewardModel.fit_preferences(a, b, answers)`` takes: the object a
  rater's ``compare(a, b)`` returned (:class:`~rlhf_envs.feedback.simulated.SimulatedHuman`,
  :class:`~rlhf_envs.feedback.recorded.RecordedRaters`, the web app's
  :class:`~agents.human.web_human.WebHuman`: anything with ``prob_a()``), or per pair a probability,
  ``"A"`` / ``"B"`` / ``"tie"`` / ``"skip"``. Skipped queries are dropped (and counted). Plain
  integers are refused, as by ``fit_preferences``: ``Comparisons.labels`` holds integer *codes*
  (0 = A, 1 = B), the opposite of probabilities, and reading one as the other trains the policy
  towards the rejected completions.
* :meth:`PreferencePairs.from_label_store`: the pairwise answers people gave on the web app
  (``rlhf-envs human serve --db ...``) for one experiment, one soft label per query (the mean of
  the raters' non-skipped answers).
* :func:`sample_comparisons`: fresh pairs of completions of the same prompts from an LM agent's
  current policy, labelled by a rater (the task's simulated human in ``rlhf-envs train --algo dpo``
  and in ``benchmarks/dpo_sentiment.py``).

Token ids. Episodes from the suite's envs carry their token ids, which are used as they are.
Episodes that carry text only (the recorded raters' sentences: :func:`rlhf_envs.feedback.recorded.
episode_for`) are encoded with ``tokenizer`` (the env's), with EOS appended to a completion that
``terminated``; an empty prompt becomes the single token EOS (a start-of-text token, as GPT-2 uses
its end-of-text token), because the model needs one position to predict the first token from.
Both completions of a pair must follow the same prompt ids: a pair of different prompts is not a
preference between two answers, and DPO's implicit reward is only comparable within one prompt.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rlhf_envs.errors import DataError, FeedbackError
from rlhf_envs.feedback.base import Episode

#: the checkpoint tensors that hold a data set (see :meth:`PreferencePairs.to_tensors`)
TENSOR_KEYS = ("prompt", "a", "b")


def preference_probabilities(labels: Any, n: int, where: str) -> list[float | None]:
    """``labels`` as per-pair probabilities that A is preferred (``None``: skipped).

    ``labels`` is a comparisons object (``prob_a()``) or a sequence of floats in [0, 1], ``"A"``,
    ``"B"``, ``"tie"``, ``"skip"``, ``None`` or :class:`~rlhf_envs.feedback.simulated.Label`
    members; integers (codes or probabilities, it cannot be told) and values outside [0, 1] raise
    :class:`~rlhf_envs.errors.FeedbackError` naming the pair.
    """
    from rlhf_envs.feedback.learned import _CODES_HINT, _label_to_prob

    prob_a = getattr(labels, "prob_a", None)
    if callable(prob_a):
        labels = list(prob_a())
    elif isinstance(labels, np.ndarray) and labels.dtype.kind in "iub":
        raise FeedbackError(
            f"{where}: labels is an integer array (dtype {labels.dtype}); these look like the codes of "
            f"Comparisons.labels (0 = A, 1 = B, 2 = tie, 3 = skip), not probabilities that A wins; {_CODES_HINT}"
        )
    elif isinstance(labels, str | bytes) or not hasattr(labels, "__len__"):
        raise FeedbackError(
            f"{where}: labels must be a sequence (one answer per pair) or a comparisons object, "
            f"got {type(labels).__name__}"
        )
    if len(labels) != n:
        raise FeedbackError(f"{where}: {n} pairs but {len(labels)} labels; they must match")
    out = []
    for i, x in enumerate(labels):
        try:
            out.append(_label_to_prob(x, i))
        except FeedbackError as exc:
            raise FeedbackError(f"{where}: {exc}") from None
    return out


@dataclass
class PreferencePairs:
    """Pairs ``(prompt, A, B)`` of token ids with ``prob_a = P(A preferred)``; see the module docstring."""

    prompt_ids: list[tuple[int, ...]]
    a_ids: list[tuple[int, ...]]
    b_ids: list[tuple[int, ...]]
    prob_a: np.ndarray
    #: queries dropped because they had no usable answer (skips)
    n_skipped: int = 0
    #: where the labels came from (free text, recorded with results)
    source: str = ""
    #: completion texts of A and B, when known (for inspection; not saved with checkpoints)
    texts: list[tuple[str, str]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.prob_a = np.asarray(self.prob_a, dtype=np.float64).reshape(-1)
        n = len(self.prompt_ids)
        if not (len(self.a_ids) == len(self.b_ids) == n == len(self.prob_a)):
            raise DataError(
                f"preference data: {n} prompts, {len(self.a_ids)} A completions, {len(self.b_ids)} B "
                f"completions and {len(self.prob_a)} labels; they must match"
            )
        if n == 0:
            raise DataError(
                "preference data is empty"
                + (f" (all {self.n_skipped} queries were skipped)" if self.n_skipped else "")
                + ": DPO needs at least one labelled pair"
            )
        bad = np.flatnonzero(~((self.prob_a >= 0.0) & (self.prob_a <= 1.0)))
        if bad.size:
            i = int(bad[0])
            raise DataError(f"preference data: label {i} is {self.prob_a[i]}; prob_a must be in [0, 1]")
        for i in range(n):
            for side, ids in (("prompt", self.prompt_ids[i]), ("A", self.a_ids[i]), ("B", self.b_ids[i])):
                if len(ids) == 0:
                    raise DataError(
                        f"preference data: pair {i} has an empty {side}; prompts and completions need "
                        "at least one token"
                    )
                if min(ids) < 0:
                    raise DataError(f"preference data: pair {i}'s {side} holds a negative token id")

    def __len__(self) -> int:
        return len(self.prompt_ids)

    # -- builders -------------------------------------------------------------------------------------

    @classmethod
    def from_comparisons(
        cls,
        a: Sequence[Episode],
        b: Sequence[Episode],
        labels: Any,
        tokenizer: Any = None,
        source: str = "comparisons",
    ) -> PreferencePairs:
        """Pairs ``(a[i], b[i])`` with the answers ``labels`` (see the module docstring).

        ``tokenizer`` encodes episodes that carry text but no token ids (needed only for those).
        Raises :class:`~rlhf_envs.errors.DataError` when the two sides of a pair follow different
        prompts, or a side has no tokens; :class:`~rlhf_envs.errors.FeedbackError` for a label that
        is not a probability in [0, 1] (integers included) or a count mismatch.
        """
        a, b = list(a), list(b)
        if len(a) != len(b):
            raise FeedbackError(
                f"preference data: {len(a)} A episodes but {len(b)} B episodes; they must pair up"
            )
        probs = preference_probabilities(labels, len(a), "preference data")
        prompts, a_ids, b_ids, keep, texts = [], [], [], [], []
        for i, p in enumerate(probs):
            ea, eb = a[i], b[i]
            for side, ep in (("A", ea), ("B", eb)):
                if not isinstance(ep, Episode):
                    raise DataError(
                        f"preference data: pair {i}'s {side} is {type(ep).__name__}, not an Episode"
                    )
            pa, ca = _episode_ids(ea, tokenizer, i, "A")
            pb, cb = _episode_ids(eb, tokenizer, i, "B")
            if pa != pb:
                raise DataError(
                    f"preference data: pair {i} compares completions of different prompts (A after "
                    f"{ea.prompt!r}, {len(pa)} tokens; B after {eb.prompt!r}, {len(pb)} tokens); both "
                    "sides of a pair must follow the same prompt"
                )
            if p is None:
                continue
            prompts.append(pa)
            a_ids.append(ca)
            b_ids.append(cb)
            keep.append(p)
            texts.append((ea.completion, eb.completion))
        skipped = len(probs) - len(keep)
        return cls(prompts, a_ids, b_ids, np.asarray(keep), skipped, source, texts)

    @classmethod
    def from_label_store(cls, store: Any, experiment: str, tokenizer: Any = None) -> PreferencePairs:
        """Every pairwise query of ``experiment`` in the web app's label store (a
        :class:`~agents.human.store.LabelStore` or its SQLite path) with at least one decisive or
        tie answer, labelled with the mean of its raters' answers (A = 1, B = 0, tie = 0.5)."""
        from agents.human.web_human import comparison_targets

        a, b, p = comparison_targets(store, experiment)
        if not a:
            raise DataError(
                f"preference data: the label store {str(store)!r} holds no answered pairwise query in "
                f"experiment {experiment!r}"
            )
        return cls.from_comparisons(a, b, [float(x) for x in p], tokenizer, f"label store {experiment}")

    # -- checks and persistence -----------------------------------------------------------------------

    def check_fits(self, n_actions: int, max_positions: int | None) -> None:
        """Raise :class:`DataError` if a token id is outside the policy's ``n_actions`` or a
        prompt + completion is longer than the model's ``max_positions``."""
        for i in range(len(self)):
            for side, ids in (("prompt", self.prompt_ids[i]), ("A", self.a_ids[i]), ("B", self.b_ids[i])):
                if max(ids) >= n_actions:
                    raise DataError(
                        f"preference data: pair {i}'s {side} holds token id {max(ids)}, outside the env's "
                        f"vocabulary (ids 0..{n_actions - 1}); the pairs were tokenised for another model"
                    )
            longest = len(self.prompt_ids[i]) + max(len(self.a_ids[i]), len(self.b_ids[i]))
            if max_positions is not None and longest > max_positions:
                raise DataError(
                    f"preference data: pair {i} has {longest} tokens (prompt + completion), more than the "
                    f"model's {max_positions} positions"
                )

    def completion_tokens(self, idx: Sequence[int] | None = None) -> int:
        """Completion tokens of both sides of the pairs ``idx`` (all pairs by default)."""
        rows = range(len(self)) if idx is None else idx
        return sum(len(self.a_ids[i]) + len(self.b_ids[i]) for i in rows)

    def summary(self) -> dict[str, Any]:
        """Size and label statistics (recorded with checkpoints and results)."""
        p = self.prob_a
        return {
            "pairs": len(self),
            "skipped": int(self.n_skipped),
            "ties": int(np.sum(p == 0.5)),
            "hard_labels": int(np.sum((p == 0.0) | (p == 1.0))),
            "mean_prob_a": float(p.mean()),
            "completion_tokens": self.completion_tokens(),
            "source": self.source,
        }

    def to_tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        """Flat int64 tensors (ids and lengths of each part) and the float64 labels, for a checkpoint."""
        out: dict[str, torch.Tensor] = {}
        for key, seqs in zip(TENSOR_KEYS, (self.prompt_ids, self.a_ids, self.b_ids), strict=True):
            out[f"{prefix}.{key}.ids"] = torch.tensor([t for s in seqs for t in s], dtype=torch.int64)
            out[f"{prefix}.{key}.len"] = torch.tensor([len(s) for s in seqs], dtype=torch.int64)
        out[f"{prefix}.prob_a"] = torch.from_numpy(self.prob_a.copy())
        return out

    @classmethod
    def from_tensors(
        cls, tensors: dict[str, torch.Tensor], prefix: str, meta: dict[str, Any]
    ) -> PreferencePairs:
        """Inverse of :meth:`to_tensors` (``meta``: :meth:`summary`'s skipped count and source)."""
        parts = []
        for key in TENSOR_KEYS:
            ids = tensors[f"{prefix}.{key}.ids"].tolist()
            lens = tensors[f"{prefix}.{key}.len"].tolist()
            if sum(lens) != len(ids) or min(lens, default=0) < 0:
                raise DataError(f"preference data {prefix}.{key}: lengths do not add up to the ids")
            pos, seqs = 0, []
            for n in lens:
                seqs.append(tuple(int(t) for t in ids[pos : pos + n]))
                pos += n
            parts.append(seqs)
        prob = tensors[f"{prefix}.prob_a"].double().numpy()
        return cls(*parts, prob, int(meta.get("skipped", 0)), str(meta.get("source", "")))


def _episode_ids(ep: Episode, tokenizer: Any, i: int, side: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(prompt ids, completion ids)`` of one episode: its own ids, or its text encoded."""
    if ep.completion_ids:
        prompt = tuple(int(t) for t in ep.prompt_ids)
        if not prompt and ep.prompt and tokenizer is not None:
            prompt = tuple(tokenizer.encode(ep.prompt))
        return prompt or _start(tokenizer, i, side), tuple(int(t) for t in ep.completion_ids)
    if tokenizer is None:
        raise DataError(
            f"preference data: pair {i}'s {side} has no token ids (text only: {ep.completion[:40]!r}); "
            "pass tokenizer= (the env's, env.task.tokenizer) to encode its text"
        )
    prompt = tuple(int(t) for t in ep.prompt_ids)
    if not prompt and ep.prompt:
        prompt = tuple(tokenizer.encode(ep.prompt))
    completion = list(tokenizer.encode(ep.completion))
    if ep.terminated:
        completion.append(int(tokenizer.eos_id))
    return prompt or _start(tokenizer, i, side), tuple(completion)


def _start(tokenizer: Any, i: int, side: str) -> tuple[int, ...]:
    """The start-of-text prompt (EOS) for an episode with an empty prompt."""
    if tokenizer is None:
        raise DataError(
            f"preference data: pair {i}'s {side} has an empty prompt; pass tokenizer= so that it starts "
            "from the end-of-text token"
        )
    return (int(tokenizer.eos_id),)


def _prompt_metadata(env: Any, seeds: list[int]) -> list[dict[str, Any]]:
    """Each sub-env's prompt metadata (``target_words`` of Length, ``keywords`` of Keywords, ...) for
    a reset with ``seeds``: the env's reset infos, which a rater's gold needs to score an episode
    (the sampled episodes carry token ids and texts only)."""
    _, infos = env.reset(seed=seeds)
    keys = [k for k in infos if not k.startswith("_") and k not in ("prompt", "action_mask")]
    out: list[dict[str, Any]] = []
    for i in range(len(seeds)):
        row = {}
        for k in keys:
            present = infos.get(f"_{k}")
            if present is None or present[i]:
                v = infos[k][i]
                row[k] = v.item() if isinstance(v, np.generic) else v
        out.append(row)
    return out


def sample_comparisons(
    agent: Any,
    n_pairs: int,
    human: Any,
    seed: int,
    env_id: str | None = None,
    batch: int = 64,
) -> tuple[list[Episode], list[Episode], Any, dict[str, Any]]:
    """``n_pairs`` pairs of completions of the same prompt from ``agent``'s current policy, labelled by
    ``human.compare(a, b)``.

    Prompt ``j`` is the env reset with seed ``seed * 1_000_003 % 2**30 + j`` (two sub-envs reset with
    the same seed get the same prompt; the sampling seed differs per batch), completions are sampled
    at the policy's temperature. Returns ``(a, b, answers, info)``: the episodes, what ``compare``
    returned, and the gold utility of both sides when the human has one (``gold_a``, ``gold_b``) and
    the answers' agreement with it.
    """
    import gymnasium as gym

    if isinstance(n_pairs, bool) or not isinstance(n_pairs, int) or n_pairs < 1:
        raise DataError(f"n_pairs must be a positive int, got {n_pairs!r}")
    env_id = env_id or agent.env_id
    if env_id is None:
        raise DataError("sample_comparisons: the agent was built on an env instance; pass env_id=")
    base = seed * 1_000_003 % 2**30
    a: list[Episode] = []
    b: list[Episode] = []
    rows = 2 * min(batch, n_pairs)
    env = gym.make_vec(
        env_id, num_envs=rows, vectorization_mode="vector_entry_point", **agent.config.env_kwargs
    )
    try:
        from agents.lm_actor_critic import env_tokenizer

        tok = env_tokenizer(env)
        if tok is None:
            raise DataError(f"sample_comparisons: {env_id} is not a language env of the suite (no tokenizer)")
        for start in range(0, n_pairs, batch):
            k = min(batch, n_pairs - start)
            prompts = [base + start + j for j in range(k)]
            seeds = [s for s in prompts for _ in range(2)]
            seeds += [seeds[-1]] * (rows - len(seeds))  # a short last batch: repeat the last prompt
            sampled = agent.sample_episodes(env, seeds, generator_seed=seed * 7919 + start)
            eps = [
                dataclasses.replace(e, metadata=m)
                for e, m in zip(sampled.to_feedback_episodes(tok), _prompt_metadata(env, seeds), strict=True)
            ][: 2 * k]
            a.extend(eps[0::2])
            b.extend(eps[1::2])
    finally:
        env.close()
    answers = human.compare(a, b)
    info: dict[str, Any] = {}
    gold = getattr(human, "gold_utility", None)
    if callable(gold):
        ga, gb = gold(a), gold(b)
        info["gold_a"], info["gold_b"] = ga.tolist(), gb.tolist()
        probs = preference_probabilities(answers, len(a), "sample_comparisons")
        decisive = [
            (p, x, y) for p, x, y in zip(probs, ga, gb, strict=True) if p not in (None, 0.5) and x != y
        ]
        info["label_gold_agreement"] = (
            float(np.mean([(p > 0.5) == (x > y) for p, x, y in decisive])) if decisive else math.nan
        )
    return a, b, answers, info
