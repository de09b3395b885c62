"""Dense per-token feedback: prefix scorers, potential-based shaping on every id, per-token mark fits.

Discounting convention checked here (and documented on ``PotentialShaping``): the return of an
episode of ``T`` steps is ``G = sum_{t=0}^{T-1} gamma^t r_t`` with the shaping term's own ``gamma``;
the shaped return must equal the unshaped one plus ``gamma^T Phi(s_T) - Phi(s_0)``.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env, data_equivalence
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import rlhf_envs
from rlhf_envs.envs.shaping import PotentialShaping
from rlhf_envs.errors import ConfigError, ConfigValueError
from rlhf_envs.feedback.base import Episode
from rlhf_envs.feedback.prefix import (
    LearnedPrefixScorer,
    ScriptedPrefixScorer,
    SimulatedTokenMarker,
    as_batch,
)
from rlhf_envs.feedback.rules import Sentiment
from rlhf_envs.registration import TOY_IDS

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ENV_IDS = rlhf_envs.list_envs()


def _episodes_with_shaping(env_id: str, shaping, seed: int, n_episodes: int, action_seed: int = 3):
    """Step an env with seeded actions (EOS now and then); per episode its rewards and infos."""
    env = gym.make(env_id, shaping=shaping) if shaping is not None else gym.make(env_id)
    rng = np.random.default_rng(action_seed)
    eos = env.unwrapped.eos_id
    mask = env.unwrapped.task.action_mask().astype(bool)
    allowed = np.flatnonzero(mask)
    out = []
    env.reset(seed=seed)
    for _ in range(n_episodes):
        rewards, infos = [], []
        while True:
            a = eos if rng.random() < 0.12 else int(rng.choice(allowed))
            _, r, term, trunc, info = env.step(a)
            rewards.append(r)
            infos.append(info)
            if term or trunc:
                break
        out.append((np.asarray(rewards, dtype=np.float64), infos, env.unwrapped))
        env.reset()
    return out


@pytest.mark.parametrize("gamma", [1.0, 0.9])
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_shaped_return_telescopes_on_every_id(env_id: str, gamma: float) -> None:
    shaped = _episodes_with_shaping(env_id, {"potential": {"scorer": "scripted", "gamma": gamma}}, 5, 3)
    plain = _episodes_with_shaping(env_id, None, 5, 3)
    for (rs, infos, _), (r0, infos0, _) in zip(shaped, plain, strict=True):
        assert len(rs) == len(r0)  # the same actions: the same episode
        assert [i["reward_task"] for i in infos] == [i["reward_task"] for i in infos0]
        T = len(rs)
        disc = gamma ** np.arange(T)
        phi_0, phi_T = infos[0]["potential_prev"], infos[-1]["potential_next"]
        # each step's potentials chain: Phi(s_t) of step t is Phi(s_{t}) reported by step t - 1
        for a, b in zip(infos[:-1], infos[1:], strict=False):
            assert b["potential_prev"] == pytest.approx(a["potential_next"], abs=1e-6)
        assert float(disc @ rs) == pytest.approx(float(disc @ r0) + gamma**T * phi_T - phi_0, abs=1e-4)
        f = np.array([i["reward_potential"] for i in infos])
        assert float(disc @ f) == pytest.approx(gamma**T * phi_T - phi_0, abs=1e-4)


@pytest.mark.parametrize(
    "env_id", ["RLHF/Copy-v0", "RLHF/Addition-v0", "RLHF/Length-v0", "RLHF/Sentiment-v0"]
)
def test_step_potentials_equal_the_scorer_table_of_the_episode(env_id: str) -> None:
    """The env's per-step Phi values are the scorer's whole-episode prefix table (independent path)."""
    env = gym.make(env_id, shaping={"potential": "scripted"})
    task = env.unwrapped.task
    rng = np.random.default_rng(0)
    env.reset(seed=11)
    phis = []
    while True:
        a = (
            task.tokenizer.eos_id
            if rng.random() < 0.08
            else int(rng.choice(np.flatnonzero(task.action_mask())))
        )
        _, _, term, trunc, info = env.step(a)
        phis.append(info["potential_next"])
        if term or trunc:
            break
    batch = env.unwrapped._current_episode()
    table = ScriptedPrefixScorer(task.feedback, task.tokenizer).score_prefixes(batch)[0]
    assert table.shape == (len(phis) + 1,)
    np.testing.assert_allclose(table[1:], phis, atol=1e-6)
    assert table[-1] == pytest.approx(
        ScriptedPrefixScorer(task.feedback, task.tokenizer).score_states(batch)[0]
    )


def test_scripted_prefix_scores_of_copy_count_correct_tokens() -> None:
    env = gym.make("RLHF/Copy-v0", shaping={"potential": "scripted"})
    tok = env.unwrapped.task.tokenizer
    _, info = env.reset(options={"prompt": "abc="})
    got = []
    for ch in "abd":
        got.append(env.step(tok.encode(ch)[0])[4]["reward_potential"])
    np.testing.assert_allclose(got, [1 / 3, 1 / 3, 0.0], atol=1e-6)  # as-if-finished TargetMatch


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
@pytest.mark.parametrize("env_id", ["RLHF/Copy-v0", "RLHF/Sentiment-v0"])
@pytest.mark.parametrize("scorer", ["scripted", "marks"])
def test_vector_env_with_potential_matches_single_envs(env_id: str, mode: AutoresetMode, scorer: str) -> None:
    shaping = {"potential": {"scorer": scorer, "gamma": 0.95}}
    n = 4
    native = gym.make_vec(env_id, num_envs=n, autoreset_mode=mode, shaping=shaping)
    sync = SyncVectorEnv([lambda: gym.make(env_id, shaping=shaping) for _ in range(n)], autoreset_mode=mode)
    a, b = native.reset(seed=3), sync.reset(seed=3)
    rng = np.random.default_rng(1)
    for t in range(30):
        acts = rng.integers(0, native.single_action_space.n, size=n)
        acts[rng.random(n) < 0.15] = native.eos_id
        a, b = native.step(acts), sync.step(acts)
        for name, x, y in zip(("obs", "reward", "terminated", "truncated"), a[:4], b[:4], strict=True):
            assert data_equivalence(x, y), f"step {t}: {name} differs"
        for key in ("reward_potential", "potential_prev", "potential_next"):
            if key in b[4]:
                np.testing.assert_allclose(a[4][key][b[4]["_" + key]], b[4][key][b[4]["_" + key]], atol=1e-6)


@pytest.mark.parametrize("env_id", ["RLHF/Copy-v0", "RLHF/Sentiment-v0"])
def test_potential_shaping_passes_check_env(env_id: str) -> None:
    env = gym.make(env_id, shaping={"potential": {"scorer": "marks", "flip": 0.2, "seed": 1}})
    check_env(env.unwrapped, skip_render_check=True)


def test_potential_option_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="unknown scorer"):
        gym.make("RLHF/Copy-v0", shaping={"potential": "oracle"})
    with pytest.raises(ConfigValueError, match="gamma"):
        gym.make("RLHF/Copy-v0", shaping={"potential": {"scorer": "scripted", "gamma": 1.5}})
    with pytest.raises(ConfigError, match="learned"):
        gym.make("RLHF/Copy-v0", shaping={"potential": "learned"})
    with pytest.raises(ConfigError, match="only to the 'marks'"):
        gym.make("RLHF/Copy-v0", shaping={"potential": {"scorer": "scripted", "flip": 0.1}})
    with pytest.raises(ConfigError, match="probability"):
        gym.make("RLHF/Copy-v0", shaping={"potential": {"scorer": "marks", "flip": 2}})
    with pytest.raises(ConfigError, match="prefix scorer"):
        PotentialShaping(object())


# -- the simulated token marker ---------------------------------------------------------------------


def _review_batch(n: int = 40, seed: int = 0):
    from rlhf_envs.feedback.review_fixtures import ReviewGenerator, word_tokenizer
    from rlhf_envs.tokenization import HFTokenizer

    tok = HFTokenizer(word_tokenizer())
    rng = np.random.default_rng(seed)
    eps = []
    for e in ReviewGenerator().episodes(n, rng):
        p, c = tok.encode(e.prompt), tok.encode(e.completion) + [tok.eos_id]
        eps.append(Episode(e.prompt, tok.decode(c), tuple(p), tuple(c), True, {}, e.seed))
    return eps, tok


def test_marker_marks_follow_the_gold_and_noise_is_seeded() -> None:
    eps, tok = _review_batch()
    batch = as_batch(eps, tok.pad_id)
    clean = SimulatedTokenMarker(Sentiment(), tok).marks(batch)
    words = {"good", "great", "excellent", "bad", "terrible", "awful"}
    pos = [
        tok.decode([t])
        for e, m in zip(eps, clean, strict=True)
        for t, x in zip(e.completion_ids, m, strict=True)
        if x > 0
    ]
    assert pos and sum(w in words or True for w in pos) == len(pos)
    assert all(set(np.unique(m)) <= {-1.0, 0.0, 1.0} for m in clean)
    assert sum(int((m != 0).sum()) for m in clean) > len(eps)  # marks are given
    flipped = SimulatedTokenMarker(Sentiment(), tok, flip=1.0).marks(batch)
    for a, b in zip(clean, flipped, strict=True):
        np.testing.assert_array_equal(a, -b)
    assert all(not m.any() for m in SimulatedTokenMarker(Sentiment(), tok, miss=1.0).marks(batch))
    noisy = SimulatedTokenMarker(Sentiment(), tok, flip=0.3, seed=4)
    m1 = noisy.marks(batch)
    m2 = noisy.marks(as_batch(eps[::-1], tok.pad_id))[::-1]  # batching and order do not matter
    for a, b in zip(m1, m2, strict=True):
        np.testing.assert_array_equal(a, b)
    other = SimulatedTokenMarker(Sentiment(), tok, flip=0.3, seed=5).marks(batch)
    assert any((a != b).any() for a, b in zip(m1, other, strict=True))


def test_marker_spans_cover_tokens_before_a_mark_and_potential_is_the_net_mark() -> None:
    eps, tok = _review_batch(20)
    batch = as_batch(eps, tok.pad_id)
    own = SimulatedTokenMarker(Sentiment(), tok).marks(batch)
    spans = SimulatedTokenMarker(Sentiment(), tok, span=2).marks(batch)
    for a, b in zip(own, spans, strict=True):
        assert (b[a != 0] == a[a != 0]).all() and (b != 0).sum() >= (a != 0).sum()
        for i in np.flatnonzero(a):
            for k in (1, 2):
                if i - k >= 0 and a[i - k] == 0 and not a[max(0, i - k) : i].any():
                    assert b[i - k] == a[i]
    table = SimulatedTokenMarker(Sentiment(), tok, scale=0.5).score_prefixes(batch)
    for b, m in enumerate(own):
        np.testing.assert_allclose(table[b, 1 : len(m) + 1], 0.5 * np.cumsum(m), atol=1e-6)
        assert table[b, 0] == 0.0


# -- the learned prefix scorer ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_rm():
    from rlhf_envs.feedback.learned import RewardModel

    return RewardModel(seed=0, n_members=2, aggregate="mean_minus_std")


def _language_batch(n: int = 6):
    env = gym.make("RLHF/Sentiment-v0", ref_logprobs=False)
    task = env.unwrapped.task
    rng = np.random.default_rng(0)
    eps = []
    for i in range(n):
        _, info = env.reset(seed=i)
        p = task.prompt_from_text(info["prompt"])
        k = int(rng.integers(1, task.max_new_tokens + 1))
        c = rng.integers(3, task.tokenizer.vocab_size, size=k).tolist()
        if i % 2:
            c[-1] = task.tokenizer.eos_id
        eps.append(Episode(p.text, task.tokenizer.decode(c), p.ids, tuple(c), bool(i % 2), {}, i))
    return as_batch(eps, task.tokenizer.pad_id), task


def test_learned_prefix_scorer_matches_one_pass_per_prefix(default_rm) -> None:
    rm = default_rm
    rm.offsets, rm.scales = np.array([0.3, -0.2]), np.array([2.0, 0.5])  # normalisation is applied too
    batch, task = _language_batch(4)
    scorer = LearnedPrefixScorer(rm, task.tokenizer)
    assert scorer.aligner.identity  # the language tasks' ids are the reward model's
    table = scorer.score_prefixes(batch)
    np.testing.assert_allclose(table, scorer.score_prefixes_one_by_one(batch), atol=2e-5)
    for b in range(2):  # literally one forward per prefix, each on its own
        ids = [
            *batch.prompt_ids[b, : batch.prompt_lengths[b]],
            *batch.completion_ids[b, : batch.completion_lengths[b]],
        ]
        for t in range(batch.completion_lengths[b] + 1):
            one = rm.score_prefixes([ids[: batch.prompt_lengths[b] + t]])[0][-1]
            assert table[b, t] == pytest.approx(one, abs=2e-5)
    np.testing.assert_allclose(
        scorer.score_states(batch), table[np.arange(len(batch)), batch.completion_lengths], atol=2e-5
    )
    # at an EOS-ended text the prefix head reads where score() reads (on the same ids: score() itself
    # re-encodes the decoded text, which need not give back random ids)
    for b in np.flatnonzero(batch.terminated):
        ids = [
            *batch.prompt_ids[b, : batch.prompt_lengths[b]],
            *batch.completion_ids[b, : batch.completion_lengths[b]],
        ]
        whole = rm.aggregate_scores(rm._scores_of_ids([ids]))[0]
        assert table[b, batch.completion_lengths[b]] == pytest.approx(whole, abs=2e-5)


def test_learned_prefix_scorer_maps_another_vocabulary_token_by_token(default_rm) -> None:
    env = gym.make("RLHF/Reverse-v0", shaping={"potential": default_rm})
    term = next(t for t in env.unwrapped.shaping if t.name == "potential")
    assert isinstance(term.scorer, LearnedPrefixScorer) and not term.scorer.aligner.identity
    rs, infos, _ = _episodes_with_shaping("RLHF/Reverse-v0", {"potential": default_rm}, 0, 2)[0]
    f = np.array([i["reward_potential"] for i in infos])
    assert f.sum() == pytest.approx(infos[-1]["potential_next"] - infos[0]["potential_prev"], abs=1e-5)
    tok = gym.make("RLHF/Reverse-v0").unwrapped.task.tokenizer
    ep = Episode(
        "abc=", "cba", tuple(tok.encode("abc=")), tuple(tok.encode("cba")) + (tok.eos_id,), True, {}, 0
    )
    b = as_batch([ep], tok.pad_id)
    scorer = LearnedPrefixScorer(default_rm, tok)
    np.testing.assert_allclose(scorer.score_prefixes(b), scorer.score_prefixes_one_by_one(b), atol=2e-5)


def test_learned_scorer_is_available_on_the_simulated_human_id() -> None:
    shaped = _episodes_with_shaping("RLHF/SimulatedHuman-v0", {"potential": "learned"}, 0, 2)
    for _, infos, _ in shaped:
        f = np.array([i["reward_potential"] for i in infos])
        assert np.isfinite(f).all() and np.abs(f).sum() > 0


# -- fitting the prefix head on per-token marks ------------------------------------------------------


def _step_sign_accuracy(rm, batch, marks) -> float:
    table = LearnedPrefixScorer(rm).score_prefixes(batch)
    hits = [np.sign(np.diff(table[b, : len(m) + 1]))[m != 0] == m[m != 0] for b, m in enumerate(marks)]
    return float(np.concatenate(hits).mean())


@pytest.mark.slow
def test_fit_token_marks_learns_the_marks_of_held_out_reviews() -> None:
    from rlhf_envs.feedback.learned import RewardModel
    from rlhf_envs.feedback.review_fixtures import tiny_gpt2_config

    eps, tok = _review_batch(300, seed=1)
    marker = SimulatedTokenMarker(Sentiment(), tok, flip=0.05, seed=2)
    marks = marker.marks(as_batch(eps, tok.pad_id))
    fresh, _ = _review_batch(80, seed=9)
    fb = as_batch(fresh, tok.pad_id)
    fresh_marks = SimulatedTokenMarker(Sentiment(), tok).marks(fb)
    rm = RewardModel(tiny_gpt2_config(tok.hf), tok.hf, seed=0, normalize=True)
    before = _step_sign_accuracy(rm, fb, fresh_marks)
    report = rm.fit_token_marks(eps, marks, epochs=8, lr=2e-3, val_fraction=0.2, train_batch_size=8)
    assert report.kind == "token_marks" and report.n_val == 60 and np.isfinite(report.val_loss)
    assert report.val_accuracy > 0.65, report  # sign of the predicted step on held-out marked tokens
    # the fitted head as a potential: its steps follow the (noise-free) marks on fresh reviews
    after = _step_sign_accuracy(rm, fb, fresh_marks)
    assert after > 0.65 and after > before + 0.15, (before, after)
    assert rm.offsets.tolist() == [0.0] and rm.scales.tolist() == [1.0]  # targets are in marks
    with pytest.raises(Exception, match="finite numbers"):
        rm.fit_token_marks(eps[:3], [np.zeros(2)] * 3)


@pytest.mark.parametrize("env_id", TOY_IDS)
def test_marks_potential_on_toy_ids_rewards_correct_tokens(env_id: str) -> None:
    """With the task's score as gold and no noise, the marks scorer pays +1 for a correct token."""
    env = gym.make(env_id, shaping={"potential": "marks"})
    tok = env.unwrapped.task.tokenizer
    _, info = env.reset(seed=0)
    for ch in info["target"]:
        _, _, _, _, step = env.step(tok.encode(ch)[0])
        assert step["reward_potential"] == pytest.approx(1.0)


