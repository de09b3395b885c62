"""The comparison's suites (envs, budgets, thresholds) and the preset each algorithm runs with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: every algorithm the comparison knows: the custom agents, then Stable-Baselines3 / sb3-contrib
ALGOS = ("ppo", "reinforce", "a2c", "sb3-ppo", "sb3-a2c", "sb3-dqn", "sb3-maskable_ppo")


@dataclass(frozen=True)
class EnvSpec:
    """One env of a suite: the id, its ``gym.make`` options, the budget and the score threshold."""

    label: str
    env_id: str
    timesteps: int
    threshold: float
    eval_episodes: int
    env_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def is_text(self) -> bool:
        """True for the rlhf token envs (trained through the native vector env)."""
        return self.env_id.startswith("RLHF/")


#: the quick suite: small enough for a CI smoke test (every algorithm, a few thousand steps each)
QUICK = (
    EnvSpec("Copy-2x3", "RLHF/Copy-v0", 2_048, 0.5, 32, dict(min_length=1, max_length=2, n_symbols=3)),
    EnvSpec("CartPole-v1", "CartPole-v1", 2_048, 100.0, 5),
)
#: the full suite (run time and results in the README): a reduced Copy task (1-3 of 4 letters), the
#: standard Copy task (2-6 of 8 letters) on a budget far below what solving it takes with these
#: settings (~500k tokens; ~200k with the "toy-copy" preset, ``benchmarks/toy_tasks.py``), so it
#: shows early learning speed, and CartPole-v1
FULL = (
    EnvSpec("Copy-3x4", "RLHF/Copy-v0", 30_000, 0.9, 200, dict(min_length=1, max_length=3, n_symbols=4)),
    EnvSpec("Copy", "RLHF/Copy-v0", 30_000, 0.5, 200),
    EnvSpec("CartPole-v1", "CartPole-v1", 50_000, 475.0, 20),
)
SUITES = {"quick": QUICK, "full": FULL}

#: presets (agents/presets.py) on the token envs. The custom agents share the masked small-transformer
#: policy of toy_tasks.py's 500k-token results (before "toy-copy" gained anchor_token; kept so the
#: committed ``compare*`` results stay reproducible), each with its own update rule; SB3 runs the
#: settings that learned fastest per wall-clock second in ``benchmarks/sb3_toy.py``.
TEXT_PRESETS: dict[str, str] = {
    "ppo": "toy-transformer-ppo",
    "reinforce": "toy-transformer-reinforce",
    "a2c": "toy-transformer-a2c",
    "sb3-ppo": "sb3-toy-fast-ppo",
    "sb3-maskable_ppo": "sb3-toy-fast-ppo",
    "sb3-a2c": "sb3-toy-fast-a2c",
    "sb3-dqn": "sb3-toy-fast-dqn",
}
#: presets on ordinary Gymnasium envs: rl-zoo's CartPole settings where it has them, the agents'
#: defaults otherwise (MaskablePPO needs an action mask CartPole does not offer: not applicable)
GYM_PRESETS: dict[str, str] = {
    "ppo": "cartpole-zoo",
    "reinforce": "cartpole-reinforce",
    "a2c": "cartpole-a2c",
    "sb3-ppo": "sb3-cartpole-zoo-ppo",
    "sb3-a2c": "sb3-cartpole-zoo-a2c",
    "sb3-dqn": "sb3-cartpole-zoo-dqn",
}


def preset_for(algo: str, spec: EnvSpec) -> str | None:
    """The preset ``algo`` runs with on ``spec`` (``None``: the algorithm does not apply there)."""
    return (TEXT_PRESETS if spec.is_text else GYM_PRESETS).get(algo)
