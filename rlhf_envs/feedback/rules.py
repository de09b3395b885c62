"""Scripted feedback rules (re-exported by :mod:`rlhf_envs.feedback.scripted`).

Each class is a :class:`~rlhf_envs.feedback.FeedbackModel`: ``score(episodes)`` returns one float32
per episode, exactly and reproducibly:

* :class:`Sentiment` (VADER compound score), :class:`KeywordCoverage`, :class:`TargetLength`,
  :class:`StopAtWordCount` (a target length that only counts with EOS), :class:`DistinctN`
  (repetition), :class:`RegexMatch` (format), :class:`BLEU` and :class:`ROUGE` (reference overlap
  through sacrebleu and rouge-score), :class:`FunctionFeedback` (a user function, its answers
  checked);
* combinations: :class:`WeightedSum` (weighted composite) and :class:`HardConstraints` (rules that
  must hold: a violation costs a fixed penalty whatever else the text earns).

Rules that need per-prompt data (keywords, a target length, references) take it from the
constructor or, when that is ``None``, from ``episode.metadata``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from rlhf_envs.errors import ConfigError, FeedbackError
from rlhf_envs.feedback.base import Episode, FeedbackModel, score_episodes, validate_scores

# ---------------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------------

_WORD = re.compile(r"\w+(?:'\w+)?", re.UNICODE)


def words(text: str) -> list[str]:
    """Lower-cased word tokens of ``text`` (letters, digits, underscores, inner apostrophes)."""
    return _WORD.findall(text.lower())


def _text_of(ep: Episode, field: str) -> str:
    if field == "completion":
        return ep.completion
    if field == "full":
        return ep.prompt + ep.completion
    raise ConfigError(f"text must be 'completion' or 'full', got {field!r}")


def _check_field(field: str) -> str:
    if field not in ("completion", "full"):
        raise ConfigError(f"text must be 'completion' or 'full', got {field!r}")
    return field


def _from_metadata(ep: Episode, key: str, value: Any, owner: str) -> Any:
    """``value`` if given at construction, else ``ep.metadata[key]``; a clear error if neither."""
    if value is not None:
        return value
    if key not in ep.metadata:
        raise FeedbackError(
            f"{owner} needs {key!r}: pass it to the constructor or put it in the episode metadata "
            f"(episode prompt {ep.prompt!r} has metadata keys {sorted(ep.metadata)})"
        )
    return ep.metadata[key]


# ---------------------------------------------------------------------------------------------------
# Single rules
# ---------------------------------------------------------------------------------------------------


class Sentiment:
    """VADER sentiment of the completion: the compound score in ``[-1, 1]``.

    VADER (Hutto & Gilbert 2014) is a lexicon plus rules (negation, intensifiers, "but", capitals,
    exclamation marks) tuned on social-media text. It is the cheap, deterministic stand-in for a
    sentiment classifier: no model download, microseconds per text.

    Args:
        target: ``"positive"`` (score = compound) or ``"negative"`` (score = -compound).
        text: ``"completion"`` (default) or ``"full"`` (prompt + completion).
    """

    def __init__(self, target: str = "positive", text: str = "completion") -> None:
        if target not in ("positive", "negative"):
            raise ConfigError(f"target must be 'positive' or 'negative', got {target!r}")
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.target = target
        self.text = _check_field(text)
        self._sign = 1.0 if target == "positive" else -1.0
        self._vader = SentimentIntensityAnalyzer()

    def compound(self, text: str) -> float:
        """VADER's compound score of one text (0.0 for an empty text)."""
        return float(self._vader.polarity_scores(text)["compound"]) if text.strip() else 0.0

    def score(self, episodes: Sequence[Episode]) -> np.ndarray:
        return np.array(
            [self._sign * self.compound(_text_of(ep, self.text)) for ep in episodes], dtype=np.float32
        )


