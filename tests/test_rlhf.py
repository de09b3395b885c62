"""The RLHF loop (agents.rlhf): logging, budget, schedule, query selection, resume equivalence.

Default tests run the real loop on the embedded model with tiny settings (a few queries, 6-token
completions, a few dozen PPO tokens): a few seconds each.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from agents.rlhf import (
    RLHFConfig,
    RLHFLoop,
    TerminalHuman,
    concordance,
    episode_from_json,
    schedule_counts,
    select_pairs,
)
from rlhf_envs.errors import BudgetExhaustedError, ConfigError
from rlhf_envs.feedback.base import Episode

TINY = dict(
    queries_per_round=4,
    pool_factor=2,
    n_members=2,
    ppo_tokens_per_round=20,
    n_envs=4,
    eval_episodes=4,
    max_new_tokens=6,
    rm_epochs=1,
)


def tiny(**kw) -> RLHFConfig:
    return RLHFConfig(**{**TINY, "rounds": 2, **kw})


ROW_KEYS = (
    "round queries queries_total cost rater_seconds proxy_reward gold_reward kl sqrt_kl "
    "proxy_gold_accuracy ppo_tokens ppo_tokens_total rm_train_loss fit_seconds ppo_seconds eval_seconds "
    "round_seconds"
).split()


def _strip_times(x):
    """Everything but wall-clock timings (which differ between runs by nature)."""
    if isinstance(x, dict):
        return {k: _strip_times(v) for k, v in x.items() if not k.endswith("seconds")}
    if isinstance(x, list):
        return [_strip_times(v) for v in x]
    return x


def _same(a, b) -> bool:
    """Equality that treats nan == nan (json round trips keep nan)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@pytest.fixture(scope="module")
def two_rounds(tmp_path_factory):
    """One tiny two-round run with disagreement selection, shared by the tests that only read it."""
    run_dir = tmp_path_factory.mktemp("rlhf") / "run"
    loop = RLHFLoop(tiny(), run_dir=run_dir)
    loop.run()
    yield loop, run_dir
    loop.close()


def test_round_log_keys_present_and_finite(two_rounds):
    loop, run_dir = two_rounds
    hist = loop.history
    assert len(hist) == 2
    for row in hist:
        for k in ROW_KEYS:
            assert k in row, k
            assert math.isfinite(row[k]), (k, row[k])
        assert row["sqrt_kl"] == pytest.approx(math.sqrt(max(row["kl"], 0.0)))
        assert row["queries"] == 4
    assert hist[1]["queries_total"] == 8
    assert hist[1]["cost"] == pytest.approx(8 * 0.1)  # the simulated human's ledger
    assert hist[0]["selection"] == "random"  # no ensemble before the first fit
    assert hist[1]["selection"] == "disagreement"
    assert math.isfinite(hist[1]["selected_disagreement"])
    assert hist[1]["ppo_tokens_total"] == hist[0]["ppo_tokens"] + hist[1]["ppo_tokens"]
    assert math.isfinite(loop.initial["gold_reward"])
    for rec in loop.feedback:  # each query compares two completions of the same prompt
        assert [x["prompt"] for x in rec["a"]] == [x["prompt"] for x in rec["b"]]
        assert any(x["completion"] != y["completion"] for x, y in zip(rec["a"], rec["b"], strict=True))
    state = json.loads((run_dir / "state.json").read_text())
    assert state["rounds_done"] == 2 and len(state["history"]) == 2


def test_env_pays_the_latest_proxy(two_rounds):
    from agents.rlhf import TRAIN_ENV_ID

    loop, run_dir = two_rounds
    env = loop.agent.env
    assert env.spec is None or env.spec.id == TRAIN_ENV_ID
    assert loop.reward_model_dir == run_dir / "rounds" / "round_001" / "reward_model"
    eps = [episode_from_json(x) for x in loop.feedback[-1]["a"]]
    assert np.array_equal(env.task.feedback.score(eps), loop.reward_model.score(eps))


def test_runs_saved_before_the_reward_model_rename_still_resume(two_rounds, tmp_path):
    """state.json format 1 named the reward model's directory ``rm_dir``; it still loads."""
    import shutil

    loop, run_dir = two_rounds
    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    state = json.loads((old / "state.json").read_text())
    assert state["format"] == 2
    state["format"], state["rm_dir"] = 1, state.pop("reward_model_dir")
    (old / "state.json").write_text(json.dumps(state))
    resumed = RLHFLoop(tiny(), run_dir=old)
    assert resumed.rounds_done == 2
    assert resumed.reward_model_dir == old / "rounds" / "round_001" / "reward_model"
    eps = [episode_from_json(x) for x in loop.feedback[-1]["a"]]
    assert np.array_equal(resumed.reward_model.score(eps), loop.reward_model.score(eps))
    resumed.close()


