"""Feedback models: the reward side of RLHF.

``FeedbackModel`` is the protocol (batched ``score(episodes) -> float32[B]``); ``Episode`` is what a
feedback model sees. Kinds live in submodules (imported on demand, so rules do not pull in torch):
``scripted`` (rules and their combinations), ``learned`` (``RewardModel``: reward models fitted from
ratings, preferences or rankings) and ``simulated`` (``SimulatedHuman``: a hidden gold utility seen
through a noisy, biased, budgeted rater), ``fluency`` (rewards gated by fluency under a frozen
language model: the keyword task's reward, the fluent-sentiment gold), implicit feedback
(``click_user``: a simulated user's clicks, dwell and abandonment; ``propensity``: examination
propensities from randomised swaps; ``implicit``: raw, satisfied and position-debiased click
rewards). ``review_fixtures``
generates seeded reviews (and a word tokenizer, a tiny GPT-2 config) for tests and benchmarks. Feedback never imports tasks or envs: a task picks its feedback, not the reverse.
"""

from rlhf_envs.feedback.base import Episode, EpisodeBatch, FeedbackModel, score_episodes, validate_scores

__all__ = ["Episode", "EpisodeBatch", "FeedbackModel", "score_episodes", "validate_scores"]
