"""Tasks: prompt source + feedback model + limits, one per env id.

Importing this package registers every task class under its name (``copy``, ``sentiment``,
``simulated_human``, ``implicit_feedback``, ...); the env ids that use them are registered in one place,
:mod:`rlhf_envs.registration`. Look a task class up with :func:`task_class`.
"""

from rlhf_envs.tasks import (  # noqa: F401  (register their task classes)
    human_rated,
    implicit_feedback,
    language,
    simulated_human,
    toy,
)
from rlhf_envs.tasks.base import (
    Prompt,
    PromptBatch,
    ReferenceModelSpec,
    Task,
    make_task,
    register_task,
    task_class,
    task_names,
    task_parameters,
)

__all__ = [
    "Prompt",
    "PromptBatch",
    "ReferenceModelSpec",
    "Task",
    "make_task",
    "register_task",
    "task_class",
    "task_names",
    "task_parameters",
]
