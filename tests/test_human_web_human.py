"""WebHuman: the RLHF loop's human through the rating server, with scripted raters over HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from agents.human.client import RaterClient
from agents.human.server import RatingServer
from agents.human.store import LabelStore
from agents.human.web_human import HumanTimeoutError, WebHuman, rating_targets, token_marks, token_targets
from rlhf_envs.errors import BudgetExhaustedError, ConfigError
from rlhf_envs.feedback.base import Episode


def ep(prompt: str, completion: str, ids: tuple[int, ...], terminated: bool = True) -> Episode:
    return Episode(prompt, completion, (1, 2), ids, terminated, {}, 0)


PAIRS_A = [ep(f"p{i}", f"good {i}", (10 + i, 3)) for i in range(4)]
PAIRS_B = [ep(f"p{i}", f"bad {i}", (20 + i,), False) for i in range(4)]


class FakeTokenizer:
    eos_id = 3

    def decode(self, ids):
        return "".join(f"<{i}>" for i in ids)


class Rater:
    """A scripted rater on its own thread: answers what the server gives it with ``policy(query)``."""

    def __init__(self, url: str, name: str, policy: Callable[[dict], dict], limit: int | None = None) -> None:
        self.client = RaterClient(url, name)
        self.policy, self.limit = policy, limit
        self.seen: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set() and (self.limit is None or len(self.seen) < self.limit):
            q = self.client.next()["query"]
            if q is None:
                time.sleep(0.02)
                continue
            self.client.submit(q["id"], **self.policy(q))
            self.seen.append(q["id"])

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        self.client.close()


def prefer_good(q: dict) -> dict:
    left = q["completions"][0]["text"]
    return {"choice": "left" if left.startswith("good") else "right"}


def tie(q: dict) -> dict:
    return {"choice": "tie"}


@pytest.fixture
def served(tmp_path):
    store = LabelStore(tmp_path / "labels.sqlite")
    srv = RatingServer(store).start_background()
    yield store, srv.url
    srv.stop()
    store.close()


def human(store, **kw) -> WebHuman:
    kw = {"tokenizer": None, "progress": False, "poll_seconds": 0.02, **kw}
    return WebHuman(store, **kw)


def test_compare_waits_for_distinct_raters_and_aggregates_soft_preferences(served):
    store, url = served
    h = human(store, raters_per_query=2)
    raters = [Rater(url, "ann", prefer_good), Rater(url, "bob", tie)]
    try:
        res = h.compare(PAIRS_A, PAIRS_B)
    finally:
        for r in raters:
            r.close()
    assert len(res) == 4
    assert res.prob_a() == [0.75] * 4  # ann: A (1), bob: tie (0.5)
    assert all(sorted(a.rater for a in ans) == ["ann", "bob"] for ans in res.answers)
    assert sorted(raters[0].seen) == sorted(res.query_ids)  # every query went to both raters
    q = store.query(res.query_ids[0])
    assert q["completions"][0].text == "good 0" and q["completions"][1].terminated is False
    assert q["completions"][0].token_ids == [10, 3] and q["completions"][0].tokens is None
    assert h.state_dict() == {"calls": 1, "queries": 4}


def test_a_resumed_loop_reuses_stored_answers_and_asks_only_what_is_missing(served):
    store, url = served
    h1 = human(store, timeout=0.5, on_timeout="error")
    state = h1.state_dict()  # what the loop committed before this round
    ann = Rater(url, "ann", prefer_good, limit=2)
    with pytest.raises(HumanTimeoutError, match="2 answers to 2 comparisons"):
        h1.compare(PAIRS_A, PAIRS_B)  # "crash" after two answers
    ann.close()
    assert len(store.answers()) == 2
    h2 = human(store)  # a new process resuming from the committed state
    h2.load_state_dict(state)
    bob = Rater(url, "bob", tie)
    try:
        res = h2.compare(PAIRS_A, PAIRS_B)
    finally:
        bob.close()
    assert sorted(bob.seen + ann.seen) == sorted(res.query_ids)  # nobody was asked anything twice
    assert sorted(res.prob_a()) == [0.5, 0.5, 1.0, 1.0]
    assert len(store.answers()) == 4
    # Same content in the next round is a new question (the call index is part of the key).
    assert h2.calls == 1
    h3 = human(store, timeout=0, on_timeout="partial")
    h3.load_state_dict({"calls": 1, "queries": 4})
    assert h3.compare(PAIRS_A[:1], PAIRS_B[:1]).prob_a() == [None]


def test_time_out_policies(served):
    store, url = served
    # Two raters wanted, one arrives: "partial" uses it, "drop" does not, "error" raises.
    for policy, want in (("partial", [1.0, 1.0]), ("drop", [None, None])):
        h = human(store, experiment=policy, raters_per_query=2, timeout=1.0, on_timeout=policy)
        ann = Rater(url, f"ann-{policy}", prefer_good, limit=2)
        t0 = time.monotonic()
        res = h.compare(PAIRS_A[:2], PAIRS_B[:2])
        ann.close()
        assert res.prob_a() == want and 0.9 < time.monotonic() - t0 < 20
        assert not any(store.query(q)["open"] for q in res.query_ids)  # withdrawn from the page
    h = human(store, experiment="err", timeout=0.05, on_timeout="error")
    with pytest.raises(HumanTimeoutError, match="rerun resumes"):
        h.compare(PAIRS_A[:1], PAIRS_B[:1])
    [qid] = store.query_ids("err", [_key(store, "err")])
    assert store.query(qid)["open"]  # "error" leaves the query on the page for the rerun


def _key(store: LabelStore, experiment: str) -> str:
    with store._conn() as c:
        return c.execute(
            "SELECT q.key FROM queries q JOIN experiments e ON e.id = q.experiment_id WHERE e.name = ?",
            (experiment,),
        ).fetchone()[0]


def test_skips_drop_and_budget_and_bad_settings(served):
    store, url = served
    h = human(store, max_queries=4)
    ann = Rater(url, "ann", lambda q: {"choice": "skip"})
    try:
        assert h.compare(PAIRS_A[:3], PAIRS_B[:3]).prob_a() == [None, None, None]
    finally:
        ann.close()
    with pytest.raises(BudgetExhaustedError, match="max_queries=4"):
        h.compare(PAIRS_A[:2], PAIRS_B[:2])
    with pytest.raises(ConfigError, match="pair up"):
        h.compare(PAIRS_A[:2], PAIRS_B[:1])
    for kw, msg in [
        ({"raters_per_query": 0}, "raters_per_query"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": float("inf")}, "timeout"),
        ({"on_timeout": "guess"}, "on_timeout"),
        ({"poll_seconds": 0}, "poll_seconds"),
        ({"max_queries": -2}, "max_queries"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            human(store, **kw)


@pytest.mark.usefixtures("one_torch_thread")
def test_ratings_and_token_marks_feed_reward_model_fits(served):
    store, url = served
    h = human(store, tokenizer=FakeTokenizer(), experiment="dense")
    eps = [ep(f"p{i}", f"text {i}", (5 + i, 6, 3)) for i in range(3)]

    def answer(q: dict) -> dict:
        if q["kind"] == "rating":
            return {"rating": 1 + len(q["completions"][0]["text"]) % 5}
        toks = q["completions"][0]["tokens"]
        assert toks[-1] == "⏎[end]" and toks[1] == "<6>"
        return {"marks": {"0": 1, "2": -1}}

    r = Rater(url, "ann", answer)
    try:
        ratings = h.rate(eps)
        marks = h.mark_tokens(eps)
    finally:
        r.close()
    assert ratings.mean() == [2.0, 2.0, 2.0]  # len("text i") = 6 -> 1 + 6 % 5
    vals = marks.values()
    assert all(np.array_equal(v, np.array([1, 0, -1], dtype=np.float32)) for v in vals)
    items, ys = rating_targets(store, "dense")
    assert [e.completion for e in items] == ["text 0", "text 1", "text 2"] and ys.tolist() == [2.0] * 3
    assert items[0].completion_ids == (5, 6, 3) and items[0].prompt_ids == (1, 2) and items[0].terminated
    dense = token_targets(store, "dense")
    assert len(dense) == 3 and dense[0][1].tolist() == [1.0, 0.0, -1.0]
    # The per-token answers through the Python API as (query id, tokens, marks), for a dense fit.
    tm = token_marks(store, "dense")
    assert [m.query_id for m in tm] == marks.query_ids
    qid, toks, m = tm[0]
    assert toks == ["<5>", "<6>", "⏎[end]"] and m.dtype == np.float32 and m.tolist() == [1.0, 0.0, -1.0]
    # A second rater: the marks average over the raters who did not skip.
    bob = store.rater_id("bob")
    store.submit(bob, tm[0].query_id, marks={1: -1, 2: -1}, shown=False)
    store.submit(bob, tm[1].query_id, choice="skip", shown=False)
    tm2 = token_marks(store, "dense")
    assert tm2[0].marks.tolist() == [0.5, -0.5, -1.0] and tm2[1].marks.tolist() == [1.0, 0.0, -1.0]
    assert token_marks(store, "no-such-experiment") == []
    from rlhf_envs.feedback.learned import RewardModel

    rm = RewardModel(seed=0)
    rep = rm.fit_ratings(items, ys, epochs=1)
    assert rep is not None


@pytest.mark.usefixtures("one_torch_thread")
def test_the_rlhf_loop_runs_a_round_on_web_answers(served):
    from agents.rlhf import RLHFConfig, RLHFLoop

    store, url = served
    h = WebHuman(store, experiment="loop", tokenizer="default", progress=True, poll_seconds=0.05)
    cfg = RLHFConfig(
        queries_per_round=4,
        pool_factor=2,
        n_members=2,
        ppo_tokens_per_round=20,
        n_envs=4,
        eval_episodes=4,
        max_new_tokens=6,
        rm_epochs=1,
        rounds=2,
    )
    ann = Rater(
        url,
        "ann",
        lambda q: {
            "choice": "left"
            if len(q["completions"][0]["text"]) >= len(q["completions"][1]["text"])
            else "right"
        },
    )
    try:
        loop = RLHFLoop(cfg, human=h, run_dir=None)
        hist = loop.run()
    finally:
        ann.close()
    assert len(hist) == 2 and hist[-1]["queries_total"] == 8
    got = [x for rec in loop.feedback for x in rec["labels"]]
    stored = {a.query_id: a.prob_a for a in store.answers(experiment="loop")}
    assert len(stored) == 8 and sorted(got) == sorted(stored.values())
    assert all(isinstance(t, str) for t in store.query(next(iter(stored)))["completions"][0].tokens)
    assert hist[-1]["ppo_tokens_total"] > hist[0]["ppo_tokens_total"] > 0
    loop.close()


@pytest.mark.usefixtures("one_torch_thread")
def test_a_rating_loop_asks_on_the_page_and_regresses_on_the_raters_mean(served):
    """``query_kind="rating"``: the loop's Likert queries go to the page; two raters answer each (one
    skips some); the loop receives the mean of the ratings given, and the reward model is regressed
    on exactly those (skips left out)."""
    from agents.rlhf import RLHFConfig, RLHFLoop, episode_from_json
    from agents.rlhf.reward_fitting import fit_reward_model_on_ratings
    from agents.rlhf.streams import Stream, stream_seed

    store, url = served
    h = WebHuman(
        store, experiment="likert", raters_per_query=2, tokenizer=None, progress=False, poll_seconds=0.05
    )
    cfg = RLHFConfig(
        query_kind="rating",
        queries_per_round=3,
        pool_factor=2,
        n_members=2,
        ppo_tokens_per_round=20,
        n_envs=4,
        eval_episodes=4,
        max_new_tokens=6,
        rm_epochs=1,
        rounds=1,
    )
    ann = Rater(url, "ann", lambda q: {"rating": 1 + len(q["completions"][0]["text"]) % 5})
    bob = Rater(url, "bob", lambda q: {"choice": "skip"} if q["id"] % 2 else {"rating": 5})
    try:
        loop = RLHFLoop(cfg, human=h, run_dir=None)
        hist = loop.run()
    finally:
        ann.close()
        bob.close()
    assert all(store.query(q)["kind"] == "rating" for q in ann.seen) and sorted(ann.seen) == sorted(bob.seen)
    per_query: dict[int, list[int]] = {}
    for a in store.answers(experiment="likert"):
        if a.rating is not None:
            per_query.setdefault(a.query_id, []).append(a.rating)
    rec = loop.feedback[0]
    by_text = {store.query(q)["completions"][0].text: float(np.mean(rs)) for q, rs in per_query.items()}
    assert [by_text[x["completion"]] for x in rec["a"]] == rec["labels"]  # the raters' mean per episode
    assert hist[0]["rm_ratings"] == 3 and hist[0]["ppo_tokens"] > 0
    items = [episode_from_json(x) for x in rec["a"]]
    refit, _ = fit_reward_model_on_ratings(
        cfg, items, rec["labels"], stream_seed(cfg.seed, 0, Stream.REWARD_MODEL_FIT)
    )
    assert np.allclose(refit.score(items), loop.reward_model.score(items), atol=1e-5)
    _, ys = rating_targets(store, "likert")  # the same targets through the store's Python API
    assert sorted(ys.tolist()) == sorted(rec["labels"])
    loop.close()


@pytest.mark.usefixtures("one_torch_thread")
def test_a_first_round_nobody_answered_in_time_stops_cleanly_and_a_rerun_asks_the_same(served, tmp_path):
    """``on_timeout="partial"`` with nobody at the page: the first round has no usable answer, so the
    loop stops with a clear error and saves nothing; the rerun reopens the same questions (no new
    query rows) and a rater who comes now answers them."""
    from agents.rlhf import RLHFConfig, RLHFLoop
    from rlhf_envs.errors import FeedbackError

    store, url = served
    cfg = RLHFConfig(
        queries_per_round=2,
        pool_factor=1,
        n_members=1,
        selection="random",
        ppo_tokens_per_round=8,
        n_envs=2,
        eval_episodes=2,
        max_new_tokens=4,
        rm_epochs=1,
        rounds=1,
    )
    run = tmp_path / "run"
    loop = RLHFLoop(cfg, human=human(store, experiment="late", timeout=0.2), run_dir=run)
    with pytest.raises(FeedbackError, match="none of the 2 queries got a usable answer"):
        loop.run()
    loop.close()
    assert not (run / "state.json").exists()
    [late] = [e for e in store.experiments() if e["name"] == "late"]
    assert late["queries"] == 2 and late["open"] == 0  # withdrawn from the page by the time-out
    ann = Rater(url, "ann", prefer_good)
    try:
        loop = RLHFLoop(cfg, human=human(store, experiment="late"), run_dir=run)
        hist = loop.run()
    finally:
        ann.close()
    [late] = [e for e in store.experiments() if e["name"] == "late"]
    assert late["queries"] == 2 and len(ann.seen) == 2  # the same two questions, reopened and answered
    assert hist[0]["queries"] == 2 and hist[0]["rm_pairs"] == 2
    loop.close()


def test_a_server_killed_while_the_loop_waits_loses_nothing_and_asks_nobody_twice(tmp_path):
    """The page served by its own process (``rlhf-envs human serve``) is SIGKILLed after two of four
    answers while ``WebHuman.compare`` waits; restarted on the same port, the same browser session
    (cookie) goes on: the rater is offered only the two it has not answered, and the loop gets all
    four answers, each once."""
    import os
    import signal
    from urllib.parse import urlsplit

    from agents.human.server import spawn

    db = tmp_path / "labels.sqlite"
    store = LabelStore(db)
    proc, url = spawn(db)
    out: dict = {}

    def ask() -> None:
        try:
            out["res"] = human(store, experiment="kill").compare(PAIRS_A, PAIRS_B)
        except BaseException as e:  # reported below
            out["error"] = e

    t = threading.Thread(target=ask, daemon=True)
    t.start()
    client = RaterClient(url, "ann")
    seen: list[int] = []
    killed = False
    try:
        while len(seen) < 4:
            if len(seen) == 2 and not killed:
                killed = True
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                proc, _ = spawn(db, port=urlsplit(url).port)
            q = client.next()["query"]
            if q is None:
                time.sleep(0.02)
                continue
            assert q["id"] not in seen, f"query {q['id']} offered again after the restart"
            client.submit(q["id"], **prefer_good(q))
            seen.append(q["id"])
        t.join(timeout=30)
        assert client.next()["query"] is None
    finally:
        client.close()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert "error" not in out, out.get("error")
    res = out["res"]
    assert sorted(res.query_ids) == sorted(seen) and res.prob_a() == [1.0] * 4
    answers = store.answers(experiment="kill")
    assert (
        len(answers) == 4
        and len({a.query_id for a in answers}) == 4
        and {a.rater for a in answers} == {"ann"}
    )
    store.close()
