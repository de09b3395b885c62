"""``rlhf-envs train``: one command for the custom agents and the SB3 baselines.

::

    rlhf-envs train --algo sb3-ppo --env RLHF/Copy-v0 --steps 100000 --seed 0
    rlhf-envs train --algo ppo --env RLHF/Copy-v0 --steps 100000 --seed 0       # custom PPO
    rlhf-envs train --algo sb3-maskable_ppo --env RLHF/Sentiment-v0 --steps 20000 --set n_steps=16
    rlhf-envs train --algo ppo --env RLHF/Copy-v0 --steps 200000 --preset toy-copy  # a named preset
    rlhf-envs train --algo grpo --env RLHF/Sentiment-v0 --steps 20000 --preset lm-sentiment-grpo
    rlhf-envs train --algo es --env CartPole-v1 --steps 500000
    rlhf-envs train --algo dpo --env RLHF/Sentiment-v0 --steps 80000 --pairs 512 --preset lm-sentiment-dpo
    rlhf-envs train --algo dpo --env RLHF/Sentiment-v0 --steps 20000 --label-store labels.db --experiment exp1

``--algo`` is ``ppo``, ``reinforce``, ``a2c``, ``rloo``, ``grpo``, ``es`` or ``dpo`` (the custom agents in
:mod:`agents`; ``rloo``, ``grpo`` and ``dpo`` need a language env) or ``sb3-<name>``
with ``<name>`` one of ``ppo``, ``a2c``, ``dqn``, ``maskable_ppo`` (:func:`agents.sb3.train_baseline`).
``--set key=value`` passes any further option (values parsed as JSON when they parse, else kept as
strings): the custom agents' config fields, or the SB3 class's constructor arguments and
``train_baseline``'s keywords. ``--preset NAME`` starts from a named preset of
:mod:`agents.presets` for the algorithm (``--set`` and ``--n-envs`` override it). After training
the command evaluates the policy, prints one JSON line of results (with the preset's name) and,
with ``--save``, writes the model (SB3 ``.zip`` or the custom checkpoint dir).

DPO trains offline on comparisons, and ``--steps`` counts the completion tokens it trains on (both
sides of each pair, every epoch). Where the comparisons come from:

* by default, ``--pairs N`` (default 256) pairs of completions of the same prompt, sampled from the
  initial policy (the base model) and labelled on the fly by the task's simulated human
  (:class:`~rlhf_envs.feedback.simulated.SimulatedHuman` over the task's own reward as the gold
  utility, rater preset ``--rater``, default the RLHF loop's ``Mistake``, seeded with ``--seed``);
  the same recipe as ``benchmarks/dpo_sentiment.py``;
* ``--label-store DB --experiment NAME``: the pairwise answers people gave on the web app
  (``rlhf-envs human serve --db DB``), one soft label per query.

The result adds ``preferences`` (pairs, skips, ties, source) to the JSON line.

Wire it into ``rlhf_envs.cli.build_parser`` with ``add_train_parser(sub)``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from agents.threads import DEFAULT_TRAIN_THREADS_HELP
from rlhf_envs.errors import ConfigError

CUSTOM_ALGOS = ("ppo", "reinforce", "a2c", "rloo", "grpo", "es", "dpo")
#: the class of each custom algorithm in :mod:`agents`
CUSTOM_CLASSES = {
    "ppo": "PPO",
    "reinforce": "REINFORCE",
    "a2c": "A2C",
    "rloo": "RLOO",
    "grpo": "GRPO",
    "es": "ES",
    "dpo": "DPO",
}
#: custom algorithms that train language-model policies only
LM_ONLY_ALGOS = ("rloo", "grpo", "dpo")
#: comparisons DPO samples and has labelled when no label store is given
DEFAULT_DPO_PAIRS = 256


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    """``--set key=value`` pairs as a dict (values parsed as JSON when they parse, else strings)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def _custom_class(algo: str) -> type:
    try:
        import agents
    except ImportError as exc:  # the custom agents are another part of the project
        raise ConfigError(
            f"--algo {algo}: the custom agents (agents.PPO, ...) are not available: {exc}"
        ) from None
    name = CUSTOM_CLASSES[algo]
    cls = getattr(agents, name, None)
    if cls is None:
        raise ConfigError(
            f"--algo {algo}: agents.{name} does not exist in this checkout; use --algo sb3-{algo}"
        )
    return cls


