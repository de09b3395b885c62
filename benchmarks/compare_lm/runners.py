"""One run of :mod:`benchmarks.compare_lm`: one algorithm on one task with one seed.

Every runner returns a :class:`RunOutput`: the run's row (``compare_lm_runs.csv``) and its
evaluation points (``compare_lm_curves.csv``). All evaluations sample (temperature 1) one completion
of each of the same ``eval_episodes`` prompts (sub-env seeds ``EVAL_SEED + j``, sampling generator
seeded ``EVAL_SEED``) and report the reward (the gold where the task has one, else the task reward),
the KL to the reference and the generation metrics of :mod:`agents.generation_metrics`.

* :func:`run_on_policy`: PPO, A2C, REINFORCE, RLOO, GRPO, ES (``agents.<Algo>`` from the preset);
  KL exact at every visited position (``agent.evaluate``).
* :func:`run_dpo`: simulated-human comparisons from the base model, then DPO on them.
* :func:`run_sb3`: Stable-Baselines3 PPO with the token features extractor (the embedded LM as
  encoder and head) and the KL penalty callback; KL is the sampled-token (k1) estimate
  ``sum_t log pi - log pi_ref`` (SB3's policy gives the full distribution, the env only the
  reference log-prob of the chosen token); its expectation is the same sequence KL.
* :func:`run_best_of_n`: no training; a pool of ``bon_pool`` base-model samples per evaluation
  prompt gives the frontier for every ``n`` (:func:`agents.best_of_n.pool_curve`); KL is the
  analytic ``log n - (n - 1) / n`` (exact without ties, an upper bound with them; the pool's
  measured estimate, which assumes distinct texts never tie and goes negative on the tie-heavy
  Length task, is kept in ``kl_measured``).

CPU seconds are the process's CPU time (``time.process_time``, torch at one thread) spent
training, evaluations excluded.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from benchmarks.common import config_columns, settings_text
from benchmarks.compare_lm.suites import DPO_RATER, EVAL_SEED, ON_POLICY, PRESETS, TASKS, Budget

#: the metrics every evaluation point carries (besides reward and KL)
GEN_METRICS = ("distinct_1", "distinct_2", "mean_length", "eos_rate", "ref_perplexity")


@dataclass
class RunOutput:
    """One run: its ``compare_lm_runs.csv`` row and its ``compare_lm_curves.csv`` rows."""

    run: dict[str, Any]
    curve: list[dict[str, Any]] = field(default_factory=list)


def _f(x: Any) -> float:
    """A float (nan for ``None``)."""
    return math.nan if x is None else float(x)


class Recorder:
    """Evaluation points of one run and the CPU seconds of training between them."""

    def __init__(self, task: str, algo: str, seed: int, kl_estimator: str) -> None:
        self.key = {"task": task, "algo": algo, "seed": seed}
        self.kl_estimator = kl_estimator
        self.points: list[dict[str, Any]] = []
        self.eval_cpu = 0.0
        self._train_start: float | None = None

    def start_training(self) -> None:
        self._train_start = time.process_time()
        self.eval_cpu = 0.0

    @property
    def train_cpu(self) -> float:
        """CPU seconds since :meth:`start_training`, evaluations excluded (0 before)."""
        if self._train_start is None:
            return 0.0
        return time.process_time() - self._train_start - self.eval_cpu

    def record(
        self,
        evaluate: Callable[[], dict[str, Any]],
        fraction: float | str,
        tokens: int,
        update_tokens: int | str = "",
        n: int | str = "",
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Run ``evaluate`` (its CPU time not counted as training) and append the point."""
        cpu = self.train_cpu
        c0 = time.process_time()
        m = evaluate()
        self.eval_cpu += time.process_time() - c0
        gold = m.get("reward_gold")
        row = {
            **self.key,
            "point": len(self.points),
            "fraction": fraction,
            "n": n,
            "tokens": int(tokens),
            "update_tokens": update_tokens,
            "cpu_seconds": round(cpu, 2),
            "reward": _f(gold if gold is not None else m.get("reward_task")),
            "reward_task": _f(m.get("reward_task")),
            "reward_gold": "" if gold is None else float(gold),
            "kl_ref": _f(m.get("kl_ref")),
            "kl_estimator": self.kl_estimator,
            **{k: _f(m.get(k)) for k in GEN_METRICS},
            **(extra or {}),
        }
        self.points.append(row)
        return row


