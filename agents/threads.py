"""How many CPU threads torch uses while the agents train: one, unless the user asks for more.

torch's default is one thread per core. That is right for big matrix products on an idle machine
and badly wrong for what the agents do on a laptop CPU: many small operations (MLP and small
transformer policies, a 4-layer LM decoding one token at a time), where every operation pays a
synchronisation of all threads, and a core that another process is using stalls all of them.
Measured on the project's 2-core machine while other jobs ran (``/tmp``-style script in the
issue 15 note: PPO, same seed, the two settings interleaved, two repetitions):

=====================================  ==========  ===========
run                                    1 thread    2 threads
=====================================  ==========  ===========
CartPole-v1, MLP, 4,096 steps          2.7-4.6 s   109-131 s
RLHF/Sentiment-v0, LM, 256 tokens      2.6 s       23-35 s
=====================================  ==========  ===========

So the agents train on :data:`DEFAULT_TRAIN_THREADS` = 1 thread unless told otherwise: per agent
with ``PPO(..., threads=4)``, or for the whole process with :func:`set_training_threads` (what
``rlhf-envs train|rlhf|demo --threads 4`` and the benchmarks' ``init_torch`` do), on an idle
machine with cores to spare (worth trying for the LM policy). An agent sets its count while it
learns, evaluates or samples and puts torch's previous count back afterwards.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

#: torch threads while training when the user does not say (see the module docstring)
DEFAULT_TRAIN_THREADS = 1
#: how the default reads in ``--help`` texts
DEFAULT_TRAIN_THREADS_HELP = f"{DEFAULT_TRAIN_THREADS}, fastest for these small models and on a busy machine"


#: the count chosen for this process by :func:`set_training_threads` (``None``: nobody chose)
_process_choice: int | None = None


def set_training_threads(threads: int | None = None) -> int:
    """Choose the process's training threads (``None``: :data:`DEFAULT_TRAIN_THREADS`) and set torch.

    Agents built with ``threads=None`` (the default) follow this choice. Returns torch's previous
    count. For the command line and scripts, where the process is the caller's.
    """
    import torch

    from rlhf_envs.errors import ConfigError

    global _process_choice
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(
            f"threads must be None (the default, {DEFAULT_TRAIN_THREADS}) or an int >= 1, got {threads!r}"
        )
    _process_choice = DEFAULT_TRAIN_THREADS if threads is None else threads
    previous = torch.get_num_threads()
    torch.set_num_threads(_process_choice)
    return previous


def training_threads(threads: int | None = None) -> int:
    """The thread count an agent with config ``threads`` uses: ``threads`` itself, else the
    process's choice (:func:`set_training_threads`), else :data:`DEFAULT_TRAIN_THREADS`."""
    if threads is not None:
        return threads
    return _process_choice if _process_choice is not None else DEFAULT_TRAIN_THREADS


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block on ``threads`` torch threads and restore the previous count afterwards."""
    import torch

    previous = torch.get_num_threads()
    if previous != threads:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def uses_config_threads(method: Callable[..., T]) -> Callable[..., T]:
    """Decorate an agent method to run on :func:`training_threads` of ``self.config.threads``."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> T:
        with torch_threads(training_threads(self.config.threads)):
            return method(self, *args, **kwargs)

    return wrapper