def _is_language(env_id: str) -> bool:
    import gymnasium as gym

    import rlhf_envs  # noqa: F401

    entry = gym.spec(env_id).kwargs.get("task")
    from rlhf_envs.tasks import task_class

    cls = task_class(entry)
    from rlhf_envs.tasks.language import LanguageTask

    return cls is not None and issubclass(cls, LanguageTask)


def run_train(args: argparse.Namespace) -> dict[str, Any]:
    """Train and evaluate as the parsed arguments say; returns the result dict that is printed."""
    from agents.threads import set_training_threads

    check_train_args(args)
    set_training_threads(args.threads)
    extra = parse_sets(args.set or [])
    algo = args.algo.strip().lower()
    result: dict[str, Any] = {"algo": algo, "env": args.env, "seed": args.seed, "steps": args.steps}
    if algo in CUSTOM_ALGOS:
        cls = _custom_class(algo)
        if algo in LM_ONLY_ALGOS and not _is_language(args.env) and "model" not in extra:
            raise ConfigError(
                f"--algo {algo} trains language-model policies: give a language env id such as "
                f"RLHF/Sentiment-v0, or --set model=<path> for a token env (got {args.env!r})"
            )
        opts = dict(extra)
        if args.n_envs is not None:
            opts.setdefault("n_envs", args.n_envs)
        if args.log_dir is not None:
            opts.setdefault("log_dir", args.log_dir)
        if args.preset is not None:
            opts["preset"] = args.preset
        if _is_language(args.env):
            from rlhf_envs.lm.loading import resolve_model_path

            preset = {}
            if args.preset is not None:
                from agents.presets import get_preset

                preset = get_preset(args.preset, algo)
            else:
                opts.setdefault("policy", "lm")
            if opts.get("policy", preset.get("policy")) == "lm" and "model" not in preset:
                opts.setdefault("model", resolve_model_path(None))
        agent = cls(args.env, seed=args.seed, **opts)
        result["preset"] = agent.config.preset
        if algo == "dpo":
            result["preferences"] = _set_dpo_preferences(agent, args)
        t0 = time.perf_counter()
        agent.learn(args.steps, progress_bar=args.progress_bar)
        result["train_seconds"] = time.perf_counter() - t0
        result["timesteps"] = agent.num_timesteps  # over every rank when data-parallel
        result["world_size"] = agent.world.world_size
        if args.eval_episodes > 0:
            result.update(agent.evaluate(args.eval_episodes))
        if args.save:
            result["saved"] = agent.save(args.save)
        agent.close()
        return result

    from agents.distributed import World

    if World.current().active:
        raise ConfigError(
            f"--algo {args.algo}: the SB3 baselines train in one process; launch them without "
            "torchrun (data-parallel training is for the custom agents: ppo, a2c, reinforce, rloo, grpo, es)"
        )
    from agents.sb3 import canonical_algo, evaluate_baseline, train_baseline

    if not algo.startswith("sb3"):
        raise ConfigError(
            f"unknown --algo {args.algo!r}: use one of {', '.join(CUSTOM_ALGOS)} (custom agents) or "
            "sb3-ppo, sb3-a2c, sb3-dqn, sb3-maskable_ppo"
        )
    name = canonical_algo(algo)
    kw = dict(extra)
    if args.n_envs is not None:
        kw.setdefault("n_envs", args.n_envs)
    if args.log_dir is not None:
        kw.setdefault("tensorboard_log", args.log_dir)
        kw.setdefault("monitor_dir", args.log_dir)
    model = train_baseline(
        name,
        args.env,
        args.steps,
        args.seed,
        preset=args.preset,
        progress_bar=args.progress_bar,
        save_path=args.save,
        **kw,
    )
    result["algo"] = f"sb3-{name}"
    result["preset"] = model.train_config["preset"]
    result["train_seconds"] = model.train_seconds
    if args.eval_episodes > 0:
        eval_kw = {k: kw[k] for k in ("env_kwargs", "top_p", "top_k", "mask") if k in kw}
        result.update(evaluate_baseline(model, args.env, args.eval_episodes, **eval_kw))
    if args.save:
        result["saved"] = args.save if args.save.endswith(".zip") else args.save + ".zip"
    model.get_env().close()
    return result