# -- the registry-wide env tests with the new feedback models -----------------------------------------

SCORERS = ["scripted", "marks"]


@pytest.mark.parametrize("scorer", SCORERS)
@pytest.mark.parametrize(
    "env_id",
    [
        i if i in TOY_IDS else pytest.param(i, marks=pytest.mark.slow) for i in ENV_IDS
    ],  # language: 15-150 s each
)
def test_registry_checks_with_potential_shaping(env_id: str, scorer: str) -> None:
    """Every id with each prefix scorer: the Gymnasium and SB3 checkers (warnings as errors), seeded
    determinism, pickling mid-episode, and the native vector env against SyncVectorEnv."""
    import pickle
    import warnings

    from stable_baselines3.common.env_checker import check_env as sb3_check_env
    from test_envs import _assert_same_step, rollout

    shaping = {
        "potential": {"scorer": scorer, "gamma": 0.97}
        if scorer == "scripted"
        else {"scorer": scorer, "flip": 0.1}
    }
    env = gym.make(env_id, render_mode="ansi", shaping=shaping)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
        sb3_check_env(gym.make(env_id, shaping=shaping).unwrapped, warn=True)
    a = rollout(gym.make(env_id, shaping=shaping), seed=123, n_steps=30)
    assert data_equivalence(a, rollout(gym.make(env_id, shaping=shaping), seed=123, n_steps=30))
    env = gym.make(env_id, shaping=shaping)
    env.reset(seed=3)
    env.step(2)
    clone = pickle.loads(pickle.dumps(env))
    rng = np.random.default_rng(0)
    for _ in range(20):
        act = int(rng.integers(env.action_space.n))
        x, y = env.step(act), clone.step(act)
        assert data_equivalence(x, y)
        if x[2] or x[3]:
            assert data_equivalence(env.reset(), clone.reset())
    n = 3
    native = gym.make_vec(env_id, num_envs=n, shaping=shaping)
    sync = SyncVectorEnv([lambda: gym.make(env_id, shaping=shaping) for _ in range(n)])
    _assert_same_step(native.reset(seed=7), sync.reset(seed=7), -1)
    for t in range(20):
        acts = rng.integers(0, native.single_action_space.n, size=n)
        acts[rng.random(n) < 0.15] = native.eos_id
        _assert_same_step(native.step(acts), sync.step(acts), t)
