"""A bad command line or file prints one clear line and exits 2; a bug keeps its traceback (issue 15,
item 9). Most cases call :func:`rlhf_envs.cli.main` in-process; one runs the console script."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rlhf_envs.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _fails_cleanly(capsys, argv: list[str], *expected: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"rlhf-envs {argv[0]}: error: "), err
    for text in expected:
        assert text in err, err
    return err


def test_train_bad_command_lines(capsys, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    base = ["train", "--algo", "ppo", "--steps", "64"]
    _fails_cleanly(capsys, [*base, "--env", "RLHF/Nope-v0"], "--env 'RLHF/Nope-v0'", "rlhf-envs list")
    _fails_cleanly(capsys, [*base, "--env", "os:RLHF/Copy-v0"], "'module:' form")
    _fails_cleanly(
        capsys, [*base, "--env", "RLHF/Copy-v0", "--set", "n_steps=-1"], "n_steps must be an int >= 1"
    )
    _fails_cleanly(capsys, [*base, "--env", "RLHF/Copy-v0", "--set", "max_grad_norm=-1"], "max_grad_norm")
    _fails_cleanly(capsys, [*base, "--env", "RLHF/Copy-v0", "--set", "warp=9"], "unknown PPOConfig option")
    _fails_cleanly(
        capsys, [*base, "--env", "RLHF/Copy-v0", "--log-dir", str(a_file)], "--log-dir", "is a file"
    )
    _fails_cleanly(capsys, [*base, "--env", "RLHF/Copy-v0", "--save", str(a_file)], "--save", "is a file")
    _fails_cleanly(capsys, [*base, "--env", "RLHF/Copy-v0", "--threads", "0"], "threads must be")
    _fails_cleanly(capsys, ["train", "--algo", "ppo", "--steps", "0", "--env", "RLHF/Copy-v0"], "--steps")
    _fails_cleanly(
        capsys, ["train", "--algo", "nope", "--steps", "8", "--env", "RLHF/Copy-v0"], "unknown --algo"
    )


def test_train_bad_sb3_settings(capsys):
    base = ["train", "--algo", "sb3-ppo", "--env", "RLHF/Copy-v0", "--steps", "64", "--n-envs", "2"]
    _fails_cleanly(capsys, [*base, "--set", "n_steps=-1"], "bad argument for PPO")
    _fails_cleanly(capsys, [*base, "--set", "not_an_option=3"], "bad argument for PPO", "not_an_option")
    _fails_cleanly(capsys, [*base, "--preset", "no-such-preset"], "unknown preset")


def test_rlhf_bad_command_lines_and_files(capsys, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    _fails_cleanly(capsys, ["rlhf", "--out", str(a_file)], "--out", "is a file")
    _fails_cleanly(
        capsys, ["rlhf", "--out", str(tmp_path / "r"), "--set", "warp=1"], "warp", "RLHFConfig field"
    )
    _fails_cleanly(capsys, ["rlhf", "--out", str(tmp_path / "r"), "--set", "kl_coef=-1"], "kl_coef must be")
    _fails_cleanly(capsys, ["rlhf", "--out", str(tmp_path / "r"), "--rounds", "0"], "rounds must be")
    _fails_cleanly(capsys, ["rlhf", "--out", str(tmp_path / "r"), "--threads", "-2"], "threads must be")
    run = tmp_path / "corrupt"
    run.mkdir()
    (run / "state.json").write_text('{"config": {"rounds": 2}, "hist')
    err = _fails_cleanly(capsys, ["rlhf", "--out", str(run)], "state.json", "not valid JSON")
    assert str(run) in err
    (run / "state.json").write_text(json.dumps({"config": {}}))
    _fails_cleanly(capsys, ["rlhf", "--out", str(run)], "state.json", "lacks")


def test_other_commands(capsys, tmp_path):
    _fails_cleanly(capsys, ["toy-demo", "--episodes", "-3"], "--episodes must be a positive int")
    _fails_cleanly(capsys, ["demo", "--steps", "0", "--out", str(tmp_path)], "--steps")
    a_file = tmp_path / "f"
    a_file.write_text("x")
    _fails_cleanly(capsys, ["demo", "--out", str(a_file)], "--out", "is a file")


def test_a_bug_still_shows_its_traceback(monkeypatch):
    import agents.cli_train

    def broken(args):
        raise RuntimeError("a bug in the library")

    monkeypatch.setattr(agents.cli_train, "run_train", broken)
    with pytest.raises(RuntimeError, match="a bug in the library"):
        main(["train", "--algo", "ppo", "--env", "RLHF/Copy-v0", "--steps", "8"])


def test_console_script_prints_one_line_and_exits_2():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rlhf_envs.cli",
            "train",
            "--algo",
            "ppo",
            "--env",
            "RLHF/Nope-v0",
            "--steps",
            "8",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "Traceback" not in proc.stderr
    assert "RLHF/Nope-v0" in proc.stderr
