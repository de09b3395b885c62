"""Fixtures for tests and benchmarks of feedback models: seeded reviews, a word tokenizer, a tiny GPT-2.

Feedback research needs many completions whose gold utility is known and varied. This module builds
short product/film reviews from a small grammar over a fixed word list (positive, negative and
neutral adjectives, intensifiers, negation, "but" clauses, exclamation marks), so a lexicon scorer
such as VADER (:class:`~rlhf_envs.feedback.scripted.Sentiment`) gives them a spread of utilities
that depends on word choice *and* on word order (negation, "but"). Everything is drawn from a
``numpy.random.Generator``, so a seed fixes the corpus.

It is a stand-in for policy samples, not a language model: the word list is closed and the grammar
is flat. That is what makes it useful for tests: a reward model can be fitted and checked on it in
seconds on a CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rlhf_envs.feedback.base import Episode

NOUNS = (
    "movie",
    "food",
    "plot",
    "acting",
    "service",
    "room",
    "staff",
    "music",
    "ending",
    "price",
    "story",
    "hotel",
)
VERBS = ("was", "is", "seemed", "felt", "looked")
INTENSIFIERS = ("very", "really", "quite", "extremely", "somewhat", "so")
POSITIVE = (
    "good",
    "great",
    "excellent",
    "wonderful",
    "amazing",
    "lovely",
    "nice",
    "fun",
    "brilliant",
    "perfect",
)
NEGATIVE = ("bad", "terrible", "awful", "boring", "horrible", "poor", "dull", "weak", "ugly", "sad")
NEUTRAL = ("long", "short", "new", "old", "loud", "quiet", "simple", "red", "early", "late")
FLATTERY = ("thanks", "please", "friend", "kindly")
PROMPTS = ("review :", "my opinion :", "a short review :", "what i think :")


def vocabulary() -> list[str]:
    """Every word the generator can emit (for building a word-level tokenizer)."""
    words = ["the", "not", "and", "but", ".", "!", *NOUNS, *VERBS, *INTENSIFIERS, *POSITIVE, *NEGATIVE]
    words += [*NEUTRAL, *FLATTERY]
    for p in PROMPTS:
        words += p.split()
    return sorted(set(words))


class ReviewGenerator:
    """Generate reviews like ``"the food was very good but the service was not great ."``.

    Args:
        max_clauses: at most this many clauses per review (joined by "and" / "but").
        p_intensifier, p_negation, p_exclaim, p_flattery: probabilities of each device per clause
            (flattery words are appended at the end of a review, for keyword-bias experiments).
        adjective_mix: probabilities of drawing a positive, negative or neutral adjective.
    """

    def __init__(
        self,
        max_clauses: int = 3,
        p_intensifier: float = 0.35,
        p_negation: float = 0.2,
        p_exclaim: float = 0.15,
        p_flattery: float = 0.0,
        adjective_mix: Sequence[float] = (0.4, 0.4, 0.2),
    ) -> None:
        self.max_clauses = int(max_clauses)
        self.p_intensifier, self.p_negation = p_intensifier, p_negation
        self.p_exclaim, self.p_flattery = p_exclaim, p_flattery
        mix = np.asarray(adjective_mix, dtype=np.float64)
        self.adjective_mix = mix / mix.sum()
        self._adjs = (POSITIVE, NEGATIVE, NEUTRAL)

    def _clause(self, rng: np.random.Generator) -> list[str]:
        words = ["the", NOUNS[rng.integers(len(NOUNS))], VERBS[rng.integers(len(VERBS))]]
        if rng.random() < self.p_negation:
            words.append("not")
        if rng.random() < self.p_intensifier:
            words.append(INTENSIFIERS[rng.integers(len(INTENSIFIERS))])
        group = self._adjs[rng.choice(3, p=self.adjective_mix)]
        words.append(group[rng.integers(len(group))])
        return words

    def text(self, rng: np.random.Generator) -> str:
        """One review."""
        n = int(rng.integers(1, self.max_clauses + 1))
        words = self._clause(rng)
        for _ in range(n - 1):
            words.append("but" if rng.random() < 0.4 else "and")
            words += self._clause(rng)
        if rng.random() < self.p_flattery:
            words.append(FLATTERY[rng.integers(len(FLATTERY))])
        words.append("!" if rng.random() < self.p_exclaim else ".")
        return " ".join(words)

    def texts(self, n: int, rng: np.random.Generator) -> list[str]:
        """``n`` reviews."""
        return [self.text(rng) for _ in range(n)]

    def episodes(self, n: int, rng: np.random.Generator) -> list[Episode]:
        """``n`` episodes with a random prompt, a generated completion and a per-episode seed.

        Token ids are left empty: the generator has no tokenizer. Feedback models that read text
        (scripted rules, reward models, simulated humans) do not need them.
        """
        out = []
        for _ in range(n):
            prompt = PROMPTS[rng.integers(len(PROMPTS))]
            out.append(Episode(prompt, " " + self.text(rng), (), (), True, {}, int(rng.integers(2**31))))
        return out


def word_tokenizer(corpus: Sequence[str] | None = None) -> Any:
    """Train a word-level ``transformers`` fast tokenizer on ``corpus`` with the ``tokenizers`` library.

    Whitespace/punctuation pre-tokenisation, specials ``<unk>`` (0), ``<pad>`` (1) and ``<eos>`` (2).
    The default corpus is :func:`vocabulary`, so every word the generator emits gets an id. Used to
    give a from-scratch reward-model backbone a vocabulary that matches the generator, with nothing
    downloaded.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["<unk>", "<pad>", "<eos>"], min_frequency=1)
    tok.train_from_iterator(list(corpus) if corpus is not None else vocabulary(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>"
    )


def tiny_gpt2_config(
    tokenizer: Any, n_layer: int = 2, n_embd: int = 64, n_head: int = 4, n_positions: int = 64
) -> Any:
    """A small ``GPT2Config`` sized to ``tokenizer``, for from-scratch backbones in tests and benchmarks."""
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
