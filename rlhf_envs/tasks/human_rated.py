"""``RLHF/HumanRatedReview-v0``: continue a real review opening; the judge is a model of real people.

The prompts are the openings of *held-out* real review snippets: the movie-review and Amazon
product-review sentences of the Hutto & Gilbert (ICWSM 2014) data (:mod:`rlhf_envs.data.hutto2014`)
that fall in its fixed *test* split, each cut after its first ``opening_fraction`` (0.4) of the
words (at least 3, at most 10 words; sentences of fewer than 6 words are left out). The reward is a
:class:`~rlhf_envs.feedback.learned.RewardModel` on the task's language model fitted by regression
(mean squared error, one-output head, the whole backbone fine-tuned) on the real mean ratings of
sentences of the *train* split of the same two domains, so no sentence a prompt was cut from was
ever seen by the judge. Its targets are the mean ratings divided by 4: the people's -4..+4 scale
maps onto [-1, 1], the range of VADER's compound score that ``RLHF/Sentiment-v0`` pays, so the
reward is on the scale of the other language tasks (a regression head is not clipped: a text
rated beyond the extremes could score a little outside [-1, 1]). It reads ``prompt + completion``.

Nothing the reward uses is hidden from analysis: the final step's ``info`` holds ``vader`` (VADER's
compound score of the same text, ``prompt + completion``, in [-1, 1]) and ``human_mean`` (the
published mean rating, -4..+4, of the real sentence the prompt was cut from: what people thought of
the *original* continuation; ``nan`` for a prompt the user wrote), and every reset ``info`` holds
``human_mean`` and ``source_id`` (``"movies/123"``; ``""`` for a user prompt). The source's id is
deliberately not under :class:`~rlhf_envs.feedback.recorded.RecordedRaters`' ``sentence_id`` key:
a completion is new text, which recorded raters cannot judge.

The fitted reward model is built by this module at first use from the cached data (the data is
fetched from the package registry on first use, see :mod:`rlhf_envs.data.hutto2014`) and cached
under ``$RLHF_ENVS_CACHE/human_rm/<key>`` (default ``~/.cache/rlhf_envs``), the key a hash of
everything that determines it: the model, the fit settings, the data's pinned checksum and split,
:data:`JUDGE_CACHE_VERSION` and the package version. No rated text is written anywhere but the
cache. The default fit (``n_train=4000`` train sentences drawn with ``fit_seed``, ``fit_epochs=1``,
``fit_lr=1e-3``, batches of 32, texts cut to 64 tokens) made the first ``gym.make`` take 427 s on
the shared two-core machine at a load average of 15-20 (every process got a small share of a core;
the second ``gym.make``, loading the cached judge, took 3.7 s); held-out Pearson with the crowd
mean 0.376 on the full test sentences of both domains. Processes building the same judge at once
wait for one another. ``reward_model=<directory saved by RewardModel.save>`` uses a
ready model instead (any backbone: the judge reads text).

Task arguments (besides those of every language task: ``model``, ``prompts``, ``max_new_tokens``,
``max_prompt_tokens``, ``kl_coef``, ...): ``domains`` (``("movies", "amazon")``; any non-empty
subset of the four domains), ``opening_fraction`` (0.4, in (0, 1)), ``n_train`` (4000, at most
10**6: capped at the train split's size), ``fit_epochs`` (1, at most 100), ``fit_lr`` (1e-3, in (0,
1)), ``fit_seed`` (0, an int >= 0), ``reward_model`` (a saved model directory), ``cache`` (True).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rlhf_envs import atomic_io
from rlhf_envs.data import hutto2014
from rlhf_envs.errors import ConfigError, ConfigValueError
from rlhf_envs.feedback.base import Episode, EpisodeBatch
from rlhf_envs.feedback.rules import Sentiment
from rlhf_envs.tasks.base import Prompt, check_float_range, check_int_range, register_task
from rlhf_envs.tasks.language import LanguageTask
from rlhf_envs.tasks.simulated_human import _build_lock, _package_version, cache_root

if TYPE_CHECKING:  # torch and transformers load only when the judge is built or loaded
    from rlhf_envs.feedback.learned import RewardModel

ENV_ID = "RLHF/HumanRatedReview-v0"
#: part of every judge cache key: bump it whenever the fitting code or the saved format changes
JUDGE_CACHE_VERSION = 1
#: written into each cached judge's directory: the parts its key hashes
CACHE_KEY_FILE = "cache_key.json"
#: the people's rating scale is -4..+4; targets and rewards are divided by this (-> about [-1, 1])
RATING_SCALE = 4.0
MIN_WORDS, MIN_OPENING_WORDS, MAX_OPENING_WORDS = 6, 3, 10
DEFAULT_DOMAINS = ("movies", "amazon")


def opening(text: str, fraction: float) -> str | None:
    """The first ``fraction`` of the words of ``text`` (at least 3, at most 10; ``None`` when the
    text has fewer than 6 words, too short to leave a continuation)."""
    words = text.split()
    if len(words) < MIN_WORDS:
        return None
    k = min(MAX_OPENING_WORDS, max(MIN_OPENING_WORDS, round(fraction * len(words))))
    return " ".join(words[:k])


class HumanRatedReviewTask(LanguageTask):
    """Continue a held-out real review opening; reward = a reward model of real people's ratings."""

    name = "human_rated_review"
    record_keys = {"prompt": str, "source_id": str, "human_mean": float}
    required_keys = ("prompt",)

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
        domains: Sequence[str] = DEFAULT_DOMAINS,
        opening_fraction: float = 0.4,
        n_train: int = 4000,
        fit_epochs: int = 1,
        fit_lr: float = 1e-3,
        fit_seed: int = 0,
        reward_model: str | os.PathLike | None = None,
        cache: bool = True,
    ) -> None:
        name = self.name
        if isinstance(domains, str) or not isinstance(domains, Sequence) or not domains:
            raise ConfigError(
                f"{name}: domains must be a non-empty list of {hutto2014.DOMAINS}, got {domains!r}"
            )
        bad = [d for d in domains if d not in hutto2014.DOMAINS]
        if bad or len(set(domains)) != len(domains):
            raise ConfigValueError(
                f"{name}: domains must be distinct names among {hutto2014.DOMAINS}, got {list(domains)!r}"
            )
        self.domains = tuple(domains)
        self.opening_fraction = check_float_range(
            "opening_fraction", opening_fraction, name, 0.0, 1.0, low_open=True, high_open=True
        )
        self.n_train = check_int_range("n_train", n_train, 1, 10**6, name)
        self.fit_epochs = check_int_range("fit_epochs", fit_epochs, 1, 100, name)
        self.fit_lr = check_float_range("fit_lr", fit_lr, name, 0.0, 1.0, low_open=True, high_open=True)
        self.fit_seed = check_int_range("fit_seed", fit_seed, 0, 2**63 - 1, name)
        if not isinstance(cache, bool):
            raise ConfigError(f"{name}: cache must be True or False, got {cache!r}")
        self.vader = Sentiment(text="full")
        super().__init__(
            model, prompts, max_new_tokens, max_prompt_tokens, kl_coef, ref_temperature, reference,
            ref_logprobs, device, dtype,
        )  # fmt: skip
        from rlhf_envs.feedback.learned import RewardModel

        if reward_model is not None:
            self.judge = RewardModel.load(reward_model)
        else:
            self.judge = self._cached_or_fitted(cache)
        self.feedback = self.judge

    # -- prompts --------------------------------------------------------------------------------

    def make_feedback(self) -> Any:
        return None  # the judge is set once the model is known (see __init__)

    def default_records(self) -> list[dict[str, Any]]:
        """Openings of the test-split sentences of ``domains`` that fit ``max_prompt_tokens``."""
        out = []
        for r in hutto2014.load(self.domains, split="test"):
            text = opening(r.text, self.opening_fraction)
            if text is None:
                continue
            while len(self.tokenizer.encode(text)) > self.max_prompt_tokens and len(text.split()) > 1:
                text = " ".join(text.split()[:-1])  # a long-worded opening: drop words until it fits
            out.append({"prompt": text, "source_id": r.key, "human_mean": float(r.mean)})
        return out

    def make_prompt(self, record: dict[str, Any], rng: np.random.Generator | None) -> Prompt:
        text = record["prompt"]
        if not isinstance(text, str) or not text.strip():
            raise ValueError("'prompt' must be a non-empty string")
        source = record.get("source_id", "")
        mean = record.get("human_mean", math.nan)
        if not isinstance(source, str):
            raise ValueError("'source_id' must be a string")
        if isinstance(mean, bool) or not isinstance(mean, int | float):
            raise ValueError("'human_mean' must be a number")
        return self._prompt(text, {"source_id": source, "human_mean": float(mean)})

    # -- the judge ------------------------------------------------------------------------------

    def judge_cache_parts(self) -> list[Any]:
        """Everything that determines the fitted judge, the fitting code's version included."""
        return [
            self.model_path, self.domains, self.n_train, self.fit_epochs, self.fit_lr, self.fit_seed,
            ("data", hutto2014.SDIST_SHA256, hutto2014.SPLIT_SALT),
            ("code", JUDGE_CACHE_VERSION, _package_version()),
        ]  # fmt: skip

    def judge_cache_key(self) -> str:
        """The judge's cache directory name: a hash of :meth:`judge_cache_parts`."""
        return hashlib.sha256(repr(self.judge_cache_parts()).encode()).hexdigest()[:16]

    def _cached_or_fitted(self, cache: bool) -> RewardModel:
        from rlhf_envs.feedback.learned import RewardModel

        if not cache:
            return self.fit_judge()
        key = self.judge_cache_key()
        path = cache_root() / "human_rm" / key
        record = {"key": key, "version": JUDGE_CACHE_VERSION, "parts": repr(self.judge_cache_parts())}
        with _build_lock(path):
            if (path / "reward_model.json").exists():
                try:
                    found = json.loads((path / CACHE_KEY_FILE).read_text())
                except (OSError, ValueError):
                    found = None
                if found != record:
                    raise ConfigValueError(
                        f"the cached judge {str(path)!r} records {found!r}, not {record!r}; it was not written "
                        "by this version of rlhf_envs for these settings. Delete that directory to refit it"
                    )
                return RewardModel.load(path)
            judge = self.fit_judge()

            def save(tmp: Path) -> None:
                judge.save(tmp)
                atomic_io.write_json(tmp / CACHE_KEY_FILE, record, indent=2)

            atomic_io.write_directory(path, save, if_exists="keep")
        return judge

    def training_sentences(self) -> list[hutto2014.RatedSentence]:
        """The train-split sentences the judge is fitted on (``n_train`` of them, seeded)."""
        train = hutto2014.load(self.domains, split="train")
        rng = np.random.default_rng([self.fit_seed, 16])
        pick = np.sort(rng.choice(len(train), size=min(self.n_train, len(train)), replace=False))
        return [train[i] for i in pick]

    def fit_judge(self) -> RewardModel:
        """Fit the reward model by regression on the training sentences' mean ratings / 4."""
        import torch

        from rlhf_envs.feedback.learned import RewardModel

        records = self.training_sentences()
        judge = RewardModel(self.model_path, seed=self.fit_seed, max_length=64, batch_size=64)
        with torch.random.fork_rng(devices=[]):
            judge.fit_ratings(
                [r.text for r in records],
                [r.mean / RATING_SCALE for r in records],
                epochs=self.fit_epochs,
                lr=self.fit_lr,
                train_batch_size=32,
                val_fraction=0.0,
            )
        return judge

    # -- info -----------------------------------------------------------------------------------

    def episode_info(self, episode: Episode) -> dict[str, Any]:
        return {
            "vader": float(self.vader.score([episode])[0]),
            "human_mean": float(episode.metadata.get("human_mean", math.nan)),
        }

    def episode_infos(self, batch: EpisodeBatch) -> dict[str, np.ndarray]:
        eps = list(batch)
        return {
            "vader": self.vader.score(eps).astype(np.float64),
            "human_mean": np.array([float(e.metadata.get("human_mean", math.nan)) for e in eps]),
        }


register_task(HumanRatedReviewTask.name, HumanRatedReviewTask)  # its env id: rlhf_envs.registration
