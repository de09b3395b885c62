"""One rank of a data-parallel test run: ``python -m tests.dist_worker SCENARIO OUT_DIR [options]``.

Started by tests/test_distributed.py with torchrun's environment variables (``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``: the ``env://`` rendezvous torchrun uses), or
without them as the single-process reference. Each scenario trains, then writes this rank's
parameters to ``OUT_DIR/params_rank<r>.pt`` so the test can compare ranks and runs.

Scenarios: ``ppo_mlp`` / ``ppo_transformer`` (PPO on the native RLHF/Copy-v0 vector env),
``ppo_lm`` (PPO with a tiny GPT-2 policy on RLHF/Reverse-v0, adaptive KL), ``rloo`` / ``grpo``
(the critic-free agents, same LM and env, groups of 2), ``es_mlp`` / ``es_lm`` (OpenAI-ES with
sampled fitness: MLP on RLHF/Copy-v0, the tiny LM on RLHF/Reverse-v0), ``a2c`` (the
policy-gradient family's full-batch update, MLP on RLHF/Copy-v0), ``rm`` (a reward-model
ensemble fit on preferences). ``--resume`` continues from ``OUT_DIR/ckpt/last``.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from agents.distributed import RankLostError, init_from_env, shutdown


def tiny_lm(vocab: int = 30):  # noqa: ANN201
    """A 1-layer GPT-2 without dropout (dropout masks would depend on how the batch is split)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return GPT2LMHeadModel(
            GPT2Config(
                vocab_size=vocab,
                n_positions=32,
                n_embd=32,
                n_layer=1,
                n_head=2,
                bos_token_id=1,
                eos_token_id=1,
                pad_token_id=0,
                resid_pdrop=0.0,
                embd_pdrop=0.0,
                attn_pdrop=0.0,
            )
        )


def ppo(args: argparse.Namespace, world_size: int) -> dict[str, torch.Tensor]:
    """Train PPO for ``args.iterations`` iterations with ``args.global_envs`` sub-envs in all."""
    from agents import PPO

    n_envs = args.global_envs // world_size
    ckpt = os.path.join(args.out, "ckpt")
    if args.resume:  # the scenario's own class, and the in-memory LM it was built on
        import agents

        cls = {"rloo": agents.RLOO, "grpo": agents.GRPO, "es_mlp": agents.ES, "es_lm": agents.ES}.get(
            args.scenario, agents.A2C if args.scenario == "a2c" else PPO
        )
        agent = cls.load(
            os.path.join(ckpt, "last"),
            **({"model": tiny_lm()} if args.scenario in ("ppo_lm", "rloo", "grpo", "es_lm") else {}),
        )
    elif args.scenario == "ppo_lm":
        agent = PPO(
            "RLHF/Reverse-v0",
            seed=3,
            policy="lm",
            model=tiny_lm(),
            n_envs=n_envs,
            n_minibatches=2,
            n_epochs=2,
            adaptive_kl=True,
            kl_target=0.01,
            learning_rate=1e-3,
            checkpoint_dir=ckpt,
        )
    elif args.scenario in ("rloo", "grpo"):
        from agents import GRPO, RLOO

        agent = (RLOO if args.scenario == "rloo" else GRPO)(
            "RLHF/Reverse-v0",
            seed=3,
            model=tiny_lm(),
            n_envs=n_envs,
            group_size=2,
            n_minibatches=2,
            n_epochs=2,
            learning_rate=1e-3,
            checkpoint_dir=ckpt,
        )
    elif args.scenario in ("es_mlp", "es_lm"):
        from agents import ES

        lm = args.scenario == "es_lm"
        agent = ES(
            "RLHF/Reverse-v0" if lm else "RLHF/Copy-v0",
            seed=3,
            n_envs=n_envs,
            population_size=4 if lm else 6,
            episodes_per_member=1 if lm else 2,  # MLP: 12 episodes in chunks of 8, the last part-empty
            deterministic_fitness=False,  # the sampling draws are sharded too
            checkpoint_dir=ckpt,
            **({"policy": "lm", "model": tiny_lm(), "kl_coef": 0.1} if lm else {}),
        )
    elif args.scenario == "a2c":
        from agents import A2C

        agent = A2C("RLHF/Copy-v0", seed=3, n_envs=n_envs, n_steps=8, learning_rate=3e-3, checkpoint_dir=ckpt)
    else:
        agent = PPO(
            "RLHF/Copy-v0",
            seed=3,
            policy="transformer" if args.scenario == "ppo_transformer" else "mlp",
            n_envs=n_envs,
            n_steps=16,
            n_minibatches=4,
            n_epochs=2,
            learning_rate=3e-3,
            norm_adv="minibatch",
            checkpoint_dir=ckpt,
            checkpoint_every=1,
            **({"d_model": 16, "n_layers": 1, "n_heads": 2} if args.scenario == "ppo_transformer" else {}),
        )
    if args.slow_every:  # a pause per iteration, so the test can kill a rank mid-run

        def slow(_agent, _metrics) -> bool:  # noqa: ANN001
            import time

            time.sleep(args.slow_every)
            return True

        callback = slow
    else:
        callback = None
    stop_at = args.iterations

    def until(a, m) -> bool:  # noqa: ANN001
        if callback is not None:
            callback(a, m)
        return a.iteration < stop_at

    if agent.world.is_main and not args.resume:
        initial = {
            k: v.detach().clone() for k, v in agent.policy.state_dict().items() if v.dtype.is_floating_point
        }
        torch.save(initial, os.path.join(args.out, "initial.pt"))
    total = 10**9  # never reached: the callback stops after `iterations`; fixes the lr schedule
    agent.learn(
        total - agent.num_timesteps, callback=until, progress_bar=False, reset_num_timesteps=not args.resume
    )
    if agent.world.is_main:
        with open(os.path.join(args.out, "metrics.txt"), "w") as f:
            f.write(
                f"{agent.iteration} {agent.num_timesteps} {getattr(agent.collector, 'kl', None) and agent.collector.kl.value}\n"
            )
    return {k: v.detach().clone() for k, v in agent.policy.state_dict().items() if v.dtype.is_floating_point}


