"""Fitting the loop's reward model: a bootstrap ensemble refitted from scratch on all feedback so far."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from agents.rlhf.config import RLHFConfig
from rlhf_envs.feedback.base import Episode

if TYPE_CHECKING:
    from rlhf_envs.feedback.learned import RewardModel


def fit_reward_model(
    config: RLHFConfig,
    a: Sequence[Episode],
    b: Sequence[Episode],
    labels: Sequence[float | None],
    seed: int,
) -> tuple[RewardModel, dict[str, Any]]:
    """A fresh reward-model ensemble fitted on all pairs ``(a[i], b[i])`` with the human's ``labels``.

    The loop's recipe (``config.n_members``, ``aggregate``, ``rm_epochs``, ``rm_lr``,
    ``rm_random_fraction``; normalised scores; no held-out split: every answer is used), on
    ``config.model``. Returns the model and ``{"rm_train_loss", "rm_pairs"}`` (the loop's log
    columns). ``seed`` seeds the ensemble; torch's global generator is restored after the fit.
    """
    from rlhf_envs.feedback.learned import RewardModel

    with _quiet_transformers():
        reward_model = RewardModel(
            None if config.model == "default" else config.model,
            n_members=config.n_members,
            aggregate=config.aggregate,
            normalize=True,
            seed=seed,
        )
    from agents.distributed import World

    world = World.current()  # data-parallel when launched with torchrun (every rank holds the labels)
    with _quiet_transformers(), torch.random.fork_rng(devices=[]):
        report = reward_model.fit_preferences(
            a,
            b,
            labels,
            random_fraction=config.rm_random_fraction,
            epochs=config.rm_epochs,
            lr=config.rm_lr,
            val_fraction=0.0,
            data_parallel=world if world.active else None,
        )
    return reward_model, {"rm_train_loss": float(np.mean(report.train_loss)), "rm_pairs": report.n_train}


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
