"""Language tasks on a causal language model (the embedded default, or the user's own).

Three tasks, registered on import as ``sentiment``, ``keywords`` and ``length`` (env ids
``RLHF/Sentiment-v0``, ``RLHF/Keywords-v0``, ``RLHF/Length-v0``). Every one accepts, through
``gym.make`` keyword arguments:

* ``model``: ``None`` (the embedded GPT-2 in ``rlhf_envs/assets/default_lm``), a directory saved with
  ``save_pretrained`` (model and tokenizer), or a hub name already in the local cache;
* ``prompts``: a ``.txt`` file (one prompt per non-empty line), a ``.jsonl`` file (one object per
  line, see each task), or a list of strings; ``None`` uses the task's built-in prompts;
* ``max_new_tokens``, ``max_prompt_tokens``: the token budget and the prompt limit;
* ``kl_coef`` (default 0), ``ref_temperature`` (1), ``reference`` (``None`` = the same model as
  ``model``, i.e. the initial policy; or another model path), ``ref_logprobs`` (True): a frozen
  reference model reports ``info["ref_logprob"]`` for every taken token and the shaping term
  ``"kl"`` pays ``kl_coef * ref_logprob`` (see :mod:`rlhf_envs.envs.reference` for exactly why);
* ``device`` (``"cpu"``) and ``dtype`` (``"float32"``) of the model.

The model is loaded once per process and shared (it is frozen); an env pickles without it and
reloads it from its path, so language envs can go to subprocess vector envs.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rlhf_envs.errors import ConfigError
from rlhf_envs.feedback.base import Episode
from rlhf_envs.feedback.fluency import FluentKeywordCoverage
from rlhf_envs.feedback.rules import Sentiment, StopAtWordCount
from rlhf_envs.lm.corpus import DOMAINS, KEYWORDS, TOPICS, review_openings
from rlhf_envs.tasks.base import Prompt, ReferenceModelSpec, Task, check_int_range, register_task

# ---------------------------------------------------------------------------------------------------
# prompt files


def read_prompt_file(path: str | os.PathLike) -> list[tuple[int, dict[str, Any]]]:
    """Read ``(line_number, record)`` pairs from a ``.txt`` or ``.jsonl`` prompt file.

    A ``.txt`` line becomes ``{"prompt": line}``; a ``.jsonl`` line must be a JSON object. Blank
    lines are skipped. Errors name the file (and line) and say how to fix it.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(
            f"prompt file {str(p)!r} does not exist; pass a .txt file (one prompt per line) or a .jsonl "
            "file (one JSON object per line)"
        )
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"prompt file {str(p)!r} is not UTF-8 text ({exc}); save it as UTF-8") from None
    records = []
    is_jsonl = p.suffix.lower() in (".jsonl", ".ndjson")
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if is_jsonl:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"prompt file {str(p)!r}, line {n}: not valid JSON ({exc.msg}); each line of a .jsonl "
                    'file must be one object such as {"prompt": "I bought this phone."}'
                ) from None
            if not isinstance(rec, dict):
                raise ValueError(
                    f"prompt file {str(p)!r}, line {n}: expected a JSON object, got {type(rec).__name__}; "
                    'write lines such as {"prompt": "I bought this phone."}'
                )
            records.append((n, rec))
        else:
            records.append((n, {"prompt": line.strip()}))
    if not records:
        raise ValueError(
            f"prompt file {str(p)!r} holds no prompts; write one prompt per line (.txt) or one JSON "
            "object per line (.jsonl)"
        )
    return records


# ---------------------------------------------------------------------------------------------------
# tasks


