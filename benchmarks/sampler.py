"""Speed of the language-model policy: the agent's KV-cached sampler, ``generate()``, and PPO end to end.

Everything is measured in one run on one machine, and the speed-ups are ratios of side-by-side
measurements:

1. The machine's matrix-multiply bound: FLOP/s of a large float32 matmul (best of a few rounds).
2. Tokens per second of the PPO agent's sampler (``LMActorCritic.decoder`` prefill / step plus
   ``rlhf_envs.lm.sampling.sample_tokens``: what a rollout runs, minus the env) against Hugging Face ``generate()`` on
   the same model: batch 64, 32 new tokens after an 8-token prompt, pure sampling (top_k 0,
   top_p 1, temperature 1, no EOS stop on either side), both warmed up, in interleaved rounds;
   best and median of each, and the ratio ours / ``generate()``. Two models: the REFERENCE.md
   shape (GPT-2, 4 layers x 128 wide, vocabulary 2048, random weights) and the embedded model
   (``rlhf_envs/assets/default_lm``).
3. Each tokens/s also as a fraction of the matmul bound for that model,
   ``tokens/s / (matmul FLOP/s / (2 x parameters))``. Parameters counted: every weight and bias
   except the position embeddings, with the token embedding counted once (it is tied to the LM
   head, the largest single matmul of a decoding step). Attention over the context is not counted,
   so 100% is not reachable.
4. End-to-end PPO on ``RLHF/Sentiment-v0`` with the embedded model and the default LM config
   (``agents.PPO(..., preset="lm-default", model="default")``, what ``policy="lm"`` alone gives;
   the result records the preset and the full resolved config): generated tokens per wall second over
   rollout + update (the first iteration is a warm-up and is left out), the split between them,
   and peak memory (``ru_maxrss``) measured in a fresh process so the other parts do not count
   (``tracemalloc`` is not used: it does not see torch's tensor allocations). The agent switches the
   env's own reference-model pass off by default (it computes reference log-probs itself, in one
   batched pass at update time); a second run with ``env_kwargs={"ref_logprobs": True}`` shows
   what that per-step pass would cost.

Run: ``python -m benchmarks.sampler`` (``--quick`` for a short smoke run); the figures are printed
and saved to ``benchmarks/results/sampler.json``. Other scripts call :func:`bench_sampler` and
:func:`bench_ppo`.
"""

from __future__ import annotations

import argparse
import copy
import resource
import statistics
import sys
import time
from typing import Any

import torch

from benchmarks.common import RESULTS, init_torch, load_average, machine_info, write_json

#: the PPO measured end to end: the default LM config (what ``policy="lm"`` alone starts from)
PPO_PRESET = "lm-default"


def matmul_flops(size: int = 2048, rounds: int = 5) -> dict[str, float]:
    """Achieved FLOP/s of a ``size x size`` float32 matmul (``2 size^3`` FLOP), best of ``rounds``.

    The best round is the machine's bound as far as this process can see it (other load only
    ever slows a round down). Also per second of process CPU time, which other processes taking
    turns on the cores do not dilute. Uses torch's current thread count.
    """
    if size < 64 or rounds < 1:
        raise ValueError(f"matmul_flops needs size >= 64 and rounds >= 1, got size={size}, rounds={rounds}")
    g = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=g)
    b = torch.randn(size, size, generator=g)
    out = torch.empty(size, size)
    torch.mm(a, b, out=out)  # warm-up
    times, cpu = [], []
    for _ in range(rounds):
        start, cpu_start = time.perf_counter(), time.process_time()
        torch.mm(a, b, out=out)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
    flop = 2.0 * size**3
    return {
        "size": size,
        "flop_per_s_best": flop / min(times),
        "flop_per_s_median": flop / statistics.median(times),
        "flop_per_cpu_s_best": flop / min(cpu),
    }


