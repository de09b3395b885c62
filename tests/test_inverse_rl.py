"""Rewards learned from demonstrations: the AIRL discriminator, the exported TokenReward, BC."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import rlhf_envs
from agents.airl import AIRL, discriminator_logits, discriminator_loss
from agents.bc import BC
from agents.demonstrations import (
    load_episodes,
    policy_token_logprobs,
    sample_episodes,
    save_episodes,
    scripted_demonstrations,
)
from rlhf_envs.errors import ConfigError, DataError, FeedbackError
from rlhf_envs.feedback.base import Episode
from rlhf_envs.feedback.inverse_rl import TokenReward, auc, toy_backbone_config
from rlhf_envs.registration import TOY_IDS
from rlhf_envs.tasks.toy import TOY_TOKENIZER

pytestmark = pytest.mark.usefixtures("one_torch_thread")

COPY = "RLHF/Copy-v0"
EQ = TOY_TOKENIZER.encode("=")[0]
SMALL_PPO = {"preset": "toy-copy", "n_envs": 8, "n_steps": 8, "d_model": 32, "n_heads": 2}


def toy_reward(seed: int = 0, horizon: int | None = None) -> TokenReward:
    return TokenReward(toy_backbone_config(width=32, layers=1), anchor_token=EQ, horizon=horizon, seed=seed)


def ep(prompt: str, completion: str, eos: bool = True) -> Episode:
    p = TOY_TOKENIZER.encode(prompt)
    c = TOY_TOKENIZER.encode(completion) + ([TOY_TOKENIZER.eos_id] if eos else [])
    return Episode(prompt, completion, tuple(p), tuple(c), eos)


@pytest.fixture(scope="module")
def demos() -> list[Episode]:
    episodes, returns = scripted_demonstrations(COPY, 32, seed=1000, n_envs=8)
    assert np.all(returns == 1.0)
    return episodes


def test_scripted_demonstrations_are_correct_for_every_toy_task() -> None:
    for env_id in TOY_IDS:
        eps, returns = scripted_demonstrations(env_id, 10, seed=3, n_envs=4)
        assert len(eps) == 10 and np.all(returns == 1.0), env_id
        assert all(e.terminated and e.completion_ids[-1] == TOY_TOKENIZER.eos_id for e in eps)
    eps, _ = scripted_demonstrations(COPY, 5, seed=3, n_envs=4)
    assert all(e.prompt == e.completion + "=" for e in eps)


def test_discriminator_logits_are_f_minus_log_pi_on_a_hand_made_batch() -> None:
    """Each transition's f read from a one-sequence pass of (prefix, action), log pi from the
    policy's full softmax over one observation, by hand; the batched path must agree."""
    from agents import PPO

    reward = toy_reward(seed=1)
    agent = PPO(COPY, seed=0, **SMALL_PPO)
    batch = [ep("abc=", "abc"), ep("ba=", "bb"), ep("hgfe=", "h", eos=False)]
    f, fmask = reward.completion_rewards(batch)
    with torch.no_grad():
        logp, lmask = policy_token_logprobs(agent, batch)
        logits = discriminator_logits(f, logp[:, : f.shape[1]])
    assert torch.equal(fmask, lmask[:, : f.shape[1]])
    action_mask = torch.as_tensor(agent.env.task.action_mask(), dtype=torch.bool)[None]
    for i, e in enumerate(batch):
        seq = list(e.prompt_ids) + list(e.completion_ids)
        for t, a in enumerate(e.completion_ids):
            k = len(e.prompt_ids) + t
            ids = torch.tensor([seq[: k + 1]])
            with torch.no_grad():
                f_manual = reward.net(ids, torch.ones_like(ids))[0, -1]
            obs = {"input_ids": np.zeros((1, 14), np.int64), "attention_mask": np.zeros((1, 14), np.int8)}
            obs["input_ids"][0, :k] = seq[:k]
            obs["attention_mask"][0, :k] = 1
            with torch.no_grad():
                x = agent.policy.encoder(obs, "cpu")
                raw, _ = agent.policy._forward(x)
                probs = torch.softmax(raw.masked_fill(~action_mask, -1e8), -1)[0]
            expected = f_manual - torch.log(probs[a])
            assert float(logits[i, t]) == pytest.approx(float(expected), abs=1e-4)
            d = torch.exp(f_manual) / (torch.exp(f_manual) + probs[a])  # D = e^f / (e^f + pi)
            assert float(torch.sigmoid(logits[i, t])) == pytest.approx(float(d), abs=1e-5)
    assert not fmask[2, 1:].any() and fmask[0, :4].all()