class LanguageTask(Task):
    """Shared machinery of the language tasks: model, tokenizer, prompts, limits, reference model.

    Subclasses define ``default_records()`` (built-in prompt records), ``make_prompt(record, rng)``
    and set ``feedback``.
    """

    default_max_new_tokens = 24
    default_max_prompt_tokens = 32

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        prompts: str | os.PathLike | Sequence[str] | None = None,
        max_new_tokens: int | None = None,
        max_prompt_tokens: int | None = None,
        kl_coef: float = 0.0,
        ref_temperature: float = 1.0,
        reference: str | os.PathLike | None = None,
        ref_logprobs: bool = True,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> None:
        from rlhf_envs.lm.loading import (
            check_compatible,
            context_length,
            load_tokenizer,
            resolve_model_path,
        )

        name = self.name
        self.feedback = self.make_feedback()
        self.model_path = resolve_model_path(model)
        self.reference_path = resolve_model_path(reference) if reference is not None else self.model_path
        self.device, self.dtype = device, dtype
        self.tokenizer = load_tokenizer(self.model_path)
        self._lm_cache: Any = None
        lm = self.lm
        check_compatible(self.tokenizer, lm, f"{name} (model {self.model_path!r})")
        n_ctx = context_length(lm)
        self.max_new_tokens = check_int_range(
            "max_new_tokens",
            self.default_max_new_tokens if max_new_tokens is None else max_new_tokens,
            1,
            max(1, n_ctx - 1),
            name,
        )
        self.max_prompt_tokens = check_int_range(
            "max_prompt_tokens",
            self.default_max_prompt_tokens if max_prompt_tokens is None else max_prompt_tokens,
            1,
            1 << 20,
            name,
        )
        if self.max_prompt_tokens + self.max_new_tokens > n_ctx:
            raise ValueError(
                f"{name}: max_prompt_tokens + max_new_tokens = {self.max_prompt_tokens + self.max_new_tokens} "
                f"exceeds the model's context of {n_ctx} tokens ({self.model_path!r}); lower one of them"
            )
        if isinstance(kl_coef, bool) or not isinstance(kl_coef, int | float) or not kl_coef >= 0:
            raise ConfigError(f"{name}: kl_coef must be a number >= 0, got {kl_coef!r}")
        if (
            isinstance(ref_temperature, bool)
            or not isinstance(ref_temperature, int | float)
            or ref_temperature <= 0
        ):
            raise ConfigError(f"{name}: ref_temperature must be a number > 0, got {ref_temperature!r}")
        self.kl_coef, self.ref_temperature = float(kl_coef), float(ref_temperature)
        self.ref_logprobs = bool(ref_logprobs) or self.kl_coef > 0
        self._source = "built-in prompts"
        self.records = self._load_records(prompts)
        self.prompts = [self._checked(rec, where) for where, rec in self.records]

    # -- model ----------------------------------------------------------------------------------

    @property
    def lm(self) -> Any:
        """The frozen task model (loaded on first use; shared within the process)."""
        if self._lm_cache is None:
            from rlhf_envs.lm.loading import load_causal_lm

            self._lm_cache = load_causal_lm(self.model_path, self.device, self.dtype)
        return self._lm_cache

    def reference_lm(self) -> Any:
        """The frozen reference model (the task model unless ``reference`` was given)."""
        if self.reference_path == self.model_path:
            return self.lm
        from rlhf_envs.lm.loading import check_compatible, load_causal_lm

        ref = load_causal_lm(self.reference_path, self.device, self.dtype)
        check_compatible(self.tokenizer, ref, f"{self.name} (reference {self.reference_path!r})")
        return ref

    def reference_model_spec(self) -> ReferenceModelSpec | None:
        """The reference model (and KL coefficient) the env builds its ``"kl"`` term from, or none if
        ``ref_logprobs`` is off. Called once per env, so each env gets its own KV cache."""
        if not self.ref_logprobs:
            return None
        from rlhf_envs.lm.loading import load_causal_lm

        loader = functools.partial(load_causal_lm, self.reference_path, self.device, self.dtype)
        length = self.max_prompt_tokens + self.max_new_tokens
        return ReferenceModelSpec(self.reference_lm(), length, self.kl_coef, self.ref_temperature, loader)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_lm_cache"] = None  # reloaded from model_path after unpickling
        return state

    # -- prompts --------------------------------------------------------------------------------

    def make_feedback(self) -> Any:
        """The task's feedback model."""
        raise NotImplementedError

    def default_records(self) -> list[dict[str, Any]]:
        """The built-in prompt records."""
        raise NotImplementedError

    def record_from_text(self, text: str) -> dict[str, Any]:
        """A prompt record from one line of a ``.txt`` file or a list item."""
        return {"prompt": text}

    def make_prompt(self, record: dict[str, Any], rng: np.random.Generator | None) -> Prompt:
        """Turn a record into a :class:`Prompt` (``rng`` draws any per-episode choices)."""
        raise NotImplementedError

    def _load_records(self, prompts: Any) -> list[tuple[str, dict[str, Any]]]:
        if prompts is None:
            return [("built-in prompts", r) for r in self.default_records()]
        if isinstance(prompts, str | os.PathLike):
            self._source = f"prompt file {os.fspath(prompts)!r}"
            out = []
            for n, rec in read_prompt_file(prompts):
                if set(rec) == {"prompt"} and not Path(prompts).suffix.lower().endswith("jsonl"):
                    rec = self.record_from_text(rec["prompt"])
                out.append((f"{self._source}, line {n}", rec))
            return out
        if isinstance(prompts, Sequence) and all(isinstance(p, str) for p in prompts):
            if not prompts:
                raise ValueError(f"{self.name}: prompts is an empty list; give at least one prompt")
            return [(f"prompts[{i}]", self.record_from_text(p)) for i, p in enumerate(prompts)]
        raise ConfigError(
            f"{self.name}: prompts must be None, a path to a .txt/.jsonl file or a list of strings, got {prompts!r}"
        )

    def _checked(self, record: dict[str, Any], where: str) -> dict[str, Any]:
        try:
            p = self.make_prompt(record, np.random.default_rng(0))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{self.name}: {where}: bad prompt record {record!r}: {exc}") from None
        if not p.ids:
            raise ValueError(f"{self.name}: {where}: the prompt {p.text!r} encodes to no tokens")
        if len(p.ids) > self.max_prompt_tokens:
            raise ValueError(
                f"{self.name}: {where}: the prompt {p.text!r} has {len(p.ids)} tokens, more than "
                f"max_prompt_tokens={self.max_prompt_tokens}; shorten it or pass a larger max_prompt_tokens "
                f"(max_prompt_tokens + max_new_tokens must fit the model's context)"
            )
        return record

    def sample_prompt(self, rng: np.random.Generator) -> Prompt:
        record = self.prompts[int(rng.integers(len(self.prompts)))]
        return self._checked_prompt(self.make_prompt(record, rng))

    def prompt_from_text(self, text: str) -> Prompt:
        return self._checked_prompt(self.make_prompt(self.record_from_text(text), np.random.default_rng(0)))

    def _prompt(self, text: str, metadata: dict[str, Any]) -> Prompt:
        return Prompt(text, tuple(self.tokenizer.encode(text)), metadata)


