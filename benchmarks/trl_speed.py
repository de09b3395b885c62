"""TRL's online RL trainer on ``RLHF/Sentiment-v0``'s model, prompts and reward: generated tokens per second.

Issue #8 asks the throughput benchmark to compare the custom PPO with TRL "on the same model and
reward"; issue #19 adds the custom GRPO (:class:`agents.GRPO`) on the same job. TRL is not a
dependency of ``rlhf_envs``: it is imported only inside :func:`bench_trl`, which raises an
:class:`ImportError` saying so when it is missing (``benchmarks/throughput.py`` reports that as
skipped).

TRL lives in a virtual environment of its own, with the pinned CPU torch installed first (an
unpinned torch would pull a multi-GB CUDA build) and the project installed editable into it, so
the benchmark imports this checkout. ``make bench-trl`` creates it as ``.venv-trl`` and runs
``benchmarks.throughput --parts ppo`` there; by hand::

    python3 -m venv /work/venvs/trl
    /work/venvs/trl/bin/pip install torch==2.13.0
    /work/venvs/trl/bin/pip install trl==1.16.0
    /work/venvs/trl/bin/pip install -e .
    /work/venvs/trl/bin/python -m benchmarks.throughput --parts ppo

(trl 1.16.0 brings transformers 5.24.0, the version the project venv has.)

The trainer is :class:`trl.GRPOTrainer`. In TRL 1.x it is the library's main, maintained online RL
trainer (the one its docs lead with and the one new features land in); ``RLOOTrainer`` follows
the same generate-score-update structure, and the old value-model ``PPOTrainer`` is no longer in
TRL's stable API. GRPO has no value model, so it does less work per token than PPO: the figure is
"what TRL's online trainer costs on this model", not a like-for-like PPO implementation.

What is held equal to :func:`benchmarks.sb3_sentiment.run_custom` (the custom PPO):

* model and tokenizer: the embedded GPT-2 (``rlhf_envs/assets/default_lm``) loaded through
  :mod:`rlhf_envs.lm.loading`, a private trainable float32 copy; the frozen reference is TRL's own
  copy of the same weights (``beta`` 0.05);
* prompts: the Sentiment task's built-in prompt list;
* reward: the task's own feedback model (VADER compound of the completion, decoded with the
  task's tokenizer, EOS and padding removed), called as a TRL reward function;
* sampling: at most 24 new tokens, temperature 1, no top-k (0), no top-p (1.0), stop at EOS;
* batch: 16 completions per generation (4 prompts x 4 completions, GRPO's group), each used for
  4 passes (``num_iterations``) of 4 minibatches of 4 (``steps_per_generation``): 16 optimiser
  steps per 16 episodes, as the custom PPO's 4 epochs x 4 minibatches; lr 1e-5 constant,
  gradient clip 1.0, clip range 0.2, CPU, ``threads`` torch threads. Batch size, passes,
  minibatches, learning rate, gradient clip, clip range and KL coefficient are read from the custom
  PPO's preset (``"lm-sb3-sentiment"`` of :mod:`agents.presets`), so the two cannot drift apart.

The custom GRPO (:func:`run_custom_grpo`) runs the preset ``"lm-trl-sentiment-grpo"``, whose shared
settings (``agents.presets.TRL_JOB_FIELDS``) are read from the same PPO preset when the presets
are defined; :func:`check_held_equal` (called by every run here, and tested) raises if its
resolved config differs from the PPO's on any of them or on clip range, temperature or group size.
Its own choices are TRL's GRPO defaults: the KL to the frozen reference as a k3 loss term
(``beta`` 0.05, per token, exactly TRL's ``exp(d) - d - 1``), advantages normalised within each
group of 4 (unbiased std + 1e-4) and not whitened again, the clipped ratio per token. What still
differs, none of it part of the job: TRL computes the "old" log-probs with a separate forward
pass after generating (it generates with ``generate()``, which returns no log-probs; ours are
the sampler's), averages the loss over the generation batch's tokens ("dapo"; ours over the
minibatch's), and uses AdamW (eps 1e-8, weight decay 0; ours Adam eps 1e-5). TRL also turns
gradient checkpointing on by default (one more forward per backward, to save memory): the
headline figures keep TRL's defaults, and ``gradient_checkpointing=False`` (TRL without it,
faster) is reported beside them by ``benchmarks/throughput.py``.

Tokens per second = completion tokens generated during ``trainer.train()`` (EOS counted when
sampled, padding not; counted in the reward function, which sees every completion exactly once)
/ wall seconds of ``trainer.train()`` (generation, scoring, reference and old log-probs, updates;
trainer construction and model loading excluded, as in ``run_custom``). Training stops at the
end of the first generation batch whose updates take the count to ``tokens`` or more.

Run from the repository root, with TRL installed, to time both side by side::

    python -m benchmarks.trl_speed --tokens 1536 --seed 0
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from typing import Any

from agents.config import PPOConfig
from agents.grpo import GRPOConfig
from agents.presets import TRL_JOB_FIELDS
from benchmarks.common import Timer, init_torch, load_average
from benchmarks.sb3_sentiment import CUSTOM_PRESET

#: the custom GRPO's preset on this job (its shared settings read from CUSTOM_PRESET)
GRPO_PRESET = "lm-trl-sentiment-grpo"
#: the custom PPO's settings this run is held equal to (its preset over PPOConfig's defaults)
_CUSTOM = PPOConfig.from_kwargs(preset=CUSTOM_PRESET)
_GRPO = GRPOConfig.from_kwargs(preset=GRPO_PRESET)
#: completions per generation batch (the custom PPO's episodes per batch) and completions per
#: prompt (GRPO's group, the custom GRPO's group_size)
N_COMPLETIONS, GROUP = _CUSTOM.n_envs, _GRPO.group_size
#: minibatches per generation batch and passes over it (the custom PPO's epochs x minibatches)
N_MINIBATCHES, N_EPOCHS = _CUSTOM.n_minibatches, _CUSTOM.n_epochs
KL_COEF, LEARNING_RATE = _CUSTOM.kl_coef, _CUSTOM.learning_rate

TRL_MISSING = (
    "benchmarks.trl_speed needs TRL, which is not a dependency of rlhf_envs and is not installed "
    "here; install it in a separate environment (`pip install trl`) to time TRL's online trainer"
)


def _import_trl() -> Any:
    """Import ``trl`` (and ``datasets``, which TRL's trainers take their prompts from) or say what is missing."""
    try:
        import trl
    except ImportError as exc:
        raise ImportError(TRL_MISSING) from exc
    try:
        import datasets  # noqa: F401 - a TRL dependency; checked here for a clear message
    except ImportError as exc:
        raise ImportError(f"{TRL_MISSING} (trl imported but its dependency `datasets` did not)") from exc
    return trl


def check_held_equal(ppo: Any = _CUSTOM, grpo: Any = _GRPO) -> dict[str, Any]:
    """The settings TRL's GRPOTrainer, the custom PPO and the custom GRPO share, as one dict.

    Raises ``ValueError`` naming the field when the custom GRPO's resolved config differs from the
    custom PPO's on a shared field (``TRL_JOB_FIELDS``, clip range, temperature), or when the GRPO
    groups do not split the batch as TRL's do (``n_envs`` a multiple of ``group_size``).
    """
    shared = {}
    for name in (*TRL_JOB_FIELDS, "clip_range", "temperature"):
        a, b = getattr(ppo, name), getattr(grpo, name)
        if a != b:
            raise ValueError(f"custom GRPO and PPO differ on the held-equal setting {name}: {b!r} vs {a!r}")
        shared[name] = a
    if grpo.n_envs % grpo.group_size:
        raise ValueError(f"n_envs {grpo.n_envs} is not a multiple of group_size {grpo.group_size}")
    shared["group_size"] = grpo.group_size
    return shared


def run_custom_grpo(tokens: int, seed: int) -> tuple[float, int, dict[str, Any]]:
    """The custom GRPO (``GRPO_PRESET``) on the job for ``tokens`` generated tokens.

    Returns ``(wall seconds of learn, tokens generated, full resolved config)``, timed as
    :func:`benchmarks.sb3_sentiment.run_custom` times the custom PPO (agent construction excluded).
    """
    from agents import GRPO

    check_held_equal()
    agent = GRPO("RLHF/Sentiment-v0", seed=seed, preset=GRPO_PRESET)
    with Timer() as clock:
        agent.learn(tokens, progress_bar=False)
    seconds = clock.seconds
    agent.close()
    return seconds, int(agent.num_timesteps), agent.config.to_json_dict()


def _check_args(tokens: Any, seed: Any, threads: Any) -> None:
    for name, value, low in (("tokens", tokens, 1), ("seed", seed, 0), ("threads", threads, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


def bench_trl(
    tokens: int = 4608, seed: int = 0, threads: int = 1, gradient_checkpointing: bool | None = None
) -> dict[str, Any]:
    """Train ``trl.GRPOTrainer`` on the Sentiment task for about ``tokens`` generated tokens.

    Args:
        tokens: generated-token budget; training stops after the generation batch (16 completions
            of at most 24 tokens, plus its 16 optimiser steps) that reaches it.
        seed: seeds TRL's trainer (model init is the embedded weights; prompt order and sampling).
        threads: ``torch.set_num_threads`` for the run (1 for side-by-side timing on a shared CPU).
        gradient_checkpointing: ``None`` keeps TRL's default (on, in TRL 1.x); ``False`` turns it
            off (a faster TRL that keeps every activation, as the custom agents do).

    Returns:
        A dict with ``tokens_per_s``, what was counted (``tokens_generated``, ``seconds``,
        ``counted``), the trainer name, the TRL/transformers/torch versions, the settings and the
        mean task reward of the first and last generation batch (a check that it really trained).

    Raises:
        ImportError: TRL (or its ``datasets`` dependency) is not installed; the message says so.
        ValueError: ``tokens``/``threads`` below 1 or ``seed`` below 0, or not ints.
    """
    _check_args(tokens, seed, threads)
    if gradient_checkpointing not in (None, True, False):
        raise ValueError(
            f"gradient_checkpointing must be None, True or False, got {gradient_checkpointing!r}"
        )
    check_held_equal()
    trl = _import_trl()
    import datasets
    import numpy as np
    import torch
    import transformers
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from rlhf_envs.feedback.base import Episode, score_episodes
    from rlhf_envs.lm.loading import load_causal_lm
    from rlhf_envs.tasks.base import make_task

    torch.set_num_threads(threads)
    task = make_task("sentiment")  # built-in prompts, 24 new tokens, the VADER feedback model
    tok = task.tokenizer
    prompts = [task.make_prompt(rec, None).text for _, rec in task.records]
    model = load_causal_lm(task.model_path, cache=False)  # private float32 copy, trainable
    model.requires_grad_(True)
    eos = tok.eos_id

    # Filled by the reward function, which TRL calls once per generation batch on every completion.
    counts = {"tokens": 0, "completions": 0, "eos": 0}
    batch_rewards: list[float] = []
    batch_tokens: list[int] = []

    def vader_compound(
        prompts: list[str], completions: list[str], completion_ids: list[list[int]], **_: Any
    ) -> list[float]:
        """The Sentiment task's feedback on each completion (VADER compound, in [-1, 1])."""
        episodes = [
            Episode(
                prompt=p,
                completion=tok.decode(ids),  # the env's decoding: pad and EOS removed
                prompt_ids=tuple(tok.encode(p)),
                completion_ids=tuple(int(i) for i in ids),
                terminated=bool(ids) and int(ids[-1]) == eos,
            )
            for p, ids in zip(prompts, completion_ids, strict=True)
        ]
        scores = score_episodes(task.feedback, episodes)
        counts["tokens"] += sum(len(ids) for ids in completion_ids)
        counts["completions"] += len(completion_ids)
        counts["eos"] += sum(ep.terminated for ep in episodes)
        batch_rewards.append(float(np.mean(scores)))
        batch_tokens.append(sum(len(ids) for ids in completion_ids))
        return [float(s) for s in scores]

    steps_per_batch = N_MINIBATCHES * N_EPOCHS

    class _StopAtBudget(TrainerCallback):
        """Stop after the updates of the generation batch that reaches the token budget."""

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if counts["tokens"] >= tokens and state.global_step % steps_per_batch == 0:
                control.should_training_stop = True
            return control

    # each completion has at least one token, so this many batches always reach the budget
    max_batches = math.ceil(tokens / N_COMPLETIONS)
    extra = {} if gradient_checkpointing is None else {"gradient_checkpointing": gradient_checkpointing}
    with tempfile.TemporaryDirectory(prefix="trl_speed_") as out_dir:
        config = trl.GRPOConfig(
            **extra,
            output_dir=out_dir,
            seed=seed,
            data_seed=seed,
            use_cpu=True,
            bf16=False,
            fp16=False,
            per_device_train_batch_size=N_COMPLETIONS // N_MINIBATCHES,
            gradient_accumulation_steps=1,
            steps_per_generation=N_MINIBATCHES,
            num_iterations=N_EPOCHS,
            num_generations=GROUP,
            max_completion_length=task.max_new_tokens,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            beta=KL_COEF,
            epsilon=_CUSTOM.clip_range,
            learning_rate=LEARNING_RATE,
            lr_scheduler_type="constant",
            warmup_steps=0,
            max_grad_norm=_CUSTOM.max_grad_norm,
            max_steps=max_batches * steps_per_batch,
            logging_steps=steps_per_batch,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=0,
            log_completions=False,
        )
        trainer = trl.GRPOTrainer(
            model=model,
            reward_funcs=vader_compound,
            args=config,
            train_dataset=datasets.Dataset.from_dict({"prompt": prompts}),
            processing_class=tok.hf,
            callbacks=[_StopAtBudget()],
        )
        for cb in (PrinterCallback, ProgressCallback):  # no per-step printing inside the timed loop
            trainer.remove_callback(cb)
        load0 = load_average()[0]
        with Timer() as clock:
            trainer.train()
        seconds = clock.seconds
        load1 = load_average()[0]
        steps = int(trainer.state.global_step)

    if counts["completions"] == 0:
        raise RuntimeError("GRPOTrainer finished without generating a completion; nothing to time")
    return {
        "trainer": "trl.GRPOTrainer",
        "trl_version": trl.__version__,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "env": "RLHF/Sentiment-v0 (model, prompts and feedback; no env in the loop)",
        "model": "embedded default GPT-2 (rlhf_envs/assets/default_lm)",
        "tokens_per_s": round(counts["tokens"] / seconds, 2),
        "tokens_generated": counts["tokens"],
        "seconds": round(seconds, 2),
        "counted": (
            "completion tokens sampled during trainer.train() (EOS included when sampled, padding not) "
            "/ wall seconds of trainer.train(); model loading and trainer construction excluded"
        ),
        "token_budget": tokens,
        "completions": counts["completions"],
        "completions_ended_by_eos": counts["eos"],
        "generation_batches": len(batch_rewards),
        "tokens_per_batch": batch_tokens,
        "optimizer_steps": steps,
        "batch": (
            f"{N_COMPLETIONS} completions ({N_COMPLETIONS // GROUP} prompts x {GROUP}) of <= "
            f"{task.max_new_tokens} tokens per generation, {N_EPOCHS} iterations x {N_MINIBATCHES} minibatches"
        ),
        "sampling": "temperature 1, top_k 0, top_p 1.0",
        "kl": f"beta {KL_COEF} (GRPO's k3 estimator in the loss, frozen copy of the initial model)",
        "learning_rate": LEARNING_RATE,
        "gradient_checkpointing": bool(config.gradient_checkpointing),
        "matched_preset": CUSTOM_PRESET,
        "seed": seed,
        "torch_threads": threads,
        "reward_task_first_batch": round(batch_rewards[0], 4),
        "reward_task_last_batch": round(batch_rewards[-1], 4),
        "load_average_before_after": [load0, load1],
    }


def main(argv: list[str] | None = None) -> None:
    """Time the custom PPO (``run_custom``), the custom GRPO and TRL's GRPOTrainer on the same budget.

    Each repeat runs the custom PPO, the custom GRPO, then TRL in this process on one torch thread;
    the ratios within each repeat are reported, since absolute speeds on a shared machine drift
    with its load.
    """
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=4608)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1, help="custom/TRL rounds to run, alternately")
    p.add_argument(
        "--trl-no-checkpointing", action="store_true", help="also time TRL with gradient_checkpointing=False"
    )
    args = p.parse_args(argv)
    from benchmarks.sb3_sentiment import run_custom

    init_torch(1)
    rounds = []
    for _ in range(args.repeats):
        load0 = load_average()[0]
        _, ppo_s, ppo_tok, _ = run_custom(args.tokens, args.seed)
        grpo_s, grpo_tok, _ = run_custom_grpo(args.tokens, args.seed)
        trl_res = bench_trl(args.tokens, args.seed, threads=1)
        row: dict[str, Any] = {
            "custom_ppo_tokens_per_s": round(ppo_tok / ppo_s, 2),
            "custom_grpo_tokens_per_s": round(grpo_tok / grpo_s, 2),
            "trl": trl_res,
            "ratio_ppo_over_trl": round(ppo_tok / ppo_s / trl_res["tokens_per_s"], 2),
            "ratio_grpo_over_trl": round(grpo_tok / grpo_s / trl_res["tokens_per_s"], 2),
        }
        if args.trl_no_checkpointing:
            fast = bench_trl(args.tokens, args.seed, threads=1, gradient_checkpointing=False)
            row["trl_no_checkpointing"] = fast
            row["ratio_ppo_over_trl_no_checkpointing"] = round(ppo_tok / ppo_s / fast["tokens_per_s"], 2)
            row["ratio_grpo_over_trl_no_checkpointing"] = round(grpo_tok / grpo_s / fast["tokens_per_s"], 2)
        row["load_average_before_after"] = [load0, load_average()[0]]
        rounds.append(row)
    print(json.dumps(rounds, indent=2))


if __name__ == "__main__":
    main()
