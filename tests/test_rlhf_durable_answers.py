"""A person's answers survive a crash of the RLHF loop and are never asked again (issue 15, item 3).

``rlhf-envs rlhf --human terminal`` runs in a subprocess; this test is the person: it reads the
child's output and types an answer (``1``, ``2`` or ``t``, seeded) whenever a question appears.
It ``SIGKILL``s the child at seeded moments (right after an answer was typed, mid-round, or during
the reward-model fit and PPO that follow the questions; at any moment in the slow variant), starts
it again on the same run directory, and finally lets it finish. Counted per session: questions shown vs. answers that
reached the journal (``human_answers.jsonl``). Before, answers lived only in memory until the
round committed, so every kill after the questions lost the round's answers and they were asked
again. Now at most the one question on screen when the kill came can be asked again (its answer
had not reached the disk), every recorded answer is reused, and the finished run's feedback holds
exactly the recorded answers.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from agents.rlhf.answer_journal import JOURNAL_FILE, AnswerJournal
from agents.rlhf.humans import TerminalHuman
from rlhf_envs.errors import DataError
from rlhf_envs.feedback.base import Episode

PROMPT = b"which is better? [1/2/t(ie)/s(kip)] "
ROUNDS, QUERIES = 2, 3
CMD = [
    sys.executable,
    "-m",
    "rlhf_envs.cli",
    "rlhf",
    "--human",
    "terminal",
    "--rounds",
    str(ROUNDS),
    "--queries",
    str(QUERIES),
    "--members",
    "1",
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


def _journal_lines(run: Path) -> list[dict]:
    path = run / JOURNAL_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _session(run: Path, rng: np.random.Generator, kill: tuple[int, float] | None, timeout: float = 240.0):
    """One run of the CLI as a person at the terminal; ``kill=(k, delay)``: SIGKILL ``delay``
    seconds after typing the ``k``-th answer (``k=0``: ``delay`` seconds after the start). Once
    the kill is scheduled, a question that appears is left unanswered (it still counts as shown).

    Returns ``(questions shown, killed)``.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    with open(run.parent / "stderr.txt", "ab") as err:
        proc = subprocess.Popen(
            [*CMD, "--out", str(run)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env
        )
    fd = proc.stdout.fileno()
    buf, asked, t0 = b"", 0, time.monotonic()
    kill_at = t0 + kill[1] if kill is not None and kill[0] == 0 else None
    try:
        while True:
            now = time.monotonic()
            assert now - t0 < timeout, f"session hung: {buf[-500:]!r}"
            if kill_at is not None and now >= kill_at:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return asked, True
            wait = 0.05 if kill_at is None else max(0.0, min(0.05, kill_at - now))
            ready, _, _ = select.select([fd], [], [], wait)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                assert proc.wait() == 0, buf[-2000:].decode(errors="replace")
                return asked, False
            buf += chunk
            while asked < buf.count(PROMPT):
                asked += 1
                if kill_at is not None:  # the kill is coming: this question stays unanswered
                    break
                proc.stdin.write(f"{rng.choice(['1', '2', 't'])}\n".encode())
                proc.stdin.flush()
                if kill is not None and kill[0] == asked:
                    kill_at = time.monotonic() + kill[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _run_with_kills(tmp_path: Path, plans: list, seed: int) -> dict:
    """Sessions killed as ``plans`` say (each a ``(k, delay)`` or a function of the sessions so far
    returning one), then one that finishes; checks the counts (see the module docstring)."""
    run = tmp_path / "run"
    rng = np.random.default_rng(seed)
    sessions: list[dict] = []
    for plan in [*plans, None]:
        if callable(plan):
            plan = plan(sessions)
        before = len(_journal_lines(run))
        asked, killed = _session(run, rng, plan)
        after = len(_journal_lines(run))
        sessions.append({"asked": asked, "recorded": after - before, "killed": killed})
        if plan is None:
            assert not killed
    lines = _journal_lines(run)
    keys = [r["key"] for r in lines]
    # every question was recorded once: a recorded answer was never asked (and recorded) again
    assert len(keys) == len(set(keys)) == ROUNDS * QUERIES, keys
    for s in sessions:  # at most the question on screen at the kill was shown without being recorded
        assert 0 <= s["asked"] - s["recorded"] <= (1 if s["killed"] else 0), sessions
    assert sum(s["asked"] for s in sessions) <= ROUNDS * QUERIES + sum(s["killed"] for s in sessions)
    # the finished run trained on exactly the recorded answers
    state = json.loads((run / "state.json").read_text())
    assert state["rounds_done"] == ROUNDS
    feedback = json.loads((run / state["round_dir"] / "feedback.json").read_text())
    table = {"A": 1.0, "B": 0.0, "tie": 0.5, "skip": None}
    assert [x for rec in feedback for x in rec["labels"]] == [table[r["label"]] for r in lines]
    return {"sessions": sessions, "journal": len(lines)}


def test_killed_rlhf_loop_never_asks_a_recorded_answer_again(tmp_path):
    """Two kills: right after an answer in round 0 (the next question on screen), and during the
    fit/PPO/evaluation that follow round 0's last question; then the run finishes (three sessions,
    each paying the ~10 s start of a process that imports transformers)."""
    rng = np.random.default_rng(15)
    first = int(rng.integers(1, QUERIES))
    plans = [
        (first, float(rng.uniform(0.0, 0.02))),
        # nothing was committed, so this session asks only what the first did not record
        lambda sessions: (QUERIES - sessions[0]["recorded"], float(rng.uniform(0.2, 0.8))),
    ]
    out = _run_with_kills(tmp_path, plans, seed=0)
    s = out["sessions"]
    assert s[0]["killed"] and s[1]["killed"], out
    assert s[1]["asked"] == s[1]["recorded"] >= 1, out  # the second kill came after its questions
    assert s[2]["asked"] == QUERIES, out  # round 0 entirely from the journal, round 1 asked once


@pytest.mark.slow
def test_killed_rlhf_loop_many_random_kills(tmp_path):
    rng = np.random.default_rng(7)
    plans = []
    for _ in range(10):
        if rng.random() < 0.5:
            plans.append((0, float(rng.uniform(2.0, 20.0))))  # any moment after the start
        else:
            plans.append((int(rng.integers(1, QUERIES + 1)), float(rng.uniform(0.0, 2.0))))
    _run_with_kills(tmp_path, plans, seed=1)


# -- the journal and the terminal human on their own (fast) ------------------------------------------


def _episodes(tag: str, n: int) -> list[Episode]:
    return [Episode("p", f"{tag}{i}", (1,), (2, i), True) for i in range(n)]


def test_terminal_human_records_each_answer_and_reuses_it(tmp_path):
    path = tmp_path / "answers.jsonl"
    typed = iter(["1", "2", "t"])
    asked: list[str] = []
    h = TerminalHuman(seed=3, input_fn=lambda q: asked.append(q) or next(typed), print_fn=lambda s: None)
    h.attach_journal(path)
    a, b = _episodes("a", 3), _episodes("b", 3)
    first = h.compare(a, b).labels
    assert len(asked) == 3 and len(AnswerJournal(path)) == 3
    # a new process (same seed, same call index) reuses every answer without asking
    again = TerminalHuman(
        seed=3, input_fn=lambda q: pytest.fail("asked again"), print_fn=lambda s: None, journal=path
    )
    assert again.compare(a, b).labels == first and again.reused == 3 and again.asked == 0
    assert again.rng.bit_generator.state == h.rng.bit_generator.state  # same draws either way
    # the next call is a different question even with the same episodes
    third = TerminalHuman(seed=3, input_fn=lambda q: "1", print_fn=lambda s: None, journal=path)
    third.load_state_dict({**again.state_dict()})
    third.compare(a[:1], b[:1])
    assert third.asked == 1 and len(AnswerJournal(path)) == 4


def test_journal_drops_a_torn_last_line_and_names_a_damaged_one(tmp_path):
    path = tmp_path / "answers.jsonl"
    j = AnswerJournal(path)
    j.append("k1", "A")
    j.append("k2", "B")
    j.close()
    with open(path, "ab") as f:
        f.write(b'{"key": "k3", "lab')  # killed mid-write: never acknowledged
    j = AnswerJournal(path)
    assert set(j.answers) == {"k1", "k2"} and path.read_bytes().endswith(b"\n")
    j.append("k3", "tie")
    j.close()
    assert set(AnswerJournal(path).answers) == {"k1", "k2", "k3"}
    path.write_text('{"key": "k1", "label": "A"}\nnot json\n{"key": "k2", "label": "B"}\n')
    with pytest.raises(DataError, match=r"answers\.jsonl.*line 2.*not valid JSON"):
        AnswerJournal(path)
    path.write_text('{"label": "A"}\n')
    with pytest.raises(DataError, match="line 1.*'key' and 'label'"):
        AnswerJournal(path)
