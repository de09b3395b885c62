"""Exercises with checkable answers (see ``docs/exercises.md``).

* ``reinforce_exercise.py``: the skeleton of exercise (a), ``solutions/reinforce.py`` its answer;
* ``kl_sweep.py``: the run of exercise (b) (PPO on ``RLHF/Sentiment-v0`` at several KL coefficients);
* ``overoptimization.py``: the run of exercise (c) (PPO against a proxy fitted from a noisy rater);
* ``check.py``: ``python -m docs.exercises.check {reinforce,kl,overopt} ...``.
"""