def _set_dpo_preferences(agent: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Give the DPO agent its comparisons (see the module docstring); returns their summary."""
    from agents.lm_actor_critic import env_tokenizer
    from agents.preference_data import PreferencePairs, sample_comparisons

    if args.label_store is not None:
        data = PreferencePairs.from_label_store(args.label_store, args.experiment, env_tokenizer(agent.env))
        agent.set_preferences(data)
        return data.summary()
    from rlhf_envs.feedback.simulated import SimulatedHuman

    task = getattr(agent.env, "task", None) or getattr(getattr(agent.env, "unwrapped", None), "task", None)
    gold = getattr(task, "feedback", None)
    if gold is None:
        raise ConfigError(
            f"--algo dpo: the env {args.env!r} has no task reward to simulate a human with; give "
            "--label-store DB --experiment NAME"
        )
    human = SimulatedHuman(gold, args.rater, seed=args.seed)
    n = DEFAULT_DPO_PAIRS if args.pairs is None else args.pairs
    a, b, answers, info = sample_comparisons(agent, n, human, seed=args.seed, env_id=args.env)
    data = PreferencePairs.from_comparisons(a, b, answers, source=f"SimulatedHuman({args.rater})")
    agent.set_preferences(data)
    return {**data.summary(), "label_gold_agreement": info.get("label_gold_agreement")}


def check_train_args(args: argparse.Namespace) -> None:
    """Refuse a bad command line before anything is built (:class:`ConfigError`, one clear line)."""
    import os

    import gymnasium as gym

    import rlhf_envs  # noqa: F401  (registers the ids)

    if ":" in args.env:
        raise ConfigError(
            f"--env {args.env!r}: give a registered env id (the 'module:' form is not accepted)"
        )
    try:
        gym.spec(args.env)
    except gym.error.Error as exc:
        raise ConfigError(
            f"--env {args.env!r} is not a registered env id ({exc}); see `rlhf-envs list`"
        ) from None
    if args.steps < 1:
        raise ConfigError(f"--steps must be a positive number of env steps, got {args.steps}")
    if args.n_envs is not None and args.n_envs < 1:
        raise ConfigError(f"--n-envs must be a positive int, got {args.n_envs}")
    if args.eval_episodes < 0:
        raise ConfigError(f"--eval-episodes must be >= 0 (0 skips evaluation), got {args.eval_episodes}")
    if args.log_dir is not None and os.path.exists(args.log_dir) and not os.path.isdir(args.log_dir):
        raise ConfigError(f"--log-dir {args.log_dir!r} is a file; give a directory")
    for name in ("pairs", "label_store", "experiment"):  # a Namespace built without these options
        if not hasattr(args, name):
            setattr(args, name, None)
    dpo_only = {"--pairs": args.pairs, "--label-store": args.label_store, "--experiment": args.experiment}
    if args.algo.strip().lower() != "dpo":
        given = [k for k, v in dpo_only.items() if v is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} are options of --algo dpo, not --algo {args.algo}")
    else:
        if args.pairs is not None and args.pairs < 1:
            raise ConfigError(f"--pairs must be a positive number of comparisons, got {args.pairs}")
        if (args.label_store is None) != (args.experiment is None):
            raise ConfigError(
                "--label-store and --experiment go together (the store's file and the experiment's name)"
            )
        if args.label_store is not None and args.pairs is not None:
            raise ConfigError(
                "--pairs samples comparisons for the simulated human; with --label-store the store's answers are used"
            )
        if args.label_store is not None and not os.path.isfile(args.label_store):
            raise ConfigError(f"--label-store {args.label_store!r} is not a file")
    if args.save is not None:
        parent = os.path.dirname(os.path.abspath(args.save))
        if os.path.exists(parent) and not os.path.isdir(parent):
            raise ConfigError(f"--save {args.save!r}: {parent!r} is a file, not a directory")
        custom = args.algo.strip().lower() in CUSTOM_ALGOS
        if custom and os.path.exists(args.save) and not os.path.isdir(args.save):
            raise ConfigError(
                f"--save {args.save!r} is a file; the custom agents save a checkpoint directory"
            )
        if not custom:
            target = args.save if args.save.endswith(".zip") else args.save + ".zip"
            if os.path.isdir(target):
                raise ConfigError(f"--save {args.save!r}: {target!r} is a directory; SB3 saves a .zip file")


def _cmd_train(args: argparse.Namespace) -> int:
    from agents.distributed import RankLostError, init_from_env, shutdown
    from rlhf_envs.cli import usage_errors

    try:  # under torchrun: one process group for the run, data-parallel custom agents
        world = init_from_env()
        result = run_train(args)
    except usage_errors() as exc:
        print(f"rlhf-envs train: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except RankLostError as exc:
        print(f"rlhf-envs train: error: {exc}", file=sys.stderr)
        return 1
    finally:
        shutdown()
    if world.is_main:  # every rank holds the same result; rank 0 prints it
        print(json.dumps(result, default=float))
    return 0


def add_train_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "train",
        help="train a custom agent (ppo, reinforce, a2c, rloo, grpo, es, dpo) or an SB3 baseline (sb3-ppo, ...) on an env id",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument(
        "--algo",
        required=True,
        help="ppo | reinforce | a2c | rloo | grpo | es | dpo | sb3-ppo | sb3-a2c | sb3-dqn | sb3-maskable_ppo",
    )
    p.add_argument("--env", required=True, help="env id, e.g. RLHF/Copy-v0")
    p.add_argument(
        "--steps",
        type=int,
        required=True,
        help="total env steps (generated tokens; dpo: completion tokens trained on)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-envs", type=int, default=None, help="parallel sub-envs (default: the algorithm's)")
    p.add_argument(
        "--eval-episodes", type=int, default=100, help="episodes to evaluate after training (0: skip)"
    )
    p.add_argument("--save", default=None, help="where to save the trained model")
    p.add_argument("--log-dir", default=None, help="TensorBoard / monitor / progress.csv directory")
    p.add_argument("--progress-bar", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument(
        "--threads", type=int, default=None, help=f"torch threads (default: {DEFAULT_TRAIN_THREADS_HELP})"
    )
    p.add_argument(
        "--preset",
        default=None,
        help="a named preset of agents.presets for the algorithm (e.g. toy-copy, lm-default, sb3-toy-fast-ppo); "
        "--set overrides it",
    )
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="extra option (repeatable)")
    p.add_argument(
        "--pairs",
        type=int,
        default=None,
        help=f"dpo: comparisons sampled from the base model and labelled by the task's simulated human "
        f"(default {DEFAULT_DPO_PAIRS})",
    )
    p.add_argument(
        "--rater", default="Mistake", help="dpo: the simulated human's rater preset (default Mistake)"
    )
    p.add_argument(
        "--label-store", default=None, help="dpo: train on people's answers in this web-app label store"
    )
    p.add_argument("--experiment", default=None, help="dpo: the label store's experiment")
    p.set_defaults(func=_cmd_train)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``train`` on its own: ``python -m agents.cli_train --algo ... --env ... --steps ...``."""
    parser = argparse.ArgumentParser(prog="rlhf-envs")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    args = parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