class SentimentTask(LanguageTask):
    """Continue the opening of a review; the reward is the VADER compound sentiment of the continuation.

    Prompts are neutral one-sentence review openings ("I bought this laptop on sale."); the
    embedded model continues them with praise or complaint about equally often, so a policy must
    learn to steer towards praise. Reward in [-1, 1] on the last token. JSONL prompt records:
    ``{"prompt": "..."}``.
    """

    name = "sentiment"

    def make_feedback(self) -> Sentiment:
        return Sentiment()

    def default_records(self) -> list[dict[str, Any]]:
        return [{"prompt": t} for t in review_openings(400)]

    def make_prompt(self, record: dict[str, Any], rng: np.random.Generator | None) -> Prompt:
        text = record["prompt"]
        if not isinstance(text, str) or not text.strip():
            raise ValueError("'prompt' must be a non-empty string")
        return self._prompt(text, {})


_OPENINGS = tuple(
    [f"{s[0].upper()}{s[1:]}" for top in TOPICS.values() for s in top["subj"]]
    + [f"The {n}" for dom in DOMAINS.values() for n in dom["nouns"][:6]]
)


class KeywordsTask(LanguageTask):
    """Write a continuation that uses one to three given words, fluently.

    The prompt lists the words and starts a sentence: ``"Words: rain, bridge. The river"``. The
    reward is :class:`~rlhf_envs.feedback.fluency.FluentKeywordCoverage`: the fraction of the words
    used, times a fluency factor from the frozen base model's mean log-prob (word salad earns
    nothing) and a bigram-diversity factor.
    Text-file prompt lines are comma-separated words; JSONL records are
    ``{"keywords": ["rain", "bridge"], "prompt": "The river"}`` (``prompt`` optional).
    """

    name = "keywords"

    def make_feedback(self) -> FluentKeywordCoverage:
        return FluentKeywordCoverage(self)

    def default_records(self) -> list[dict[str, Any]]:
        return [{"keywords": None}]  # words and opening drawn per episode

    def record_from_text(self, text: str) -> dict[str, Any]:
        m = re.match(r"^\s*Words:\s*([^.]*)\.\s*(.*)$", text)
        if m:
            return {"keywords": [w.strip() for w in m.group(1).split(",")], "prompt": m.group(2)}
        return {"keywords": [w.strip() for w in text.split(",")]}

    def make_prompt(self, record: dict[str, Any], rng: np.random.Generator | None) -> Prompt:
        kws = record.get("keywords")
        rng = rng if rng is not None else np.random.default_rng(0)
        if kws is None:
            k = int(rng.integers(1, 4))
            kws = [KEYWORDS[i] for i in rng.choice(len(KEYWORDS), size=k, replace=False)]
        if (
            not isinstance(kws, list | tuple)
            or not 1 <= len(kws) <= 3
            or not all(isinstance(w, str) and re.fullmatch(r"[A-Za-z']+", w.strip()) for w in kws)
        ):
            raise ValueError("'keywords' must be a list of one to three single words (letters only)")
        kws = [w.strip() for w in kws]
        opening = record.get("prompt") or _OPENINGS[int(rng.integers(len(_OPENINGS)))]
        if not isinstance(opening, str):
            raise ValueError("'prompt' must be a string")
        text = f"Words: {', '.join(kws)}. {opening}".rstrip()
        return self._prompt(text, {"keywords": tuple(kws)})

    def episode_info(self, episode: Episode) -> dict[str, Any]:
        return {
            "coverage": float(
                FluentKeywordCoverage.coverage(episode.completion, episode.metadata["keywords"])
            )
        }


