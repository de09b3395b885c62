"""Language tasks on a causal language model (the embedded default, or the user's own).

Three tasks, registered on import as ``sentiment``, ``keywords`` and ``length`` (env ids
``RLHF/Sentiment-v0``, ``RLHF/Keywords-v0``, ``RLHF/Length-v0``). Every one accepts, through
``gym.make`` keyword arguments:

* ``model``: ``None`` (the embedded GPT-2 in ``rlhf_envs/assets/default_lm``), a directory saved with
  ``save_pretrained`` (model and tokenizer), or a hub name already in the local cache;
* ``prompts``: a prompt file (:func:`read_prompt_file`: ``.txt``, one prompt per non-empty line;
  ``.jsonl``, one object per line with the task's keys; ``.json``, a list of strings or objects;
  ``.csv``, a header row with a ``prompt`` column), or a list of strings (or record dicts);
  ``None`` uses the task's built-in prompts. A record with an unknown or missing key, or an empty
  ``prompt``, is an error naming the file, the line and the allowed keys;
* ``max_new_tokens``, ``max_prompt_tokens``: the token budget and the prompt limit;
* ``kl_coef`` (default 0, at most 1000), ``ref_temperature`` (1, in [0.001, 1000]), ``reference``
  (``None`` = the same model as ``model``, i.e. the initial policy; or another model directory,
  which must hold the same tokenizer), ``ref_logprobs`` (True): a frozen reference model reports
  ``info["ref_logprob"]`` for every taken token and the shaping term ``"kl"`` pays
  ``kl_coef * ref_logprob`` (see :mod:`rlhf_envs.envs.reference` for exactly why);
* ``device`` (``"cpu"``) and ``dtype`` (``"float32"``) of the model.

The model is loaded once per process and shared (it is frozen); an env pickles without it and
reloads it from its path, so language envs can go to subprocess vector envs.

Prompt text must be plain text: special-token text that the tokenizer turns into the pad or EOS id
(``"<pad>"``, ``"<eos>"``) is rejected with a :class:`~rlhf_envs.errors.PromptError` (it would sit
in the observation as a pad with attention 1, or read as a finished text), as is a string with a
lone surrogate. Rejecting is chosen over encoding such text literally so that what the model sees
is never a surprise.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rlhf_envs.errors import ConfigError, ConfigValueError, PromptError
from rlhf_envs.feedback.base import Episode
from rlhf_envs.feedback.fluency import FluentKeywordCoverage
from rlhf_envs.feedback.rules import Sentiment, StopAtWordCount
from rlhf_envs.lm.corpus import DOMAINS, KEYWORDS, TOPICS, review_openings
from rlhf_envs.tasks.base import (
    Prompt,
    ReferenceModelSpec,
    Task,
    check_float_range,
    check_int_range,
    check_order,
    check_prompt_text,
    register_task,
)

# ---------------------------------------------------------------------------------------------------
# prompt files

#: suffixes read as JSON Lines, JSON and CSV; any other file is text (one prompt per line)
JSONL_SUFFIXES = (".jsonl", ".ndjson")
JSON_SUFFIXES = (".json",)
CSV_SUFFIXES = (".csv",)
_FORMATS = (
    "a .txt file (one prompt per line), a .jsonl file (one JSON object per line), a .json file "
    '(a list of strings or objects) or a .csv file (a header row with a "prompt" column)'
)
_BOMS = {b"\xff\xfe": "UTF-16 (little-endian)", b"\xfe\xff": "UTF-16 (big-endian)"}


def read_prompt_file(
    path: str | os.PathLike, keys: Sequence[str] = ("prompt",)
) -> list[tuple[str, str | dict[str, Any]]]:
    """Read the prompts of a file as ``(where, item)`` pairs.

    ``where`` locates the item for messages (``"prompt file 'p.jsonl', line 3"``); ``item`` is a
    ``str`` (a prompt written as text, which a task parses like a line of a ``.txt`` file) or a
    ``dict`` (a prompt record with the task's keys). By suffix:

    * ``.jsonl`` / ``.ndjson``: one JSON object per non-blank line -> records;
    * ``.json``: a list whose items are strings (-> text) or objects (-> records);
    * ``.csv``: a header row naming the columns (from ``keys``, the task's record keys; so a file
      without a header is an error, not a first prompt), then one prompt per row. A file whose only
      column is ``prompt`` gives text items; with more columns each row is a record of the
      non-empty cells (still strings: the task converts them, e.g. ``keywords`` split at commas);
    * anything else: text, one prompt per non-blank line (surrounding whitespace stripped).

    The file must be UTF-8; a UTF-8 byte-order mark is dropped. Every problem raises
    :class:`~rlhf_envs.errors.PromptError` (or ``FileNotFoundError`` / ``IsADirectoryError``)
    naming the file, and the line or item where there is one.
    """
    p = Path(os.fspath(path)).expanduser()
    name = f"prompt file {str(p)!r}"
    try:
        st = p.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"{name} does not exist; pass {_FORMATS}") from None
    except (OSError, ValueError) as exc:  # name too long, embedded NUL, permission, ...
        raise PromptError(f"{name} cannot be opened ({exc}); pass {_FORMATS}") from None
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(f"{name} is a directory; pass a file inside it: {_FORMATS}")
    if not stat.S_ISREG(st.st_mode):
        raise PromptError(f"{name} is not a regular file (a device, socket or pipe); pass {_FORMATS}")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise PromptError(f"{name} cannot be read ({exc})") from None
    for bom, encoding in _BOMS.items():
        if raw.startswith(bom):
            raise PromptError(
                f"{name} is {encoding} text (it starts with a {encoding} byte-order mark); save it as UTF-8"
            )
    try:
        text = raw.decode("utf-8-sig")  # drops a UTF-8 byte-order mark
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise PromptError(
            f"{name}, line {line}: not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start}); save it as UTF-8"
        ) from None
    suffix = p.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        items = _read_jsonl(text, name)
    elif suffix in JSON_SUFFIXES:
        items = _read_json(text, name)
    elif suffix in CSV_SUFFIXES:
        items = _read_csv(text, name, keys)
    else:
        items = [
            (f"{name}, line {n}", line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()
        ]
    if not items:
        raise PromptError(f"{name} holds no prompts; write {_FORMATS}")
    return items


def _read_jsonl(text: str, name: str) -> list[tuple[str, str | dict[str, Any]]]:
    items: list[tuple[str, str | dict[str, Any]]] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{name}, line {n}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PromptError(
                f"{where}: not valid JSON ({exc.msg}); each line of a .jsonl file must be one object such "
                'as {"prompt": "I bought this phone."}'
            ) from None
        except RecursionError:
            raise PromptError(f"{where}: JSON nested too deeply; write one flat object per line") from None
        if not isinstance(rec, dict):
            raise PromptError(
                f"{where}: expected a JSON object, got {type(rec).__name__}; "
                'write lines such as {"prompt": "I bought this phone."}'
            )
        items.append((where, rec))
    return items


def _read_json(text: str, name: str) -> list[tuple[str, str | dict[str, Any]]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PromptError(
            f"{name}, line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg}); a .json prompt file "
            'holds a list of strings or objects, e.g. ["I bought this phone.", {"prompt": "We ate here."}]'
        ) from None
    except RecursionError:
        raise PromptError(
            f"{name}: JSON nested too deeply; write a flat list of strings or objects"
        ) from None
    if not isinstance(data, list):
        raise PromptError(
            f"{name}: a .json prompt file must hold a list of strings or objects, got a {type(data).__name__}"
        )
    items: list[tuple[str, str | dict[str, Any]]] = []
    for i, item in enumerate(data):
        where = f"{name}, item {i}"
        if isinstance(item, str):
            if item.strip():
                items.append((where, item.strip()))
            else:
                raise PromptError(f"{where}: an empty prompt; remove it or write the prompt text")
        elif isinstance(item, dict):
            items.append((where, item))
        else:
            raise PromptError(f"{where}: expected a string or an object, got {type(item).__name__} {item!r}")
    return items


def _read_csv(text: str, name: str, keys: Sequence[str]) -> list[tuple[str, str | dict[str, Any]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            return []
        header = [h.strip() for h in header]
        if not set(header) <= set(keys):
            raise PromptError(
                f"{name}, line 1: the first line of a .csv prompt file must be a header naming the columns "
                f'(allowed: {", ".join(map(repr, keys))}; a "prompt" column holds the prompts), got {header!r}'
            )
        if len(set(header)) != len(header) or "" in header:
            raise PromptError(f"{name}, line 1: the header {header!r} has an empty or repeated column name")
        items: list[tuple[str, str | dict[str, Any]]] = []
        for row in reader:
            where = f"{name}, line {reader.line_num}"
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise PromptError(f"{where}: {len(row)} cells for the {len(header)} columns {header!r}")
            if header == ["prompt"]:
                items.append((where, row[0].strip()))
            else:
                items.append((where, {k: v.strip() for k, v in zip(header, row, strict=True) if v.strip()}))
        return items
    except csv.Error as exc:
        raise PromptError(f"{name}, line {reader.line_num}: not valid CSV ({exc})") from None


def _csv_words(cell: str) -> list[str]:
    return [w.strip() for w in cell.split(",")]


def _csv_int(cell: str) -> int | str:
    return int(cell) if re.fullmatch(r"\s*\d+\s*", cell) else cell  # a bad value is reported by the task


# ---------------------------------------------------------------------------------------------------
# tasks


def check_same_tokenizer(task_tokenizer: Any, other: Any, what: str) -> None:
    """Raise :class:`ConfigValueError` unless ``other`` is the task's tokenizer (same vocabulary,
    same ids, same pad and EOS).

    The env feeds the task's token ids to every model it runs (the reference model's log-probs
    score them), so a model trained with another tokenizer would score different tokens without
    any error. Tokenizers are compared by their token -> id tables.
    """

    from rlhf_envs.tokenization import same_tokenizer

    if not same_tokenizer(task_tokenizer, other):
        raise ConfigValueError(
            f"{what} was saved with a different tokenizer from the task's model ({other!r} vs "
            f"{task_tokenizer!r}); its log-probs would score other tokens. Give a model saved with the "
            "same tokenizer (tokenizer.save_pretrained into its directory)"
        )


#: allowed ranges of the reference-model settings (wider values only overflow or underflow)
MAX_KL_COEF = 1e3
MIN_REF_TEMPERATURE, MAX_REF_TEMPERATURE = 1e-3, 1e3


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
        # the cheap checks first, before any model is loaded
        self.kl_coef = check_float_range("kl_coef", kl_coef, name, 0.0, MAX_KL_COEF)
        self.ref_temperature = check_float_range(
            "ref_temperature", ref_temperature, name, MIN_REF_TEMPERATURE, MAX_REF_TEMPERATURE
        )
        if not isinstance(ref_logprobs, bool | np.bool_):
            raise ConfigError(f"{name}: ref_logprobs must be True or False, got {ref_logprobs!r}")
        self.feedback = self.make_feedback()
        self.model_path = resolve_model_path(model)
        self.reference_path = resolve_model_path(reference) if reference is not None else self.model_path
        self.device, self.dtype = device, dtype
        self.tokenizer = load_tokenizer(self.model_path)
        if self.reference_path != self.model_path:
            check_same_tokenizer(
                self.tokenizer,
                load_tokenizer(self.reference_path),
                f"{name}: reference {self.reference_path!r}",
            )
        self._lm_cache: Any = None
        lm = self.lm
        check_compatible(self.tokenizer, lm, f"{self.model_path!r} (the {name} model)")
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
            raise ConfigValueError(
                f"{name}: max_prompt_tokens + max_new_tokens = {self.max_prompt_tokens + self.max_new_tokens} "
                f"exceeds the model's context of {n_ctx} tokens ({self.model_path!r}); lower one of them"
            )
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
        check_compatible(self.tokenizer, ref, f"{self.reference_path!r} (the {self.name} reference)")
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

    #: the keys a prompt record may have, each with the parser of its .csv cell (text -> value)
    record_keys: dict[str, Any] = {"prompt": str}
    #: the keys every prompt record must have
    required_keys: tuple[str, ...] = ("prompt",)

    def _load_records(self, prompts: Any) -> list[tuple[str, dict[str, Any]]]:
        if prompts is None:
            return [("built-in prompts", r) for r in self.default_records()]
        csv_file = False
        if isinstance(prompts, str | os.PathLike):
            self._source = f"prompt file {os.fspath(prompts)!r}"
            items = read_prompt_file(prompts, keys=tuple(self.record_keys))
            csv_file = Path(os.fspath(prompts)).suffix.lower() in CSV_SUFFIXES
        elif isinstance(prompts, Sequence) and not isinstance(prompts, bytes | bytearray):
            if not prompts:
                raise ConfigValueError(f"{self.name}: prompts is an empty list; give at least one prompt")
            items = [(f"prompts[{i}]", p) for i, p in enumerate(prompts)]
        else:
            raise ConfigError(
                f"{self.name}: prompts must be None, a path to a .txt/.jsonl/.json/.csv file or a list of "
                f"strings, got {type(prompts).__name__} {prompts!r}"[:400]
            )
        out = []
        for where, item in items:
            if isinstance(item, str):
                record = self.record_from_text(check_prompt_text(item, f"{self.name}: {where}"))
            elif isinstance(item, dict):
                record = self._record_from_fields(item, where, from_csv=csv_file)
            else:
                raise ConfigError(
                    f"{self.name}: {where} must be a str or a dict record, got {type(item).__name__} {item!r}"[
                        :400
                    ]
                )
            out.append((where, record))
        return out

    def _record_from_fields(self, fields: dict[str, Any], where: str, from_csv: bool) -> dict[str, Any]:
        """Check a record's keys (unknown and missing keys name ``where`` and the allowed keys) and
        convert the string cells of a .csv row."""
        allowed = ", ".join(map(repr, self.record_keys))
        unknown = sorted(set(fields) - set(self.record_keys), key=str)
        if unknown:
            raise PromptError(
                f"{self.name}: {where}: unknown key(s) {', '.join(map(repr, unknown))}; allowed keys: {allowed}"
            )
        missing = [k for k in self.required_keys if fields.get(k) is None]
        if missing:
            raise PromptError(
                f"{self.name}: {where}: missing key(s) {', '.join(map(repr, missing))}; allowed keys: {allowed} "
                f"(required: {', '.join(map(repr, self.required_keys))})"
            )
        if from_csv:
            return {k: self.record_keys[k](v) for k, v in fields.items()}
        return dict(fields)

    def _checked(self, record: dict[str, Any], where: str) -> dict[str, Any]:
        try:
            p = self.make_prompt(record, np.random.default_rng(0))
        except PromptError as exc:
            raise PromptError(f"{self.name}: {where}: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise PromptError(
                f"{self.name}: {where}: bad prompt record {record!r}: {exc}; allowed keys: "
                f"{', '.join(map(repr, self.record_keys))}"[:2000]
            ) from None
        if len(p.ids) > self.max_prompt_tokens:
            raise PromptError(
                f"{self.name}: {where}: the prompt {p.text!r} has {len(p.ids)} tokens, more than "
                f"max_prompt_tokens={self.max_prompt_tokens}; shorten it or pass a larger max_prompt_tokens "
                f"(max_prompt_tokens + max_new_tokens must fit the model's context)"
            )
        self._checked_prompt(p, f"{self.name}: {where}")
        return record

    def sample_prompt(self, rng: np.random.Generator) -> Prompt:
        record = self.prompts[int(rng.integers(len(self.prompts)))]
        return self._checked_prompt(self.make_prompt(record, rng))

    def prompt_from_text(self, text: str) -> Prompt:
        where = f"{self.name}: reset option 'prompt'"
        record = self.record_from_text(check_prompt_text(text, where))
        try:
            prompt = self.make_prompt(record, np.random.default_rng(0))
        except PromptError as exc:
            raise PromptError(f"{where}: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise PromptError(f"{where}: bad prompt {text!r}: {exc}") from None
        return self._checked_prompt(prompt, where)

    def _prompt(self, text: str, metadata: dict[str, Any]) -> Prompt:
        check_prompt_text(text, "")
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
    Text-file prompt lines are comma-separated words (or ``Words: rain, bridge. The river``);
    JSONL records are ``{"keywords": ["rain", "bridge"], "prompt": "The river"}`` (``keywords``
    required, ``prompt`` optional: an opening is drawn when it is left out); a .csv file has the
    columns ``keywords`` (comma-separated words, quoted) and optionally ``prompt``.
    """

    name = "keywords"
    record_keys = {"keywords": _csv_words, "prompt": str}
    required_keys = ("keywords",)

    def make_feedback(self) -> FluentKeywordCoverage:
        return FluentKeywordCoverage(self)

    def default_records(self) -> list[dict[str, Any]]:
        return [{"keywords": None}]  # words and opening drawn per episode

    def record_from_text(self, text: str) -> dict[str, Any]:
        m = re.match(r"^\s*Words:\s*([^.]*)\.\s*(.*)$", text)
        if m:
            record: dict[str, Any] = {"keywords": [w.strip() for w in m.group(1).split(",")]}
            if m.group(2).strip():
                record["prompt"] = m.group(2)
            return record
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
        opening = record.get("prompt")
        if opening is None:
            opening = _OPENINGS[int(rng.integers(len(_OPENINGS)))]
        elif not isinstance(opening, str) or not opening.strip():
            raise ValueError("'prompt' must be a non-empty string (or left out: an opening is drawn)")
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
    (``min_words``/``max_words``). JSONL records: ``{"prompt": "...", "target_words": 7}``
    (``target_words`` optional: drawn if absent); .csv columns ``prompt`` and optionally ``target_words``.
    """

    name = "length"
    record_keys = {"prompt": str, "target_words": _csv_int}

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
        self.min_words = check_int_range("min_words", min_words, 1, 64, self.name)
        check_order("min_words", self.min_words, "max_words", self.max_words, self.name)
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
