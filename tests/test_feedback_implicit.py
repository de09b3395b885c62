"""The simulated click user, the swap-intervention propensity estimator, the implicit-feedback rewards
and ``RLHF/ImplicitFeedback-v0`` (issue 18, item 2)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import rlhf_envs  # noqa: F401  (registers the ids)
from rlhf_envs.errors import ConfigError, ConfigValueError, RLHFEnvsError
from rlhf_envs.feedback.base import Episode
from rlhf_envs.feedback.click_user import ClickUser, ClickUserConfig
from rlhf_envs.feedback.implicit import ImplicitFeedback, implicit_rewards
from rlhf_envs.feedback.propensity import apply_swaps, estimate_examination, swap_positions
from rlhf_envs.feedback.scripted import Sentiment

# -- the click model ------------------------------------------------------------------------------------


def test_examination_falls_with_position_as_configured() -> None:
    user = ClickUser(ClickUserConfig(list_size=5, position_bias=1.0, abandonment=0.1), seed=0)
    imp = user.simulate_lists(np.zeros((40_000, 5)))
    examined = imp.examined[~imp.left].mean(0)
    np.testing.assert_allclose(examined, [1, 1 / 2, 1 / 3, 1 / 4, 1 / 5], atol=0.012)
    assert abs(imp.left.mean() - 0.1) < 0.006
    assert not imp.examined[imp.left].any() and not imp.clicked[~imp.examined].any()
    ctr = imp.clicked.mean(0)
    assert np.all(np.diff(ctr) < 0), f"click rate should fall with position, got {ctr}"
    flat = ClickUser(ClickUserConfig(position_bias=0.0, abandonment=0.0), seed=0).simulate_lists(
        np.zeros((20_000, 5))
    )
    assert flat.examined.all()


def test_clicks_satisfaction_and_dwell_grow_with_utility() -> None:
    cfg = ClickUserConfig(list_size=1, abandonment=0.0)
    user = ClickUser(cfg, seed=1)
    rows = {}
    for u in (-1.0, 0.0, 1.0):
        imp = user.simulate_lists(np.full((20_000, 1), u))
        clicked = imp.clicked[:, 0]
        rows[u] = (clicked.mean(), imp.dwell[clicked, 0].mean(), imp.satisfied[clicked, 0].mean())
        assert abs(clicked.mean() - cfg.click_probability(u)) < 0.012
    ctr, dwell, sat = (np.array([rows[u][i] for u in (-1.0, 0.0, 1.0)]) for i in range(3))
    assert np.all(np.diff(ctr) > 0.2) and np.all(np.diff(dwell) > 5) and np.all(np.diff(sat) > 0.2)
    np.testing.assert_allclose(dwell, cfg.mean_dwell(np.array([-1.0, 0.0, 1.0])), rtol=0.06)
    # quick returns: a click that did not satisfy is followed by a short dwell
    imp = user.simulate_lists(np.zeros((20_000, 1)))
    quick = imp.dwell[imp.clicked & ~imp.satisfied]
    long = imp.dwell[imp.satisfied]
    assert abs(quick.mean() - cfg.dwell_quick) < 0.3 and abs(long.mean() - cfg.dwell_satisfied) < 3
    assert np.median(quick) < 10 < np.median(long)


def test_abandonment_counts_impressions_without_clicks() -> None:
    user = ClickUser(ClickUserConfig(abandonment=0.3), seed=2)
    imp = user.simulate_lists(np.full((10_000, 5), -1.0))
    np.testing.assert_array_equal(imp.abandoned, ~imp.clicked.any(1))
    assert imp.abandoned[imp.left].all() and imp.abandoned.mean() > imp.left.mean() > 0.27


def test_same_seed_same_reactions_and_single_impressions_independent_of_batching() -> None:
    u = np.random.default_rng(0).uniform(-1, 1, (500, 5))
    a = ClickUser(seed=7).simulate_lists(u)
    b = ClickUser(seed=7).simulate_lists(u)
    c = ClickUser(seed=8).simulate_lists(u)
    for f in ("clicked", "dwell", "examined", "left"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert not np.array_equal(a.clicked, c.clicked)
    user = ClickUser(seed=0)
    keys = np.arange(1000, 1300)
    pos = keys % 5
    uu = u[:300, 0]
    whole = user.simulate_single(uu, pos, keys)
    parts = [user.simulate_single(uu[i : i + 7], pos[i : i + 7], keys[i : i + 7]) for i in range(0, 300, 7)]
    np.testing.assert_array_equal(whole.dwell[:, 0], np.concatenate([p.dwell[:, 0] for p in parts]))
    assert 0.1 < whole.clicked.mean() < 0.6


# -- propensities from swaps ----------------------------------------------------------------------------


@pytest.mark.parametrize("examination", [None, (1.0, 0.7, 0.2, 0.1, 0.05)])
def test_swap_estimator_recovers_the_examination_curve(examination) -> None:
    """Within 0.03 absolute of the simulator's relative curve from 60,000 impressions (80% swaps),
    and within four of its own standard errors."""
    cfg = ClickUserConfig(position_bias=1.0, examination=examination, abandonment=0.1)
    rng = np.random.default_rng(3)
    logged = rng.uniform(-1, 1, (60_000, 5))
    logged.sort(axis=1)
    logged = logged[:, ::-1].copy()  # a ranker that puts the best result first: a strong confounder
    swap_to = swap_positions(60_000, 5, 0.8, rng)
    imp = ClickUser(cfg, seed=3).simulate_lists(apply_swaps(logged, swap_to), rng)
    est = estimate_examination(swap_to, imp.clicked[np.arange(60_000), swap_to], 5)
    true = cfg.examination_curve / cfg.examination_curve[0]
    assert est.relative[0] == 1.0
    np.testing.assert_allclose(est.relative, true, atol=0.03)
    assert np.all(np.abs(est.relative - true) <= 4 * est.stderr + 1e-12)
    # the naive per-position click rates are far off (they mix position with quality)
    naive = imp.clicked.mean(0) / imp.clicked.mean(0)[0]
    assert np.abs(naive - true).max() > 0.05


def test_swaps_are_random_pairs_with_the_top() -> None:
    rng = np.random.default_rng(0)
    s = swap_positions(20_000, 4, 0.25, rng)
    assert abs((s > 0).mean() - 0.25) < 0.01 and set(np.unique(s)) == {0, 1, 2, 3}
    ranked = np.tile(np.arange(4), (3, 1))
    np.testing.assert_array_equal(
        apply_swaps(ranked, np.array([0, 2, 3])), [[0, 1, 2, 3], [2, 1, 0, 3], [3, 1, 2, 0]]
    )


# -- rewards --------------------------------------------------------------------------------------------


def test_estimators_raw_satisfied_and_ipw() -> None:
    clicked = np.array([True, True, False, True])
    dwell = np.array([3.0, 40.0, 0.0, 25.0])
    pos = np.array([0, 1, 2, 3])
    p = np.array([1.0, 0.5, 0.25, 0.01])
    np.testing.assert_array_equal(implicit_rewards("raw", clicked, dwell, pos), [1, 1, 0, 1])
    np.testing.assert_array_equal(implicit_rewards("satisfied", clicked, dwell, pos), [0, 1, 0, 1])
    np.testing.assert_allclose(implicit_rewards("debiased", clicked, dwell, pos, p, clip=0.05), [1, 2, 0, 20])
    np.testing.assert_allclose(
        implicit_rewards("debiased_satisfied", clicked, dwell, pos, p, clip=0.05), [0, 2, 0, 20]
    )


def test_ipw_reward_does_not_depend_on_position_but_clicks_do() -> None:
    cfg = ClickUserConfig(abandonment=0.0)
    user = ClickUser(cfg, seed=4)
    n = 100_000
    keys = np.arange(n)
    pos = keys % 5
    imp = user.simulate_single(np.full(n, 0.5), pos, keys)
    raw = implicit_rewards("raw", imp.clicked[:, 0], imp.dwell[:, 0], pos)
    ipw = implicit_rewards("debiased", imp.clicked[:, 0], imp.dwell[:, 0], pos, cfg.examination_curve)
    raw_by_pos = np.bincount(pos, raw) / np.bincount(pos)
    ipw_by_pos = np.bincount(pos, ipw) / np.bincount(pos)
    assert raw_by_pos[0] > 3 * raw_by_pos[4]
    np.testing.assert_allclose(ipw_by_pos, cfg.click_probability(0.5), rtol=0.1)


def _episodes(texts: list[str]) -> list[Episode]:
    return [Episode("p", t, (1,), (2,), True, {}, seed=i) for i, t in enumerate(texts)]


def test_implicit_feedback_scores_from_signals_and_seeds() -> None:
    eps = _episodes(["great wonderful", "awful terrible", "ok"] * 40)
    fb = ImplicitFeedback(Sentiment(), ClickUser(), "debiased", propensities=[1, 0.5, 0.3, 0.25, 0.2])
    s = fb.signals(eps)
    np.testing.assert_allclose(fb.score(eps), s["reward"].astype(np.float32))
    np.testing.assert_allclose(s["reward"], s["click"] / np.array([1, 0.5, 0.3, 0.25, 0.2])[s["position"]])
    np.testing.assert_array_equal(fb.score(eps), fb.score(eps))  # a function of the episodes' seeds
    np.testing.assert_allclose(s["reward_gold"], Sentiment().score(eps))
    assert set(np.unique(s["position"])) == set(range(5))
    good = s["click"][0::3].mean()
    bad = s["click"][1::3].mean()
    assert good > bad + 0.15


# -- clear errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"list_size": 0}, "list_size"),
        ({"list_size": 2.0}, "list_size"),
        ({"position_bias": -1}, "position_bias"),
        ({"position_bias": float("nan")}, "position_bias"),
        ({"abandonment": 1.0}, "abandonment"),
        ({"click_floor": 0.9, "click_ceiling": 0.1}, "click_floor"),
        ({"dwell_quick": 50.0, "dwell_satisfied": 10.0}, "dwell_satisfied"),
        ({"dwell_quick": 0}, "dwell_quick"),
        ({"utility_scale": 0}, "utility_scale"),
        ({"examination": (1.0, 0.5)}, "examination"),
        ({"examination": (1.0, 0.5, 0.0, 0.2, 0.1)}, "examination"),
        ({"examination": "abc"}, "examination"),
    ],
)
def test_bad_user_settings_raise_errors_naming_the_field(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        ClickUserConfig(**kwargs)


def test_bad_inputs_to_the_user_estimator_and_feedback() -> None:
    user = ClickUser(seed=0)
    with pytest.raises(ConfigValueError, match="finite"):
        user.simulate_lists(np.array([[0.0, np.nan]]))
    with pytest.raises(ConfigValueError, match="list_size"):
        user.simulate_lists(np.zeros((2, 6)))
    with pytest.raises(ConfigValueError, match="positions"):
        user.simulate_single(np.zeros(2), np.array([0, 5]), np.array([1, 2]))
    with pytest.raises(ConfigError, match="seed"):
        ClickUser(seed=-1)
    with pytest.raises(ConfigValueError, match="never clicked"):
        estimate_examination(np.array([0, 1, 0, 1]), np.zeros(4), 2)
    with pytest.raises(ConfigValueError, match="position"):
        estimate_examination(np.array([0, 0, 1]), np.ones(3), 3)
    with pytest.raises(ConfigValueError, match="swap_fraction"):
        swap_positions(10, 5, 1.5, np.random.default_rng(0))
    with pytest.raises(ConfigValueError, match="list_size"):
        swap_positions(10, 1, 0.5, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="propensities"):
        ImplicitFeedback(Sentiment(), user, "debiased")
    with pytest.raises(ConfigValueError, match="propensities"):
        ImplicitFeedback(Sentiment(), user, "debiased", propensities=[1.0, 0.5])
    with pytest.raises(ConfigValueError, match="propensities"):
        ImplicitFeedback(Sentiment(), user, "debiased", propensities=[1.0, 0.5, -0.1, 0.2, 0.1])
    with pytest.raises(ConfigError, match="estimator"):
        ImplicitFeedback(Sentiment(), user, "clicks")
    with pytest.raises(ConfigValueError, match="dwell_threshold"):
        ImplicitFeedback(Sentiment(), user, "satisfied", dwell_threshold=-1)
    with pytest.raises(ConfigError, match="estimator"):
        implicit_rewards("ctr", np.zeros(2), np.zeros(2), np.zeros(2, dtype=int))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"estimator": "clicks"}, "estimator"),
        ({"list_size": 0}, "list_size"),
        ({"position_bias": -0.5}, "position_bias"),
        ({"abandonment": 1.0}, "abandonment"),
        ({"dwell_threshold": 0}, "dwell_threshold"),
        ({"clip": 2.0}, "clip"),
        ({"propensities": [1.0, 0.5]}, "propensities"),
        ({"swap_impressions": 10}, "swap_impressions"),
        ({"calibration_prompts": 0}, "calibration_prompts"),
    ],
)
def test_env_rejects_bad_settings_clearly(kwargs, match) -> None:
    with pytest.raises(RLHFEnvsError, match=match):
        gym.make("RLHF/ImplicitFeedback-v0", **kwargs)


# -- the env ---------------------------------------------------------------------------------------------


def _episode_info(env: gym.Env, seed: int) -> tuple[float, dict]:
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    done = False
    while not done:  # at most max_new_tokens steps
        _, reward, term, trunc, info = env.step(int(rng.integers(env.action_space.n)))
        done = term or trunc
    return reward, info


def test_env_pays_the_estimator_and_reports_gold() -> None:
    p = [1.0, 0.5, 0.3, 0.25, 0.2]
    env = gym.make("RLHF/ImplicitFeedback-v0", max_new_tokens=4, propensities=p, ref_logprobs=False)
    assert env.unwrapped.task.propensity_estimate is None  # given propensities: no swap experiment
    seen = set()
    for seed in range(40):
        reward, info = _episode_info(env, seed)
        assert {"reward_gold", "click", "dwell", "position"} <= set(info)
        assert -1 <= info["reward_gold"] <= 1
        assert reward == pytest.approx(float(info["click"]) / p[info["position"]])
        assert (info["dwell"] > 0) == info["click"]
        seen.add(info["position"])
    assert seen == set(range(5))
    raw = gym.make("RLHF/ImplicitFeedback-v0", max_new_tokens=4, estimator="raw", ref_logprobs=False)
    reward, info = _episode_info(raw, 0)
    assert reward == float(info["click"])


def test_env_estimates_propensities_from_its_swap_experiment() -> None:
    env = gym.make("RLHF/ImplicitFeedback-v0", max_new_tokens=4, swap_impressions=40_000, ref_logprobs=False)
    task = env.unwrapped.task
    est = task.propensity_estimate
    np.testing.assert_allclose(est.relative, task.user.config.examination_curve, atol=0.06)
    np.testing.assert_array_equal(task.implicit.propensities, est.relative)
    again = gym.make(
        "RLHF/ImplicitFeedback-v0", max_new_tokens=4, swap_impressions=40_000, ref_logprobs=False
    )
    assert again.unwrapped.task.propensity_estimate is est  # memoised for identical settings


def test_benchmark_run_debiased_beats_raw_only_under_position_bias() -> None:
    """One run of benchmarks/implicit_feedback.py's part 1 on a synthetic pool whose production
    ranker puts the worst result first (so position and gold are confounded)."""
    from benchmarks import implicit_feedback as bench

    gold = np.sort(np.random.default_rng(0).uniform(-1, 1, (bench.N_PROMPTS, bench.LIST_SIZE)), axis=1)
    pool = {"gold": gold, "ids": np.arange(gold.size).reshape(gold.shape)}
    on = bench.one_run(pool, position_bias=1.0, seed=0)
    off = bench.one_run(pool, position_bias=0.0, seed=0)
    assert on["debiased"]["item_pearson"] > on["raw"]["item_pearson"] + 0.1
    assert abs(off["debiased"]["item_pearson"] - off["raw"]["item_pearson"]) < 0.02
    np.testing.assert_allclose(on["propensity_estimate"], [1, 1 / 2, 1 / 3, 1 / 4, 1 / 5], atol=0.1)
