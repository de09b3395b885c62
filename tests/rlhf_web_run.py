"""The real ``rlhf-envs rlhf --human web --port 0`` command in a child process, for the end-to-end tests.

:class:`LoopProcess` starts the CLI with tiny budgets (a round takes seconds on one thread), reads
the ``rating page: URL`` line it prints, keeps draining its output (so the child never blocks on a
full pipe) and can wait for it or SIGKILL it. :func:`run_files` reads what the loop saved.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

#: one round of 3 pairwise queries, then a round without queries (the budget is spent) in which PPO
#: keeps optimising the reward model fitted on the web answers; everything tiny
TINY = [
    "--queries",
    "3",
    "--members",
    "2",
    "--selection",
    "random",
    "--ppo-tokens",
    "16",
    "--threads",
    "1",
    "--set",
    "eval_episodes=2",
    "--set",
    "max_new_tokens=4",
    "--set",
    "n_envs=2",
    "--set",
    "pool_factor=1",
    "--set",
    "rm_epochs=1",
]


class LoopProcess:
    """``python -m rlhf_envs.cli rlhf --human web --db DB --port 0 --out RUN ...`` as a child process."""

    def __init__(
        self, db: Path, run: Path, *args: str, experiment: str = "e2e", timeout: float = 120.0
    ) -> None:
        self.cmd = [
            sys.executable,
            "-m",
            "rlhf_envs.cli",
            "rlhf",
            "--human",
            "web",
            "--db",
            str(db),
            "--port",
            "0",
            "--experiment",
            experiment,
            "--out",
            str(run),
            *args,
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            self.cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._url = threading.Event()
        self.url = ""
        threading.Thread(target=self._read, daemon=True).start()
        if not self._url.wait(timeout) or not self.url:
            self.kill()
            raise AssertionError(f"no 'rating page:' line from {' '.join(self.cmd)}:\n{self.output}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith("rating page: ") and not self.url:
                self.url = line.split(": ", 1)[1].strip()
                self._url.set()
        self._url.set()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for_output(self, text: str, timeout: float = 120.0) -> None:
        """Wait until ``text`` appears in the child's output (fail if it exits first)."""
        t0 = time.monotonic()
        while text not in self.output:
            if self.proc.poll() is not None or time.monotonic() - t0 > timeout:
                raise AssertionError(f"{text!r} did not appear (exit {self.proc.poll()}):\n{self.output}")
            time.sleep(0.05)

    def wait(self, timeout: float = 300.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{' '.join(self.cmd)} did not finish in {timeout} s:\n{self.output}"
            ) from None

    def kill(self) -> None:
        """SIGKILL the child (no clean-up runs: as a crash or an OOM kill would)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def run_files(run: Path) -> dict[str, Any]:
    """The run's ``state.json`` and the feedback of its newest committed round."""
    state = json.loads((run / "state.json").read_text())
    rounds = sorted((run / "rounds").glob("round_*/feedback.json"))
    feedback = json.loads(rounds[-1].read_text()) if rounds else None
    return {"state": state, "feedback": feedback}
