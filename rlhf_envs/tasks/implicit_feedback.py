"""``RLHF/ImplicitFeedback-v0``: the reward comes from a simulated user's clicks and dwell times.

The prompts, model and limits are those of ``RLHF/Sentiment-v0``. When an episode ends, its
completion is shown to a :class:`~rlhf_envs.feedback.click_user.ClickUser` at a uniformly random
position of a page of ``list_size`` results (the position and all of the user's randomness come
from the episode's seed). The user's hidden gold utility is the Sentiment task's score (VADER
compound of the continuation, in [-1, 1]): the same gold as ``RLHF/Sentiment-v0`` and
``RLHF/SimulatedHuman-v0``, so results compare across the three ids. The env pays the reward of
the ``estimator`` (:data:`~rlhf_envs.feedback.implicit.ESTIMATORS`): ``"raw"`` clicks,
``"satisfied"`` clicks (dwell >= ``dwell_threshold`` seconds), ``"debiased"`` (the default: clicks
weighted by the inverse of the estimated examination propensity of their position) or
``"debiased_satisfied"``. The final step's ``info`` reports ``reward_gold`` (never paid),
``click``, ``dwell`` and ``position``.

The debiased estimators need examination propensities. They are estimated, as a live system
would, from a randomised swap experiment (:mod:`rlhf_envs.feedback.propensity`) run when the task is
built: ``calibration_prompts`` task prompts, ``list_size`` completions of each by the task's own
model (the "production traffic", at most 16 tokens each so building the env stays quick), shown ``swap_impressions`` times with the top result swapped
with a random position. Only the logged clicks enter the estimate; the user's examination curve is
never read. The estimate is memoised per process for identical settings. Passing
``propensities=[...]`` (one relative propensity per position, top = 1) skips the experiment.

Task arguments (besides those of the sentiment task: ``model``, ``prompts``, ``max_new_tokens``,
``kl_coef``, ...): ``estimator`` ("debiased"), ``list_size`` (5, in [1, 100]), ``position_bias``
(1.0: examination ``(1 / rank) ** position_bias``, 0 = no position bias, in [0, 10]),
``abandonment`` (0.1, in [0, 1)), ``dwell_threshold`` (20 s, in (0, 1e6]), ``clip`` (0.05: floor
on the propensities in IPW, in (0, 1]), ``propensities`` (None), ``swap_impressions`` (20000, in
[100, 10**6]), ``calibration_prompts`` (16, in [1, 256]; times ``list_size`` at most 256),
``calibration_seed`` (0).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from rlhf_envs.errors import ConfigError, ConfigValueError
from rlhf_envs.feedback.base import Episode, EpisodeBatch, score_episodes
from rlhf_envs.feedback.click_user import ClickUser, ClickUserConfig
from rlhf_envs.feedback.implicit import ESTIMATORS, ImplicitFeedback, check_propensities
from rlhf_envs.feedback.propensity import (
    PropensityEstimate,
    estimate_examination,
    swap_positions,
)
from rlhf_envs.tasks.base import check_float_range, check_int_range, register_task
from rlhf_envs.tasks.language import SentimentTask

ENV_ID = "RLHF/ImplicitFeedback-v0"
#: swap-experiment estimates already computed in this process, by everything that determines them
_CALIBRATIONS: dict[tuple, PropensityEstimate] = {}
#: longest completion the swap experiment samples (any utilities serve the estimator; this keeps
#: building the env quick whatever ``max_new_tokens`` is)
CALIBRATION_TOKENS = 16
#: most completions the swap experiment samples (calibration_prompts x list_size)
MAX_CALIBRATION_COMPLETIONS = 256


class ImplicitFeedbackTask(SentimentTask):
    """Sentiment steering rewarded by a simulated user's implicit feedback (see module doc)."""

    name = "implicit_feedback"

    def __init__(
        self,
        estimator: str = "debiased",
        list_size: int = 5,
        position_bias: float = 1.0,
        abandonment: float = 0.1,
        dwell_threshold: float = 20.0,
        clip: float = 0.05,
        propensities: Sequence[float] | None = None,
        swap_impressions: int = 20_000,
        calibration_prompts: int = 16,
        calibration_seed: int = 0,
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
        name = self.name
        # the cheap checks first, before any model is loaded
        if not isinstance(estimator, str) or estimator not in ESTIMATORS:
            raise ConfigError(f"{name}: estimator must be one of {ESTIMATORS}, got {estimator!r}")
        list_size = check_int_range("list_size", list_size, 1, 100, name)
        position_bias = check_float_range("position_bias", position_bias, name, 0.0, 10.0)
        abandonment = check_float_range("abandonment", abandonment, name, 0.0, 1.0, high_open=True)
        self.dwell_threshold = check_float_range(
            "dwell_threshold", dwell_threshold, name, 0.0, 1e6, low_open=True
        )
        self.clip = check_float_range("clip", clip, name, 0.0, 1.0, low_open=True)
        self.swap_impressions = check_int_range("swap_impressions", swap_impressions, 100, 10**6, name)
        self.calibration_prompts = check_int_range("calibration_prompts", calibration_prompts, 1, 256, name)
        if self.calibration_prompts * list_size > MAX_CALIBRATION_COMPLETIONS:
            raise ConfigValueError(
                f"{name}: calibration_prompts x list_size = {self.calibration_prompts} x {list_size} completions; "
                f"the swap experiment samples at most {MAX_CALIBRATION_COMPLETIONS}: lower one of them"
            )
        self.calibration_seed = check_int_range("calibration_seed", calibration_seed, 0, 2**63 - 1, name)
        if propensities is not None:
            propensities = check_propensities(propensities, list_size, f"{name}: propensities")
        self.estimator = estimator
        self.user = ClickUser(
            ClickUserConfig(list_size=list_size, position_bias=position_bias, abandonment=abandonment)
        )
        super().__init__(
            model, prompts, max_new_tokens, max_prompt_tokens, kl_coef, ref_temperature, reference,
            ref_logprobs, device, dtype,
        )  # fmt: skip
        self.gold = self.feedback  # the Sentiment task's score: the user's hidden utility
        self.propensity_estimate: PropensityEstimate | None = None
        if propensities is None and estimator.startswith("debiased"):
            self.propensity_estimate = self.estimate_propensities()
            propensities = self.propensity_estimate.relative
        self.implicit = ImplicitFeedback(
            self.gold, self.user, estimator, propensities, self.dwell_threshold, self.clip
        )
        self.feedback = self.implicit

    def calibration_lists(self) -> tuple[list[Episode], np.ndarray]:
        """The swap experiment's traffic: ``list_size`` completions by the task's model (at most
        :data:`CALIBRATION_TOKENS` tokens long) for each of ``calibration_prompts`` prompts, and their gold utilities as ``(prompts, list_size)`` lists
        in logged order (the order they were sampled: an uninformative production ranker)."""
        import torch

        from rlhf_envs.lm.sampling import sample_with_logprobs

        k = self.user.list_size
        rng = np.random.default_rng([self.calibration_seed, 18])
        gen = torch.Generator().manual_seed(self.calibration_seed)
        prompts = [self.sample_prompt(rng) for _ in range(self.calibration_prompts)]
        rows = [p for p in prompts for _ in range(k)]
        tok = self.tokenizer
        comps: list[list[int]] = []
        for start in range(0, len(rows), 64):
            chunk = [p.ids for p in rows[start : start + 64]]
            n_new = min(self.max_new_tokens, CALIBRATION_TOKENS)
            c, _ = sample_with_logprobs(self.lm, chunk, n_new, tok.eos_id, gen, tok.vocab_size)
            comps.extend(c)
        eps = [
            Episode(
                p.text, tok.decode(c), p.ids, tuple(c), bool(c) and c[-1] == tok.eos_id, dict(p.metadata), i
            )
            for i, (p, c) in enumerate(zip(rows, comps, strict=True))
        ]
        gold = score_episodes(self.gold, eps).astype(np.float64).reshape(len(prompts), k)
        return eps, gold

    def estimate_propensities(self) -> PropensityEstimate:
        """Run the swap experiment on :meth:`calibration_lists` (memoised per process)."""
        k = self.user.list_size
        if k == 1:
            one = np.ones(1)
            return PropensityEstimate(one, np.zeros(1), np.array([self.swap_impressions]), one)
        key = (
            self.model_path, min(self.max_new_tokens, CALIBRATION_TOKENS), self.max_prompt_tokens, self._source,
            tuple(repr(r) for _, r in self.records), self.user.config, self.swap_impressions,
            self.calibration_prompts, self.calibration_seed,
        )  # fmt: skip
        if key in _CALIBRATIONS:
            return _CALIBRATIONS[key]
        _, lists = self.calibration_lists()
        rng = np.random.default_rng([self.calibration_seed, 1818])
        n = self.swap_impressions
        shown_list = rng.integers(len(lists), size=n)
        swap_to = swap_positions(n, k, (k - 1) / k, rng)
        # Under the position-based model a click on the logged top result depends only on where it
        # is shown and on its utility, not on the rest of the page: simulate just that result.
        keys = rng.integers(0, 2**63, size=n, dtype=np.int64)
        user = ClickUser(self.user.config, seed=self.calibration_seed)
        top_clicked = user.simulate_single(lists[shown_list, 0], swap_to, keys).clicked[:, 0]
        try:
            est = estimate_examination(swap_to, top_clicked, k)
        except ConfigValueError as exc:
            raise ConfigValueError(
                f"{self.name}: the swap experiment could not estimate the propensities ({exc}); raise "
                "swap_impressions or pass propensities=[...]"
            ) from None
        _CALIBRATIONS[key] = est
        return est

    def episode_info(self, episode: Episode) -> dict[str, Any]:
        return {k: v[0].item() for k, v in self._signals([episode]).items()}

    def episode_infos(self, batch: EpisodeBatch) -> dict[str, np.ndarray]:
        return self._signals(batch)

    def _signals(self, episodes: Sequence[Episode]) -> dict[str, np.ndarray]:
        s = self.implicit.signals(episodes)
        return {
            "reward_gold": s["reward_gold"],
            "click": s["click"],
            "dwell": s["dwell"],
            "position": s["position"],
        }


register_task(ImplicitFeedbackTask.name, ImplicitFeedbackTask)  # its env id: rlhf_envs.registration
