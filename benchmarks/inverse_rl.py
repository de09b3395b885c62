"""Rewards learned from demonstrations: AIRL against PPO on the true reward and behaviour cloning.

Protocol and budgets (fixed before running; seed 0; one torch thread; run under ``nice -n 10``):

Toy task, ``RLHF/Copy-v0`` (parts ``toy-ppo``, ``toy-airl``, then ``toy-transfer`` and
``toy-transfer-maxent``; separate processes):

1. Demonstrations: 256 episodes of the scripted-optimal policy (its target, then EOS), reset seeds
   100,000 + i; every one earns the true reward 1.0.
2. PPO on the true reward: ``PPO(preset="toy-copy", seed=0)``, 49,152 generated tokens.
3. AIRL: reward network ``TokenReward`` on a fresh 2-layer, 64-wide GPT-2 (``toy_backbone_config``,
   action head, ``anchor_token`` = ``=``, horizon 7 absorbing steps), the same PPO preset with
   ``anneal_lr=False``, its policy first behaviour-cloned on the demonstrations (20 epochs, Adam
   1e-3: GAIL/AIRL practice, so the discriminator sees near misses) and ``f`` warm-started by
   maximum likelihood of its action head on the same demonstrations (20 epochs, AdamW 1e-3;
   ``f = log pi_E`` is AIRL's equilibrium up to shaping), then 49,152 PPO tokens in
   rounds of 4,096 paying ``f - log pi``, 128 policy episodes and 64 discriminator steps (64 + 64
   episodes, AdamW lr 1e-3) per round, 200 extra steps in round one, replay of all rounds.
4. The learned reward ``f``, frozen, is exported and a *fresh* ``PPO(preset="toy-copy", seed=0)``
   trains on ``gym.make_vec("RLHF/Copy-v0", feedback=...)`` (it never sees the true reward) for the
   same 49,152 tokens, twice: paid ``sum_t f`` (``toy-transfer``) and paid ``sum_t f - log pi``, the
   maximum-entropy objective AIRL's reward is defined for (``toy-transfer-maxent``).
5. Behaviour cloning: ``BC(preset="toy-copy", seed=0)`` on the same 256 demonstrations, 20 epochs.
6. Every policy: greedy, 500 fresh episodes (evaluation seed 50,000), success = exact answer + EOS.
7. AUC of the learned reward's episode score: correct completions of 500 fresh prompts (reset seeds
   200,000 + i) against incorrect ones of the same prompts: one answer token substituted, the last
   answer token dropped, one token added before EOS, and a sample of the untrained policy that is
   not correct; overall and per kind.

Must show: AUC >= 0.95; success(PPO on the learned reward) >= 0.9 x success(PPO on the true reward).

Language task, ``RLHF/Sentiment-v0`` (``--part language``), embedded model, temperature 1:

1. Demonstrations: best of 8 samples of the embedded model for each of 128 prompts (reset seeds
   100,000 + p), ranked by the task's own score (VADER compound).
2. AIRL: ``TokenReward`` on the embedded model's backbone (pretrained, fresh head; horizon 24),
   PPO preset ``lm-sentiment-demo`` (lr 1e-4, KL 0.05 to the base model), 8,192 PPO tokens in rounds
   of one PPO batch (64 episodes), 64 policy episodes and 16 discriminator steps (32 + 32 episodes,
   AdamW lr 1e-4) per round, 50 extra steps in round one.
3. BC: ``BC(policy="lm", model="default", learning_rate=1e-4, batch_size=32)``, 4 epochs.
4. Every policy: 256 sampled episodes of fresh prompts (evaluation seed 50,000), mean task score;
   the base model the same way.

Must show: the task score of the AIRL-trained policy (PPO on the learned reward) is above the base
model's.

Fix after the first toy run (bug, not a change of design; written before the re-run). The first
``toy-airl`` run (kept as ``inverse_rl_toy-airl_before-fix.json``) collapsed: the BC-initialised
policy went from success 1.0 to 0.018 with mean length 1.14 (it learned to stop at once), AUC 0.59.
Cause: the discriminator's policy episodes were sampled on fresh prompts, the demonstrations on
their own 256, so the prompt alone told the two sides apart (``--part toy-diagnose``: after round
one's discriminator the learned return of the demonstrations was 16.1, of the replayed policy
episodes -15.0, of correct answers to unseen prompts 7.1 and of policy samples on unseen prompts
7.2; AUC demonstrations against correct unseen answers 0.67). ``AIRL`` now samples those episodes on
the demonstrations' prompts (``negatives_on_demo_prompts=True``, its default). Everything else in
the protocol above is unchanged; ``toy-airl`` is re-run once, then ``toy-transfer`` on its reward.
The language result was first measured before the fix (kept as
``results/inverse_rl_language_before-fix.json``) and re-run once with it, same protocol.

Results of the re-run: the AIRL policy kept its BC initialisation's level (success 0.964) and the
learned reward's AUC is 0.99998, but a fresh PPO paid only that reward learns to stop at once
(success 0.000; ``sum f - log pi``: 0.002). Probing the saved reward on unseen prompts: correct
answers score -0.01, stopping at once -10.1, random letters of the right length -35.0. Stopping
costs about as much as one wrong token, while a wrong answer costs per token (``--part
toy-probe``, a diagnostic); during AIRL the
BC-initialised policy never stopped early, so the discriminator never learned that early stopping
is unlike the expert (the absorbing reward stayed at -0.10). A design limitation of AIRL started
from the expert's neighbourhood, not a bug.

The one changed design (declared and committed before its run; parts ``toy-airl-nobc``,
``toy-transfer-nobc``, ``toy-transfer-maxent-nobc``): step 3 without the behaviour-cloning
initialisation of the policy (the reward's maximum-likelihood warm start kept), so the
discriminator sees the episodes a learner from scratch produces, early stopping included, as AIRL
does by default; every other setting, the evaluation, the AUC and the two transfers (reward saved to
``runs/inverse_rl_toy_reward_nobc``) are as above. Same must-show; both designs are reported.
Its result: no better. The AIRL policy itself learned to stop at once (success 0.000, mean length
1.00), AUC 0.87, both transfers 0.000; the probe gives correct answers 7.3, stopping -12.0, random
letters -42.4. The toy must-show is not met by either design; no further design is tried.

``--part toy-diagnose`` (a diagnostic, not part of the protocol): the ``toy-airl`` set-up up to the
end of round one's discriminator phase (no PPO), once with negatives on fresh prompts and once on
the demonstrations' prompts; the learned return of the demonstrations, of the round's policy
episodes, of 256 correct answers to unseen prompts and of 256 policy samples on unseen prompts.

``python -m benchmarks.inverse_rl --part toy-ppo|toy-airl|toy-diagnose|language`` writes
``benchmarks/results/inverse_rl_<part>.json``; ``--part merge`` combines them into
``benchmarks/results/inverse_rl.json`` and prints the README table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
TOY_ID = "RLHF/Copy-v0"
LANG_ID = "RLHF/Sentiment-v0"
TOY_TOKENS = 49_152
TOY_REWARD_DIR = Path(__file__).resolve().parent.parent / "runs" / "inverse_rl_toy_reward"
TOY_REWARD_DIR_NOBC = TOY_REWARD_DIR.with_name("inverse_rl_toy_reward_nobc")
LANG_TOKENS = 8_192
EVAL_SEED = 50_000


def _init() -> None:
    import torch

    from agents.threads import set_training_threads

    torch.set_num_threads(1)
    set_training_threads(1)


def _eval(agent: Any, env_id: str, n: int, deterministic: bool, **env_kwargs: Any) -> dict[str, float]:
    from agents.envs import make_vector_env

    env = make_vector_env(env_id, 64, env_kwargs)
    try:
        out = agent.evaluate(n, deterministic=deterministic, seed=EVAL_SEED, env=env)
    finally:
        env.close()
    return {k: float(v) for k, v in out.items()}


def toy_demos() -> list[Any]:
    from agents.demonstrations import scripted_demonstrations

    demos, returns = scripted_demonstrations(TOY_ID, 256, seed=100_000)
    assert np.all(returns == 1.0), "the scripted expert must earn 1.0"
    return demos


def part_toy_ppo() -> dict[str, Any]:
    from agents import PPO
    from agents.bc import BC

    demos = toy_demos()
    t0 = time.perf_counter()
    ppo = PPO(TOY_ID, seed=0, preset="toy-copy")
    ppo.learn(TOY_TOKENS, progress_bar=False)
    out: dict[str, Any] = {"ppo_true": {**_eval(ppo, TOY_ID, 500, True), "seconds": time.perf_counter() - t0}}
    t0 = time.perf_counter()
    bc = BC(TOY_ID, demos, seed=0, preset="toy-copy")
    n_tok = sum(len(e.completion_ids) for e in demos)
    bc.learn(20 * n_tok, progress_bar=False)
    out["bc"] = {**_eval(bc, TOY_ID, 500, True), "seconds": time.perf_counter() - t0, "tokens": 20 * n_tok}
    return out


def _corruptions(expert: list[Any], rng: np.random.Generator, letters: np.ndarray) -> dict[str, list[Any]]:
    from rlhf_envs.feedback.base import Episode

    def ep(e: Any, completion: list[int]) -> Any:
        return Episode(e.prompt, "", e.prompt_ids, tuple(int(x) for x in completion), True, {}, e.seed)

    kinds: dict[str, list[Any]] = {"substituted": [], "dropped_last": [], "extra_token": []}
    for e in expert:
        ans = list(e.completion_ids[:-1])
        eos = e.completion_ids[-1]
        k = int(rng.integers(len(ans)))
        sub = list(ans)
        sub[k] = int(rng.choice(letters[letters != ans[k]]))
        kinds["substituted"].append(ep(e, [*sub, eos]))
        kinds["dropped_last"].append(ep(e, [*ans[:-1], eos]))
        kinds["extra_token"].append(ep(e, [*ans, int(rng.choice(letters)), eos]))
    return kinds


def part_toy_airl(bc_init: bool = True) -> dict[str, Any]:
    import gymnasium as gym

    from agents import PPO
    from agents.demonstrations import sample_episodes, scripted_demonstrations
    from rlhf_envs.feedback.inverse_rl import auc
    from rlhf_envs.tasks.toy import TOY_TOKENIZER

    demos = toy_demos()
    t0 = time.perf_counter()
    reward, airl = _toy_airl(demos)
    untrained = PPO(TOY_ID, seed=0, preset="toy-copy")  # the initial policy, for negatives
    n_tok = sum(len(e.completion_ids) for e in demos)
    nll = airl.pretrain_bc(20 * n_tok) if bc_init else float("nan")
    reward_nll = airl.pretrain_reward(20 * n_tok)
    out: dict[str, Any] = {
        "airl_bc_init": {**_eval(airl.agent, TOY_ID, 500, True), "nll": nll, "reward_head_nll": reward_nll}
    }
    print(out, flush=True)
    airl.learn(TOY_TOKENS, callback=lambda a, m: print({k: round(v, 3) for k, v in m.items()}, flush=True))
    out.update(
        airl_policy={**_eval(airl.agent, TOY_ID, 500, True), "seconds": time.perf_counter() - t0},
        airl_history=airl.history,
        reward=repr(reward),
    )
    reward.save(TOY_REWARD_DIR if bc_init else TOY_REWARD_DIR_NOBC)  # runs/ is not committed

    # AUC on fresh prompts
    fresh, _ = scripted_demonstrations(TOY_ID, 500, seed=200_000)
    rng = np.random.default_rng(0)
    letters = np.array(TOY_TOKENIZER.encode("abcdefgh"))
    kinds = _corruptions(fresh, rng, letters)
    env = gym.make_vec(TOY_ID, num_envs=64, vectorization_mode="vector_entry_point")
    samples, _, succ = sample_episodes(untrained, env, 500, 200_000)
    env.close()
    kinds["untrained_policy_sample"] = [e for e, s in zip(samples, succ, strict=True) if s != 1.0]
    pos = reward.score(fresh)
    aucs = {k: auc(pos, reward.score(v)) for k, v in kinds.items()}
    aucs["all"] = auc(pos, np.concatenate([reward.score(v) for v in kinds.values()]))
    out["auc"] = aucs
    print("AUC", aucs, flush=True)
    return out


def _toy_airl(demos: list[Any], **overrides: Any) -> tuple[Any, Any]:
    """The protocol's AIRL on the toy task (step 3 of the docstring): a fresh ``TokenReward`` and
    the ``AIRL`` trainer around it; ``overrides`` change one of its options (the diagnosis)."""
    from agents.airl import AIRL
    from rlhf_envs.feedback.inverse_rl import TokenReward, toy_backbone_config
    from rlhf_envs.tasks.toy import TOY_TOKENIZER

    reward = TokenReward(toy_backbone_config(), anchor_token=TOY_TOKENIZER.encode("=")[0], seed=0)
    options: dict[str, Any] = {
        "seed": 0,
        "reward": reward,
        "ppo": {"preset": "toy-copy"},
        "steps_per_round": 4096,
        "episodes_per_round": 128,
        "disc_updates": 64,
        "disc_warmup_updates": 200,
        "disc_batch": 64,
        "disc_lr": 1e-3,
        "replay_rounds": TOY_TOKENS // 4096,
    }
    return reward, AIRL(TOY_ID, demos, **{**options, **overrides})


def part_toy_diagnose() -> dict[str, Any]:
    """Round one's discriminator only, negatives on fresh prompts and on the demonstrations' prompts."""
    import gymnasium as gym

    from agents.demonstrations import sample_episodes, scripted_demonstrations
    from rlhf_envs.feedback.inverse_rl import auc

    demos = toy_demos()
    n_tok = sum(len(e.completion_ids) for e in demos)
    unseen, _ = scripted_demonstrations(TOY_ID, 256, seed=200_000)
    out: dict[str, Any] = {}
    for on_demo in (False, True):
        reward, airl = _toy_airl(demos, negatives_on_demo_prompts=on_demo)
        airl.pretrain_bc(20 * n_tok)
        airl.pretrain_reward(20 * n_tok)
        env = gym.make_vec(TOY_ID, num_envs=64, vectorization_mode="vector_entry_point")
        policy_unseen, _, _ = sample_episodes(airl.agent, env, 256, 300_000)
        env.close()
        before = {"demonstrations": float(reward.score(demos).mean())}
        metrics = airl.update_reward()
        s_demo, s_unseen = reward.score(demos), reward.score(unseen)
        row = {
            "after_warm_start": before,
            "round_one": metrics,
            "learned_return_demonstrations": float(s_demo.mean()),
            "learned_return_round_policy_episodes": float(reward.score(airl.replay[-1]).mean()),
            "learned_return_correct_unseen": float(s_unseen.mean()),
            "learned_return_policy_unseen": float(reward.score(policy_unseen).mean()),
            "auc_demonstrations_vs_correct_unseen": auc(s_demo, s_unseen),
        }
        out["negatives_on_demo_prompts" if on_demo else "negatives_on_fresh_prompts"] = row
        print(on_demo, {k: v for k, v in row.items() if k != "round_one"}, flush=True)
        airl.close()
    return out


def part_toy_probe(reward_dir: Path) -> dict[str, Any]:
    """The saved toy reward's learned return of kinds of completion of 500 unseen prompts."""
    from agents.demonstrations import scripted_demonstrations
    from rlhf_envs.feedback.base import Episode
    from rlhf_envs.feedback.inverse_rl import TokenReward
    from rlhf_envs.tasks.toy import TOY_TOKENIZER

    reward = TokenReward.load(reward_dir)
    fresh, _ = scripted_demonstrations(TOY_ID, 500, seed=200_000)
    rng = np.random.default_rng(0)
    letters = np.array(TOY_TOKENIZER.encode("abcdefgh"))
    eos = TOY_TOKENIZER.eos_id

    def ep(e: Any, completion: Any) -> Any:
        return Episode(e.prompt, "", e.prompt_ids, tuple(int(x) for x in completion), True, {}, e.seed)

    kinds = {
        "correct": fresh,
        "stop_at_once": [ep(e, [eos]) for e in fresh],
        "random_letters_right_length": [
            ep(e, [*rng.choice(letters, len(e.completion_ids) - 1), eos]) for e in fresh
        ],
    }
    stop = reward.score(kinds["stop_at_once"])
    out: dict[str, Any] = {"absorbing_reward": float(reward.net.absorbing.detach())}
    for k, v in kinds.items():
        sc = reward.score(v)
        out[k] = {
            "mean_learned_return": float(sc.mean()),
            "frac_above_stop_at_once": float((sc > stop).mean()),
        }
    return {f"probe_{reward_dir.name}": out}