def count_params(lm: torch.nn.Module) -> int:
    """Parameters that a decoded token multiplies: all but the position embeddings.

    ``lm.parameters()`` lists a tied tensor once, so the token embedding / LM head is counted once.
    """
    skip: set[int] = set()
    if hasattr(lm, "transformer") and hasattr(lm.transformer, "wpe"):  # GPT-2 family
        skip = {id(p) for p in lm.transformer.wpe.parameters()}
    else:
        try:
            pos = lm.get_position_embeddings()
        except (AttributeError, NotImplementedError):
            pos = None
        if isinstance(pos, torch.nn.Module):
            skip = {id(p) for p in pos.parameters()}
    return int(sum(p.numel() for p in lm.parameters() if id(p) not in skip))


def reference_lm(seed: int = 0) -> torch.nn.Module:
    """The REFERENCE.md shape: GPT-2, 4 layers, 128 wide, 4 heads, vocabulary 2048 (random weights)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=2048,
        n_positions=64,
        n_embd=128,
        n_layer=4,
        n_head=4,
        bos_token_id=1,
        eos_token_id=1,
        pad_token_id=0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GPT2LMHeadModel(config).eval()


def embedded_lm() -> torch.nn.Module:
    """The embedded default model, loaded the way the envs and the agent load it."""
    from rlhf_envs.lm.loading import load_causal_lm

    return load_causal_lm("default", cache=False).eval()


def compare_with_generate(
    lm: torch.nn.Module,
    batch: int = 64,
    prompt_len: int = 8,
    new_tokens: int = 32,
    rounds: int = 7,
    seed: int = 0,
) -> dict[str, Any]:
    """The agent's KV-cached sampler against ``lm.generate()``: tokens/s of each and the ratio.

    Both sample ``new_tokens`` tokens for ``batch`` random prompts of ``prompt_len`` tokens at
    temperature 1 with no top-k/top-p and no EOS stop, so they do the same work. Each is run once
    to warm up, then ``rounds`` times in alternation. Reported: best and median tokens/s (wall
    clock), the ratios best/best and median/median, and the best-round ratio on process CPU time
    (less sensitive to other processes taking the cores).
    """
    from transformers import GenerationConfig

    from agents.lm_actor_critic import LMActorCritic
    from rlhf_envs.lm.sampling import sample_tokens

    if min(batch, prompt_len, new_tokens, rounds) < 1:
        raise ValueError(
            f"batch, prompt_len, new_tokens and rounds must be >= 1, got {batch}, {prompt_len}, {new_tokens}, {rounds}"
        )
    vocab = int(lm.get_output_embeddings().weight.shape[0])
    g = torch.Generator().manual_seed(seed)
    policy = LMActorCritic(lm, vocab, temperature=1.0, value_init_std=0.01, generator=g)
    prompt = torch.randint(2, vocab, (batch, prompt_len), generator=g)
    pmask = torch.ones_like(prompt)
    pad = lm.config.pad_token_id if lm.config.pad_token_id is not None else 0
    gen_config = GenerationConfig(
        do_sample=True,
        top_k=0,
        top_p=1.0,
        temperature=1.0,
        max_new_tokens=new_tokens,
        pad_token_id=pad,
        eos_token_id=None,  # no EOS stop (ours has none either): both always decode new_tokens steps
    )
    sample_gen = torch.Generator().manual_seed(seed + 1)

    @torch.no_grad()
    def ours() -> torch.Tensor:
        # what EpisodeCollector.rollout does per step, minus the env
        decoder = policy.decoder(batch, prompt_len + new_tokens)
        logits = decoder.prefill(prompt, pmask)
        out = []
        for t in range(new_tokens):
            tokens, _ = sample_tokens(logits, sample_gen)
            out.append(tokens)
            if t == new_tokens - 1:
                break
            logits = decoder.step(tokens)
        return torch.stack(out, 1)

    @torch.no_grad()
    def hf() -> torch.Tensor:
        return lm.generate(prompt, attention_mask=pmask, generation_config=gen_config)[:, prompt_len:]

    # generate() fills an unset eos_token_id from the model's own generation config and would stop
    # rows (and the batch) at EOS: clear it there too, for this measurement only
    saved = lm.generation_config
    lm.generation_config = copy.deepcopy(saved)
    lm.generation_config.eos_token_id = None
    wall: dict[str, list[float]] = {"ours": [], "generate": []}
    cpu: dict[str, list[float]] = {"ours": [], "generate": []}
    try:
        first = hf()  # warm-up of both, and a check that both return new_tokens tokens per row
        if ours().shape != (batch, new_tokens) or first.shape != (batch, new_tokens):
            raise RuntimeError("a sampler stopped before new_tokens tokens; the comparison would be void")
        for _ in range(rounds):
            for name, fn in (("ours", ours), ("generate", hf)):
                c0, w0 = time.process_time(), time.perf_counter()
                fn()
                wall[name].append(time.perf_counter() - w0)
                cpu[name].append(time.process_time() - c0)
    finally:
        lm.generation_config = saved
    tokens = batch * new_tokens
    res: dict[str, Any] = {
        "batch": batch,
        "prompt_len": prompt_len,
        "new_tokens": new_tokens,
        "rounds": rounds,
    }
    for name in ("ours", "generate"):
        res[f"{name}_tok_s_best"] = tokens / min(wall[name])
        res[f"{name}_tok_s_median"] = tokens / statistics.median(wall[name])
    res["ratio_best"] = min(wall["generate"]) / min(wall["ours"])
    res["ratio_median"] = statistics.median(wall["generate"]) / statistics.median(wall["ours"])
    res["ratio_cpu_time_best"] = min(cpu["generate"]) / min(cpu["ours"])
    for name in ("ours", "generate"):
        res[f"{name}_tok_per_cpu_s_best"] = tokens / min(cpu[name])
    return res


def bench_sampler(
    batch: int = 64,
    new_tokens: int = 32,
    rounds: int = 7,
    threads: int = 1,
    models: tuple[str, ...] = ("reference", "embedded"),
    matmul_size: int = 2048,
) -> dict[str, Any]:
    """Matmul bound, then ours vs ``generate()`` on each model of ``models`` with its bound fraction.

    ``models``: ``"reference"`` (REFERENCE.md's 4 x 128 GPT-2, vocabulary 2048) and/or
    ``"embedded"`` (``rlhf_envs/assets/default_lm``). ``threads``: torch intra-op threads for every
    part (1 by default: on a shared 2-core machine more threads than free cores slow small matmuls).
    """
    builders = {"reference": reference_lm, "embedded": embedded_lm}
    unknown = [m for m in models if m not in builders]
    if unknown or not models:
        raise ValueError(f"models must be a non-empty subset of {sorted(builders)}, got {models!r}")
    n_threads = init_torch(threads)
    bound = matmul_flops(matmul_size)
    flops, cpu_flops = bound["flop_per_s_best"], bound["flop_per_cpu_s_best"]
    out: dict[str, Any] = {
        "torch_threads": n_threads,
        "matmul": bound,
        "params_counted": "all parameters except position embeddings; the tied token embedding / LM head once",
        "models": {},
    }
    for name in models:
        lm = builders[name]()
        c = lm.config
        params = count_params(lm)
        bound_tok_s = flops / (2.0 * params)
        res = compare_with_generate(lm, batch=batch, new_tokens=new_tokens, rounds=rounds)
        res.update(
            {
                "shape": f"{c.n_layer} layers x {c.n_embd} wide, {c.n_head} heads, vocabulary {c.vocab_size}",
                "params": params,
                "bound_tok_s": bound_tok_s,
                "ours_fraction_of_bound": res["ours_tok_s_best"] / bound_tok_s,
                "generate_fraction_of_bound": res["generate_tok_s_best"] / bound_tok_s,
                # the same on CPU time (tokens per CPU second against FLOP per CPU second)
                "ours_fraction_of_cpu_bound": res["ours_tok_per_cpu_s_best"] * 2.0 * params / cpu_flops,
                "generate_fraction_of_cpu_bound": res["generate_tok_per_cpu_s_best"]
                * 2.0
                * params
                / cpu_flops,
            }
        )
        out["models"][name] = res
    return out


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # macOS: bytes, Linux: KiB


def _ppo_run(iterations: int, threads: int, seed: int, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The PPO measurement itself (runs in the calling process; see :func:`bench_ppo`)."""
    import dataclasses

    from agents import PPO

    n_threads = init_torch(threads)
    agent = PPO("RLHF/Sentiment-v0", preset=PPO_PRESET, model="default", seed=seed, env_kwargs=env_kwargs)
    rss_before = _rss_bytes()
    marks: list[tuple[float, int, float, float]] = []
    start = time.perf_counter()

    def record(a: Any, metrics: dict[str, float]) -> None:
        marks.append(
            (time.perf_counter(), a.num_timesteps, metrics["rollout_seconds"], metrics["update_seconds"])
        )

    agent.learn(10**9, progress_bar=False, callback=lambda a, m: record(a, m) or len(marks) < iterations)
    # the first iteration (allocations, first calls) is a warm-up: measure from its end
    t0, n0 = marks[0][0], marks[0][1]
    t1, n1 = marks[-1][0], marks[-1][1]
    timed = marks[1:]
    rollout_s = sum(m[2] for m in timed)
    update_s = sum(m[3] for m in timed)
    batch, _, _ = agent.collector.collect(agent)
    buffer_bytes = 0
    for f in dataclasses.fields(batch):
        value = getattr(batch, f.name)
        for t in value.values() if isinstance(value, dict) else [value]:
            if isinstance(t, torch.Tensor):
                buffer_bytes += t.numel() * t.element_size()
    cfg = agent.config
    return {
        "env_id": "RLHF/Sentiment-v0",
        "model": "default (embedded)",
        "env_kwargs": env_kwargs,
        "torch_threads": n_threads,
        "n_envs": cfg.n_envs,
        "n_epochs": cfg.n_epochs,
        "n_minibatches": cfg.n_minibatches,
        "iterations_timed": len(timed),
        "tokens_timed": n1 - n0,
        "tok_s": (n1 - n0) / (t1 - t0),
        "tok_s_including_warmup": n1 / (t1 - start),
        "rollout_tok_s": (n1 - n0) / rollout_s,
        "rollout_share": rollout_s / (rollout_s + update_s),
        "update_share": update_s / (rollout_s + update_s),
        "tokens_per_iteration": (n1 - n0) / max(len(timed), 1),
        "rollout_buffer_bytes": buffer_bytes,
        "rss_before_learn_bytes": rss_before,
        "peak_rss_bytes": _maxrss_bytes(),
        "preset": cfg.preset,
        "resolved_config": cfg.to_json_dict(),
    }


def bench_ppo(
    iterations: int = 4,
    threads: int = 1,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    fresh_process: bool = True,
) -> dict[str, Any]:
    """End-to-end PPO on ``RLHF/Sentiment-v0`` with the embedded model and the default LM config.

    Runs ``iterations`` PPO iterations (>= 2; the first is a warm-up) and reports generated tokens
    per wall second over rollout + update, the rollout/update split, the size of one rollout batch
    and the peak resident memory (``ru_maxrss``). With ``fresh_process`` (the default) it runs in a
    new interpreter so that the peak is this run's own, not whatever the caller allocated before.
    """
    if not isinstance(iterations, int) or iterations < 2:
        raise ValueError(f"iterations must be an int >= 2 (the first one is a warm-up), got {iterations!r}")
    env_kwargs = dict(env_kwargs or {})
    if not fresh_process:
        return _ppo_run(iterations, threads, seed, env_kwargs)
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_ppo_run, (iterations, threads, seed, env_kwargs))


