"""The RLHF loop asking for 1-5 Likert ratings (``query_kind="rating"``): the reward model is fitted
by regression on them, PPO trains on it, and runs saved before the setting existed still resume."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from agents.rlhf import RLHFConfig, RLHFLoop, TerminalHuman, episode_from_json
from agents.rlhf.humans import rating_values
from agents.rlhf.metrics import label_agreement
from agents.rlhf.reward_fitting import fit_reward_model_on_ratings
from agents.rlhf.streams import Stream, stream_seed
from rlhf_envs.errors import BudgetExhaustedError, ConfigError
from rlhf_envs.feedback.base import Episode
from tests.test_rlhf import tiny

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_rating_loop_fits_by_regression_and_trains(tmp_path):
    run = tmp_path / "run"
    loop = RLHFLoop(tiny(query_kind="rating", queries_per_round=3), run_dir=run)
    hist = loop.run()
    assert [h["queries"] for h in hist] == [3, 3] and hist[-1]["queries_total"] == 6
    assert hist[0]["selection"] == "random" and hist[1]["selection"] == "disagreement"
    recs = loop.feedback
    assert [r["kind"] for r in recs] == ["rating", "rating"] and all(r["b"] == [] for r in recs)
    ratings = [y for r in recs for y in r["labels"]]
    assert all(y in (1.0, 2.0, 3.0, 4.0, 5.0) for y in ratings)  # the simulated rater's Likert scale
    assert hist[0]["rm_ratings"] == 3 and hist[1]["rm_ratings"] == hist[1]["rm_labels"] == 6
    assert hist[1]["ties"] == 0 and 0 < hist[0]["ppo_tokens_total"] < hist[1]["ppo_tokens_total"]
    # Round 1 asked where the ensemble's score spread was largest.
    spread = np.asarray(recs[1]["pool_disagreement_values"])
    assert sorted(recs[1]["disagreement"], reverse=True) == sorted(spread)[::-1][:3]
    # The saved reward model is the regression on all six ratings: a refit gives the same scores.
    items = [episode_from_json(x) for r in recs for x in r["a"]]
    refit, info = fit_reward_model_on_ratings(
        loop.config, items, ratings, stream_seed(loop.config.seed, 1, Stream.REWARD_MODEL_FIT)
    )
    assert info["rm_ratings"] == 6
    assert np.allclose(refit.score(items), loop.reward_model.score(items), atol=1e-5)
    shuffled, _ = fit_reward_model_on_ratings(
        loop.config, items, ratings[::-1], stream_seed(loop.config.seed, 1, Stream.REWARD_MODEL_FIT)
    )
    assert not np.allclose(shuffled.score(items), loop.reward_model.score(items), atol=1e-5)
    loop.close()
    resumed = RLHFLoop(tiny(query_kind="rating", queries_per_round=3, rounds=2), run_dir=run)
    assert resumed.rounds_done == 2 and resumed.feedback == json.loads(json.dumps(recs))
    resumed.close()
    with pytest.raises(ConfigError, match="query_kind"):
        RLHFLoop(tiny(queries_per_round=3), run_dir=run)  # a rating run does not resume as pairwise


def test_skipped_ratings_are_left_out_of_the_fit_and_the_agreement():
    class Ratings:
        def __init__(self, n):
            self.n = n

        def mean(self):
            return [None, 4.0, 2.0][: self.n]

    assert rating_values(Ratings(3)) == [None, 4.0, 2.0]
    rec = {"kind": "rating", "labels": [None, 4.0, 2.0], "gold_a": [9.0, 1.0, 0.0]}
    assert label_agreement(rec) == 1.0  # the skipped one (gold 9) is not counted
    with pytest.raises(ConfigError, match="mean\\(\\) or ratings"):
        rating_values(object())


def test_rating_settings_are_checked():
    with pytest.raises(ConfigError, match="query_kind"):
        RLHFConfig(query_kind="likert")

    class ComparesOnly:
        def compare(self, a, b):
            raise AssertionError("not reached")

    with pytest.raises(ConfigError, match="rate\\(episodes\\)"):
        RLHFLoop(tiny(query_kind="rating"), human=ComparesOnly(), run_dir=None)


def test_terminal_human_rates_and_reuses_journalled_ratings(tmp_path):
    eps = [Episode("p", f"c{i}", (1,), (2, i), True) for i in range(3)]
    typed = iter(["9", "4", "s", "1"])
    shown: list[str] = []
    h = TerminalHuman(input_fn=lambda _: next(typed), print_fn=shown.append, journal=tmp_path / "j.jsonl")
    assert h.rate(eps).mean() == [4.0, None, 1.0] and any("please type 1, 2, 3, 4, 5" in x for x in shown)
    # A crash before the round was committed: a new session from the same state reuses every rating.
    again = TerminalHuman(input_fn=lambda _: pytest.fail("asked again"), journal=tmp_path / "j.jsonl")
    assert again.rate(eps).mean() == [4.0, None, 1.0] and (again.asked, again.reused) == (0, 3)
    capped = TerminalHuman(max_queries=2, input_fn=lambda _: "3")
    with pytest.raises(BudgetExhaustedError, match="max_queries=2"):
        capped.rate(eps)


def test_runs_saved_before_query_kind_existed_resume_as_pairwise(tmp_path):
    run = tmp_path / "run"
    RLHFLoop(tiny(rounds=1, queries_per_round=2), run_dir=run).run()
    old = tmp_path / "old"
    shutil.copytree(run, old)
    state = json.loads((old / "state.json").read_text())
    del state["config"]["query_kind"]
    (old / "state.json").write_text(json.dumps(state))
    resumed = RLHFLoop(tiny(rounds=1, queries_per_round=2), run_dir=old)
    assert resumed.rounds_done == 1
    resumed.close()
    with pytest.raises(ConfigError, match="query_kind"):
        RLHFLoop(tiny(rounds=1, queries_per_round=2, query_kind="rating"), run_dir=old)
