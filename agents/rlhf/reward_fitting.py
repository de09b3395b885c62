"""Fitting the loop's reward model: a bootstrap ensemble refitted from scratch on all feedback so far
(Bradley-Terry on pairwise answers, or regression on Likert ratings)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from agents.rlhf.config import RLHFConfig
from rlhf_envs.errors import ConfigError
from rlhf_envs.feedback.base import Episode

if TYPE_CHECKING:
    from rlhf_envs.feedback.learned import RewardModel


def token_mark_targets(human: Any) -> list[tuple[Episode, np.ndarray]]:
    """The per-token answers a human has given so far, as ``(episode, marks)`` dense targets.

    People on the rating page (:class:`agents.human.web_human.WebHuman`: it has ``store`` and
    ``experiment``) answer per-token queries in the label store; every such answer of the
    experiment is read back through the store's public API
    (:func:`agents.human.web_human.token_targets`: per completion token the mean mark over raters).
    Answers whose episode lacks token ids (nothing to align the marks with) are left out. Other
    humans give none: ``[]``.
    """
    store, experiment = getattr(human, "store", None), getattr(human, "experiment", None)
    if store is None or experiment is None:
        return []
    from agents.human.web_human import token_targets

    return [
        (ep, np.asarray(marks, dtype=np.float64))
        for ep, marks in token_targets(store, experiment)
        if ep.prompt_ids and len(ep.completion_ids) == len(marks)
    ]


def fit_reward_model(
    config: RLHFConfig,
    a: Sequence[Episode],
    b: Sequence[Episode],
    labels: Sequence[float | None],
    seed: int,
    token_marks: Sequence[tuple[Episode, np.ndarray]] = (),
) -> tuple[RewardModel, dict[str, Any]]:
    """A fresh reward-model ensemble fitted on all pairs ``(a[i], b[i])`` with the human's ``labels``.

    The loop's recipe (``config.n_members``, ``aggregate``, ``rm_epochs``, ``rm_lr``,
    ``rm_random_fraction``; normalised scores; no held-out split: every answer is used), on
    ``config.model``. Returns the model and ``{"rm_train_loss", "rm_pairs"}`` (the loop's log
    columns). ``seed`` seeds the ensemble; torch's global generator is restored after the fit.

    ``token_marks`` (``(episode, marks)`` pairs, e.g. :func:`token_mark_targets` of the web human)
    are dense per-token targets: after the preference fit the same ensemble is fitted on them with
    :meth:`RewardModel.fit_token_marks <rlhf_envs.feedback.learned.RewardModel.fit_token_marks>`
    (same epochs and learning rate), so the preference fit is its starting point and the final
    scores are in marks (net good minus bad tokens). The log then adds ``rm_mark_episodes`` and
    ``rm_marks_loss``.
    """
    reward_model = _new_reward_model(config, seed)
    with _quiet_transformers(), torch.random.fork_rng(devices=[]):
        report = reward_model.fit_preferences(
            a,
            b,
            labels,
            random_fraction=config.rm_random_fraction,
            epochs=config.rm_epochs,
            lr=config.rm_lr,
            val_fraction=0.0,
            data_parallel=_data_parallel(),
        )
    log = {
        "rm_train_loss": float(np.mean(report.train_loss)),
        "rm_pairs": report.n_train,
        "rm_labels": report.n_train,
    }
    return reward_model, _fit_token_marks(reward_model, config, token_marks, log)


def fit_reward_model_on_ratings(
    config: RLHFConfig,
    items: Sequence[Episode],
    ratings: Sequence[float | None],
    seed: int,
    token_marks: Sequence[tuple[Episode, np.ndarray]] = (),
) -> tuple[RewardModel, dict[str, Any]]:
    """A fresh reward-model ensemble regressed on the human's Likert ``ratings`` of ``items``.

    The same recipe as :func:`fit_reward_model` (``rm_random_fraction`` aside: it models random
    *pairwise* answers); skipped ratings (``None``) are left out. Returns the model and
    ``{"rm_train_loss", "rm_ratings", "rm_labels"}`` (the number of ratings fitted);
    ``token_marks`` as in :func:`fit_reward_model`.
    """
    if len(items) != len(ratings):
        raise ConfigError(f"{len(items)} rated episodes but {len(ratings)} ratings")
    keep = [i for i, y in enumerate(ratings) if y is not None]
    reward_model = _new_reward_model(config, seed)
    with _quiet_transformers(), torch.random.fork_rng(devices=[]):
        report = reward_model.fit_ratings(
            [items[i] for i in keep],
            [float(ratings[i]) for i in keep],
            epochs=config.rm_epochs,
            lr=config.rm_lr,
            val_fraction=0.0,
            data_parallel=_data_parallel(),
        )
    log = {
        "rm_train_loss": float(np.mean(report.train_loss)),
        "rm_ratings": report.n_train,
        "rm_labels": report.n_train,
    }
    return reward_model, _fit_token_marks(reward_model, config, token_marks, log)


def _new_reward_model(config: RLHFConfig, seed: int) -> RewardModel:
    from rlhf_envs.feedback.learned import RewardModel

    with _quiet_transformers():
        return RewardModel(
            None if config.model == "default" else config.model,
            n_members=config.n_members,
            aggregate=config.aggregate,
            normalize=True,
            seed=seed,
        )


def _data_parallel() -> Any:
    """The torchrun world when launched with torchrun (every rank holds all the labels and fits its
    share of each batch), else ``None``."""
    from agents.distributed import World

    world = World.current()
    return world if world.active else None


def _fit_token_marks(
    reward_model: RewardModel,
    config: RLHFConfig,
    token_marks: Sequence[tuple[Episode, np.ndarray]],
    log: dict[str, Any],
) -> dict[str, Any]:
    """Fit the already-fitted ``reward_model`` on per-token marks (dense targets), if any; adds
    ``rm_mark_episodes`` and ``rm_marks_loss`` to ``log``."""
    if token_marks:
        with _quiet_transformers(), torch.random.fork_rng(devices=[]):
            marks_report = reward_model.fit_token_marks(
                [ep for ep, _ in token_marks],
                [m for _, m in token_marks],
                epochs=config.rm_epochs,
                lr=config.rm_lr,
                val_fraction=0.0,
                data_parallel=_data_parallel(),
            )
        log["rm_mark_episodes"] = marks_report.n_train
        log["rm_marks_loss"] = float(np.mean(marks_report.train_loss))
    return log


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report (a fresh score head is "missing" by design) for a block."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
