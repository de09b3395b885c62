"""Prefix scorers (dense, per-token feedback): a potential for every prefix of an episode.

``PrefixScorer`` is the protocol (``score_states`` / ``score_prefixes``); the kinds are
:class:`ScriptedPrefixScorer` (the task's score of every prefix), :class:`LearnedPrefixScorer` (a
reward model's head at every position, one forward pass per episode) and
:class:`SimulatedTokenMarker` (a simulated person marking tokens or spans good or bad). The env turns
any of them into per-token rewards by potential-based shaping
(:class:`rlhf_envs.envs.shaping.PotentialShaping`, env option ``shaping={"potential": ...}``).
"""

from rlhf_envs.feedback.prefix.base import PrefixScorer, as_batch
from rlhf_envs.feedback.prefix.learned import LearnedPrefixScorer, TokenAligner
from rlhf_envs.feedback.prefix.marks import SimulatedTokenMarker
from rlhf_envs.feedback.prefix.scripted import ScriptedPrefixScorer

__all__ = [
    "LearnedPrefixScorer",
    "PrefixScorer",
    "ScriptedPrefixScorer",
    "SimulatedTokenMarker",
    "TokenAligner",
    "as_batch",
]
