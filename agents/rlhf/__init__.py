"""The RLHF loop: sample from the policy, ask the human, fit the reward model, optimise the policy.

Each round of :class:`RLHFLoop`:

1. **sample** a pool of candidate pairs from the *current* policy: two completions of the same
   prompt per pair (the sampling env is reset with each seed twice);
2. **select** which pairs to ask about: ``"random"`` or ``"disagreement"`` (the pairs where the
   reward-model ensemble's members disagree most about ``P(A > B)``, Christiano et al. 2017; the
   first round has no ensemble yet and selects at random under both rules);
3. **ask** the human (:class:`~rlhf_envs.feedback.simulated.SimulatedHuman` or anything with the
   same ``compare(a, b)`` method, e.g. :class:`TerminalHuman`), within a feedback budget and a
   per-round query schedule (``"constant"`` or ``"decaying"``). With ``query_kind="rating"`` the
   loop asks for 1-5 ratings of single completions instead (``human.rate``), chosen at random or
   where the ensemble's scores spread most;
4. **fit** a bootstrap ensemble :class:`~rlhf_envs.feedback.learned.RewardModel` from scratch on all
   feedback so far (Bradley-Terry on comparisons, regression on ratings), save it, and build the training env ``RLHF/SimulatedHuman-v0`` with
   ``proxy=<that directory>`` so the env pays the new reward model's score (the *proxy reward*);
5. **optimise** the policy with PPO against it. The agent persists across rounds (its weights,
   optimiser and KL controller continue; its frozen reference stays the initial model);
6. **measure** the policy on fresh episodes (not the queried ones): proxy reward, gold reward, KL and
   sqrt(KL) to the initial policy, plus how well the proxy reward orders those episodes by gold.

Everything is seeded from ``RLHFConfig.seed``, the round number and a named random stream
(:class:`~agents.rlhf.streams.Stream`), so the same seed gives the same numbers on CPU. With
``run_dir`` set, each round's feedback, reward model and agent checkpoint are written atomically
(temporary name, then rename) and ``state.json`` is replaced last, as the commit point: a run
killed at any moment resumes from the last committed round with the same feedback and the same
numbers as an uninterrupted run (:mod:`agents.rlhf.persistence`). A person's answers are durable
sooner, the moment each is given (:mod:`agents.rlhf.answer_journal`): a resumed round reuses them.

    from agents.rlhf import RLHFConfig, RLHFLoop
    loop = RLHFLoop(RLHFConfig(seed=0, selection="disagreement"), run_dir="runs/rlhf")
    history = loop.run()        # one dict per round (see RLHFLoop.run)

or ``rlhf-envs rlhf --seed 0 --out runs/rlhf`` on the command line.

One file per part: ``config`` (:class:`RLHFConfig`, the query schedule), ``streams`` (the random
streams), ``queries`` (:func:`select_pairs`), ``reward_fitting`` (:func:`fit_reward_model`),
``metrics`` (:func:`concordance`), ``humans`` (the :class:`Human` protocol, :class:`TerminalHuman`),
``answer_journal`` (:class:`AnswerJournal`, a person's answers on disk), ``persistence`` (the run directory and the episodes' JSON), ``loop`` (:class:`RLHFLoop`) and
``cli`` (``rlhf-envs rlhf``).
"""

from agents.rlhf.answer_journal import JOURNAL_FILE, AnswerJournal
from agents.rlhf.cli import add_rlhf_parser, cmd_rlhf
from agents.rlhf.config import QUERY_KINDS, SCHEDULES, SELECTIONS, RLHFConfig, schedule_counts
from agents.rlhf.humans import Human, TerminalComparisons, TerminalHuman, TerminalRatings, rating_values
from agents.rlhf.loop import SAMPLE_ENV_ID, TRAIN_ENV_ID, RLHFLoop
from agents.rlhf.metrics import concordance, label_agreement
from agents.rlhf.persistence import STATE_FILE, RunDirectory, episode_from_json, episode_to_json
from agents.rlhf.queries import select_pairs
from agents.rlhf.reward_fitting import fit_reward_model, fit_reward_model_on_ratings
from agents.rlhf.streams import Stream, stream_seed

__all__ = [
    "RLHFConfig",
    "RLHFLoop",
    "Human",
    "TerminalHuman",
    "TerminalComparisons",
    "TerminalRatings",
    "AnswerJournal",
    "JOURNAL_FILE",
    "select_pairs",
    "fit_reward_model",
    "fit_reward_model_on_ratings",
    "rating_values",
    "QUERY_KINDS",
    "concordance",
    "label_agreement",
    "schedule_counts",
    "Stream",
    "stream_seed",
    "RunDirectory",
    "episode_to_json",
    "episode_from_json",
    "add_rlhf_parser",
    "cmd_rlhf",
    "SAMPLE_ENV_ID",
    "TRAIN_ENV_ID",
    "SCHEDULES",
    "SELECTIONS",
    "STATE_FILE",
]