def reward_model(args: argparse.Namespace) -> dict[str, torch.Tensor]:
    """Fit a 2-member ensemble on 96 preferences (every rank passes the same data)."""
    import numpy as np

    from agents.distributed import World
    from rlhf_envs.feedback.learned import RewardModel
    from rlhf_envs.feedback.review_fixtures import tiny_gpt2_config, word_tokenizer

    items = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    tok = word_tokenizer([*items, "the", "a", "."])
    rng = np.random.default_rng(0)
    i = rng.integers(0, len(items), 96)
    j = (i + rng.integers(1, len(items), 96)) % len(items)
    rm = RewardModel(tiny_gpt2_config(tok, n_layer=1, n_embd=32), tok, seed=0, n_members=2)
    world = World.current()

    def params() -> dict[str, torch.Tensor]:
        out = {"scores": torch.as_tensor(rm.member_scores(items))}
        for m, member in enumerate(rm.members):
            for k, v in member.state_dict().items():
                if v.dtype.is_floating_point:
                    out[f"{m}.{k}"] = v.detach().clone()
        return out

    if world.is_main:
        torch.save(params(), os.path.join(args.out, "initial.pt"))
    rm.fit_preferences(
        [items[x] for x in i],
        [items[y] for y in j],
        [1.0 if x < y else 0.0 for x, y in zip(i, j, strict=True)],
        epochs=2,
        lr=3e-3,
        train_batch_size=16,
        val_fraction=0.0,
        data_parallel=world if world.active else None,
    )
    return params()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument(
        "scenario",
        choices=["ppo_mlp", "ppo_transformer", "ppo_lm", "rloo", "grpo", "es_mlp", "es_lm", "a2c", "rm"],
    )
    p.add_argument("out")
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--global-envs", type=int, default=8)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--slow-every", type=float, default=0.0)
    p.add_argument("--timeout", type=float, default=30.0)
    args = p.parse_args()
    torch.set_num_threads(1)
    import rlhf_envs  # noqa: F401

    try:
        world = init_from_env(timeout_s=args.timeout)
        params = reward_model(args) if args.scenario == "rm" else ppo(args, world.world_size)
        torch.save(params, os.path.join(args.out, f"params_rank{world.rank}.pt"))
        shutdown()
    except RankLostError as exc:
        print(f"RankLostError: {exc}", file=sys.stderr, flush=True)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