def part_toy_transfer(maxent: bool, reward_dir: Path = TOY_REWARD_DIR) -> dict[str, Any]:
    """A fresh PPO on the frozen exported reward only (``sum f``, or ``sum f - log pi``)."""
    import gymnasium as gym

    from agents import PPO
    from agents.airl import MaxEntReward
    from rlhf_envs.feedback.inverse_rl import TokenReward

    reward = TokenReward.load(reward_dir)
    reward.net.requires_grad_(False)
    t0 = time.perf_counter()
    paid = MaxEntReward(reward) if maxent else reward
    env = gym.make_vec(TOY_ID, num_envs=64, vectorization_mode="vector_entry_point", feedback=paid)
    ppo = PPO(env, seed=0, preset="toy-copy")
    if maxent:
        paid.agent = ppo
    curve: list[dict[str, float]] = []
    ppo.learn(
        TOY_TOKENS,
        progress_bar=False,
        callback=lambda a, m: curve.append(
            {"timesteps": a.num_timesteps, "learned_return": m.get("mean_return", float("nan"))}
        ),
    )
    key = "ppo_learned_reward_maxent" if maxent else "ppo_learned_reward"
    out = {key: {**_eval(ppo, TOY_ID, 500, True), "seconds": time.perf_counter() - t0}, f"{key}_curve": curve}
    env.close()
    return out