def test_discriminator_loss_labels_demonstrations_one_and_policy_zero() -> None:
    f = torch.tensor([[5.0, 5.0]])
    zero = torch.zeros(1, 2)
    ones = torch.ones(1, 2, dtype=torch.bool)
    good, acc = discriminator_loss(f, zero, ones, -f, zero, ones)
    bad, _ = discriminator_loss(-f, zero, ones, f, zero, ones)
    assert float(good) < 0.01 < 4.0 < float(bad)
    assert acc == {"disc_acc_expert": 1.0, "disc_acc_policy": 1.0}


def test_token_reward_score_is_sum_of_token_rewards_plus_absorbing_steps() -> None:
    reward = toy_reward(seed=2, horizon=7)
    with torch.no_grad():
        reward.net.absorbing.fill_(0.25)
    batch = [ep("abc=", "abc"), ep("ab=", "abcdefg", eos=False)]
    tokens = reward.token_rewards(batch)
    assert [len(t) for t in tokens] == [7, 7]  # 4 real + 3 absorbing; 7 real (truncated)
    assert np.allclose(tokens[0][4:], 0.25)
    assert np.allclose(reward.score(batch), [t.sum() for t in tokens], atol=1e-5)
    plain = toy_reward(seed=2)  # no horizon: no absorbing steps
    assert [len(t) for t in plain.token_rewards(batch)] == [4, 7]
    # batching does not change a score (padding is masked)
    one = [reward.score([e])[0] for e in batch]
    assert np.allclose(reward.score(batch), one, atol=1e-5)


def test_token_reward_refuses_foreign_token_ids() -> None:
    reward = toy_reward()
    with pytest.raises(FeedbackError, match="outside"):
        reward.score([Episode("x", "y", (1000,), (3,), True)])
    with pytest.raises(ConfigError):
        TokenReward(toy_backbone_config(), anchor_token=-1)


def test_token_reward_save_load_round_trip_and_corruption(tmp_path) -> None:
    reward = toy_reward(seed=3, horizon=7)
    batch = [ep("abc=", "abc"), ep("dd=", "d")]
    reward.save(tmp_path / "r")
    again = TokenReward.load(tmp_path / "r")
    assert again.horizon == 7 and again.anchor_token == EQ
    assert np.array_equal(reward.score(batch), again.score(batch))
    (tmp_path / "r" / "token_reward.safetensors").write_bytes(b"garbage")
    with pytest.raises(DataError, match="safetensors"):
        TokenReward.load(tmp_path / "r")
    with pytest.raises(ConfigError, match="no saved TokenReward"):
        TokenReward.load(tmp_path)


@pytest.mark.parametrize("env_id", TOY_IDS)
def test_exported_reward_through_gym_make_passes_env_checks(env_id: str) -> None:
    reward = toy_reward(seed=4, horizon=8)
    env = gym.make(env_id, feedback=reward, render_mode="ansi")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
    # the scripted expert's episode is paid exactly the reward's score of that episode
    demo, _ = scripted_demonstrations(env_id, 1, seed=11, n_envs=1)
    env = gym.make(env_id, feedback=reward)
    env.reset(seed=11)
    for a in demo[0].completion_ids:
        _, r, term, trunc, info = env.step(a)
    assert term and r == pytest.approx(float(reward.score(demo)[0]), abs=1e-5)
    assert info["reward_task"] == pytest.approx(r)


@pytest.mark.parametrize("mode", list(AutoresetMode))
def test_exported_reward_vector_env_matches_single_env(mode: AutoresetMode) -> None:
    reward = toy_reward(seed=5, horizon=7)
    n = 5
    native = gym.make_vec(COPY, num_envs=n, autoreset_mode=mode, feedback=reward)
    sync = SyncVectorEnv([lambda: gym.make(COPY, feedback=reward) for _ in range(n)], autoreset_mode=mode)
    native.reset(seed=7)
    sync.reset(seed=7)
    rng = np.random.default_rng(0)
    paid = 0
    for _ in range(40):
        actions = rng.integers(0, native.single_action_space.n, size=n)
        actions[rng.random(n) < 0.2] = native.eos_id
        a, b = native.step(actions), sync.step(actions)
        assert np.array_equal(a[0]["input_ids"], b[0]["input_ids"])
        assert (
            np.allclose(a[1], b[1], atol=1e-5) and np.array_equal(a[2], b[2]) and np.array_equal(a[3], b[3])
        )
        assert np.all(np.isfinite(a[1]))
        paid += int(np.count_nonzero(a[1]))
        if mode == AutoresetMode.DISABLED and (a[2] | a[3]).any():
            native.reset(options={"reset_mask": a[2] | a[3]})
            sync.reset(options={"reset_mask": a[2] | a[3]})
    assert paid > 5