def _marks(budget: int, fractions: tuple[float, ...]) -> list[int]:
    """The token counts of the evaluation points strictly between the start and the end."""
    return [int(round(f * budget)) for f in fractions if 0.0 < f < 1.0]


def _evaluator(agent: Any, env: Any, n: int) -> Callable[[], dict[str, Any]]:
    return lambda: agent.evaluate(n, deterministic=False, seed=EVAL_SEED, env=env)


def _eval_env(env_id: str, n: int, env_kwargs: dict[str, Any] | None = None) -> Any:
    from agents.envs import make_vector_env

    return make_vector_env(env_id, min(n, 64), env_kwargs)


def _run_row(
    rec: Recorder,
    env_id: str,
    preset: str,
    config: dict[str, Any],
    wall: float,
    **fields: Any,
) -> dict[str, Any]:
    last, first = rec.points[-1], rec.points[0]
    return {
        **rec.key,
        "env_id": env_id,
        "status": "ok",
        "tokens": last["tokens"],
        "update_tokens": fields.pop("update_tokens", ""),
        "comparisons": fields.pop("comparisons", ""),
        "comparison_tokens": fields.pop("comparison_tokens", ""),
        "sampled_tokens": fields.pop("sampled_tokens", ""),
        "cpu_seconds": round(rec.train_cpu if rec._train_start is not None else last["cpu_seconds"], 2),
        "eval_cpu_seconds": round(rec.eval_cpu, 2),
        "wall_seconds": round(wall, 2),
        "base_reward": first["reward"],
        "final_reward": last["reward"],
        "final_reward_task": last["reward_task"],
        "final_kl": last["kl_ref"],
        "kl_estimator": rec.kl_estimator,
        **{f"final_{k}": last[k] for k in GEN_METRICS},
        **fields,
        "settings": settings_text({k: v for k, v in config.items() if k in _SETTING_KEYS}),
        **config_columns(preset, config),
    }


#: the readable settings column of the runs CSV
_SETTING_KEYS = (
    "learning_rate",
    "n_envs",
    "n_steps",
    "batch_size",
    "n_epochs",
    "n_minibatches",
    "group_size",
    "kl_coef",
    "kl_mode",
    "beta",
    "population_size",
    "sigma",
    "pairs",
    "rater",
    "pool",
)


def _config(agent: Any) -> dict[str, Any]:
    return {k: v for k, v in agent.config.to_json_dict().items()}


# -- the custom on-policy agents -----------------------------------------------------------------------


def run_on_policy(algo: str, task: str, seed: int, budget: Budget) -> RunOutput:
    """PPO / A2C / REINFORCE / RLOO / GRPO / ES for ``budget.tokens`` generated tokens."""
    import agents

    w0 = time.perf_counter()
    env_id = TASKS[task]
    agent = getattr(agents, ON_POLICY[algo])(env_id, seed=seed, preset=PRESETS[algo])
    env = _eval_env(env_id, budget.eval_episodes, agent.config.env_kwargs)
    rec = Recorder(task, algo, seed, "exact")
    evaluate = _evaluator(agent, env, budget.eval_episodes)
    rec.record(evaluate, 0.0, 0)
    marks = _marks(budget.tokens, budget.eval_fractions)

    def callback(a: Any, _metrics: dict[str, float]) -> None:
        if marks and budget.tokens > a.num_timesteps >= marks[0]:  # the end is recorded after learn
            frac = marks[0] / budget.tokens
            while marks and a.num_timesteps >= marks[0]:
                marks.pop(0)
            rec.record(evaluate, frac, a.num_timesteps)

    rec.start_training()
    agent.learn(budget.tokens, callback=callback, progress_bar=False)
    rec.record(evaluate, 1.0, agent.num_timesteps)
    env.close()
    config = _config(agent)
    agent.close()
    return RunOutput(_run_row(rec, env_id, PRESETS[algo], config, time.perf_counter() - w0), rec.points)


# -- DPO -----------------------------------------------------------------------------------------------