def part_language() -> dict[str, Any]:
    import gymnasium as gym

    from agents import PPO
    from agents.airl import AIRL
    from agents.bc import BC
    from agents.demonstrations import best_of_n_demonstrations
    from rlhf_envs.feedback.inverse_rl import TokenReward

    out: dict[str, Any] = {}
    base = PPO(LANG_ID, seed=0, preset="lm-sentiment-demo")
    out["base_model"] = _eval(base, LANG_ID, 256, False, ref_logprobs=False)
    t0 = time.perf_counter()
    env = gym.make_vec(LANG_ID, num_envs=64, vectorization_mode="vector_entry_point", ref_logprobs=False)
    demos, best, pool = best_of_n_demonstrations(base, env, 128, 8, seed=100_000)
    env.close()
    out["demonstrations"] = {
        "n": len(demos),
        "best_of": 8,
        "mean_score": float(best.mean()),
        "pool_mean_score": float(pool.mean()),
        "seconds": time.perf_counter() - t0,
    }
    print(out, flush=True)
    t0 = time.perf_counter()
    reward = TokenReward(None, seed=0)
    airl = AIRL(
        LANG_ID,
        demos,
        seed=0,
        reward=reward,
        ppo={"preset": "lm-sentiment-demo"},
        steps_per_round=1024,
        episodes_per_round=64,
        disc_updates=16,
        disc_warmup_updates=50,
        disc_batch=32,
        disc_lr=1e-4,
        replay_rounds=3,
    )
    airl.learn(LANG_TOKENS, callback=lambda a, m: print({k: round(v, 3) for k, v in m.items()}, flush=True))
    out["airl_policy"] = {
        **_eval(airl.agent, LANG_ID, 256, False, ref_logprobs=False),
        "seconds": time.perf_counter() - t0,
    }
    out["airl_history"] = airl.history
    print(out["airl_policy"], flush=True)
    t0 = time.perf_counter()
    bc = BC(LANG_ID, demos, seed=0, policy="lm", model="default", learning_rate=1e-4, batch_size=32)
    n_tok = sum(len(e.completion_ids) for e in demos)
    bc.learn(4 * n_tok, progress_bar=False)
    out["bc"] = {**_eval(bc, LANG_ID, 256, False, ref_logprobs=False), "seconds": time.perf_counter() - t0}
    return out


