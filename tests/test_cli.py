"""The command line runs as the README says."""

from __future__ import annotations

import subprocess
import sys

import pytest

import rlhf_envs


def run_cli(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "rlhf_envs.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return out.stdout


def test_cli_list_prints_every_env() -> None:
    assert run_cli("list").split() == rlhf_envs.list_envs()


def _modules_after(code: str) -> set[str]:
    """The top-level names in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    probe = code + "\nimport sys\nprint(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=True
    )
    return set(out.stdout.splitlines()[-1].split())


def test_cli_list_and_help_import_no_torch_and_no_agents() -> None:
    """Only the subcommand that runs imports its module: listing ids must stay cheap."""
    for code in (
        "from rlhf_envs.cli import main; main(['list'])",
        "from rlhf_envs.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
        "from rlhf_envs.cli import build_parser; build_parser('toy-demo').parse_args(['toy-demo'])",
    ):
        loaded = _modules_after(code)
        assert "rlhf_envs" in loaded, code
        assert not loaded & {"torch", "transformers", "agents", "benchmarks", "stable_baselines3"}, code
    # the probe can fail: a subcommand that does need the agent stack shows up
    assert {"agents", "torch"} <= _modules_after(
        "from rlhf_envs.cli import build_parser; build_parser('train')"
    )


def test_cli_toy_demo_runs() -> None:
    out = run_cli("toy-demo", "--episodes", "20")
    assert "RLHF/Copy-v0" in out and "optimal  mean reward 1.000" in out


def test_cli_demo_runs_a_short_ppo_job(tmp_path) -> None:
    """The `make demo` command, on a budget of two PPO iterations: samples, figures and a plot."""
    out = run_cli("demo", "--steps", "1500", "--out", str(tmp_path), "--no-progress")
    assert "before" in out.lower() and "after" in out.lower()
    assert (tmp_path / "learning_curve.png").stat().st_size > 0


def test_cli_demo_steps_flag_and_its_former_name() -> None:
    from rlhf_envs.cli import build_parser

    for flag in ("--steps", "--timesteps"):
        args = build_parser("demo").parse_args(["demo", flag, "2000"])
        assert args.timesteps == 2000 and args.threads is None


def test_cli_train_custom_ppo_on_copy() -> None:
    """`rlhf-envs train` as the README shows it, on a tiny budget; prints a JSON summary."""
    import json

    out = run_cli("train", "--algo", "ppo", "--env", "RLHF/Copy-v0", "--steps", "1024", "--seed", "0")
    summary = json.loads(out.strip().splitlines()[-1])
    assert (
        summary["algo"] == "ppo" and summary["env"] == "RLHF/Copy-v0" and 0.0 <= summary["reward_task"] <= 1.0
    )


def test_cli_train_rejects_unknown_algorithm() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rlhf_envs.cli",
            "train",
            "--algo",
            "sb3-sac",
            "--env",
            "RLHF/Copy-v0",
            "--steps",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "sac" in proc.stderr.lower()


def test_cli_pretrain_takes_the_corpus_and_vocabulary() -> None:
    from rlhf_envs.cli import build_parser

    args = build_parser("pretrain").parse_args(
        ["pretrain", "--corpus", "mixed", "--vocab-size", "8192", "--out", "x"]
    )
    assert (args.corpus, args.vocab_size, args.out) == ("mixed", 8192, "x")
    default = build_parser("pretrain").parse_args(["pretrain"])
    assert default.corpus == "generated" and default.vocab_size == 4096  # what built the shipped model
    with pytest.raises(SystemExit):
        build_parser("pretrain").parse_args(["pretrain", "--corpus", "wikipedia"])
