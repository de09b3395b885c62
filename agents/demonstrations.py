"""Demonstrations and the token-level plumbing that imitation learners (AIRL, BC) share.

* :func:`scripted_demonstrations`: the scripted-optimal policy of a toy task (type the task's
  target, then EOS), run through the env, so every demonstration is an episode the env itself paid.
* :func:`best_of_n_demonstrations`: high-reward completions on a language task: ``n`` samples of a
  policy (e.g. the embedded model) per prompt, keep the one the env's own reward ranks highest.
* :func:`sample_episodes`: episodes of an agent's current policy (any token policy) as feedback
  :class:`~rlhf_envs.feedback.base.Episode` objects with the env's returns and successes.
* :func:`policy_token_logprobs`: ``log pi(a_t | s_t)`` of every completion token of given episodes
  under an agent's policy, differentiable: AIRL's discriminator and BC's loss both need it.
* :func:`save_episodes` / :func:`load_episodes`: episodes as JSON (token ids and texts only).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from agents.envs import autoreset_mode, make_vector_env
from agents.rollout import Batch, action_masks_from_infos
from rlhf_envs import atomic_io
from rlhf_envs.errors import ConfigError, DataError
from rlhf_envs.feedback.base import Episode


def _episode(
    tokenizer: Any, prompt_ids: Sequence[int], completion_ids: Sequence[int], seed: int = 0
) -> Episode:
    p, c = [int(x) for x in prompt_ids], [int(x) for x in completion_ids]
    eos = tokenizer.eos_id
    text_ids = c[:-1] if c and c[-1] == eos else c
    return Episode(
        tokenizer.decode(p),
        tokenizer.decode(text_ids),
        tuple(p),
        tuple(c),
        bool(c) and c[-1] == eos,
        {},
        seed,
    )


def _wave_seeds(reset_seeds: Sequence[int] | None, seed: int, wave: int, n: int) -> list[int]:
    """The reset seeds of wave ``wave`` (``n`` sub-envs): consecutive from ``seed``, or the next
    ``n`` of ``reset_seeds`` (the last one repeated to fill the wave; its extra rows are dropped)."""
    if reset_seeds is None:
        return [seed + wave * n + i for i in range(n)]
    chunk = [int(s) for s in reset_seeds[wave * n : (wave + 1) * n]]
    return chunk + [chunk[-1]] * (n - len(chunk))


def _check_reset_seeds(reset_seeds: Sequence[int] | None, n_episodes: int) -> None:
    if reset_seeds is not None and len(reset_seeds) != n_episodes:
        raise ConfigError(f"reset_seeds: one per episode ({n_episodes}), got {len(reset_seeds)}")


def _run_token_policy(
    env: Any, n_episodes: int, seed: int, choose: Any, reset_seeds: Sequence[int] | None = None
) -> tuple[list[Episode], np.ndarray, np.ndarray]:
    """Run ``choose(obs, infos, step) -> actions`` in waves of ``env.num_envs`` fresh episodes.

    Episode ``k`` is reset with seed ``seed + k`` or, when given, ``reset_seeds[k]``. Returns the
    episodes, their env returns and successes (NaN where the env reports none).
    """
    _check_reset_seeds(reset_seeds, n_episodes)
    tok = env.task.tokenizer if hasattr(env, "task") else env.get_attr("task")[0].tokenizer
    n = env.num_envs
    episodes: list[Episode] = []
    returns: list[float] = []
    success: list[float] = []
    wave = 0
    mode = autoreset_mode(env)
    while len(episodes) < n_episodes:
        wave_seeds = _wave_seeds(reset_seeds, seed, wave, n)
        obs, infos = env.reset(seed=wave_seeds)
        ids, mask = np.asarray(obs["input_ids"]), np.asarray(obs["attention_mask"]).astype(bool)
        prompts = [ids[i][mask[i]].tolist() for i in range(n)]
        actions: list[list[int]] = [[] for _ in range(n)]
        ret = np.zeros(n)
        succ = np.full(n, np.nan)
        active = np.ones(n, dtype=bool)
        step = 0
        while active.any():
            a = np.asarray(choose(obs, infos, step), dtype=np.int64)
            obs, rewards, term, trunc, infos = env.step(a)
            for i in np.flatnonzero(active):
                actions[i].append(int(a[i]))
            ret += np.where(active, np.asarray(rewards, dtype=np.float64), 0.0)
            done = (np.asarray(term) | np.asarray(trunc)) & active
            if "success" in infos:
                rows = done & np.asarray(infos.get("_success", np.ones(n, bool)), bool)
                succ[rows] = np.asarray(infos["success"], dtype=np.float64)[rows]
            active &= ~done
            step += 1
            if mode == AutoresetMode.DISABLED and done.any() and active.any():
                obs, infos = env.reset(options={"reset_mask": done})
        for i in range(n):
            episodes.append(_episode(tok, prompts[i], actions[i], wave_seeds[i]))
        returns.extend(ret.tolist())
        success.extend(succ.tolist())
        wave += 1
    return episodes[:n_episodes], np.array(returns[:n_episodes]), np.array(success[:n_episodes])


def scripted_demonstrations(
    env_id: str, n_episodes: int, seed: int, n_envs: int = 64, **env_kwargs: Any
) -> tuple[list[Episode], np.ndarray]:
    """Episodes of the scripted-optimal policy of a toy task (its target, then EOS), through the env.

    Works for every task whose reset info carries ``target`` (the toy tasks). Returns the
    episodes and the env's returns (1.0 each for an exact answer).
    """
    env = make_vector_env(env_id, min(n_envs, n_episodes), env_kwargs)
    try:
        tok = env.task.tokenizer
        targets: list[list[int]] = []

        def choose(obs: Any, infos: dict[str, Any], step: int) -> np.ndarray:
            if step == 0:
                if "target" not in infos:
                    raise ConfigError(f"{env_id}: its reset info has no 'target'; it has no scripted expert")
                targets[:] = [tok.encode(str(t)) + [tok.eos_id] for t in infos["target"]]
            return np.array([t[step] if step < len(t) else tok.eos_id for t in targets])

        episodes, returns, _ = _run_token_policy(env, n_episodes, seed, choose)
    finally:
        env.close()
    return episodes, returns


@torch.no_grad()
def sample_episodes(
    agent: Any,
    env: Any,
    n_episodes: int,
    seed: int,
    deterministic: bool = False,
    reset_seeds: Sequence[int] | None = None,
) -> tuple[list[Episode], np.ndarray, np.ndarray]:
    """``n_episodes`` episodes of ``agent``'s current policy on vector env ``env``.

    Episode ``k``'s prompt is that of reset seed ``seed + k``, or of ``reset_seeds[k]`` when given
    (e.g. the demonstrations' own seeds, to sample the policy on their prompts). Returns the
    episodes, the env's returns and successes (NaN where the env reports none). The policy samples
    from a generator seeded with ``seed``, so training is not disturbed.
    """
    _check_reset_seeds(reset_seeds, n_episodes)
    cfg = agent.config
    gen = torch.Generator(device=cfg.device).manual_seed(int(seed))
    agent.policy.eval()
    if cfg.policy == "lm":
        tok = env.task.tokenizer
        episodes, returns = [], []
        wave = 0
        while len(episodes) < n_episodes:
            chunk = _wave_seeds(reset_seeds, seed, wave, env.num_envs)
            sampled = agent.sample_episodes(env, chunk, seed * 7919 + chunk[0], deterministic)
            episodes.extend(sampled.to_feedback_episodes(tok))
            returns.extend(sampled.env_rewards.sum(1).double().cpu().numpy().tolist())
            wave += 1
        return episodes[:n_episodes], np.array(returns[:n_episodes]), np.full(n_episodes, np.nan)
    pol, dev = agent.policy, cfg.device

    def choose(obs: Any, infos: dict[str, Any], step: int) -> np.ndarray:
        am = None
        if cfg.use_action_mask:
            am = torch.as_tensor(action_masks_from_infos(infos, env.num_envs, pol.n_out), device=dev)
        out = pol.act(pol.encoder(obs, dev), gen, deterministic=deterministic, action_mask=am)
        return pol.to_env_actions(out.actions)

    return _run_token_policy(env, n_episodes, seed, choose, reset_seeds)


def best_of_n_demonstrations(
    agent: Any, env: Any, n_prompts: int, n: int, seed: int
) -> tuple[list[Episode], np.ndarray, np.ndarray]:
    """For each of ``n_prompts`` prompts, the best of ``n`` completions of ``agent``'s policy.

    "Best" is the env's own return (the task's score). The prompts are those of reset seeds
    ``seed, seed + 1, ...``; each is sampled ``n`` times. Returns the chosen episodes, their returns
    and the mean return of all samples (the policy's own level, for reference).
    """
    if n < 1 or n_prompts < 1:
        raise ConfigError(f"n and n_prompts must be positive, got n={n}, n_prompts={n_prompts}")
    tok = env.task.tokenizer
    chosen: list[Episode] = []
    best: list[float] = []
    all_returns: list[float] = []
    width = env.num_envs
    seeds = [seed + p for p in range(n_prompts) for _ in range(n)]
    pool_eps: list[Episode] = []
    pool_ret: list[float] = []
    for start in range(0, len(seeds), width):
        chunk = seeds[start : start + width]
        chunk = chunk + [chunk[-1]] * (width - len(chunk))  # fill the last batch (extra rows dropped)
        sampled = agent.sample_episodes(env, chunk, seed * 7919 + start)
        keep = min(width, len(seeds) - start)
        pool_eps.extend(sampled.to_feedback_episodes(tok, chunk)[:keep])
        pool_ret.extend(sampled.env_rewards.sum(1).double().cpu().numpy()[:keep].tolist())
    for p in range(n_prompts):
        rets = np.array(pool_ret[p * n : (p + 1) * n])
        all_returns.extend(rets.tolist())
        i = int(np.argmax(rets))
        chosen.append(pool_eps[p * n + i])
        best.append(float(rets[i]))
    return chosen, np.array(best), np.array(all_returns)


def _left_padded(
    episodes: Sequence[Episode], device: str
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """LM layout: left-padded prompts then right-padded completions; ``(obs, actions, mask)``."""
    p_max = max(len(e.prompt_ids) for e in episodes)
    c_max = max(max(len(e.completion_ids) for e in episodes), 1)
    b = len(episodes)
    ids = np.zeros((b, p_max + c_max), dtype=np.int64)
    att = np.zeros((b, p_max + c_max), dtype=np.int64)
    acts = np.zeros((b, c_max), dtype=np.int64)
    cmask = np.zeros((b, c_max), dtype=bool)
    for i, e in enumerate(episodes):
        p, c = len(e.prompt_ids), len(e.completion_ids)
        ids[i, p_max - p : p_max] = e.prompt_ids
        att[i, p_max - p : p_max] = 1
        ids[i, p_max : p_max + c] = e.completion_ids
        att[i, p_max : p_max + c] = 1
        acts[i, :c] = e.completion_ids
        cmask[i, :c] = True
    obs = {"input_ids": torch.from_numpy(ids).to(device), "attention_mask": torch.from_numpy(att).to(device)}
    return obs, torch.from_numpy(acts).to(device), torch.from_numpy(cmask).to(device)


def transitions(
    episodes: Sequence[Episode], obs_length: int, pad_id: int
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Every completion token of ``episodes`` as an env transition ``(obs, action)``.

    Returns ``(obs, actions, episode_index, position)``: ``obs`` holds right-padded
    ``(N, obs_length)`` ``input_ids`` / ``attention_mask`` of each prefix (what the env showed
    the policy before that token), ``actions`` the token chosen.
    """
    rows = sum(len(e.completion_ids) for e in episodes)
    ids = np.full((rows, obs_length), pad_id, dtype=np.int64)
    att = np.zeros((rows, obs_length), dtype=np.int8)
    acts = np.zeros(rows, dtype=np.int64)
    ep_idx = np.zeros(rows, dtype=np.int64)
    pos = np.zeros(rows, dtype=np.int64)
    r = 0
    for i, e in enumerate(episodes):
        seq = list(e.prompt_ids) + list(e.completion_ids)
        p = len(e.prompt_ids)
        for t in range(len(e.completion_ids)):
            k = p + t
            if k > obs_length:
                raise DataError(f"episode {i} is longer than the env's observation ({obs_length} tokens)")
            ids[r, :k] = seq[:k]
            att[r, :k] = 1
            acts[r], ep_idx[r], pos[r] = seq[k], i, t
            r += 1
    return {"input_ids": ids, "attention_mask": att}, acts, ep_idx, pos


def policy_token_logprobs(agent: Any, episodes: Sequence[Episode]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log pi (B, C), mask (B, C))``: the agent's log-probability of every completion token.

    Differentiable (wrap in ``torch.no_grad()`` when only the values are needed). For LM policies
    one batched pass over the left-padded sequences; for token policies trained from scratch
    (``policy="transformer"`` / ``"mlp"`` on the rlhf observation) one pass over every prefix as
    the env would show it, under the env's action mask when the policy uses one.
    """
    cfg, pol, dev = agent.config, agent.policy, agent.config.device
    if not episodes:
        raise ConfigError("policy_token_logprobs: no episodes")
    if cfg.policy == "lm":
        obs, acts, cmask = _left_padded(episodes, dev)
        zeros = torch.zeros(acts.shape, device=dev)
        batch = Batch(obs, acts, zeros, zeros, zeros, zeros, cmask, zeros)
        logp, _, _ = pol.evaluate_batch(batch)
        return logp * cmask, cmask
    length = int(agent.observation_space["input_ids"].shape[0])
    pad = int(agent.env.task.tokenizer.pad_id) if hasattr(agent.env, "task") else 0
    obs, acts, ep_idx, pos = transitions(episodes, length, pad)
    am = None
    if cfg.use_action_mask:
        mask = np.asarray(agent.env.task.action_mask(), dtype=bool)
        am = torch.as_tensor(np.broadcast_to(mask[: pol.n_out], (len(acts), pol.n_out)).copy(), device=dev)
    logp_flat, _, _ = pol.evaluate_actions(pol.encoder(obs, dev), torch.as_tensor(acts, device=dev), am)
    c_max = max(max(len(e.completion_ids) for e in episodes), 1)
    out = torch.zeros(len(episodes), c_max, device=dev, dtype=logp_flat.dtype)
    out = out.index_put((torch.as_tensor(ep_idx, device=dev), torch.as_tensor(pos, device=dev)), logp_flat)
    lengths = torch.as_tensor([len(e.completion_ids) for e in episodes], device=dev)
    cmask = torch.arange(c_max, device=dev)[None, :] < lengths[:, None]
    return out, cmask


def save_episodes(path: str | os.PathLike, episodes: Sequence[Episode]) -> None:
    """Write episodes (texts, token ids, terminated, seed; not metadata) as JSON, atomically."""
    rows = [
        {
            "prompt": e.prompt,
            "completion": e.completion,
            "prompt_ids": list(e.prompt_ids),
            "completion_ids": list(e.completion_ids),
            "terminated": bool(e.terminated),
            "seed": int(e.seed),
        }
        for e in episodes
    ]
    atomic_io.write_json(Path(path), {"episodes": rows})


def load_episodes(path: str | os.PathLike) -> list[Episode]:
    """Episodes written by :func:`save_episodes`; a malformed file raises :class:`DataError`."""
    try:
        rows = json.loads(Path(path).read_text(encoding="utf-8"))["episodes"]
        return [
            Episode(
                str(r["prompt"]),
                str(r["completion"]),
                tuple(int(x) for x in r["prompt_ids"]),
                tuple(int(x) for x in r["completion_ids"]),
                bool(r["terminated"]),
                {},
                int(r["seed"]),
            )
            for r in rows
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"episodes file {str(path)!r} is missing or malformed ({exc!r})") from None
