"""Where a whole PPO (or GRPO) iteration's time goes on TRL's job, and how close it is to the matmul bound.

The job is :mod:`benchmarks.trl_speed`'s (``RLHF/Sentiment-v0``'s embedded model, prompts and VADER
reward; 16 completions of at most 24 tokens per batch, 4 epochs x 4 minibatches): the custom PPO
from the preset ``lm-sb3-sentiment``, the custom GRPO from ``lm-trl-sentiment-grpo``.

Protocol (fixed before the first run): one warm-up iteration, then the agent's phase timer
(:mod:`agents.phase_timer`) is switched on for ``iterations`` more, on one torch thread. Reported:

* the share of the iterations' wall time in the rollout and in the update;
* inside the rollout: sampling (KV-cached decoder, token draws and, for PPO, the value head on the
  decoder's states), the env (its steps, which pay the feedback model's score on the final token,
  and resets), the reference pass, other (buffers, rewards, GAE or group advantages, metrics);
* inside the update: forward (the training pass and the loss), backward, gradient clipping,
  optimiser step, other (minibatch indexing, statistics);
* the fraction of the matmul bound the whole iterations reach: the FLOPs they need / (their wall
  time x the FLOP/s of a 2048^3 float32 matmul on the same thread count,
  :func:`benchmarks.sampler.matmul_flops`, best of 5, measured in the same run).

How FLOPs are counted (:func:`iteration_flops`): only real tokens (padding is waste, not need).
A token through the transformer body costs ``2 x N_body`` (every weight of the blocks and the final
layer norm; embeddings are lookups) plus causal attention ``4 x d x (its position + 1)`` per layer;
a position whose next-token distribution is needed adds the LM head, ``2 x n_actions x d``. Per
iteration: sampling = body over every prompt and completion token + head per completion token;
value pass (PPO, only when its values do not come from the sampler's states, which they do by
default) = body over every token; reference pass = body + head per completion token; the
update = ``n_epochs x 3 x`` (body + head per completion token), the backward pass counted as twice
the forward. Layer norms, GELU, softmax and the optimiser are not counted (they are not matmuls),
so 100% is not reachable.

Run: ``python -m benchmarks.iteration_profile`` (prints JSON); ``benchmarks/throughput.py`` runs it
as part of ``--parts ppo``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch

from benchmarks.common import Timer, init_torch, load_average

ENV = "RLHF/Sentiment-v0"
#: the agents profiled, by name: (class name in :mod:`agents`, preset)
AGENTS = {"ppo": ("PPO", "lm-sb3-sentiment"), "grpo": ("GRPO", "lm-trl-sentiment-grpo")}
ROLLOUT_PARTS = ("rollout.sampling", "rollout.env", "rollout.value_and_ref_pass", "rollout.ref_pass")
UPDATE_PARTS = ("update.forward", "update.backward", "update.clip_grad", "update.optimizer")


def model_sizes(lm: torch.nn.Module, n_actions: int) -> dict[str, int]:
    """``N_body`` (parameters a token multiplies in the blocks and final norm), the LM head's
    ``n_actions x d``, the width ``d`` and the layer count of a GPT-2-style causal LM."""
    from benchmarks.sampler import count_params

    emb = lm.get_input_embeddings().weight
    d = int(emb.shape[1])
    body = count_params(lm) - int(emb.numel())  # all but position and token embeddings
    layers = int(getattr(lm.config, "n_layer", getattr(lm.config, "num_hidden_layers", 0)))
    return {"body": body, "head": n_actions * d, "d": d, "layers": layers}


def _attention_flops(lengths: torch.Tensor, d: int, layers: int) -> float:
    """Causal attention of sequences of ``lengths`` real tokens: ``4 d (t + 1)`` per token and layer."""
    t = lengths.double()
    return float((4.0 * d * t * (t + 1) / 2).sum()) * layers


def iteration_flops(batch: Any, sizes: dict[str, int], n_epochs: int, value_pass: bool) -> dict[str, float]:
    """FLOPs one iteration needs for ``batch`` (see the module docstring), by pass."""
    completion = batch.mask.long().sum(1)
    total = batch.obs["attention_mask"].long().sum(1)  # real prompt + completion tokens per row
    tokens, c = float(total.sum()), float(completion.sum())
    attn = _attention_flops(total, sizes["d"], sizes["layers"])
    body = 2.0 * sizes["body"] * tokens + attn
    head = 2.0 * sizes["head"] * c
    out = {
        "sampling": body + head,
        "value_pass": body if value_pass else 0.0,
        "reference_pass": body + head,
        "update": n_epochs * 3.0 * (body + head),
    }
    out["total"] = sum(out.values())
    return out


def profile_iterations(
    algo: str = "ppo", iterations: int = 4, seed: int = 0, threads: int = 1, flop_per_s: float | None = None
) -> dict[str, Any]:
    """Run one warm-up and ``iterations`` timed iterations of ``algo`` ("ppo" or "grpo") on the job.

    ``flop_per_s``: the matmul bound to compare with (default: measured here with
    :func:`benchmarks.sampler.matmul_flops` on ``threads`` threads).
    """
    if algo not in AGENTS:
        raise ValueError(f"algo must be one of {sorted(AGENTS)}, got {algo!r}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be an int >= 1, got {iterations!r}")
    import agents
    from benchmarks.sampler import matmul_flops

    init_torch(threads)
    if flop_per_s is None:
        flop_per_s = matmul_flops()["flop_per_s_best"]
    cls_name, preset = AGENTS[algo]
    agent = getattr(agents, cls_name)(ENV, seed=seed, preset=preset)
    cfg = agent.config
    sizes = model_sizes(agent.policy.lm, agent.policy.n_actions)
    batches: list[Any] = []
    collect = agent.collector.collect

    def recording_collect(ag: Any) -> Any:
        out = collect(ag)
        batches.append(out[0])
        return out

    agent.collector.collect = recording_collect  # type: ignore[method-assign]
    agent.learn(1, progress_bar=False)  # warm-up: one iteration (first calls, kernel caches)
    batches.clear()
    agent.phases.reset()
    agent.phases.enabled = True
    load0 = load_average()[0]
    start_tokens = agent.num_timesteps
    with Timer() as clock:
        agent.learn(
            10**9,
            progress_bar=False,
            reset_num_timesteps=False,
            callback=lambda a, m: len(batches) < iterations,
        )
    agent.phases.enabled = False
    agent.close()
    seconds = clock.seconds
    ph = agent.phases.snapshot()
    tokens = agent.num_timesteps - start_tokens
    rollout, update = ph.get("rollout", 0.0), ph.get("update", 0.0)
    # PPO runs a value pass only when the rollout does not take the values from the sampler
    from agents.lm_collector import EpisodeCollector

    value_pass = algo == "ppo" and not EpisodeCollector.values_from_sampler
    flops = [iteration_flops(b, sizes, cfg.n_epochs, value_pass=value_pass) for b in batches]
    need = {k: sum(f[k] for f in flops) for k in flops[0]}

    def shares(parts: tuple[str, ...], whole: float, prefix: str) -> dict[str, float]:
        out = {p.removeprefix(prefix): ph[p] / whole for p in parts if p in ph}
        out["other"] = 1.0 - sum(out.values())
        return out

    return {
        "algo": algo,
        "preset": preset,
        "iterations_timed": len(batches),
        "tokens": tokens,
        "seconds": round(seconds, 3),
        "tok_s": tokens / seconds,
        "rollout_share": rollout / seconds,
        "update_share": update / seconds,
        "other_share": 1.0 - (rollout + update) / seconds,
        "rollout_parts": shares(ROLLOUT_PARTS, rollout, "rollout."),
        "update_parts": shares(UPDATE_PARTS, update, "update."),
        "seconds_per_phase": {k: round(v, 4) for k, v in sorted(ph.items())},
        "calls_per_phase": dict(sorted(agent.phases.calls.items())),
        "model_sizes": sizes,
        "flop_needed": need,
        "matmul_flop_per_s": flop_per_s,
        "fraction_of_matmul_bound": need["total"] / (seconds * flop_per_s),
        "update_fraction_of_matmul_bound": need["update"] / (update * flop_per_s),
        "torch_threads": threads,
        "load_average_before_after": [load0, load_average()[0]],
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algos", nargs="+", choices=sorted(AGENTS), default=["ppo", "grpo"])
    p.add_argument("--iterations", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from benchmarks.sampler import matmul_flops

    init_torch(1)
    bound = matmul_flops()["flop_per_s_best"]
    print(
        json.dumps(
            {a: profile_iterations(a, args.iterations, args.seed, 1, bound) for a in args.algos}, indent=2
        )
    )


if __name__ == "__main__":
    main()
