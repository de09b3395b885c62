"""Course material for rlhf_envs: the tutorial, the exercises and their checker.

``docs`` is a package only so that ``python -m docs.exercises.check ...`` works from the repository
root; it is not installed with ``rlhf_envs``.
"""
