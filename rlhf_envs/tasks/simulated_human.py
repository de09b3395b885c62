"""``RLHF/SimulatedHuman-v0``: the reward is a learned proxy fitted from a simulated human.

This is the RLHF setting in one env id. A hidden gold utility (VADER sentiment of the continuation,
the gold of ``RLHF/Sentiment-v0``) is seen only through a :class:`SimulatedHuman` rater; a
:class:`RewardModel` on the embedded language model is fitted to that rater's pairwise answers
about completions the embedded model itself wrote for the task's prompts; the env pays the proxy's
score. The gold utility is reported in ``info["reward_gold"]`` on the final step (never in the
reward), so over-optimisation of the proxy (Gao et al. 2022) is visible while training.

Building the proxy samples ``2 * n_comparisons`` completions and fits the reward model (about 30 s on an idle
two-core CPU for the defaults, minutes under load); the result is cached on disk under
``$RLHF_ENVS_CACHE`` (default ``~/.cache/rlhf_envs``) keyed by everything that determines it, the
code that fits it included (:data:`PROXY_CACHE_VERSION` and the package version), or given ready
with ``proxy=<directory saved by RewardModel.save>``. Processes that build the same proxy at once
wait for one another (a lock file next to the cache entry) instead of fitting it twice.

Task arguments (besides those of the sentiment task: ``model``, ``prompts``, ``max_new_tokens``,
``kl_coef``, ...): ``rater`` (a preset name or :class:`RaterConfig`; default ``"Mistake"``),
``n_comparisons`` (500, at most 10**6), ``fit_epochs`` (3, at most 10**4), ``fit_lr`` (3e-4, in
(0, 1)), ``proxy_seed`` (0, an int >= 0), ``proxy`` (a saved model directory), ``cache`` (True),
``n_members`` (1, at most 64: the proxy is a bootstrap ensemble of that many reward models when > 1) and ``aggregate`` (``None``: as fitted or saved, ``"mean"`` for a new fit; else
``"mean"``, ``"min"`` or ``"mean_minus_std"``: how the members' scores combine into the reward). The
aggregate only changes scoring, so ensembles that differ only in it share one cached fit. ``gold``
(``"vader"``, the default, or ``"fluent_vader"``: :class:`~rlhf_envs.feedback.fluency.FluentSentiment`,
VADER gated by fluency under the frozen base model, a gold that word salad cannot satisfy).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rlhf_envs import atomic_io
from rlhf_envs.errors import ConfigError, ConfigValueError
from rlhf_envs.feedback.base import Episode, EpisodeBatch, score_episodes
from rlhf_envs.feedback.fluency import FluentSentiment
from rlhf_envs.feedback.simulated import RaterConfig, SimulatedHuman, preset
from rlhf_envs.tasks.base import check_float_range, check_int_range, register_task
from rlhf_envs.tasks.language import SentimentTask

if TYPE_CHECKING:  # torch and transformers load only when a proxy is built or loaded
    from rlhf_envs.feedback.learned import RewardModel

ENV_ID = "RLHF/SimulatedHuman-v0"
GOLDS = ("vader", "fluent_vader")
#: part of every proxy cache key: bump it whenever sampling, fitting or the saved format of the
#: proxy changes, so a proxy fitted by older code is never reused (1 = keys without a version)
PROXY_CACHE_VERSION = 2
#: written into each cached proxy's directory: the parts its key hashes, for people and checks
CACHE_KEY_FILE = "cache_key.json"


def _package_version() -> str:
    try:
        return metadata.version("rlhf_envs")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


@contextlib.contextmanager
def _build_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` (POSIX ``flock``; no lock elsewhere), so processes
    that need the same proxy wait for the first to cache it rather than all fitting it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: concurrent builders fit twice, the first rename wins
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def cache_root() -> Path:
    """Where fitted proxies are kept (``$RLHF_ENVS_CACHE`` or ``~/.cache/rlhf_envs``)."""
    return Path(os.environ.get("RLHF_ENVS_CACHE", Path.home() / ".cache" / "rlhf_envs"))


def sample_completions(task: SentimentTask, n: int, seed: int, batch_size: int = 64) -> list[Episode]:
    """``n`` episodes: random task prompts continued by the task's own model (temperature 1, no top-k).

    Prompts are decoded in batches of ``batch_size`` by the suite's one sampler
    (:func:`rlhf_envs.lm.sampling.sample_with_logprobs`: left-padded, KV-cached, one forward per new
    token). A row stops at EOS or after ``max_new_tokens`` tokens.
    """
    import torch

    from rlhf_envs.lm.sampling import sample_with_logprobs

    rng = np.random.default_rng([seed, 5])
    gen = torch.Generator().manual_seed(seed)
    lm, tok = task.lm, task.tokenizer
    prompts = [task.sample_prompt(rng) for _ in range(n)]
    seeds = rng.integers(2**31, size=n)
    completions: list[list[int]] = []
    for start in range(0, n, batch_size):
        chunk = [p.ids for p in prompts[start : start + batch_size]]
        comps, _ = sample_with_logprobs(lm, chunk, task.max_new_tokens, tok.eos_id, gen, tok.vocab_size)
        completions.extend(comps)
    out_eps = []
    for p, c, s in zip(prompts, completions, seeds, strict=True):
        term = bool(c) and c[-1] == tok.eos_id
        out_eps.append(Episode(p.text, tok.decode(c), p.ids, tuple(c), term, dict(p.metadata), int(s)))
    return out_eps


class SimulatedHumanTask(SentimentTask):
    """Sentiment steering judged by a reward model fitted from a simulated human (see module doc)."""

    name = "simulated_human"

    def __init__(
        self,
        rater: str | RaterConfig = "Mistake",
        n_comparisons: int = 500,
        fit_epochs: int = 3,
        fit_lr: float = 3e-4,
        proxy_seed: int = 0,
        proxy: str | os.PathLike | None = None,
        cache: bool = True,
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
        n_members: int = 1,
        aggregate: str | None = None,
        gold: str = "vader",
    ) -> None:
        super().__init__(
            model, prompts, max_new_tokens, max_prompt_tokens, kl_coef, ref_temperature, reference,
            ref_logprobs, device, dtype,
        )  # fmt: skip
        self.rater = preset(rater) if isinstance(rater, str) else rater
        if not isinstance(self.rater, RaterConfig):
            raise ConfigError(f"{self.name}: rater must be a preset name or a RaterConfig, got {rater!r}")
        n_comparisons = check_int_range("n_comparisons", n_comparisons, 1, 10**6, self.name)
        fit_epochs = check_int_range("fit_epochs", fit_epochs, 1, 10**4, self.name)
        n_members = check_int_range("n_members", n_members, 1, 64, self.name)
        proxy_seed = check_int_range("proxy_seed", proxy_seed, 0, 2**63 - 1, self.name)
        if not isinstance(cache, bool):
            raise ConfigError(f"{self.name}: cache must be True or False, got {cache!r}")
        if gold not in GOLDS:
            raise ConfigError(f"{self.name}: gold must be one of {GOLDS}, got {gold!r}")
        self.gold_name = gold
        # the gold utility (VADER on the completion, optionally fluency-gated): hidden from the reward
        self.gold = self.feedback if gold == "vader" else FluentSentiment(self)
        self.fit_lr = check_float_range("fit_lr", fit_lr, self.name, 0.0, 1.0, low_open=True, high_open=True)
        self.n_comparisons, self.fit_epochs, self.proxy_seed = n_comparisons, fit_epochs, proxy_seed
        from rlhf_envs.feedback.learned import AGGREGATES, RewardModel

        if aggregate is not None and aggregate not in AGGREGATES:
            raise ConfigError(
                f"{self.name}: aggregate must be None or one of {AGGREGATES}, got {aggregate!r}"
            )
        self.n_members = n_members

        if proxy is not None:
            self.proxy = RewardModel.load(proxy)
        else:
            self.proxy = self._cached_or_fitted(cache)
        if aggregate is not None:
            self.proxy.aggregate = aggregate
        self.feedback = self.proxy

    def proxy_cache_parts(self) -> list[Any]:
        """Everything that determines the fitted proxy, the fitting code's version included."""
        parts = [
            self.model_path, self.rater.cache_repr(), self.n_comparisons, self.fit_epochs, self.fit_lr,
            self.proxy_seed, self.max_new_tokens, self.max_prompt_tokens, self._source, len(self.prompts),
        ]  # fmt: skip
        if self.n_members != 1:
            parts.append(("n_members", self.n_members))
        if self.gold_name != "vader":
            parts.append(("gold", self.gold_name))
        parts.append(("code", PROXY_CACHE_VERSION, _package_version()))
        return parts

    def proxy_cache_key(self) -> str:
        """The proxy's cache directory name: a hash of :meth:`proxy_cache_parts`."""
        return hashlib.sha256(repr(self.proxy_cache_parts()).encode()).hexdigest()[:16]

    def _cached_or_fitted(self, cache: bool) -> RewardModel:
        from rlhf_envs.feedback.learned import RewardModel

        key = self.proxy_cache_key()
        path = cache_root() / "proxy" / key
        if not cache:
            return self.fit_proxy()
        record = {"key": key, "version": PROXY_CACHE_VERSION, "parts": repr(self.proxy_cache_parts())}
        with _build_lock(path):
            if (path / "reward_model.json").exists():
                found = self._read_key_file(path)
                if found != record:
                    raise ConfigValueError(
                        f"the cached proxy {str(path)!r} records {found!r}, not {record!r}; it was not written "
                        "by this version of rlhf_envs for these settings. Delete that directory to refit it"
                    )
                return RewardModel.load(path)
            proxy = self.fit_proxy()

            def save(tmp: Path) -> None:
                proxy.save(tmp)
                atomic_io.write_json(tmp / CACHE_KEY_FILE, record, indent=2)

            # Built next to the final place, then renamed: a reader never sees a half-written model
            # (and under the lock no other process of this machine is building it).
            atomic_io.write_directory(path, save, if_exists="keep")
        return proxy

    @staticmethod
    def _read_key_file(path: Path) -> dict[str, Any] | None:
        try:
            return json.loads((path / CACHE_KEY_FILE).read_text())
        except (OSError, ValueError):
            return None

    def fit_proxy(self) -> RewardModel:
        """Sample completions, ask the simulated human, fit a reward model on the task's model."""
        from rlhf_envs.feedback.learned import RewardModel

        eps = sample_completions(self, 2 * self.n_comparisons, seed=self.proxy_seed)
        a, b = eps[0::2], eps[1::2]
        self.human = SimulatedHuman(self.gold, self.rater, seed=self.proxy_seed)
        answers = self.human.compare(a, b)
        proxy = RewardModel(self.model_path, seed=self.proxy_seed, normalize=True, n_members=self.n_members)
        proxy.fit_preferences(a, b, answers.prob_a(), epochs=self.fit_epochs, lr=self.fit_lr)
        return proxy

    def episode_info(self, episode: Episode) -> dict[str, Any]:
        return {"reward_gold": float(score_episodes(self.gold, [episode])[0])}

    def episode_infos(self, batch: EpisodeBatch) -> dict[str, np.ndarray]:
        return {"reward_gold": score_episodes(self.gold, batch).astype(np.float64)}


register_task(SimulatedHumanTask.name, SimulatedHumanTask)  # its env id: rlhf_envs.registration