class KeywordCoverage:
    """Fraction of the keywords that appear (as whole words) in the completion, in ``[0, 1]``.

    Args:
        keywords: the keywords; if ``None`` they are read per episode from ``metadata["keywords"]``
            (keyword-inclusion tasks vary them per prompt).
        case_sensitive: match case exactly (default False).
    """

    def __init__(self, keywords: Sequence[str] | None = None, case_sensitive: bool = False) -> None:
        if keywords is not None:
            keywords = self._check(keywords)
        self.keywords = keywords
        self.case_sensitive = bool(case_sensitive)

    @staticmethod
    def _check(keywords: Any) -> list[str]:
        if isinstance(keywords, str) or not all(isinstance(k, str) and k.strip() for k in keywords):
            raise ConfigError(f"keywords must be a list of non-empty strings, got {keywords!r}")
        if not keywords:
            raise ConfigError("keywords must not be empty")
        return list(keywords)

    def coverage(self, text: str, keywords: Sequence[str]) -> float:
        """Fraction of ``keywords`` found in ``text`` as whole words (or whole phrases)."""
        flags = 0 if self.case_sensitive else re.IGNORECASE
        hits = sum(bool(re.search(r"(?<!\w)" + re.escape(k) + r"(?!\w)", text, flags)) for k in keywords)
        return hits / len(keywords)

    def score(self, episodes: Sequence[Episode]) -> np.ndarray:
        out = np.empty(len(episodes), dtype=np.float32)
        for i, ep in enumerate(episodes):
            kws = self._check(_from_metadata(ep, "keywords", self.keywords, "KeywordCoverage"))
            out[i] = self.coverage(ep.completion, kws)
        return out


class TargetLength:
    """Closeness of the completion's length to a target: ``1 - min(1, |n - target| / target)``.

    1.0 at the target length, falling linearly to 0 at twice (or zero times) the target; lengths
    within ``tolerance`` of the target count as exact.

    Args:
        target: target length; if ``None``, read per episode from ``metadata["target_length"]``.
        unit: ``"words"`` (default), ``"tokens"`` (completion ids, EOS excluded) or ``"chars"``.
        tolerance: slack around the target that still scores 1.0.
    """

    def __init__(self, target: int | None = None, unit: str = "words", tolerance: int = 0) -> None:
        if unit not in ("words", "tokens", "chars"):
            raise ConfigError(f"unit must be 'words', 'tokens' or 'chars', got {unit!r}")
        if target is not None and (isinstance(target, bool) or not isinstance(target, int) or target < 1):
            raise ConfigError(f"target must be a positive int or None, got {target!r}")
        if isinstance(tolerance, bool) or not isinstance(tolerance, int) or tolerance < 0:
            raise ConfigError(f"tolerance must be a non-negative int, got {tolerance!r}")
        self.target, self.unit, self.tolerance = target, unit, tolerance

    def length(self, ep: Episode) -> int:
        """The completion's length in this rule's unit."""
        if self.unit == "words":
            return len(ep.completion.split())
        if self.unit == "chars":
            return len(ep.completion)
        return max(0, len(ep.completion_ids) - int(ep.terminated))

    def score(self, episodes: Sequence[Episode]) -> np.ndarray:
        out = np.empty(len(episodes), dtype=np.float32)
        for i, ep in enumerate(episodes):
            target = int(_from_metadata(ep, "target_length", self.target, "TargetLength"))
            gap = max(0, abs(self.length(ep) - target) - self.tolerance)
            out[i] = 1.0 - min(1.0, gap / target)
        return out


class StopAtWordCount:
    """Write ``N`` words, then stop: ``max(0, 1 - |n - N| / N)`` if the completion ended with EOS, else 0.

    ``n`` is the number of whitespace-separated words of the completion and ``N`` is
    ``metadata["target_words"]`` (the reward of ``RLHF/Length-v0``). The closeness term is
    :class:`TargetLength`'s in words; the difference is the stop: running out of tokens without EOS
    earns nothing, since the task is to *end* at the right length.
    """

    def score(self, episodes: Sequence[Episode]) -> np.ndarray:
        out = np.zeros(len(episodes), dtype=np.float32)
        for i, ep in enumerate(episodes):
            if ep.terminated:
                n = len(ep.completion.split())
                target = int(_from_metadata(ep, "target_words", None, "StopAtWordCount"))
                out[i] = max(0.0, 1.0 - abs(n - target) / target)
        return out


