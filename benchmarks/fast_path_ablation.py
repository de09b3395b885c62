"""What each of the LM agents' fast paths (issue 19) is worth, measured side by side in one process.

The fast paths, each switched off alone by the same switches ``tests/test_fast_paths.py`` uses to
check that it computes what the old path computed:

* ``gpt2_forward``: full-sequence passes through :func:`rlhf_envs.lm.gpt2_forward.gpt2_hidden_states`
  instead of transformers' module forward;
* ``last_block_keep``: its last block only at the positions whose states are used;
* ``fused_adam``: ``torch.optim.Adam(fused=True)``;
* ``entropy_no_grad``: the logged entropy outside autograd when ``ent_coef`` is 0;
* ``trim_padding``: each minibatch without its all-padding columns;
* ``values_from_sampler``: PPO's rollout values from the sampler's hidden states (no value pass).

Protocol (fixed before the first run): TRL's job (:mod:`benchmarks.trl_speed`: the custom PPO from
``lm-sb3-sentiment``, the custom GRPO from ``lm-trl-sentiment-grpo``), one torch thread. Variants:
every fast path on (``all``), each one off alone (``-name``), every one off (``none``, the code
before issue 19). Each round runs every variant once, in a fresh order drawn from the round's seed,
for PPO and for GRPO: a new agent (seed 0, construction not timed), one warm-up iteration, then
``iterations`` timed iterations; generated tokens per second of wall time and per second of this
process's CPU time (which other processes taking turns on the cores dilute less). Reported per
variant: the median over rounds of ``tok/s(variant) / tok/s(all)`` in the same round.

Decision rule (fixed before the first run): a fast path is kept if switching it off alone makes PPO
or GRPO slower on CPU time (median ratio < 1.00) and neither more than 1% faster (ratio <= 1.01);
otherwise it is removed again.

Run: ``python -m benchmarks.fast_path_ablation --rounds 4`` (prints and writes
``benchmarks/results/fast_path_ablation.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import time
from collections.abc import Iterator
from typing import Any

from benchmarks.common import RESULTS, init_torch, load_average, machine_info, write_json

FAST_PATHS = (
    "gpt2_forward",
    "last_block_keep",
    "fused_adam",
    "entropy_no_grad",
    "trim_padding",
    "values_from_sampler",
)


@contextlib.contextmanager
def switched_off(names: tuple[str, ...]) -> Iterator[None]:
    """Switch the named fast paths off for the block (monkeypatching the switches the tests use)."""
    from agents import base, lm_actor_critic
    from agents.lm_actor_critic import LMActorCritic
    from agents.lm_collector import EpisodeCollector
    from agents.rollout import Batch

    unknown = set(names) - set(FAST_PATHS)
    if unknown:
        raise ValueError(f"unknown fast paths {sorted(unknown)}; known: {FAST_PATHS}")
    saved: list[tuple[Any, str, Any]] = []

    class _Patch:
        @staticmethod
        def setattr(obj: Any, name: str, value: Any) -> None:
            saved.append((obj, name, obj.__dict__[name] if isinstance(obj, type) else getattr(obj, name)))
            setattr(obj, name, value)

    mp = _Patch()
    try:
        if "gpt2_forward" in names:
            mp.setattr(lm_actor_critic, "fast_forward_supported", lambda model: False)
        if "last_block_keep" in names:
            full = lm_actor_critic.gpt2_hidden_states

            def whole(model: Any, ids: Any, mask: Any, pos: Any, keep: Any = None) -> Any:
                out = full(model, ids, mask, pos)
                return out if keep is None else out[:, keep]

            mp.setattr(lm_actor_critic, "gpt2_hidden_states", whole)
        if "fused_adam" in names:
            mp.setattr(base, "fused_adam_ok", lambda params: False)
        if "entropy_no_grad" in names:
            evaluate = LMActorCritic.evaluate_batch
            mp.setattr(
                LMActorCritic, "evaluate_batch", lambda self, b, entropy_grad=True: evaluate(self, b, True)
            )
        if "trim_padding" in names:
            mp.setattr(Batch, "trim_padding", lambda self: self)
        if "values_from_sampler" in names:
            mp.setattr(EpisodeCollector, "values_from_sampler", False)
        yield
    finally:
        for obj, name, value in reversed(saved):
            setattr(obj, name, value)


def _run(algo: str, iterations: int, seed: int) -> tuple[float, float]:
    """(tok/s of wall time, tok/s of process CPU time) over ``iterations`` after one warm-up."""
    import agents
    from benchmarks.iteration_profile import AGENTS

    cls_name, preset = AGENTS[algo]
    agent = getattr(agents, cls_name)("RLHF/Sentiment-v0", seed=seed, preset=preset)
    agent.learn(1, progress_bar=False)
    n0, count = agent.num_timesteps, [0]

    def stop(a: Any, m: Any) -> bool:
        count[0] += 1
        return count[0] < iterations

    wall, cpu = time.perf_counter(), time.process_time()
    agent.learn(10**9, progress_bar=False, reset_num_timesteps=False, callback=stop)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    agent.close()
    n = agent.num_timesteps - n0
    return n / wall, n / cpu


def ablate(rounds: int = 4, iterations: int = 4, seed: int = 0) -> dict[str, Any]:
    """Run the protocol of the module docstring; returns per-variant median ratios and the raw runs."""
    variants = {"all": (), **{f"-{name}": (name,) for name in FAST_PATHS}, "none": FAST_PATHS}
    raw: list[dict[str, Any]] = []
    for r in range(rounds):
        order = list(variants)
        random.Random(seed + r).shuffle(order)
        for name in order:
            with switched_off(variants[name]):
                for algo in ("ppo", "grpo"):
                    wall, cpu = _run(algo, iterations, seed)
                    raw.append(
                        {"round": r, "variant": name, "algo": algo, "tok_s_wall": wall, "tok_s_cpu": cpu}
                    )
    summary: dict[str, Any] = {}
    for name in variants:
        summary[name] = {}
        for algo in ("ppo", "grpo"):
            for clock in ("wall", "cpu"):
                ratios = []
                for r in range(rounds):
                    mine = [x for x in raw if x["round"] == r and x["algo"] == algo]
                    base_ = next(x for x in mine if x["variant"] == "all")[f"tok_s_{clock}"]
                    ratios.append(next(x for x in mine if x["variant"] == name)[f"tok_s_{clock}"] / base_)
                summary[name][f"{algo}_{clock}_ratio_median"] = statistics.median(ratios)
            summary[name][f"{algo}_cpu_tok_s_median"] = statistics.median(
                x["tok_s_cpu"] for x in raw if x["variant"] == name and x["algo"] == algo
            )
    decisions = {}
    for name in FAST_PATHS:
        s = summary[f"-{name}"]
        slower = s["ppo_cpu_ratio_median"] < 1.0 or s["grpo_cpu_ratio_median"] < 1.0
        faster = s["ppo_cpu_ratio_median"] > 1.01 or s["grpo_cpu_ratio_median"] > 1.01
        decisions[name] = "keep" if slower and not faster else "remove"
    return {
        "rounds": rounds,
        "iterations": iterations,
        "summary": summary,
        "decisions": decisions,
        "runs": raw,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--iterations", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(RESULTS / "fast_path_ablation.json"))
    args = p.parse_args(argv)
    init_torch(1)
    machine = machine_info()
    res = ablate(args.rounds, args.iterations, args.seed)
    machine["load_average_at_end"] = load_average()
    res["machine"] = machine
    print(
        f"{'variant':22s} {'PPO cpu':>8s} {'GRPO cpu':>9s} {'PPO wall':>9s} {'GRPO wall':>10s}  (tok/s vs all)"
    )
    for name, s in res["summary"].items():
        print(
            f"{name:22s} {s['ppo_cpu_ratio_median']:8.3f} {s['grpo_cpu_ratio_median']:9.3f} "
            f"{s['ppo_wall_ratio_median']:9.3f} {s['grpo_wall_ratio_median']:10.3f}"
        )
    print("decisions:", res["decisions"])
    write_json(args.out, res)
    return res


if __name__ == "__main__":
    main()
