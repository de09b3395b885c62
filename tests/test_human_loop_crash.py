"""A killed ``rlhf-envs rlhf --human web`` run resumes without asking anybody the same question twice.

The real command runs as a child process (serving the rating page itself, ``--port 0``); two raters
answer over HTTP (the page's JSON API, as a browser does), two distinct raters required per query.
The child is SIGKILLed twice: first mid-round, while it waits for answers that only one rater has
given in full; then right after the last answer arrived, while it fits the reward model and trains.
Each restart on the same database and run directory must find the questions it asked before (no
new query rows), wait only for the answers still missing, and hand out to each rater only queries
that rater has not answered. The finished run's labels are the two raters' mean per query.
"""

from __future__ import annotations

import time

import pytest

from agents.human.client import RaterClient
from agents.human.store import LabelStore
from tests.rlhf_web_run import TINY, LoopProcess, run_files

pytestmark = pytest.mark.slow  # three starts of the CLI (~10 s of CPU each on this machine)


def _answer(url: str, name: str, choice: str, limit: int) -> list[int]:
    """Rater ``name`` answers up to ``limit`` queries with ``choice``; returns the query ids it got."""
    got: list[int] = []
    client = RaterClient(url, name)
    try:
        t0 = time.monotonic()
        while len(got) < limit:
            q = client.next()["query"]
            if q is None:
                assert time.monotonic() - t0 < 120, f"{name}: no query after {got}"
                time.sleep(0.1)
                continue
            assert q["id"] not in got
            client.submit(q["id"], choice=choice)
            got.append(q["id"])
        return got
    finally:
        client.close()


def _nothing_left_for(url: str, name: str) -> bool:
    client = RaterClient(url, name)
    try:
        return client.next()["query"] is None
    finally:
        client.close()


def test_a_killed_web_loop_resumes_without_asking_twice(tmp_path):
    db, run = tmp_path / "labels.sqlite", tmp_path / "run"
    args = ("--rounds", "1", "--raters", "2", *TINY)

    # Session 1: ann answers all three queries, bob one; killed while waiting for bob.
    child = LoopProcess(db, run, *args)
    try:
        child.wait_for_output("waiting for 6 answers to 3 comparisons")
        ann = _answer(child.url, "ann", "left", 3)
        bob = _answer(child.url, "bob", "tie", 1)
        child.kill()
    finally:
        child.kill()
    with LabelStore(db) as store:
        assert len(store.answers(experiment="e2e")) == 4
        query_ids = sorted(store.query_status(ann))
    assert not (run / "state.json").exists()  # the round was not committed

    # Session 2: resumes the round, waits only for bob's two missing answers; ann has nothing to do.
    child = LoopProcess(db, run, *args)
    try:
        child.wait_for_output("waiting for 2 answers to 3 comparisons")
        assert _nothing_left_for(child.url, "ann")
        bob += _answer(child.url, "bob", "tie", 2)
        time.sleep(1.5)  # the loop sees the last answer (it polls every second), then fits and trains
        child.kill()
    finally:
        child.kill()
    assert sorted(bob) == query_ids  # bob got the two he had not answered, not the first again

    # Session 3: every answer is in; nobody is waited for, the round finishes.
    child = LoopProcess(db, run, *args)
    try:
        assert child.wait(timeout=300) == 0, child.output
    finally:
        child.kill()
    assert "waiting for" not in child.output

    with LabelStore(db) as store:
        answers = store.answers(experiment="e2e")
        n_queries = sum(e["queries"] for e in store.experiments() if e["name"] == "e2e")
        stored: dict[tuple[str, str, str], list[float]] = {}
        for a in answers:
            q = store.query(a.query_id)
            stored.setdefault((q["prompt"], q["completions"][0].text, q["completions"][1].text), []).append(
                a.prob_a
            )
    assert n_queries == 3 and len(answers) == 6  # no question was created or answered twice
    assert sorted((a.rater, a.query_id) for a in answers) == sorted(
        [("ann", q) for q in query_ids] + [("bob", q) for q in query_ids]
    )
    rec = run_files(run)["feedback"][0]
    received = {
        (x["prompt"], x["completion"], y["completion"]): p
        for x, y, p in zip(rec["a"], rec["b"], rec["labels"], strict=True)
    }
    assert received == {k: sum(v) / len(v) for k, v in stored.items()}  # ann's A or B, bob's tie
    assert all(len(v) == 2 for v in stored.values()) and set(received.values()) <= {0.25, 0.75}
    state = run_files(run)["state"]
    assert state["rounds_done"] == 1 and state["history"][0]["rm_pairs"] == 3
    assert state["human"]["state"] == {"calls": 1, "queries": 3}