def test_kl_is_zero_before_training(two_rounds):
    loop, _ = two_rounds
    assert loop.initial["kl"] == pytest.approx(0.0, abs=1e-4)  # policy == reference at the start
    assert loop.history[-1]["kl"] > 1e-4  # and PPO moved it


def test_budget_respected_and_stops():
    loop = RLHFLoop(tiny(rounds=5, budget=6), run_dir=None)
    hist = loop.run()
    assert [r["queries"] for r in hist] == [4, 2]
    assert loop.queries_used == 6 == loop.human.ledger.queries
    assert loop.stop_reason is not None and "budget" in loop.stop_reason
    with pytest.raises(BudgetExhaustedError, match="budget"):
        loop.ask([Episode("p", "a", (), (), True)], [Episode("p", "b", (), (), True)])
    loop.close()


def test_budget_exhausted_continue_keeps_optimising():
    loop = RLHFLoop(tiny(rounds=3, budget=4, on_budget_exhausted="continue"), run_dir=None)
    hist = loop.run()
    assert [r["queries"] for r in hist] == [4, 0, 0]
    assert all(r["ppo_tokens"] > 0 for r in hist)
    assert loop.human.ledger.queries == 4
    loop.close()


def test_human_side_budget_caps_queries():
    from rlhf_envs.feedback.simulated import SimulatedHuman

    probe = RLHFLoop(tiny(), run_dir=None)
    human = SimulatedHuman(probe.gold, "Mistake", seed=0, cost_per_comparison=1.0, budget=5.0)
    probe.close()
    loop = RLHFLoop(tiny(rounds=3), human=human, run_dir=None)
    hist = loop.run()
    assert [r["queries"] for r in hist] == [4, 1]
    assert human.ledger.money == pytest.approx(5.0)
    assert "budget" in loop.stop_reason
    loop.close()


def test_schedule_counts():
    assert schedule_counts(RLHFConfig(rounds=4, queries_per_round=32)) == [32, 32, 32, 32]
    dec = RLHFConfig(rounds=5, queries_per_round=64, schedule="decaying", decay=0.5, min_queries=10)
    assert schedule_counts(dec) == [64, 32, 16, 10, 10]
    capped = RLHFConfig(rounds=4, queries_per_round=64, schedule="decaying", decay=0.5, budget=100)
    assert schedule_counts(capped) == [64, 32, 4, 0]


def test_decaying_schedule_and_random_selection_in_the_loop():
    cfg = tiny(
        rounds=3, queries_per_round=8, schedule="decaying", decay=0.5, min_queries=3, selection="random"
    )
    loop = RLHFLoop(cfg, run_dir=None)
    hist = loop.run()
    assert [r["queries"] for r in hist] == [8, 4, 3]
    assert [len(rec["labels"]) for rec in loop.feedback] == [8, 4, 3]
    assert [r["selection"] for r in hist] == ["random"] * 3
    assert loop.feedback[1]["pool"] == 2 * 4
    loop.close()


def test_select_pairs_rules():
    d = np.array([0.1, 0.5, 0.3, 0.5, 0.0, 0.9])
    assert select_pairs(3, 6, "disagreement", np.random.default_rng(0), d).tolist() == [5, 1, 3]
    r1 = select_pairs(3, 6, "random", np.random.default_rng(1))
    r2 = select_pairs(3, 6, "random", np.random.default_rng(1))
    assert r1.tolist() == r2.tolist() and len(set(r1.tolist())) == 3
    with pytest.raises(ConfigError, match="pool"):
        select_pairs(7, 6, "random", np.random.default_rng(0))
    with pytest.raises(ConfigError, match="selection"):
        select_pairs(1, 6, "entropy", np.random.default_rng(0), d)


def test_disagreement_selection_picks_top_pairs_in_the_loop(two_rounds):
    loop, _ = two_rounds
    rec = loop.feedback[1]
    pool = np.array(rec["pool_disagreement_values"])
    top = np.sort(pool)[::-1][: len(rec["labels"])]
    assert np.allclose(sorted(rec["disagreement"], reverse=True), top)
    assert min(rec["disagreement"]) >= np.median(pool)