class DistinctN:
    """Distinct-n (Li et al. 2016): unique n-grams / all n-grams of the completion's words.

    1.0 means no n-gram repeats; degenerate loops ("the the the ...") score near 0. A completion
    with fewer than ``n`` words has no n-grams and scores ``empty_score`` (default 0.0, so a policy
    cannot escape the rule by saying nothing).
    """

    def __init__(self, n: int = 2, empty_score: float = 0.0) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"n must be a positive int, got {n!r}")
        if not math.isfinite(empty_score):
            raise ConfigError(f"empty_score must be finite, got {empty_score!r}")
        self.n, self.empty_score = n, float(empty_score)

    def distinct(self, text: str) -> float:
        """Distinct-n of one text."""
        toks = words(text)
        grams = [tuple(toks[i : i + self.n]) for i in range(len(toks) - self.n + 1)]
        return len(set(grams)) / len(grams) if grams else self.empty_score

    def score(self, episodes: Sequence[Episode]) -> np.ndarray:
        return np.array([self.distinct(ep.completion) for ep in episodes], dtype=np.float32)


class RegexMatch:
    """A format rule: 1.0 if the completion matches a regular expression, else 0.0.

    Args:
        pattern: the regular expression (a string or compiled pattern).
        mode: ``"search"`` (anywhere, default), ``"match"`` (at the start) or ``"fullmatch"``.
        flags: ``re`` flags when ``pattern`` is a string.
        text: ``"completion"`` (default) or ``"full"``.
    """

    def __init__(
        self, pattern: str | re.Pattern, mode: str = "search", flags: int = 0, text: str = "completion"
    ) -> None:
        if mode not in ("search", "match", "fullmatch"):
            raise ConfigError(f"mode must be 'search', 'match' or 'fullmatch', got {mode!r}")
        try:
            self.pattern = re.compile(pattern, flags) if isinstance(pattern, str) else pattern
        except re.error as exc:
            raise ConfigError(f"invalid regular expression {pattern!r}: {exc}") from exc
        if not isinstance(self.pattern, re.Pattern):
            raise ConfigError(f"pattern must be a str or re.Pattern, got {type(pattern).__name__}")
        self.mode = mode
        self.text = _check_field(text)
        self._fn = getattr(self.pattern, mode)

    def matches(self, text: str) -> bool:
        """Whether ``text`` satisfies the rule."""
        return self._fn(text) is not None

    def score(self, episodes: Sequence[Episode]) -> np.ndarray:
        return np.array([self.matches(_text_of(ep, self.text)) for ep in episodes], dtype=np.float32)


def _references(ep: Episode, refs: Sequence[str] | None, owner: str) -> list[str]:
    if refs is None:
        if "references" in ep.metadata:
            refs = ep.metadata["references"]
        else:
            refs = _from_metadata(ep, "reference", None, owner)
    if isinstance(refs, str):
        refs = [refs]
    refs = list(refs)
    if not refs or not all(isinstance(r, str) and r.strip() for r in refs):
        raise FeedbackError(
            f"{owner}: references must be non-empty strings, got {refs!r} for prompt {ep.prompt!r}"
        )
    return refs


class BLEU:
    """Sentence BLEU of the completion against reference text(s), scaled to ``[0, 1]`` (sacrebleu).

    Uses sacrebleu's ``sentence_bleu`` with exponential smoothing (its default), so a short
    completion with no 4-gram match still gets partial credit.

    Args:
        references: fixed references; if ``None``, read from ``metadata["references"]`` (a list) or
            ``metadata["reference"]`` (a string) per episode.
    """

    def __init__(self, references: Sequence[str] | None = None) -> None:
        import sacrebleu

        self._bleu = sacrebleu.sentence_bleu
        self.references = (
            None if references is None else _references(Episode("", "", (), (), False), references, "BLEU")
        )

    def score(self, episodes: Sequence[Episode]) -> np.ndarray:
        out = np.empty(len(episodes), dtype=np.float32)
        for i, ep in enumerate(episodes):
            refs = _references(ep, self.references, "BLEU")
            out[i] = self._bleu(ep.completion, refs).score / 100.0
        return out