@pytest.mark.slow
@pytest.mark.parametrize(
    "env_id", [i for i in rlhf_envs.list_envs() if i not in TOY_IDS and "Simulated" not in i]
)
def test_exported_reward_on_the_embedded_backbone_works_on_language_envs(env_id: str) -> None:
    reward = TokenReward(None, seed=0, horizon=4)
    env = gym.make(env_id, feedback=reward, max_new_tokens=4, ref_logprobs=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)


def test_episodes_json_round_trip(tmp_path, demos) -> None:
    save_episodes(tmp_path / "d.json", demos[:5])
    assert load_episodes(tmp_path / "d.json") == [
        Episode(e.prompt, e.completion, e.prompt_ids, e.completion_ids, e.terminated, {}, e.seed)
        for e in demos[:5]
    ]
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match="bad.json"):
        load_episodes(tmp_path / "bad.json")


def test_auc() -> None:
    assert auc([2, 3], [0, 1]) == 1.0 and auc([0], [1]) == 0.0 and auc([1], [1]) == 0.5


def _airl(demos: list[Episode], seed: int = 0) -> AIRL:
    return AIRL(
        COPY,
        demos,
        seed=seed,
        reward=toy_reward(seed=seed),
        ppo=SMALL_PPO,
        steps_per_round=64,
        episodes_per_round=16,
        disc_updates=2,
        disc_warmup_updates=2,
        disc_batch=8,
        sample_envs=8,
    )