class LengthTask(LanguageTask):
    """Length control: write exactly the number of words asked for, then stop with EOS.

    The prompt states the target and opens a text: ``"(7 words) I bought this phone last year."``.
    The reward is :class:`~rlhf_envs.feedback.rules.StopAtWordCount`: ``1 - |n - N| / N`` (at least
    0) when the policy emits EOS, and 0 when it runs out of tokens. Targets are 3 to 12 words
    (``min_words``/``max_words``). JSONL records: ``{"prompt": "...", "target_words": 7}`` (``target_words`` optional: drawn if absent).
    """

    name = "length"

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        prompts: str | os.PathLike | Sequence[str] | None = None,
        max_new_tokens: int | None = None,
        max_prompt_tokens: int | None = None,
        kl_coef: float = 0.0,
        ref_temperature: float = 1.0,
        reference: str | os.PathLike | None = None,
        ref_logprobs: bool = True,
        device: str = "cpu",
        dtype: str = "float32",
        min_words: int = 3,
        max_words: int = 12,
    ) -> None:
        self.max_words = check_int_range("max_words", max_words, 1, 64, self.name)
        self.min_words = check_int_range("min_words", min_words, 1, self.max_words, self.name)
        super().__init__(
            model,
            prompts,
            max_new_tokens,
            max_prompt_tokens,
            kl_coef,
            ref_temperature,
            reference,
            ref_logprobs,
            device,
            dtype,
        )

    def make_feedback(self) -> StopAtWordCount:
        return StopAtWordCount()

    def default_records(self) -> list[dict[str, Any]]:
        return [{"prompt": t} for t in review_openings(200, seed=777)]

    def record_from_text(self, text: str) -> dict[str, Any]:
        m = re.match(r"^\s*\((\d+) words\)\s*(.*)$", text)
        if m:
            return {"prompt": m.group(2), "target_words": int(m.group(1))}
        return {"prompt": text}

    def make_prompt(self, record: dict[str, Any], rng: np.random.Generator | None) -> Prompt:
        opening = record["prompt"]
        if not isinstance(opening, str) or not opening.strip():
            raise ValueError("'prompt' must be a non-empty string")
        target = record.get("target_words")
        if target is None:
            rng = rng if rng is not None else np.random.default_rng(0)
            target = int(rng.integers(self.min_words, self.max_words + 1))
        if isinstance(target, bool) or not isinstance(target, int) or target < 1:
            raise ValueError("'target_words' must be a positive int")
        return self._prompt(f"({target} words) {opening}", {"target_words": int(target)})

    def episode_info(self, episode: Episode) -> dict[str, Any]:
        return {"n_words": len(episode.completion.split())}


for _cls in (SentimentTask, KeywordsTask, LengthTask):
    register_task(_cls.name, _cls)