def test_resume_after_interruption_is_equivalent(tmp_path):
    cfg = tiny(rounds=3)
    full = RLHFLoop(cfg, run_dir=tmp_path / "full")
    full.run()

    # Session 1: commits round 0, then dies inside round 1's PPO (after the human was asked).
    run = tmp_path / "interrupted"
    s1 = RLHFLoop(cfg, run_dir=run)
    calls = {"n": 0}
    learn = s1.agent.learn

    def dying_learn(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated crash")
        return learn(*args, **kw)

    s1.agent.learn = dying_learn
    with pytest.raises(KeyboardInterrupt):
        s1.run()
    assert s1.human.ledger.queries == 8  # round 1's answers were collected but not committed
    assert json.loads((run / "state.json").read_text())["rounds_done"] == 1

    # Session 2: a fresh process-like start from disk resumes after round 0 ...
    s2 = RLHFLoop(cfg, run_dir=run)
    assert s2.rounds_done == 1 and s2.human.ledger.queries == 4
    # ... and stops after round 1 (an orderly interruption) ...
    s2.run(callback=lambda loop, row: False)
    assert s2.rounds_done == 2
    # ... and session 3 finishes the run.
    s3 = RLHFLoop(cfg, run_dir=run)
    s3.run()
    assert s3.rounds_done == 3
    assert _same(_strip_times(s3.feedback), _strip_times(full.feedback))
    assert _same(_strip_times(s3.history), _strip_times(full.history))
    assert _same(s3.initial, full.initial)
    # the reference stays the initial model across rounds and resumes; the policy moved away
    initial_lm = s3._env("RLHF/Sentiment-v0", cfg.n_envs).task.lm.state_dict()
    ref = s3.agent.policy.ref.state_dict()
    assert all(torch.equal(ref[k], initial_lm[k]) for k in initial_lm)
    lm = s3.agent.policy.lm.state_dict()
    assert not all(torch.equal(lm[k], initial_lm[k]) for k in initial_lm)
    saved = json.loads((run / "rounds" / "round_002" / "feedback.json").read_text())
    assert sum(len(r["labels"]) for r in saved) == 12
    for loop in (full, s1, s2, s3):
        loop.close()


def test_resume_refuses_changed_settings(tmp_path):
    RLHFLoop(tiny(rounds=1), run_dir=tmp_path).run()
    with pytest.raises(ConfigError, match="queries_per_round"):
        RLHFLoop(tiny(rounds=1, queries_per_round=5), run_dir=tmp_path)
    with pytest.raises(ConfigError, match="already holds a run"):
        RLHFLoop(tiny(rounds=1), run_dir=tmp_path, resume=False)
    more = RLHFLoop(tiny(rounds=2), run_dir=tmp_path)  # more rounds is allowed
    assert more.rounds_done == 1
    more.close()


def test_config_errors():
    with pytest.raises(ConfigError, match="schedule"):
        RLHFConfig(schedule="cosine")
    with pytest.raises(ConfigError, match="selection"):
        RLHFConfig(selection="uncertainty")
    with pytest.raises(ConfigError, match="n_members"):
        RLHFConfig(selection="disagreement", n_members=1)
    with pytest.raises(ConfigError, match="budget"):
        RLHFConfig(budget=-1)
    with pytest.raises(ConfigError, match="compare"):
        RLHFLoop(tiny(), human=object(), run_dir=None)


def test_terminal_human_maps_answers_through_the_shown_order():
    shown: list[str] = []
    answers = iter(["x", "1", "2", "t", "s"])
    human = TerminalHuman(seed=3, input_fn=lambda _: next(answers), print_fn=shown.append)
    a = [Episode("p", f"a{i}", (), (), True) for i in range(4)]
    b = [Episode("p", f"b{i}", (), (), True) for i in range(4)]
    swaps = np.random.default_rng(3).random(4) < 0.5
    res = human.compare(a, b)
    exp0 = "B" if swaps[0] else "A"  # "1" = the first shown
    exp1 = "A" if swaps[1] else "B"
    assert res.labels == [exp0, exp1, "tie", "skip"]
    assert res.prob_a()[2:] == [0.5, None]
    assert any("please type" in s for s in shown)
    capped = TerminalHuman(max_queries=1, input_fn=lambda _: "1", print_fn=lambda s: None)
    with pytest.raises(BudgetExhaustedError):
        capped.compare(a[:2], b[:2])


def test_concordance():
    assert concordance(np.array([1.0, 2.0, 3.0]), np.array([0.1, 0.2, 0.3])) == 1.0
    assert concordance(np.array([3.0, 2.0, 1.0]), np.array([0.1, 0.2, 0.3])) == 0.0
    assert math.isnan(concordance(np.array([1.0, 2.0]), np.array([0.5, 0.5])))


def test_cli_has_rlhf_subcommand():
    from agents.rlhf import cmd_rlhf
    from rlhf_envs.cli import build_parser

    args = build_parser().parse_args(["rlhf", "--rounds", "2", "--selection", "random", "--budget", "40"])
    assert args.func is cmd_rlhf and args.rounds == 2 and args.selection == "random" and args.budget == 40


@pytest.mark.slow
def test_default_loop_learns_a_useful_proxy():
    """Three rounds of the default loop: the proxy orders fresh episodes by gold better than chance
    and the policy moves away from the initial model."""
    loop = RLHFLoop(RLHFConfig(rounds=3, seed=0), run_dir=None)
    hist = loop.run()
    assert len(hist) == 3
    assert hist[-1]["proxy_gold_accuracy"] > 0.55
    assert hist[-1]["kl"] > hist[0]["kl"] > 0
    loop.close()
