"""What :mod:`benchmarks.compare_lm` runs: the tasks, the algorithms with their presets, the budgets.

Everything here is fixed before the full run (see the protocol in :mod:`benchmarks.compare_lm`).
"""

from __future__ import annotations

from dataclasses import dataclass

#: task label -> env id (every one on the embedded default model)
TASKS: dict[str, str] = {
    "sentiment": "RLHF/Sentiment-v0",
    "keywords": "RLHF/Keywords-v0",
    "length": "RLHF/Length-v0",
    "simulated_human": "RLHF/SimulatedHuman-v0",
}

#: algorithm -> preset of :mod:`agents.presets`. No algorithm has a per-task preset for Keywords,
#: Length or SimulatedHuman: every task uses the Sentiment preset with the task's env id.
PRESETS: dict[str, str] = {
    "ppo": "lm-sentiment-demo",
    "a2c": "lm-sentiment-a2c",
    "reinforce": "lm-sentiment-reinforce",
    "rloo": "lm-sentiment-rloo",
    "grpo": "lm-sentiment-grpo",
    "es": "lm-sentiment-es",
    "dpo": "lm-sentiment-dpo",
    "sb3-ppo": "sb3-lm-sentiment",
    "best-of-n": "",
}
#: the custom on-policy agents (class names in :mod:`agents`)
ON_POLICY = {
    "ppo": "PPO",
    "a2c": "A2C",
    "reinforce": "REINFORCE",
    "rloo": "RLOO",
    "grpo": "GRPO",
    "es": "ES",
}
ALGOS: tuple[str, ...] = tuple(PRESETS)

#: the simulated human that labels DPO's comparisons (B-Pref's "Mistake": 10% of answers flipped),
#: the rater RLHF/SimulatedHuman-v0 fits its proxy from
DPO_RATER = "Mistake"
#: all evaluations: prompts of sub-env seeds EVAL_SEED + j (j < eval_episodes), sampling seed EVAL_SEED
EVAL_SEED = 10_000


@dataclass(frozen=True)
class Budget:
    """One suite's budgets (see the protocol in :mod:`benchmarks.compare_lm`)."""

    #: generated tokens per run of every custom on-policy agent
    tokens: int
    #: generated tokens per run of SB3 PPO
    sb3_tokens: int
    #: simulated-human comparisons (pairs) per DPO run
    dpo_pairs: int
    #: completion tokens DPO trains on (both sides of every pair, every epoch)
    dpo_update_tokens: int
    #: completions per evaluation (fixed prompts)
    eval_episodes: int
    #: evaluation points, as fractions of the training budget
    eval_fractions: tuple[float, ...]
    #: best-of-n: samples per prompt and the n of the frontier
    bon_pool: int
    bon_n: tuple[int, ...]
    #: the KL budgets (nats) of the summary's matched-KL columns
    kl_budgets: tuple[float, ...]
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]


FULL = Budget(
    tokens=20_000,
    sb3_tokens=4_608,
    dpo_pairs=512,
    dpo_update_tokens=80_000,
    eval_episodes=128,
    eval_fractions=(0.0, 0.25, 0.5, 0.75, 1.0),
    bon_pool=16,
    bon_n=(1, 2, 4, 8, 16),
    kl_budgets=(1.0, 2.0, 5.0),
    tasks=tuple(TASKS),
    seeds=(0, 1, 2),
)

QUICK = Budget(
    tokens=1_000,
    sb3_tokens=384,
    dpo_pairs=16,
    dpo_update_tokens=800,
    eval_episodes=16,
    eval_fractions=(0.0, 0.5, 1.0),
    bon_pool=4,
    bon_n=(1, 2, 4),
    kl_budgets=(1.0, 2.0, 5.0),
    tasks=("sentiment", "length"),
    seeds=(0,),
)