def _weights(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def test_airl_is_reproducible_under_a_seed(demos) -> None:
    a, b, c = _airl(demos, 0), _airl(demos, 0), _airl(demos, 1)
    for x in (a, b, c):
        x.learn(128)
    assert a.rounds == 2 and a.num_timesteps == 128 and a.reward.horizon == 7
    probe = demos[:6]
    assert np.array_equal(a.reward.score(probe), b.reward.score(probe))
    assert all(
        torch.equal(x, y) for x, y in zip(_weights(a.agent.policy), _weights(b.agent.policy), strict=True)
    )
    assert not np.array_equal(a.reward.score(probe), c.reward.score(probe))
    assert set(a.history[-1]) >= {
        "disc_loss",
        "policy_true_return",
        "policy_success",
        "expert_learned_return",
    }


def test_airl_save_load_resume_repeats_the_uninterrupted_run(demos, tmp_path) -> None:
    whole = _airl(demos)
    whole.learn(128)
    part = _airl(demos)
    part.learn(64)
    part.save(tmp_path / "run")
    resumed = AIRL.load(tmp_path / "run")
    assert resumed.rounds == 1 and resumed.num_timesteps == 64 and len(resumed.replay) == 1
    resumed.learn(64)
    probe = demos[:6]
    assert np.array_equal(whole.reward.score(probe), resumed.reward.score(probe))
    assert all(
        torch.equal(x, y)
        for x, y in zip(_weights(whole.agent.policy), _weights(resumed.agent.policy), strict=True)
    )
    # the env PPO trains on pays f - log pi of the resumed reward and the resumed policy
    assert resumed.env.task.feedback is resumed.training_reward
    assert resumed.training_reward.reward is resumed.reward and resumed.training_reward.agent is resumed.agent


def test_airl_rejects_bad_settings(demos) -> None:
    with pytest.raises(ConfigError, match="demonstrations"):
        AIRL(COPY, [], reward=toy_reward(), ppo=SMALL_PPO)
    with pytest.raises(ConfigError, match="disc_updates"):
        AIRL(COPY, demos, reward=toy_reward(), ppo=SMALL_PPO, disc_updates=0)


def test_bc_learns_the_demonstrations_and_resumes_exactly(demos, tmp_path) -> None:
    def make() -> BC:
        return BC(
            COPY,
            demos,
            seed=0,
            preset="toy-copy",
            n_envs=8,
            d_model=32,
            n_heads=2,
            batch_size=8,
            learning_rate=3e-3,
            anneal_lr=False,
        )

    whole = make()
    with torch.no_grad():
        before = float(-policy_token_logprobs(whole, demos)[0].sum())
    whole.learn(1500, progress_bar=False)
    with torch.no_grad():
        after = float(-policy_token_logprobs(whole, demos)[0].sum())
    assert after < 0.6 * before
    part = make()
    part.learn(700, progress_bar=False)
    part.save(str(tmp_path / "bc"))
    resumed = BC.load(str(tmp_path / "bc"))
    assert len(resumed.demonstrations) == len(demos) and resumed.num_timesteps == part.num_timesteps
    resumed.learn(1500 - resumed.num_timesteps, progress_bar=False, reset_num_timesteps=False)
    assert resumed.num_timesteps == whole.num_timesteps
    assert all(
        torch.equal(x, y) for x, y in zip(_weights(whole.policy), _weights(resumed.policy), strict=True)
    )
    assert "success_rate" in resumed.evaluate(8)
    with pytest.raises(ConfigError, match="no demonstrations"):
        BC(COPY, seed=0, preset="toy-copy", n_envs=8).learn(10, progress_bar=False)


def test_sampled_policy_episodes_match_the_env(demos) -> None:
    from agents import PPO

    agent = PPO(COPY, seed=0, **SMALL_PPO)
    env = gym.make_vec(COPY, num_envs=8)
    eps, returns, success = sample_episodes(agent, env, 12, seed=5)
    assert len(eps) == 12 and np.all((success == 0) | (success == 1))
    from rlhf_envs.feedback.scripted import TargetMatch

    targets, _ = scripted_demonstrations(COPY, 12, seed=5, n_envs=8)  # same prompts (same reset seeds)
    assert [e.prompt for e in eps] == [t.prompt for t in targets]
    meta = [{"target_ids": np.array(t.completion_ids[:-1])} for t in targets]
    rescored = [
        TargetMatch().score(
            [Episode(e.prompt, e.completion, e.prompt_ids, e.completion_ids, e.terminated, m)]
        )[0]
        for e, m in zip(eps, meta, strict=True)
    ]
    assert np.allclose(rescored, returns, atol=1e-6)


@pytest.mark.slow
def test_lm_policy_token_logprobs_match_the_rollout() -> None:
    """On the embedded model: log pi of sampled completions, recomputed from Episodes, equals the
    log-probs the KV-cached rollout kept; best-of-n keeps each prompt's highest-scoring sample."""
    from agents import PPO
    from agents.demonstrations import best_of_n_demonstrations

    agent = PPO("RLHF/Sentiment-v0", seed=0, preset="lm-sentiment-demo", n_envs=4)
    env = gym.make_vec("RLHF/Sentiment-v0", num_envs=4, ref_logprobs=False, max_new_tokens=6)
    sampled = agent.sample_episodes(env, 5, 77)
    eps = sampled.to_feedback_episodes(env.task.tokenizer)
    with torch.no_grad():
        logp, mask = policy_token_logprobs(agent, eps)
    assert torch.equal(mask, sampled.completion_mask[:, : mask.shape[1]])
    assert torch.allclose(logp, sampled.log_probs * sampled.completion_mask, atol=1e-4)
    chosen, best, pool = best_of_n_demonstrations(agent, env, 2, 3, seed=9)
    assert len(chosen) == 2 and np.allclose(best, pool.reshape(2, 3).max(1))


def test_maxent_reward_pays_f_minus_log_pi_and_airl_uses_it(demos) -> None:
    from agents import PPO
    from agents.airl import MaxEntReward

    reward = toy_reward(seed=6, horizon=7)
    agent = PPO(COPY, seed=0, **SMALL_PPO)
    paid = MaxEntReward(reward, agent)
    batch = [ep("abc=", "abc"), ep("ba=", "a")]
    with torch.no_grad():
        logp, mask = policy_token_logprobs(agent, batch)
    expected = reward.score(batch) - (logp * mask).sum(1).numpy()
    assert np.allclose(paid.score(batch), expected, atol=1e-5)
    with pytest.raises(ConfigError, match="agent"):
        MaxEntReward(reward).score(batch)
    airl = _airl(demos)
    assert airl.entropy_reward and airl.env.task.feedback is airl.training_reward
    assert airl.training_reward.agent is airl.agent and airl.training_reward.reward is airl.reward


def test_airl_bc_pretraining_lowers_the_demonstrations_nll(demos) -> None:
    airl = _airl(demos)
    with torch.no_grad():
        before = float(-policy_token_logprobs(airl.agent, demos)[0].sum())
    airl.pretrain_bc(1500, lr=3e-3, batch_size=8)
    with torch.no_grad():
        after = float(-policy_token_logprobs(airl.agent, demos)[0].sum())
    assert after < 0.6 * before


def test_reward_warm_start_raises_the_action_heads_likelihood_of_the_demonstrations(demos) -> None:
    airl = _airl(demos)
    with torch.no_grad():
        before = float(airl.reward.action_log_likelihood(demos))
    airl.pretrain_reward(1500, lr=3e-3, batch_size=8)
    with torch.no_grad():
        after = float(airl.reward.action_log_likelihood(demos))
    assert before < np.log(1 / 20) and after > 0.5 * before  # from about log(1/30) towards 0
    # f(s, a) is the action head's score of a: the demonstrated token now scores above the rest
    f, mask = airl.reward.completion_rewards(demos[:4])
    ids, m, _, _ = airl.reward.encode(demos[:4])
    with torch.no_grad():
        scores = airl.reward.net.action_scores(ids, m)
    p = len(demos[0].prompt_ids)
    assert float(f[0, 0]) == pytest.approx(float(scores[0, p - 1, demos[0].completion_ids[0]]), abs=1e-5)


def test_discriminator_negatives_are_sampled_on_the_demonstrations_prompts(demos) -> None:
    """AIRL's premise is one initial-state distribution for both sides: the policy's episodes that
    the discriminator sees are on the demonstrations' prompts (fresh prompts let ``f`` learn which
    prompts are demonstrations instead of which completions are right)."""
    airl = _airl(demos)
    airl.update_reward()
    demo_prompts = [d.prompt_ids for d in demos]
    negatives = airl.replay[-1]
    assert len(negatives) == 16
    assert all(e.prompt_ids in demo_prompts for e in negatives)
    assert len({e.seed for e in negatives}) == 16  # 16 different demonstrations (32 to choose from)
    assert all(e.prompt_ids == demos[e.seed - 1000].prompt_ids for e in negatives)  # fixture seeds 1000+
    # more episodes per round than demonstrations: every demonstration's prompt, then repeats
    few = demos[:5]
    airl = AIRL(COPY, few, seed=0, reward=toy_reward(), ppo=SMALL_PPO, episodes_per_round=12, sample_envs=8)
    airl.update_reward()
    counts = np.bincount([[d.prompt_ids for d in few].index(e.prompt_ids) for e in airl.replay[-1]])
    assert counts.sum() == 12 and counts.min() >= 2
    # the previous behaviour on request: fresh prompts
    fresh = AIRL(
        COPY,
        demos,
        seed=0,
        reward=toy_reward(),
        ppo=SMALL_PPO,
        episodes_per_round=16,
        sample_envs=8,
        negatives_on_demo_prompts=False,
    )
    fresh.update_reward()
    assert sum(e.prompt_ids in demo_prompts for e in fresh.replay[-1]) < 4


def test_demonstrations_whose_seed_does_not_give_their_prompt_are_refused(demos) -> None:
    wrong = [
        Episode(d.prompt, d.completion, d.prompt_ids, d.completion_ids, True, {}, d.seed + 1) for d in demos
    ]
    airl = AIRL(COPY, wrong, seed=0, reward=toy_reward(), ppo=SMALL_PPO, episodes_per_round=8, sample_envs=8)
    with pytest.raises(DataError, match="does not reproduce its prompt"):
        airl.update_reward()


@pytest.mark.slow
def test_lm_policy_episodes_follow_the_given_reset_seeds() -> None:
    """The LM path of sample_episodes resets each row with its own seed (AIRL's negatives on the
    demonstrations' prompts), in any order, as consecutive seeds would."""
    from agents import PPO

    agent = PPO("RLHF/Sentiment-v0", seed=0, preset="lm-sentiment-demo", n_envs=4)
    env = gym.make_vec("RLHF/Sentiment-v0", num_envs=4, ref_logprobs=False, max_new_tokens=4)
    a, _, _ = sample_episodes(agent, env, 6, seed=11, reset_seeds=[500, 501, 502, 503, 504, 505])
    b, _, _ = sample_episodes(agent, env, 6, seed=3, reset_seeds=[505, 504, 503, 502, 501, 500])
    assert [e.seed for e in a] == [500, 501, 502, 503, 504, 505]
    assert [e.prompt_ids for e in a] == [e.prompt_ids for e in b][::-1]
    assert len({e.prompt_ids for e in a}) > 1
    c, _, _ = sample_episodes(agent, env, 6, seed=500)
    assert [e.prompt_ids for e in c] == [e.prompt_ids for e in a]
    with pytest.raises(ConfigError, match="reset_seeds"):
        sample_episodes(agent, env, 6, seed=0, reset_seeds=[1, 2])