class ROUGE:
    """ROUGE F-measure of the completion against reference text(s) (Google's ``rouge-score``).

    With several references the best one counts. Args: ``variant`` (``"rouge1"``, ``"rouge2"``,
    ``"rougeL"`` (default), ``"rougeLsum"``), ``references`` as for :class:`BLEU`, ``stemmer``
    (Porter stemming, default True).
    """

    VARIANTS = ("rouge1", "rouge2", "rougeL", "rougeLsum")

    def __init__(
        self, variant: str = "rougeL", references: Sequence[str] | None = None, stemmer: bool = True
    ) -> None:
        if variant not in self.VARIANTS:
            raise ConfigError(f"variant must be one of {self.VARIANTS}, got {variant!r}")
        from rouge_score import rouge_scorer

        self.variant = variant
        self._scorer = rouge_scorer.RougeScorer([variant], use_stemmer=stemmer)
        self.references = (
            None if references is None else _references(Episode("", "", (), (), False), references, "ROUGE")
        )

    def score(self, episodes: Sequence[Episode]) -> np.ndarray:
        out = np.empty(len(episodes), dtype=np.float32)
        for i, ep in enumerate(episodes):
            refs = _references(ep, self.references, "ROUGE")
            out[i] = max(self._scorer.score(r, ep.completion)[self.variant].fmeasure for r in refs)
        return out


class FunctionFeedback:
    """Wrap a user function as a feedback model; its answers are checked like any other's.

    Args:
        fn: ``fn(episode) -> float`` (or, with ``batched=True``, ``fn(episodes) -> sequence``).
        batched: whether ``fn`` takes the whole batch.
        name: shown in error messages.

    A NaN, inf, non-number or wrong-length answer raises :class:`~rlhf_envs.errors.FeedbackError`
    naming the episode.
    """

    def __init__(self, fn: Callable[..., Any], batched: bool = False, name: str | None = None) -> None:
        if not callable(fn):
            raise ConfigError(f"fn must be callable, got {type(fn).__name__}")
        self.fn, self.batched = fn, bool(batched)
        self.name = name or getattr(fn, "__name__", "function")

    def score(self, episodes: Sequence[Episode]) -> np.ndarray:
        raw = self.fn(list(episodes)) if self.batched else [self.fn(ep) for ep in episodes]
        return validate_scores(raw, episodes, self)

    def __repr__(self) -> str:
        return f"FunctionFeedback({self.name})"


# ---------------------------------------------------------------------------------------------------
# Combinations
# ---------------------------------------------------------------------------------------------------


class WeightedSum:
    """A weighted composite: ``score = sum_k w_k * term_k(episode)``.

    Args:
        terms: a mapping ``name -> (feedback_model, weight)`` or a sequence of ``(model, weight)``
            pairs (named ``term0``, ``term1``, ...).

    Each term's answer is validated separately, so a NaN names the term that produced it.
    :meth:`components` returns the per-term scores for logging (so nothing hides in the sum).
    """

    def __init__(
        self, terms: Mapping[str, tuple[FeedbackModel, float]] | Sequence[tuple[FeedbackModel, float]]
    ) -> None:
        items = (
            list(terms.items())
            if isinstance(terms, Mapping)
            else [(f"term{i}", t) for i, t in enumerate(terms)]
        )
        if not items:
            raise ConfigError("WeightedSum needs at least one (model, weight) term")
        self.terms: dict[str, tuple[FeedbackModel, float]] = {}
        for name, term in items:
            if not (isinstance(term, tuple) and len(term) == 2):
                raise ConfigError(f"term {name!r} must be a (feedback_model, weight) pair, got {term!r}")
            model, weight = term
            if not hasattr(model, "score"):
                raise ConfigError(f"term {name!r}: {model!r} has no score(episodes) method")
            if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
                raise ConfigError(f"term {name!r}: weight must be a finite number, got {weight!r}")
            self.terms[name] = (model, float(weight))

    def components(self, episodes: Sequence[Episode]) -> dict[str, np.ndarray]:
        """Each term's (unweighted, validated) scores."""
        return {name: score_episodes(model, episodes) for name, (model, _) in self.terms.items()}

    def score(self, episodes: Sequence[Episode]) -> np.ndarray:
        total = np.zeros(len(episodes), dtype=np.float64)
        for name, scores in self.components(episodes).items():
            total += self.terms[name][1] * scores
        return total.astype(np.float32)


