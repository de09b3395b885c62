"""Killed checkpoint writes (issue 15, item 2): every checkpoint loads, at most one temporary is left.

A forked child saves the same agent to ``<dir>/last`` over and over (bumping its step counter each
time); the parent ``SIGKILL``s it at seeded random moments, then looks at the directory: at most
one stray temporary (``last.tmp-*`` or ``.last.*.tmp``) may be there, and the checkpoint must load
(from ``last`` or, after a kill between the two renames, from ``last.bak``) with a step count that
never goes backwards. Before the fix every killed write left its ``last.tmp-*`` directory forever.
"""

from __future__ import annotations

import os
import signal
import time
import warnings

import numpy as np
import pytest

import rlhf_envs  # noqa: F401
from agents import PPO
from agents.checkpoint import read_checkpoint_dir
from rlhf_envs import atomic_io

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
]


def _save_forever(agent: PPO, path: str) -> None:
    while True:
        agent.num_timesteps += 1
        agent.save(path)


def _kill_saves(tmp_path, kills: int, seed: int, hidden: tuple[int, ...], max_delay: float) -> dict:
    agent = PPO("RLHF/Copy-v0", seed=0, n_envs=2, n_steps=8, hidden_sizes=hidden)
    path = str(tmp_path / "last")
    agent.save(path)
    rng = np.random.default_rng(seed)
    loaded_steps, strays_seen, fallbacks, backups = [0], [], 0, 0
    t0 = time.perf_counter()
    for k in range(kills):
        pid = os.fork()
        if pid == 0:  # the child: save until killed; never return into pytest
            try:
                agent.num_timesteps = loaded_steps[-1] + 1000 * (k + 1)
                _save_forever(agent, path)
            finally:
                os._exit(1)
        time.sleep(float(rng.uniform(0.0, max_delay)))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        strays = atomic_io.stray_temporaries(path)
        strays_seen.append(len(strays))
        assert len(strays) <= 1, f"kill {k}: {[p.name for p in strays]}"
        if os.path.isdir(path + ".bak"):  # a backup, when there is one, is a complete checkpoint
            backups += 1
            read_checkpoint_dir(path + ".bak")
        if rng.random() < 0.5:  # load now (which removes the stray); otherwise the next save must
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                loaded = PPO.load(path)
            fallbacks += any("previous checkpoint" in str(w.message) for w in caught)
            assert loaded.num_timesteps >= loaded_steps[-1], (k, loaded.num_timesteps, loaded_steps)
            loaded_steps.append(loaded.num_timesteps)
            loaded.close()
            assert atomic_io.stray_temporaries(path) == []
    final = PPO.load(path)
    assert final.num_timesteps >= loaded_steps[-1]
    return {
        "strays": strays_seen,
        "fallbacks": fallbacks,
        "backups": backups,
        "seconds": time.perf_counter() - t0,
        "steps": loaded_steps,
    }


def test_killed_checkpoint_writes_leave_at_most_one_temporary_and_always_load(tmp_path):
    out = _kill_saves(tmp_path, kills=40, seed=0, hidden=(256, 256), max_delay=0.15)
    # the kills really interrupted writes: some left a temporary behind, and saves completed too
    assert sum(out["strays"]) >= 5, out["strays"]
    assert len(set(out["steps"])) > 5, out["steps"]
    names = sorted(os.listdir(tmp_path))
    assert set(names) <= {"last", "last.bak", ".last.lock"} and "last" in names or "last.bak" in names


@pytest.mark.slow
def test_killed_checkpoint_writes_many_kills(tmp_path):
    out = _kill_saves(tmp_path, kills=300, seed=1, hidden=(512, 512), max_delay=0.3)
    assert sum(out["strays"]) >= 30