def run_dpo(task: str, seed: int, budget: Budget) -> RunOutput:
    """``budget.dpo_pairs`` comparisons of base-model samples labelled by a simulated human whose
    gold is the task's reward (the gold of RLHF/SimulatedHuman-v0), then DPO on them."""
    import agents
    from agents.preference_data import PreferencePairs, sample_comparisons
    from rlhf_envs.feedback.simulated import SimulatedHuman

    w0 = time.perf_counter()
    env_id = TASKS[task]
    agent = agents.DPO(env_id, seed=seed, preset=PRESETS["dpo"])
    env = _eval_env(env_id, budget.eval_episodes, agent.config.env_kwargs)
    task_obj = env.task
    gold = getattr(task_obj, "gold", task_obj.feedback)
    human = SimulatedHuman(gold, DPO_RATER, seed=seed)
    c0 = time.process_time()
    a, b, answers, info = sample_comparisons(agent, budget.dpo_pairs, human, seed=seed, env_id=env_id)
    data = PreferencePairs.from_comparisons(a, b, answers, source=f"SimulatedHuman({DPO_RATER}), seed {seed}")
    comparison_cpu = time.process_time() - c0
    comparison_tokens = sum(len(e.completion_ids) for e in (*a, *b))
    agent.set_preferences(data)
    rec = Recorder(task, "dpo", seed, "exact")
    evaluate = _evaluator(agent, env, budget.eval_episodes)
    rec.record(evaluate, 0.0, 0, update_tokens=0)
    marks = _marks(budget.dpo_update_tokens, budget.eval_fractions)

    def callback(ag: Any, _metrics: dict[str, float]) -> None:
        if marks and budget.dpo_update_tokens > ag.num_timesteps >= marks[0]:
            frac = marks[0] / budget.dpo_update_tokens
            while marks and ag.num_timesteps >= marks[0]:
                marks.pop(0)
            rec.record(evaluate, frac, 0, update_tokens=ag.num_timesteps)

    rec.start_training()
    agent.learn(budget.dpo_update_tokens, callback=callback, progress_bar=False)
    rec.record(evaluate, 1.0, 0, update_tokens=agent.num_timesteps)
    env.close()
    config = {**_config(agent), "pairs": budget.dpo_pairs, "rater": DPO_RATER}
    out = _run_row(
        rec,
        env_id,
        PRESETS["dpo"],
        config,
        time.perf_counter() - w0,
        update_tokens=agent.num_timesteps,
        comparisons=len(data),
        comparison_tokens=comparison_tokens,
        comparison_cpu_seconds=round(comparison_cpu, 2),
        label_gold_agreement=info.get("label_gold_agreement", ""),
    )
    agent.close()
    return RunOutput(out, rec.points)


# -- Stable-Baselines3 PPO -----------------------------------------------------------------------------


