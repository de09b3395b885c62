"""The SQLite label store: schema constraints, leases, answers, durability settings, other processes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from agents.human.store import (
    AlreadyAnsweredError,
    AnswerError,
    Completion,
    LabelStore,
    NotAssignedError,
    UnknownQueryError,
)
from rlhf_envs.errors import ConfigError, FeedbackError


def pair(i: int) -> tuple:
    a = Completion(f"good {i}", ["good", f" {i}"], [5, 6], True)
    b = Completion(f"bad {i}", ["bad", f" {i}"], [7, 8], False)
    return ("pairwise", f"q{i}", f"prompt {i}", [a, b], None)


@pytest.fixture
def store(tmp_path):
    s = LabelStore(tmp_path / "labels.sqlite")
    yield s
    s.close()


def test_wal_mode_full_sync_and_schema(store):
    raw = sqlite3.connect(store.path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {
        "experiments",
        "queries",
        "completions",
        "raters",
        "sessions",
        "assignments",
        "labels",
        "token_marks",
    } <= tables
    raw.close()
    with store._conn() as c:
        assert c.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_the_schema_makes_a_duplicate_label_impossible(store):
    [qid] = store.enqueue_many("e", [pair(0)])
    r = store.rater_id("ann")
    store.submit(r, qid, choice="A", shown=False)
    raw = sqlite3.connect(store.path)
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        raw.execute(
            "INSERT INTO labels(query_id, rater_id, choice, swapped, created) VALUES (?, ?, 'B', 0, 0)",
            (qid, r),
        )
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        raw.execute(
            "INSERT INTO labels(query_id, rater_id, choice, swapped, created) VALUES (?, 999, 'C', 0, 0)",
            (qid,),
        )
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        raw.execute(
            "INSERT INTO labels(query_id, rater_id, rating, swapped, created) VALUES (?, 998, 6, 0, 0)",
            (qid,),
        )
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        raw.execute(
            "INSERT INTO queries(experiment_id, key, kind, prompt, raters_needed, created) VALUES (1, 'q0', 'rating', '', 1, 0)"
        )
    raw.close()
    # Through the API: the same answer again is an idempotent retry; a different one is refused.
    assert store.submit(r, qid, choice="A", shown=False)[1] is True
    with pytest.raises(AlreadyAnsweredError):
        store.submit(r, qid, choice="B", shown=False)
    assert len(store.answers()) == 1


def test_enqueue_is_idempotent_by_key_and_validates(store):
    ids = store.enqueue_many("e", [pair(0), pair(1)], raters=2)
    assert store.enqueue_many("e", [pair(1), pair(0), pair(2)]) == [ids[1], ids[0], ids[1] + 1]
    assert store.query(ids[0])["raters_needed"] == 2
    q = store.query(ids[0])
    assert q["completions"][0].tokens == ["good", " 0"] and q["completions"][1].terminated is False
    with pytest.raises(ConfigError, match="kind"):
        store.enqueue("e", "ranking", "x", "p", [Completion("a")])
    with pytest.raises(ConfigError, match="2 completion"):
        store.enqueue("e", "pairwise", "x", "p", [Completion("a")])
    with pytest.raises(ConfigError, match="token strings"):
        store.enqueue("e", "per_token", "x", "p", [Completion("a")])
    with pytest.raises(ConfigError, match="align"):
        store.enqueue("e", "rating", "x", "p", [Completion("a", ["a"], [1, 2])])
    with pytest.raises(ConfigError, match="already exists as a pairwise"):
        store.enqueue("e", "rating", "q0", "p", [Completion("a")])
    with pytest.raises(ConfigError, match="raters"):
        store.enqueue_many("e", [pair(5)], raters=0)


def test_leases_give_concurrent_raters_different_work_and_expire(store):
    store.enqueue_many("e", [pair(i) for i in range(3)], raters=1)
    ann, bob, cat = (store.rater_id(n) for n in ("ann", "bob", "cat"))
    la = store.next_for(ann, lease_seconds=60)
    lb = store.next_for(bob, lease_seconds=0.2)
    assert la.query_id != lb.query_id
    # The same rater asking again (nothing excluded) gets the lease they hold back.
    assert store.next_for(ann).query_id == la.query_id
    lc = store.next_for(cat, exclude=[], lease_seconds=60)
    assert lc.query_id not in (la.query_id, lb.query_id)
    assert store.next_for(cat, exclude=[lc.query_id]) is None  # every slot is leased
    assert store.progress(cat)["waiting"] == 1  # only the query cat holds; leased ones do not count
    time.sleep(0.3)  # bob's lease expires: his query returns to the pool
    assert store.next_for(cat, exclude=[lc.query_id]).query_id == lb.query_id
    # A late answer from bob is still kept (a person's answer is never thrown away).
    store.submit(bob, lb.query_id, choice="tie")
    assert [a.rater for a in store.answers([lb.query_id])] == ["bob"]


def test_distinct_raters_per_query_and_progress(store):
    [qid] = store.enqueue_many("e", [pair(0)], raters=2)
    ann, bob = store.rater_id("ann"), store.rater_id("bob")
    assert store.next_for(ann).query_id == qid
    assert store.next_for(ann, exclude=[qid]) is None  # ann never gets the same query twice
    assert store.next_for(bob).query_id == qid
    store.submit(ann, qid, choice="A")
    assert store.progress(ann) == {"open": 1, "labels": 1, "answered": 1, "waiting": 0}
    store.submit(bob, qid, choice="skip")
    assert store.query(qid)["open"] is False and store.query_status([qid]) == {qid: (2, 2)}
    assert store.next_for(store.rater_id("cat")) is None


def test_answers_are_checked_against_the_query_kind(store):
    [p] = store.enqueue_many("e", [pair(0)])
    r = store.enqueue("e", "rating", "r", "p", [Completion("x")])
    t = store.enqueue("e", "per_token", "t", "p", [Completion("xyz", ["x", "y", "z"], [1, 2, 3])])
    ann = store.rater_id("ann")
    with pytest.raises(NotAssignedError):
        store.submit(ann, p, choice="A")
    with pytest.raises(UnknownQueryError):
        store.submit(ann, 12345, choice="A", shown=False)
    bad = [
        (p, {"choice": "C"}),
        (p, {}),
        (p, {"choice": "A", "rating": 3}),
        (r, {"rating": 6}),
        (r, {"rating": True}),
        (r, {"choice": "A"}),
        (r, {"rating": 3, "marks": {0: 1}}),
        (t, {"marks": {3: 1}}),
        (t, {"marks": {0: 2}}),
        (t, {"marks": {"x": 1}}),
        (t, {"rating": 2}),
        (p, {"choice": "A", "seconds": -1}),
    ]
    for qid, kw in bad:
        with pytest.raises(AnswerError):
            store.submit(ann, qid, shown=False, **kw)
    assert issubclass(AnswerError, FeedbackError)
    store.submit(ann, r, rating=5, shown=False)
    store.submit(ann, t, marks={0: 1, 2: -1}, shown=False, seconds=2.5)
    by_q = {a.query_id: a for a in store.answers()}
    assert by_q[r].rating == 5
    assert by_q[t].marks == {0: 1, 2: -1} and by_q[t].seconds == 2.5
    raw = sqlite3.connect(store.path)  # per-token marks: one row per marked token
    assert raw.execute("SELECT token_index, mark FROM token_marks ORDER BY token_index").fetchall() == [
        (0, 1),
        (2, -1),
    ]
    raw.close()


def test_swap_is_stored_and_choices_are_canonical(store):
    store.enqueue_many("e", [pair(i) for i in range(40)])
    ann = store.rater_id("ann")
    swaps = []
    for _ in range(40):
        lease = store.next_for(ann)
        swaps.append(lease.swapped)
        assert [c.text for c in lease.shown()] == (
            [c.text for c in lease.completions][::-1]
            if lease.swapped
            else [c.text for c in lease.completions]
        )
        store.submit(ann, lease.query_id, choice="A")
    assert 8 < sum(swaps) < 32  # a fair coin per query
    assert [a.swapped for a in store.answers()] == swaps


def test_bad_files_and_names(tmp_path):
    with pytest.raises(ConfigError, match="directory"):
        LabelStore(tmp_path)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigError, match="junk.sqlite"):
        LabelStore(junk)
    s = LabelStore(tmp_path / "ok.sqlite")
    for name in ("", " ", "x" * 65, "a\x00b", 3):
        with pytest.raises(AnswerError, match="rater name"):
            s.rater_id(name)
    with pytest.raises(ConfigError, match="guidelines file"):
        s.ensure_experiment("e", guidelines_file=tmp_path / "missing.md")
    g = tmp_path / "g.md"
    g.write_text("Prefer the kinder answer.\n", encoding="utf-8")
    s.ensure_experiment("e", guidelines_file=g, raters_per_query=3)
    assert s.experiments()[0]["raters_per_query"] == 3
    s.close()


def test_threads_and_another_process_share_the_store(tmp_path):
    db = tmp_path / "labels.sqlite"
    store = LabelStore(db)
    store.enqueue_many("e", [pair(i) for i in range(60)], raters=1)
    child = textwrap.dedent(
        f"""
        from agents.human.store import LabelStore, Completion
        s = LabelStore({str(db)!r})
        for i in range(60, 100):
            s.enqueue("e", "rating", f"r{{i}}", "p", [Completion(str(i))])
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", child])
    got: dict[str, list[int]] = {}
    errors = []

    def rater(name: str) -> None:
        try:
            rid = store.rater_id(name)
            got[name] = []
            while (lease := store.next_for(rid)) is not None:
                kw = {"choice": "A"} if lease.kind == "pairwise" else {"rating": 3}
                store.submit(rid, lease.query_id, **kw)
                got[name].append(lease.query_id)
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=rater, args=(f"r{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert proc.wait(timeout=120) == 0 and not errors
    for name in got:  # answer whatever the child added after the raters finished
        rid = store.rater_id(name)
        while (lease := store.next_for(rid)) is not None:
            store.submit(rid, lease.query_id, rating=3)
            got[name].append(lease.query_id)
    answered = [q for qs in got.values() for q in qs]
    assert len(answered) == len(set(answered)) == 100
    store.close()


def test_group_commit_keeps_good_answers_when_one_in_the_batch_is_refused(store):
    ids = store.enqueue_many("e", [pair(i) for i in range(40)], raters=1)
    r = store.rater_id("ann")
    results: dict[int, object] = {}

    def answer(qid: int) -> None:
        try:  # every fifth answer is invalid and must not take the others down with it
            results[qid] = store.submit(r, qid, choice="C" if qid % 5 == 0 else "A", shown=False)
        except AnswerError as e:
            results[qid] = e

    threads = [threading.Thread(target=answer, args=(q,)) for q in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bad = [q for q in ids if q % 5 == 0]
    assert all(isinstance(results[q], AnswerError) for q in bad)
    assert all(results[q] == (results[q][0], False) for q in ids if q not in bad)
    assert sorted(a.query_id for a in store.answers()) == [q for q in ids if q not in bad]