def _row(name: str, r: dict[str, Any] | None, success: bool = True) -> str:
    if r is None:
        return f"| {name} | not run | | |"
    succ = f"{r['success_rate']:.3f}" if success else "-"
    return f"| {name} | {succ} | {r['mean_return']:.3f} | {r['mean_length']:.2f} |"


def table(parts: dict[str, dict[str, Any]]) -> str:
    """The README tables (markdown) from the parts' results; parts not run say so."""
    ppo, before = parts.get("toy-ppo", {}), parts.get("toy-airl_before-fix", {})
    airl, tr = parts.get("toy-airl", {}), parts.get("toy-transfer", {})
    trm = parts.get("toy-transfer-maxent", {})
    nobc, trn = parts.get("toy-airl-nobc", {}), parts.get("toy-transfer-nobc", {})
    trmn = parts.get("toy-transfer-maxent-nobc", {})
    lines = [
        "`RLHF/Copy-v0`, seed 0, 49,152 PPO tokens per PPO run; 500 greedy episodes of unseen prompts:",
        "",
        "| policy | success | mean true return | mean length |",
        "|---|---|---|---|",
        _row("PPO on the true reward", ppo.get("ppo_true")),
        _row("AIRL: its BC initialisation (before AIRL, first run)", before.get("airl_bc_init")),
        _row("AIRL policy, first run (discriminator negatives on fresh prompts)", before.get("airl_policy")),
        _row("AIRL: its BC initialisation (re-run after the fix)", airl.get("airl_bc_init")),
        _row(
            "AIRL policy, re-run after the fix (negatives on the demonstrations' prompts)",
            airl.get("airl_policy"),
        ),
        _row(
            "fresh PPO on the exported learned reward, `sum f` (after the fix)", tr.get("ppo_learned_reward")
        ),
        _row("fresh PPO on `sum f - log pi` (after the fix)", trm.get("ppo_learned_reward_maxent")),
        _row("changed design: AIRL policy without the BC initialisation", nobc.get("airl_policy")),
        _row("changed design: fresh PPO on its reward, `sum f`", trn.get("ppo_learned_reward")),
        _row("changed design: fresh PPO on its `sum f - log pi`", trmn.get("ppo_learned_reward_maxent")),
        _row("BC on the same 256 demonstrations (20 epochs)", ppo.get("bc")),
        "",
        "AUC of the learned reward's episode score, correct completions of 500 unseen prompts against",
        "incorrect ones of the same prompts:",
        "",
        "| learned reward | substituted token | last token dropped | extra token | untrained-policy sample | all |",
        "|---|---|---|---|---|---|",
    ]
    kinds = ("substituted", "dropped_last", "extra_token", "untrained_policy_sample", "all")
    for name, part in (
        ("first run", before),
        ("re-run after the fix", airl),
        ("changed design (no BC initialisation)", nobc),
    ):
        a = part.get("auc")
        cells = " | ".join(f"{a[k]:.3f}" for k in kinds) if a else "not run | | | |"
        lines.append(f"| AIRL `f`, {name} | {cells} |")
    lang = parts.get("language")
    lines += [
        "",
        "`RLHF/Sentiment-v0` (embedded model, temperature 1, seed 0; after the fix); mean task score",
        "(VADER compound), length and exact KL to the base model of 256 sampled episodes of unseen prompts:",
        "",
        "| policy | mean task score | mean length | KL to the base model, nats |",
        "|---|---|---|---|",
    ]
    if lang is None:
        lines.append("| (not run) | | |")
    else:
        d = lang["demonstrations"]
        for name, key in (
            ("base model (embedded)", "base_model"),
            ("AIRL: PPO on the learned reward, 8,192 tokens", "airl_policy"),
            ("BC on the same 128 demonstrations (4 epochs)", "bc"),
        ):
            r = lang[key]
            kl = f"{r['kl_ref']:.2f}" if "kl_ref" in r else ""
            lines.append(f"| {name} | {r['mean_return']:.3f} | {r['mean_length']:.1f} | {kl} |")
        lines.append(f"| (the demonstrations: best of {d['best_of']}) | {d['mean_score']:.3f} | | |")
    return "\n".join(lines)