class Constraint:
    """A rule that must hold. ``check(episode) -> bool`` (True = satisfied).

    Build one from a predicate, or with the helpers :meth:`regex`, :meth:`forbidden_words`,
    :meth:`max_words` and :meth:`from_feedback` (a feedback model whose score must reach a threshold).
    """

    def __init__(self, name: str, check: Callable[[Episode], bool]) -> None:
        if not callable(check):
            raise ConfigError(f"constraint {name!r}: check must be callable")
        self.name, self._check = str(name), check

    def __call__(self, ep: Episode) -> bool:
        ok = self._check(ep)
        if not isinstance(ok, bool | np.bool_):
            raise FeedbackError(
                f"constraint {self.name!r} returned {ok!r} for prompt {ep.prompt!r}; it must return a bool"
            )
        return bool(ok)

    @classmethod
    def regex(cls, pattern: str, must_match: bool = True, mode: str = "search") -> Constraint:
        """The completion must (or, with ``must_match=False``, must not) match ``pattern``."""
        rule = RegexMatch(pattern, mode=mode)
        return cls(
            f"regex{'' if must_match else '-not'}:{pattern}",
            lambda ep: rule.matches(ep.completion) == must_match,
        )

    @classmethod
    def forbidden_words(cls, banned: Sequence[str]) -> Constraint:
        """None of ``banned`` may appear as a whole word (case-insensitive)."""
        cov = KeywordCoverage(banned)
        return cls(
            f"forbidden:{','.join(banned)}", lambda ep: cov.coverage(ep.completion, cov.keywords) == 0.0
        )

    @classmethod
    def max_words(cls, n: int) -> Constraint:
        """At most ``n`` words."""
        return cls(f"max_words:{n}", lambda ep: len(ep.completion.split()) <= n)

    @classmethod
    def from_feedback(cls, model: FeedbackModel, threshold: float, name: str | None = None) -> Constraint:
        """``model``'s score must be at least ``threshold``."""
        return cls(
            name or f"{type(model).__name__}>={threshold}",
            lambda ep: bool(score_episodes(model, [ep])[0] >= threshold),
        )


class HardConstraints:
    """Rules that must hold: any violation replaces the score by a fixed ``penalty``.

    ``score = penalty`` if any constraint fails, else ``base.score``; so no amount of base reward
    can buy a violation back (unlike a weighted sum).

    Args:
        base: the feedback model whose score counts when every rule holds.
        constraints: :class:`Constraint` objects.
        penalty: the score of a violating episode (default -1.0).
    """

    def __init__(self, base: FeedbackModel, constraints: Sequence[Constraint], penalty: float = -1.0) -> None:
        if not hasattr(base, "score"):
            raise ConfigError(f"base must be a feedback model, got {base!r}")
        if not constraints or not all(isinstance(c, Constraint) for c in constraints):
            raise ConfigError("constraints must be a non-empty list of Constraint objects")
        if not math.isfinite(penalty):
            raise ConfigError(f"penalty must be finite, got {penalty!r}")
        self.base, self.constraints, self.penalty = base, list(constraints), float(penalty)

    def violations(self, episodes: Sequence[Episode]) -> list[list[str]]:
        """Names of the violated constraints, per episode."""
        return [[c.name for c in self.constraints if not c(ep)] for ep in episodes]

    def score(self, episodes: Sequence[Episode]) -> np.ndarray:
        out = score_episodes(self.base, episodes).copy()
        for i, v in enumerate(self.violations(episodes)):
            if v:
                out[i] = self.penalty
        return out
