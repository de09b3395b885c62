"""Tasks: prompt source + feedback model + limits, one per env id."""

from rlhf_envs.tasks import language, toy  # noqa: F401  (registers the toy and language tasks)
from rlhf_envs.tasks.base import Prompt, Task, make_task, register_task, task_names

__all__ = ["Prompt", "Task", "make_task", "register_task", "task_names"]

from rlhf_envs.tasks import simulated_human  # noqa: E402,F401  (registers the simulated-human task)