def _print(res: dict[str, Any]) -> None:
    load = res["machine"]
    print(
        f"load average (1, 5, 15 min) at start {load['load_average']}, "
        f"at end {load['load_average_at_end']} on {load['cpus']} CPUs"
    )
    s = res["sampler"]
    mm = s["matmul"]
    print(
        f"matmul bound ({mm['size']}^3 float32, {s['torch_threads']} thread(s)): "
        f"{mm['flop_per_s_best'] / 1e9:.1f} GFLOP/s best, {mm['flop_per_s_median'] / 1e9:.1f} median; "
        f"{mm['flop_per_cpu_s_best'] / 1e9:.1f} GFLOP per CPU second"
    )
    print(f"parameters counted: {s['params_counted']}")
    for name, m in s["models"].items():
        print(f"\n[{name}] {m['shape']}, {m['params']:,} parameters -> bound {m['bound_tok_s']:,.0f} tok/s")
        print(
            f"  batch {m['batch']}, prompt {m['prompt_len']}, {m['new_tokens']} new tokens, "
            f"{m['rounds']} interleaved rounds"
        )
        for who in ("ours", "generate"):
            print(
                f"  {who:9s} {m[f'{who}_tok_s_best']:9,.0f} tok/s best  {m[f'{who}_tok_s_median']:9,.0f} median  "
                f"{m[f'{who}_fraction_of_bound']:6.1%} of bound  (per CPU second: "
                f"{m[f'{who}_tok_per_cpu_s_best']:,.0f} tok, {m[f'{who}_fraction_of_cpu_bound']:.1%} of bound)"
            )
        print(
            f"  ours / generate(): {m['ratio_best']:.2f}x best, {m['ratio_median']:.2f}x median "
            f"({m['ratio_cpu_time_best']:.2f}x on CPU time)"
        )
    for key in ("ppo", "ppo_env_ref_on"):
        if key not in res:
            continue
        p = res[key]
        mib = 1024**2
        print(
            f"\n[{key}] PPO on {p['env_id']}, {p['model']}, env_kwargs={p['env_kwargs']}, "
            f"{p['n_envs']} envs, {p['n_epochs']} epochs x {p['n_minibatches']} minibatches"
        )
        print(
            f"  {p['tok_s']:.0f} generated tok/s end to end over {p['iterations_timed']} iterations "
            f"({p['tokens_timed']} tokens; {p['tok_s_including_warmup']:.0f} with the warm-up iteration)"
        )
        print(
            f"  rollout {p['rollout_share']:.0%} of the time ({p['rollout_tok_s']:.0f} tok/s), "
            f"update {p['update_share']:.0%}"
        )
        rss = p["rss_before_learn_bytes"]
        print(
            f"  peak RSS {p['peak_rss_bytes'] / mib:.0f} MiB (RSS before learn: "
            f"{'n/a' if rss is None else f'{rss / mib:.0f} MiB'}); one rollout batch {p['rollout_buffer_bytes'] / 1024:.0f} KiB"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ppo-iterations", type=int, default=4)
    parser.add_argument(
        "--skip-env-ref-on", action="store_true", help="skip the PPO run with env_kwargs ref_logprobs=True"
    )
    parser.add_argument("--quick", action="store_true", help="3 rounds, 2 PPO iterations (smoke run)")
    parser.add_argument("--out", default=str(RESULTS / "sampler.json"))
    args = parser.parse_args()
    rounds = 3 if args.quick else args.rounds
    iterations = 2 if args.quick else args.ppo_iterations
    res: dict[str, Any] = {
        "machine": machine_info(),
        "sampler": bench_sampler(args.batch, args.new_tokens, rounds, args.threads),
        "ppo": bench_ppo(iterations, args.threads),
    }
    if not args.skip_env_ref_on:
        # the agent computes reference log-probs itself, so by default it switches the env's own
        # per-step reference pass (info["ref_logprob"]) off; this run shows what that pass costs
        res["ppo_env_ref_on"] = bench_ppo(iterations, args.threads, env_kwargs={"ref_logprobs": True})
    res["machine"]["load_average_at_end"] = load_average()
    _print(res)
    write_json(args.out, res)
    print(f"\nsaved {args.out}")


if __name__ == "__main__":
    main()
