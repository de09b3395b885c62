"""Feedback models: the reward side of RLHF.

``FeedbackModel`` is the protocol (batched ``score(episodes) -> float32[B]``); ``Episode`` is what a
feedback model sees. Kinds live in submodules: ``scripted`` (rules), and in later versions
``learned`` (reward models) and ``simulated`` (a simulated human with a hidden gold utility).
"""

from rlhf_envs.feedback.base import Episode, EpisodeBatch, FeedbackModel, score_episodes, validate_scores

__all__ = ["Episode", "EpisodeBatch", "FeedbackModel", "score_episodes", "validate_scores"]
