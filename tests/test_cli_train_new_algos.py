"""`rlhf-envs train --algo es|rloo|grpo` (in-process: the command's own entry point)."""

from __future__ import annotations

import json

import pytest

from agents.cli_train import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run(capsys, *argv: str) -> dict:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_train_es_on_cartpole(capsys, tmp_path):
    out = _run(
        capsys,
        "--algo",
        "es",
        "--env",
        "CartPole-v1",
        "--steps",
        "1500",
        "--eval-episodes",
        "2",
        "--set",
        "population_size=8",
        "--n-envs",
        "8",
        "--save",
        str(tmp_path / "es"),
    )
    assert out["algo"] == "es" and out["preset"] is None and out["n_episodes"] == 2
    from agents import ES

    assert ES.load(out["saved"]).config.population_size == 8


@pytest.mark.parametrize("algo,kl_mode", [("rloo", "reward"), ("grpo", "loss")])
def test_train_critic_free_on_sentiment(capsys, algo, kl_mode):
    out = _run(
        capsys,
        "--algo",
        algo,
        "--env",
        "RLHF/Sentiment-v0",
        "--steps",
        "100",
        "--n-envs",
        "8",
        "--eval-episodes",
        "4",
    )
    assert out["algo"] == algo and out["preset"] == f"lm-default-{algo}"
    assert {"distinct_2", "kl_ref", "ref_perplexity", "eos_rate"} <= set(out)


def test_critic_free_needs_a_language_env(capsys):
    assert main(["--algo", "rloo", "--env", "CartPole-v1", "--steps", "10"]) == 2
    assert "language-model policies" in capsys.readouterr().err
