"""The ``rlhf-envs rlhf`` command: the loop on the embedded model, with a simulated or a real human."""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path
from typing import Any

from agents.human.cli import add_web_human_arguments, serve_for_web_human, web_human_from_args
from agents.rlhf.config import QUERY_KINDS, SCHEDULES, SELECTIONS, RLHFConfig
from agents.rlhf.humans import TerminalHuman
from agents.rlhf.persistence import STATE_FILE
from agents.threads import DEFAULT_TRAIN_THREADS_HELP
from rlhf_envs.errors import ConfigError


def add_rlhf_parser(sub: Any) -> None:
    """Add the ``rlhf`` sub-command to an ``argparse`` sub-parser collection."""
    d = RLHFConfig()
    p = sub.add_parser(
        "rlhf",
        help="the RLHF loop on the embedded model: simulated human -> reward model -> PPO, per round",
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--rounds", type=int, default=d.rounds)
    p.add_argument(
        "--queries", type=int, default=d.queries_per_round, help="queries in round 0 (per round if constant)"
    )
    p.add_argument("--schedule", choices=SCHEDULES, default=d.schedule)
    p.add_argument("--decay", type=float, default=d.decay, help="per-round factor of the decaying schedule")
    p.add_argument("--budget", type=int, default=None, help="total queries allowed (default: no limit)")
    p.add_argument("--selection", choices=SELECTIONS, default=d.selection)
    p.add_argument(
        "--query-kind",
        choices=QUERY_KINDS,
        default=d.query_kind,
        help="pairwise comparisons (Bradley-Terry fit) or 1-5 ratings of one completion (regression fit)",
    )
    p.add_argument("--rater", default=d.rater, help="simulated rater preset (Oracle, Stoc, Mistake, ...)")
    p.add_argument("--ppo-tokens", type=int, default=d.ppo_tokens_per_round, help="PPO tokens per round")
    p.add_argument("--members", type=int, default=d.n_members, help="reward-model ensemble size")
    p.add_argument(
        "--human",
        choices=("simulated", "terminal", "web"),
        default="simulated",
        help="who answers: the simulated rater, a person at this terminal, or people on the rating page "
        "(`rlhf-envs human serve --db ...`)",
    )
    p.add_argument("--out", default="runs/rlhf", help="run directory (rounds are saved; reruns resume)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help=f"torch threads (default: {DEFAULT_TRAIN_THREADS_HELP})",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="any other RLHFConfig field (value parsed as JSON when it parses), e.g. --set eval_episodes=16",
    )
    add_web_human_arguments(p)
    p.set_defaults(func=cmd_rlhf)


def cmd_rlhf(args: argparse.Namespace) -> int:
    """Run (or resume) the loop as ``rlhf-envs rlhf`` asked and print one line per round.

    Under torchrun every rank runs the loop (the simulated human's answers are the same on every
    rank); reward-model fits and PPO are data-parallel, rank 0 writes the run and prints.
    """
    import contextlib
    import io

    from agents.distributed import init_from_env, shutdown

    world = init_from_env()
    quiet = contextlib.redirect_stdout(io.StringIO()) if not world.is_main else contextlib.nullcontext()
    try:
        with quiet:
            return _cmd_rlhf(args)
    finally:
        shutdown()


def _cmd_rlhf(args: argparse.Namespace) -> int:
    from agents.cli_train import parse_sets
    from agents.threads import set_training_threads

    fields = {f.name for f in dataclasses.fields(RLHFConfig)}
    extra = parse_sets(args.set or [])
    unknown = sorted(set(extra) - fields)
    if unknown:
        raise ConfigError(
            f"--set {', '.join(unknown)}: not an RLHFConfig field; allowed: {', '.join(sorted(fields))}"
        )
    from agents.distributed import World

    world = World.current()
    if world.active and args.human in ("terminal", "web"):
        raise ConfigError(
            f"--human {args.human} cannot run under torchrun: one person answers one process; "
            "data-parallel rlhf runs use the simulated human"
        )
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {args.out!r} is a file; give a run directory (new, or one to resume)")
    set_training_threads(args.threads)
    options = dict(
        rounds=args.rounds,
        queries_per_round=args.queries,
        schedule=args.schedule,
        decay=args.decay,
        budget=args.budget,
        selection=args.selection,
        query_kind=args.query_kind,
        rater=args.rater,
        ppo_tokens_per_round=args.ppo_tokens,
        n_members=args.members,
        seed=args.seed,
    )
    cfg = RLHFConfig(**{**options, **extra})
    human = None
    server = None
    if args.human != "web" and args.port is not None:
        raise ConfigError(
            "--port serves the rating page for --human web; it does nothing with --human " + args.human
        )
    if args.human == "terminal":
        human = TerminalHuman(max_queries=args.budget, seed=args.seed)
    elif args.human == "web":
        human = web_human_from_args(args, max_queries=args.budget)
        if args.port is not None:
            server = serve_for_web_human(human, args.port)
    try:
        return _run_loop(args, cfg, human)
    finally:
        if server is not None:
            server.stop()


def _run_loop(args: argparse.Namespace, cfg: RLHFConfig, human: Any) -> int:
    from agents.rlhf.loop import RLHFLoop

    loop = RLHFLoop(cfg, human=human, run_dir=args.out, verbose=True)
    if loop.rounds_done:
        print(f"resuming {args.out} after round {loop.rounds_done - 1}")
    t0 = time.perf_counter()
    history = loop.run()
    init = loop.initial
    print(f"\ninitial policy: gold {init['gold_reward']:+.3f} on {cfg.eval_episodes} fresh episodes")
    for row in history:
        print(
            f"  round {row['round']}: queries {row['queries_total']:4d}  proxy {row['proxy_reward']:+.3f}  "
            f"gold {row['gold_reward']:+.3f}  KL {row['kl']:6.2f}  sqrt(KL) {row['sqrt_kl']:.2f}  "
            f"cost {row['cost']:.1f}"
        )
    if loop.stop_reason:
        print(f"stopped: {loop.stop_reason}")
    if isinstance(human, TerminalHuman):
        print(
            f"answers: {human.asked} asked, {human.reused} reused from {human.journal.path if human.journal else '-'}"
        )
    print(f"log: {os.path.join(args.out, STATE_FILE)}  ({time.perf_counter() - t0:.0f} s)")
    loop.close()
    return 0
