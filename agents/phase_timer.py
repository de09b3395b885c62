"""Where an on-policy iteration's wall time goes: named phases timed on demand, free when off.

Every agent has a :class:`PhaseTimer` (``agent.phases``), switched off. The LM rollout and the
PPO / RLOO / GRPO updates mark their phases with ``with agent.phases("update.backward"): ...``;
while the timer is off that is one attribute check and a shared no-op context, so training pays
nothing for it. ``benchmarks/throughput.py`` switches it on to report the share of time in
sampling, the env (rewards), the reference and value passes, and in the update's forward,
backward, gradient clipping and optimiser step.

Torch runs synchronously on the CPU, so wall-clock marks around a call time its work. On a GPU
they would time only the launch: the timer is a CPU tool.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

_OFF = contextlib.nullcontext()


class PhaseTimer:
    """Accumulated wall seconds and call counts per phase name (``enabled`` False: no timing)."""

    def __init__(self, enabled: bool = False) -> None:
        self.enabled = bool(enabled)
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def __call__(self, name: str) -> contextlib.AbstractContextManager[None]:
        """A context that adds its wall time to ``name`` (a shared no-op while off)."""
        return self._timed(name) if self.enabled else _OFF

    @contextlib.contextmanager
    def _timed(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
            self.calls[name] = self.calls.get(name, 0) + 1

    def reset(self) -> None:
        """Forget what was timed so far."""
        self.seconds.clear()
        self.calls.clear()

    def snapshot(self) -> dict[str, float]:
        """A copy of the seconds per phase."""
        return dict(self.seconds)
