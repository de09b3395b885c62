"""Algorithms x language tasks x seeds on the embedded model: reward against KL to the reference.

Issue 19, item 5. Every algorithm of the suite that can steer a language model, on four language
tasks, three seeds each, measured the same way: the reward (the gold where the task has one) and
the KL divergence to the reference (the base model) at fixed points over training, with the
generation metrics, the tokens and the CPU seconds it cost.

Protocol (written and committed before the full run)
----------------------------------------------------

**Tasks** (:data:`~benchmarks.compare_lm.suites.TASKS`): ``RLHF/Sentiment-v0`` (VADER),
``RLHF/Keywords-v0``, ``RLHF/Length-v0`` and ``RLHF/SimulatedHuman-v0`` (the env pays a reward
model fitted from 500 comparisons of a simulated "Mistake" rater over VADER; the gold, VADER, is
reported in ``info["reward_gold"]`` and is what this benchmark calls its reward), all on the
embedded default model, whose frozen copy is every run's reference.

**Algorithms and presets** (:data:`~benchmarks.compare_lm.suites.PRESETS`, all in
:mod:`agents.presets`): PPO ``lm-sentiment-demo``; A2C ``lm-sentiment-a2c``; REINFORCE with a
learned baseline ``lm-sentiment-reinforce``; RLOO ``lm-sentiment-rloo``; GRPO ``lm-sentiment-grpo``;
ES ``lm-sentiment-es``; DPO ``lm-sentiment-dpo``; SB3 PPO with the token features extractor (the
embedded LM as encoder and action head) and the KL penalty callback ``sb3-lm-sentiment``;
best-of-n (no training). No algorithm has a preset for Keywords, Length or SimulatedHuman: every
task runs the Sentiment preset with the task's env id, and nothing is tuned per task. A2C,
REINFORCE and ES had no Sentiment preset; theirs were added before any run of this benchmark by
the rule the RLOO/GRPO/DPO ones followed (the lm-default settings on the embedded model with
``make demo``'s learning rate 1e-4; ES's own default step, its scale being different). Every
gradient agent keeps its preset's KL control (coefficient 0.05 to the reference).

**Budgets** (:data:`~benchmarks.compare_lm.suites.FULL`):

* every custom on-policy agent (PPO, A2C, REINFORCE, RLOO, GRPO, ES) trains for 20,000 generated
  tokens (``make demo``'s budget; a run stops at the first iteration that reaches it, so it may
  overshoot by part of a batch: ES's generations are ~5,600 tokens);
* SB3 PPO generates ~15x fewer tokens per CPU second than the custom PPO on this machine (65
  against ~1,000 measured before the run), so the same 20,000 tokens would cost ~5 CPU minutes per
  run, 12 runs an hour, over the CPU budget of the whole benchmark: it gets 4,608 tokens (12
  updates of 16 x 24 tokens), about a quarter, and its rows say so (``tokens``);
* DPO: 512 comparisons per run (pairs of base-model samples of one prompt, prompts and sampling
  seeded by the run's seed), labelled by a simulated human (:class:`~rlhf_envs.feedback.simulated.
  SimulatedHuman`, B-Pref's "Mistake" rater: 10% of the answers flipped) whose gold is the task's
  reward (VADER on SimulatedHuman, the same gold and rater its env's proxy was fitted from), then
  80,000 update tokens (completion tokens through forward and backward, both sides of every pair
  counted, ~3.6 epochs: PPO's 20,000 tokens x 4 epochs, as in ``benchmarks/dpo_sentiment.py``). The
  ~22k tokens sampled for the comparisons are reported separately (``comparison_tokens``), as is
  their CPU time; DPO's ``tokens`` (generated during training) is 0;
* best-of-n: nothing is trained; 16 base-model samples of each evaluation prompt (sampling seed
  from the run's seed) give the frontier for n in 1, 2, 4, 8, 16 with Gao et al.'s unbiased
  order-statistic estimator (:func:`agents.best_of_n.pool_curve`), reranked by the task's reward
  (the learned proxy on SimulatedHuman, the gold being reported). Its KL is the *analytic*
  ``log n - (n-1)/n``: exact when rewards do not tie, an upper bound when they do (Length and
  Keywords pay few distinct values), so best-of-n is placed at a KL no lower than its true one.
  The pool's measured estimate (:func:`agents.best_of_n.pool_curve`) is kept in the curves'
  ``kl_measured`` column but not used: it assumes that different texts never tie and came out
  negative (-10 nats) on Length in the smoke test. Its sampled tokens are counted
  (``sampled_tokens``), its CPU seconds are the sampling and scoring. The generation metrics of an n are those of one real
  best-of-n draw per prompt (the best of its first n samples).

**CPU budget.** The full run must take at most ~55 minutes of wall time with ``--jobs 2`` under
``nice -n 10`` on the shared 2-core machine. Timing before the run (one run of every algorithm on
Keywords, the slowest-scoring task, seed 0, ``--jobs 2``; its figures are not results): 237 s of
wall time for the 9 runs (training CPU: SB3 PPO 69 s, PPO 46 s, DPO 30 s, A2C 24 s, REINFORCE 23 s,
ES 18 s, RLOO 17 s, best-of-n 16 s, GRPO 16 s), so 12 (task, seed) cells take ~47 minutes at most:
the budgets above stand.

**Evaluation.** At 0, 1/4, 1/2, 3/4 and 1 of the training budget (the first iteration at or past
each mark; DPO's marks count update tokens, SB3's are checked at the start of each rollout): one
sampled completion (temperature 1) of each of 128 fixed prompts (sub-env seeds 10,000 + j, the
sampling generator seeded 10,000, the same for every algorithm, task and seed), scored by the
task's reward and, on SimulatedHuman, by the gold; the KL to the reference, summed over the
completion and averaged over the prompts: exact at every visited position for the custom agents and
DPO (``agent.evaluate``), the sampled-token estimate ``sum_t log pi - log pi_ref`` for SB3 (its
expectation is the same quantity); distinct-1/2, mean length, EOS rate and the reference's
perplexity (:mod:`agents.generation_metrics`). CPU seconds: the training process's CPU time
(``time.process_time``, torch at one thread) in training, evaluations excluded.

**Summary** (:mod:`~benchmarks.compare_lm.summary`): for each task and algorithm, the reward at the
KL budgets 1, 2 and 5 nats, chosen before the run (best-of-n's n = 16 sits near 1.8 nats analytic;
``make demo``'s PPO ends near 4-7 nats): per run the best evaluated reward among its points with
KL <= budget (the base model's point qualifies for all), then the mean over the 3 seeds with a 95%
t-interval (Student's t, 2 degrees of freedom: 4.303 standard errors); the final reward and KL (95%
t-intervals), the mean CPU seconds and tokens. The expectation before the run: on the three
scripted tasks the critic-based and critic-free policy-gradient agents (PPO, A2C, REINFORCE, RLOO,
GRPO) raise the reward well above the base model within 20k tokens, ES and SB3 PPO (lr 1e-5,
a quarter of the tokens) barely move, DPO raises Sentiment, and best-of-n is the most KL-efficient
at small KL; on SimulatedHuman the RL agents over-optimise the proxy so that the gold rises less
than the proxy.

**Outputs** in ``--out`` (default ``benchmarks/results``): ``compare_lm_runs.csv`` (one row per
run: tokens, update/comparison/sampled tokens, CPU and wall seconds, base and final reward, final KL
and generation metrics, the preset and the full resolved config), ``compare_lm_curves.csv`` (one
row per evaluation point), ``compare_lm.md`` (the summary table with the command, the budgets and
the wall time) and ``compare_lm.png`` (one panel per task: reward against KL, the mean over seeds at
each evaluation point with a 95% t band per algorithm).

**Running.** ``--jobs N`` runs N runs at once in separate processes (each torch at one thread);
finished runs are appended to the runs CSV as they end, and a run already there is skipped, so a
killed run is continued by repeating the command. ``--quick`` (CI): all algorithms on Sentiment and
Length, one seed, a tiny budget (:data:`~benchmarks.compare_lm.suites.QUICK`), into a temporary
folder unless ``--out`` is given.

    nice -n 10 python -m benchmarks.compare_lm --jobs 2          # the full run (README)
    python -m benchmarks.compare_lm --quick --out /tmp/clm       # smoke test
    python -m benchmarks.compare_lm --report-only                # table and plot from the CSVs
"""

from benchmarks.compare_lm.cli import main
from benchmarks.compare_lm.suites import ALGOS, FULL, PRESETS, QUICK, TASKS, Budget

__all__ = ["ALGOS", "FULL", "PRESETS", "QUICK", "TASKS", "Budget", "main"]