@torch.no_grad()
def sb3_evaluate(model: Any, env_id: str, n_episodes: int, env_kwargs: dict[str, Any] | None = None) -> dict:
    """Sampled completions of the evaluation prompts from an SB3 policy: the reward (task and gold),
    the k1 KL to the reference and the generation metrics (see the module docstring)."""
    from agents.generation_metrics import generation_metrics, merge_batches
    from agents.sb3 import make_sb3_env

    width = min(n_episodes, 64)
    env = make_sb3_env(env_id, width, None, env_kwargs, False, "env", monitor=False)
    eos_id = int(env.venv.task.tokenizer.eos_id)
    gen = torch.Generator().manual_seed(EVAL_SEED)
    policy = model.policy
    policy.set_training_mode(False)
    parts: list[dict[str, torch.Tensor]] = []
    task_r: list[float] = []
    gold_r: list[float] = []
    lengths: list[int] = []
    try:
        for start in range(0, n_episodes, width):
            k = min(width, n_episodes - start)
            env.seed(EVAL_SEED + start)
            obs = env.reset()
            active = np.ones(width, dtype=bool)
            active[k:] = False  # a short last batch: only its first k rows count
            ids, lps, refs, masks = [], [], [], []
            ended: dict[int, dict[str, Any]] = {}
            while active.any():
                obs_t, _ = policy.obs_to_tensor(obs)
                logits = policy.get_distribution(obs_t).distribution.logits
                logp_all = torch.log_softmax(logits.float(), -1)
                tokens = torch.multinomial(logp_all.exp(), 1, generator=gen).squeeze(1)
                lp = logp_all.gather(1, tokens[:, None]).squeeze(1)
                obs, _, dones, infos = env.step(tokens.numpy())
                ref = torch.tensor([float(infos[i].get("ref_logprob", 0.0)) for i in range(width)])
                act = torch.as_tensor(active)
                ids.append(torch.where(act, tokens, 0))
                lps.append(torch.where(act, lp, 0.0))
                refs.append(torch.where(act, ref, 0.0))
                masks.append(act.clone())
                for i in np.flatnonzero(active & np.asarray(dones)):
                    ended[int(i)] = infos[i]
                active &= ~np.asarray(dones)
            mask = torch.stack(masks, 1)[:k]
            lp_t, ref_t = torch.stack(lps, 1)[:k], torch.stack(refs, 1)[:k]
            parts.append(
                {
                    "completion_ids": torch.stack(ids, 1)[:k],
                    "mask": mask.long(),
                    "ref": ref_t,
                    "kl": lp_t - ref_t,
                }
            )
            for i in range(k):
                task_r.append(float(ended[i]["reward_task"]))
                if "reward_gold" in ended[i]:
                    gold_r.append(float(ended[i]["reward_gold"]))
                lengths.append(int(mask[i].sum()))
    finally:
        env.close()
    merged = merge_batches(parts)
    out: dict[str, Any] = generation_metrics(
        merged["completion_ids"], merged["mask"].bool(), merged["ref"], merged["kl"], eos_id
    )
    out["reward_task"] = float(np.mean(task_r))
    if gold_r:
        out["reward_gold"] = float(np.mean(gold_r))
    out["mean_length"] = float(np.mean(lengths))
    return out


def run_sb3(task: str, seed: int, budget: Budget) -> RunOutput:
    """SB3 PPO (``train_baseline``, preset ``sb3-lm-sentiment``) for ``budget.sb3_tokens`` tokens."""
    from stable_baselines3.common.callbacks import BaseCallback

    from agents.sb3 import train_baseline

    w0 = time.perf_counter()
    env_id = TASKS[task]
    rec = Recorder(task, "sb3-ppo", seed, "k1")
    marks = _marks(budget.sb3_tokens, budget.eval_fractions)

    class EvalPoints(BaseCallback):
        """Evaluates before the first rollout and when a rollout starts past the next mark."""

        def _on_training_start(self) -> None:
            rec.record(lambda: sb3_evaluate(self.model, env_id, budget.eval_episodes), 0.0, 0)
            rec.start_training()

        def _on_rollout_start(self) -> None:
            t = self.model.num_timesteps
            if marks and budget.sb3_tokens > t >= marks[0]:
                frac = marks[0] / budget.sb3_tokens
                while marks and t >= marks[0]:
                    marks.pop(0)
                rec.record(lambda: sb3_evaluate(self.model, env_id, budget.eval_episodes), frac, t)

        def _on_step(self) -> bool:
            return True

    model = train_baseline(
        "ppo", env_id, budget.sb3_tokens, seed, preset=PRESETS["sb3-ppo"], callback=[EvalPoints()]
    )
    rec.record(lambda: sb3_evaluate(model, env_id, budget.eval_episodes), 1.0, model.num_timesteps)
    config = dict(model.train_config)
    model.get_env().close()
    return RunOutput(_run_row(rec, env_id, PRESETS["sb3-ppo"], config, time.perf_counter() - w0), rec.points)


# -- best-of-n -----------------------------------------------------------------------------------------


