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

So the agents train on :data:`DEFAULT_TRAIN_THREADS` = 1 thread unless told otherwise:
``PPO(..., threads=4)`` or ``rlhf-envs train|rlhf|demo --threads 4`` on an idle machine with cores
to spare (worth trying for the LM policy), ``threads=None`` to leave torch's setting as it is.
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


def set_training_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads to ``threads`` (``None``: :data:`DEFAULT_TRAIN_THREADS`).

    Returns the previous count. For the command line, where the process is ours.
    """
    import torch

    from rlhf_envs.errors import ConfigError

    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(
            f"threads must be None (the default, {DEFAULT_TRAIN_THREADS}) or an int >= 1, got {threads!r}"
        )
    previous = torch.get_num_threads()
    torch.set_num_threads(DEFAULT_TRAIN_THREADS if threads is None else threads)
    return previous


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block on ``threads`` torch threads and restore the previous count afterwards.

    ``None`` leaves torch's setting alone (the caller manages it).
    """
    if threads is None:
        yield
        return
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
    """Decorate an agent method to run on ``self.config.threads`` torch threads (see above)."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> T:
        with torch_threads(self.config.threads):
            return method(self, *args, **kwargs)

    return wrapper
