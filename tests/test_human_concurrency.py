"""Many raters at once over HTTP, and a server killed with SIGKILL mid-stream: nothing lost, nothing twice.

8 simulated raters (one thread and one session each) answer 250 pairwise queries each through the
server's JSON API, 2 distinct raters required per query. While they work, the server process is
killed with SIGKILL (possibly in the middle of a transaction) and restarted on the same port; the
raters retry what was not acknowledged. Then every acknowledged answer must be in the database with
the choice the rater sent, no label may exist twice or unacknowledged, and every query's answers must
come from distinct raters. The slow variant kills the server several times, with 32 raters.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from urllib.parse import urlsplit

import numpy as np
import pytest

from agents.human.client import HTTPStatusError, RaterClient
from agents.human.server import spawn
from agents.human.store import Completion, LabelStore


def _run(tmp_path, n_raters: int, per_rater: int, kills: int, deadline_s: float) -> dict:
    db = tmp_path / "labels.sqlite"
    n_queries = n_raters * per_rater // 2 + 10 * n_raters  # slack so no rater runs dry at the end
    store = LabelStore(db)
    store.enqueue_many(
        "load",
        [
            (
                "pairwise",
                f"q{i}",
                f"prompt {i}",
                [Completion(f"a{i}", None, [1], True), Completion(f"b{i}", None, [2], False)],
                None,
            )
            for i in range(n_queries)
        ],
        raters=2,
    )
    store.close()
    proc, url = spawn(db)
    port = urlsplit(url).port
    acked: dict[str, list[tuple[int, str]]] = {}
    errors: list[BaseException] = []
    retries = [0]
    stop_at = time.monotonic() + deadline_s

    def rater(k: int) -> None:
        name = f"rater{k}"
        rng = np.random.default_rng(k)
        acked[name] = []
        client = None
        current = None
        try:
            while len(acked[name]) < per_rater and time.monotonic() < stop_at:
                try:
                    if client is None:
                        client = RaterClient(url, name, timeout=10)
                    if current is None:
                        q = client.next()["query"]
                        if q is None:
                            time.sleep(0.05)
                            continue
                        current = (q["id"], str(rng.choice(["left", "right", "tie", "skip"])))
                    r = client.submit(current[0], choice=current[1])
                    assert r["ok"]
                    acked[name].append(current)
                    current = None
                except (OSError, ConnectionError) as e:  # server down: retry the same answer later
                    del e
                    retries[0] += 1
                    if client is not None:
                        client.close()
                    time.sleep(0.05)
                except HTTPStatusError as e:
                    if e.status >= 500:
                        retries[0] += 1
                        time.sleep(0.05)
                    else:
                        raise
        except BaseException as e:  # reported by the main thread
            errors.append(e)
        finally:
            if client is not None:
                client.close()

    threads = [threading.Thread(target=rater, args=(k,)) for k in range(n_raters)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    total = n_raters * per_rater
    kill_points = [int(total * (i + 1) / (kills + 1)) for i in range(kills)]
    killed = 0
    try:
        for point in kill_points:
            while sum(len(v) for v in acked.values()) < point and time.monotonic() < stop_at and not errors:
                time.sleep(0.01)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            killed += 1
            proc, url2 = spawn(db, port=port)
            assert url2 == url
        for t in threads:
            t.join(timeout=max(1.0, stop_at - time.monotonic() + 30))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    seconds = time.monotonic() - t0
    assert not errors, errors[:3]
    assert all(len(v) == per_rater for v in acked.values()), {k: len(v) for k, v in acked.items()}

    raw = sqlite3.connect(db)
    rows = raw.execute(
        "SELECT q.id, r.name, l.choice, l.swapped FROM labels l JOIN raters r ON r.id = l.rater_id "
        "JOIN queries q ON q.id = l.query_id"
    ).fetchall()
    counters = raw.execute(
        "SELECT q.id, q.n_labels, (SELECT COUNT(*) FROM labels l WHERE l.query_id = q.id) FROM queries q"
    ).fetchall()
    raw.close()

    def shown(choice: str, swapped: int) -> str:
        if choice in ("tie", "skip"):
            return choice
        return "left" if (choice == "A") != bool(swapped) else "right"

    stored = {(q, name): shown(c, s) for q, name, c, s in rows}
    sent = {(q, name): ch for name, v in acked.items() for q, ch in v}
    lost = [k for k, ch in sent.items() if stored.get(k) != ch]
    assert len(rows) == len(stored)  # (query, rater) unique: no duplicates
    assert lost == []  # every acknowledged answer is there, with the choice that was sent
    assert set(stored) == set(sent)  # and nothing is stored that no rater had acknowledged
    per_q: dict[int, list[str]] = {}
    for q, name in stored:
        per_q.setdefault(q, []).append(name)
    assert all(len(set(v)) == len(v) <= 2 for v in per_q.values())  # distinct raters, never over-filled
    assert sum(len(v) == 2 for v in per_q.values()) >= total // 2 - n_raters * 2
    assert all(n == c for _, n, c in counters)  # the denormalised counter survived the kills
    return {"seconds": seconds, "killed": killed, "retries": retries[0], "answers": len(rows)}


def test_8_raters_250_answers_each_with_a_sigkill_midstream(tmp_path):
    out = _run(tmp_path, n_raters=8, per_rater=250, kills=1, deadline_s=240)
    assert out["killed"] == 1 and out["answers"] == 2000
    print(out)


@pytest.mark.slow
def test_32_raters_and_five_sigkills(tmp_path):
    out = _run(tmp_path, n_raters=32, per_rater=100, kills=5, deadline_s=600)
    assert out["killed"] == 5 and out["answers"] == 3200
    print(out)