def merge() -> dict[str, Any]:
    names = (
        "toy-ppo",
        "toy-airl",
        "toy-transfer",
        "toy-transfer-maxent",
        "toy-airl_before-fix",
        "toy-airl-nobc",
        "toy-transfer-nobc",
        "toy-transfer-maxent-nobc",
        "toy-diagnose",
        "toy-probe",
        "language",
    )
    parts = {
        p: json.loads((RESULTS / f"inverse_rl_{p}.json").read_text())
        for p in names
        if (RESULTS / f"inverse_rl_{p}.json").exists()
    }
    out: dict[str, Any] = {"protocol": __doc__.split("``python -m")[0].strip(), **parts}
    t = parts.get("toy-ppo", {}).get("ppo_true", {}).get("success_rate")
    must: dict[str, Any] = {}
    for run, part in (
        ("before_fix", "toy-airl_before-fix"),
        ("after_fix", "toy-airl"),
        ("no_bc_init", "toy-airl-nobc"),
    ):
        if part in parts:
            must[f"{run}_auc_all"] = parts[part]["auc"]["all"]
            must[f"{run}_auc_ok"] = parts[part]["auc"]["all"] >= 0.95
            if t is not None:
                lr = parts[part]["airl_policy"]["success_rate"]
                must[f"{run}_airl_policy_success_ratio"] = lr / t if t > 0 else float("nan")
    if t is not None:
        for part, key in (
            ("toy-transfer", "ppo_learned_reward"),
            ("toy-transfer-maxent", "ppo_learned_reward_maxent"),
            ("toy-transfer-nobc", "ppo_learned_reward"),
            ("toy-transfer-maxent-nobc", "ppo_learned_reward_maxent"),
        ):
            if part in parts:
                lr = parts[part][key]["success_rate"]
                name = part.replace("-", "_")
                must[f"{name}_success_ratio"] = lr / t if t > 0 else float("nan")
                must[f"{name}_ratio_ok"] = lr >= 0.9 * t
    out["must_show_toy"] = must
    if "language" in parts:
        lang = parts["language"]
        out["must_show_language"] = {
            "base": lang["base_model"]["mean_return"],
            "airl": lang["airl_policy"]["mean_return"],
            "bc": lang["bc"]["mean_return"],
            "raised": lang["airl_policy"]["mean_return"] > lang["base_model"]["mean_return"],
        }
    out["table"] = table(parts)
    (RESULTS / "inverse_rl.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k.startswith("must")}, indent=2))
    print(out["table"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--part",
        choices=[
            "toy-ppo",
            "toy-airl",
            "toy-transfer",
            "toy-transfer-maxent",
            "toy-diagnose",
            "toy-airl-nobc",
            "toy-transfer-nobc",
            "toy-transfer-maxent-nobc",
            "toy-probe",
            "language",
            "merge",
        ],
        required=True,
    )
    args = ap.parse_args()
    if args.part == "merge":
        merge()
        return
    _init()
    import rlhf_envs  # noqa: F401

    run = {
        "toy-ppo": part_toy_ppo,
        "toy-airl": part_toy_airl,
        "toy-transfer": lambda: part_toy_transfer(False),
        "toy-transfer-maxent": lambda: part_toy_transfer(True),
        "toy-diagnose": part_toy_diagnose,
        "toy-airl-nobc": lambda: part_toy_airl(bc_init=False),
        "toy-transfer-nobc": lambda: part_toy_transfer(False, TOY_REWARD_DIR_NOBC),
        "toy-transfer-maxent-nobc": lambda: part_toy_transfer(True, TOY_REWARD_DIR_NOBC),
        "toy-probe": lambda: {
            **part_toy_probe(TOY_REWARD_DIR),
            **(part_toy_probe(TOY_REWARD_DIR_NOBC) if TOY_REWARD_DIR_NOBC.exists() else {}),
        },
        "language": part_language,
    }[args.part]
    t0 = time.perf_counter()
    out = run()
    out["wall_seconds"] = time.perf_counter() - t0
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"inverse_rl_{args.part}.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if "history" not in k}, indent=2))


if __name__ == "__main__":
    main()