def run_best_of_n(task: str, seed: int, budget: Budget) -> RunOutput:
    """Best-of-n over the base model, reranked by the task's reward (the proxy on SimulatedHuman):
    ``budget.bon_pool`` samples of every evaluation prompt (sampling seed from ``seed``)."""
    import agents
    from agents.best_of_n import pool_curve
    from agents.generation_metrics import eos_id_of, generation_metrics

    w0 = time.perf_counter()
    env_id = TASKS[task]
    # an untrained agent: its policy is the reference, and it samples with the suite's decoder
    sampler = agents.PPO(env_id, seed=seed, preset=PRESETS["ppo"])
    width = 64
    env = _eval_env(env_id, width, sampler.config.env_kwargs)
    eos_id = eos_id_of(env)
    rec = Recorder(task, "best-of-n", seed, "bon-analytic")
    rec.start_training()
    n_prompts, pool = budget.eval_episodes, budget.bon_pool
    rows = [EVAL_SEED + j for j in range(n_prompts) for _ in range(pool)]
    ids, masks, refs, proxy, gold, logp = [], [], [], [], [], []
    for b, start in enumerate(range(0, len(rows), width)):
        seeds = rows[start : start + width]
        k = len(seeds)
        seeds = seeds + [seeds[-1]] * (width - k)
        s = sampler.sample_episodes(env, seeds, generator_seed=seed * 1_000_003 + b)
        lengths = s.completion_lengths()
        # the env lists summaries as episodes end (by length, then row): map them back to rows
        order = sorted(range(width), key=lambda i: (int(lengths[i]), i))
        by_row = dict(zip(order, s.summaries, strict=True))
        for i in range(k):
            proxy.append(float(by_row[i]["reward_task"]))
            gold.append(float(by_row[i].get("reward_gold", by_row[i]["reward_task"])))
        ids.append(s.completion_ids[:k])
        masks.append(s.completion_mask[:k])
        refs.append(s.ref_log_probs[:k])
        logp.extend(s.log_prob_sums()[:k].tolist())
    width_r = max(t.shape[1] for t in ids)

    def pad(ts: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([torch.nn.functional.pad(t, (0, width_r - t.shape[1])) for t in ts], 0)

    all_ids, all_mask, all_ref = pad(ids), pad(masks).bool(), pad(refs)
    shape = (n_prompts, pool)
    proxy_a, gold_a = np.array(proxy).reshape(shape), np.array(gold).reshape(shape)
    length_a = all_mask.sum(1).numpy().astype(np.float64).reshape(shape)
    curve = pool_curve(proxy_a, gold_a, np.array(logp).reshape(shape), budget.bon_n, length_a)
    sampled_tokens = int(all_mask.sum())
    has_gold = task == "simulated_human"
    for p in curve:
        # generation metrics of one real best-of-n draw per prompt: the best of its first n samples
        pick = [j * pool + int(np.argmax(proxy_a[j, : p.n])) for j in range(n_prompts)]
        gm = generation_metrics(
            all_ids[pick], all_mask[pick], all_ref[pick], torch.zeros_like(all_ref[pick]), eos_id
        )
        m = {
            "reward_task": p.proxy,
            "kl_ref": p.kl_analytic,
            "mean_length": p.length,
            **{k: v for k, v in gm.items() if k != "kl_ref"},
        }
        if has_gold:
            m["reward_gold"] = p.gold
        rec.record(lambda m=m: m, "", 0, n=p.n, extra={"kl_measured": p.kl_measured})
    env.close()
    sampler.close()
    config = {"pool": pool, "n": list(budget.bon_n), "prompts": n_prompts, "sampler_preset": PRESETS["ppo"]}
    out = _run_row(rec, env_id, "", config, time.perf_counter() - w0, sampled_tokens=sampled_tokens)
    out["tokens"] = 0
    return RunOutput(out, rec.points)


def run_one(task: str, algo: str, seed: int, budget: Budget) -> RunOutput:
    """Dispatch one (task, algorithm, seed) run."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    if algo in ON_POLICY:
        return run_on_policy(algo, task, seed, budget)
    if algo == "dpo":
        return run_dpo(task, seed, budget)
    if algo == "sb3-ppo":
        return run_sb3(task, seed, budget)
    if algo == "best-of-n":
        return run_best_of_n(task, seed, budget)
    raise ValueError(f"unknown algorithm {algo!r}; known: {', '.join(PRESETS)}")


__all__ = [
    "GEN_METRICS",
    "Recorder",
    "RunOutput",
    "run_best_of_n",
    "run_dpo",
    "run_on_policy",
    "run_one",
    "run_sb3",
]
