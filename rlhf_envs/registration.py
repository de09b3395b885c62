"""Env ids: every one is registered here, and only here, when ``rlhf_envs`` is imported.

Each id is a task name plus default task parameters, with a single-env ``entry_point`` and a
natively batched ``vector_entry_point``. No ``max_episode_steps``: the envs truncate themselves at
the task's token budget, so no ``TimeLimit`` wrapper is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

NAMESPACE = "RLHF"


@dataclass(frozen=True)
class EnvEntry:
    """One registered id: its task, the task's default parameters and its kind.

    ``kind`` is ``"toy"`` (tiny character vocabulary, no language model) or ``"language"`` (a
    causal language model writes the text).
    """

    id: str
    task: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    kind: str = "language"


ENTRIES: list[EnvEntry] = [
    EnvEntry(f"{NAMESPACE}/Copy-v0", "copy", description="repeat a 2-6 letter string", kind="toy"),
    EnvEntry(
        f"{NAMESPACE}/Reverse-v0", "reverse", description="write a 2-6 letter string backwards", kind="toy"
    ),
    EnvEntry(f"{NAMESPACE}/Sort-v0", "sort", description="sort 2-6 digits", kind="toy"),
    EnvEntry(
        f"{NAMESPACE}/Addition-v0", "addition", description="add two numbers of up to 2 digits", kind="toy"
    ),
    EnvEntry(
        f"{NAMESPACE}/Sentiment-v0",
        "sentiment",
        description="continue a review opening with positive sentiment (VADER)",
    ),
    EnvEntry(f"{NAMESPACE}/Keywords-v0", "keywords", description="use one to three given words, fluently"),
    EnvEntry(f"{NAMESPACE}/Length-v0", "length", description="write the asked number of words, then stop"),
    EnvEntry(
        f"{NAMESPACE}/SimulatedHuman-v0",
        "simulated_human",
        description="sentiment judged by a reward model fitted from a simulated human; gold in info",
    ),
    EnvEntry(
        f"{NAMESPACE}/HumanRatedReview-v0",
        "human_rated_review",
        description="continue a held-out real review opening; judged by a reward model of real people's ratings",
    ),
    EnvEntry(
        f"{NAMESPACE}/ImplicitFeedback-v0",
        "implicit_feedback",
        description="sentiment rewarded by a simulated user's clicks and dwell (position-debiased); gold in info",
    ),
]


#: the toy-task ids (character vocabulary, no language model)
TOY_IDS: list[str] = [e.id for e in ENTRIES if e.kind == "toy"]


def register_envs() -> None:
    """Register every entry with gymnasium (idempotent)."""
    for e in ENTRIES:
        if e.id in gym.registry:
            continue
        gym.register(
            id=e.id,
            entry_point="rlhf_envs.envs.text_env:TextGenerationEnv",
            vector_entry_point="rlhf_envs.envs.vector_env:TextGenerationVectorEnv",
            kwargs={"task": e.task, **e.kwargs},
        )


def list_envs() -> list[str]:
    """The ids registered by this package, in registration order."""
    return [e.id for e in ENTRIES]
