"""DPO and IPO: hand-computed losses, preference data checks, learning a preference, exact resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import rlhf_envs  # noqa: F401
from agents import DPO
from agents.dpo import dpo_loss, epoch_order, ipo_loss
from agents.preference_data import PreferencePairs
from rlhf_envs.errors import ConfigError, DataError, FeedbackError
from rlhf_envs.feedback.base import Episode
from rlhf_envs.feedback.simulated import Comparisons, Label
from tests.test_agents_lm import tiny_lm

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_dpo_and_ipo_losses_equal_the_hand_computed_ones_for_two_pairs():
    logp_a = torch.tensor([-3.0, -2.0])
    logp_b = torch.tensor([-5.0, -1.0])
    ref_a = torch.tensor([-4.0, -2.5])
    ref_b = torch.tensor([-4.0, -0.5])
    p = torch.tensor([1.0, 0.25])  # a hard label for A, then a soft label leaning to B
    beta = 0.5
    # margins h = (logp_a - ref_a) - (logp_b - ref_b): pair 1: 1 - (-1) = 2; pair 2: 0.5 - (-0.5) = 1
    loss, h = dpo_loss(logp_a, logp_b, ref_a, ref_b, p, beta)
    assert h.tolist() == [2.0, 1.0]
    l1 = -math.log(_sig(beta * 2.0))
    l2 = -(0.25 * math.log(_sig(beta * 1.0)) + 0.75 * math.log(_sig(-beta * 1.0)))
    assert float(loss) == pytest.approx((l1 + l2) / 2, rel=1e-6)
    # IPO: targets (2p - 1) / (2 beta) = 1 and -0.5; squared errors (2 - 1)^2 = 1, (1 + 0.5)^2 = 2.25
    loss, _ = ipo_loss(logp_a, logp_b, ref_a, ref_b, p, beta)
    assert float(loss) == pytest.approx((1.0 + 2.25) / 2, rel=1e-6)
    # a tie pulls the DPO margin to 0 (the gradient vanishes there), a hard label keeps pushing it up
    z = torch.zeros(1, requires_grad=True)
    dpo_loss(z, torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.tensor([0.5]), beta)[0].backward()
    assert float(z.grad) == 0.0


def ep(prompt_ids, completion_ids, prompt="p", completion="c") -> Episode:
    return Episode(prompt, completion, tuple(prompt_ids), tuple(completion_ids), True)


def pairs(n: int = 10, seed: int = 0, p: float = 1.0) -> PreferencePairs:
    """``n`` pairs over two prompts: A is always the same completion, B another one."""
    rng = np.random.default_rng(seed)
    prompts = [(5, 6, 7), (12, 13)]
    a, b = [], []
    for i in range(n):
        x = prompts[i % 2]
        a.append(ep(x, (8, 9, 10, 1)))
        b.append(ep(x, tuple(int(t) for t in rng.integers(14, 29, size=3)) + (1,)))
    return PreferencePairs.from_comparisons(a, b, [p] * n)


def agent(seed: int = 0, data: PreferencePairs | None = None, **kw) -> DPO:
    kw = {"n_envs": 4, "model": tiny_lm(), "learning_rate": 1e-2, "batch_size": 4, **kw}
    return DPO("RLHF/Reverse-v0", seed=seed, preferences=data if data is not None else pairs(), **kw)


def _seq_logp(ag: DPO, prompt, completion) -> float:
    from agents.dpo import pair_sequences

    d = PreferencePairs([tuple(prompt)], [tuple(completion)], [tuple(completion)], [1.0])
    obs, actions, mask = pair_sequences(d, [0], "cpu")
    with torch.no_grad():
        logp, _, _ = ag.policy.evaluate_batch(type("B", (), {"obs": obs, "actions": actions})())
    return float((logp * mask).sum(1)[0])


@pytest.mark.parametrize("loss", ["sigmoid", "ipo"])
def test_labels_favouring_one_completion_raise_its_probability(loss):
    a_ids = (8, 9, 10, 1)
    ag = agent(loss=loss)
    before = {x: _seq_logp(ag, x, a_ids) for x in [(5, 6, 7), (12, 13)]}
    calls = []
    ag.policy.ref_logprobs = lambda *args: calls.append(1)  # never needed again while training
    ag.learn(3 * ag.data_tokens, progress_bar=False)
    assert not calls and ag.iteration == 9 and ag.pairs_seen == 30  # 3 epochs of 10 pairs, 4 per step
    for x, lp in before.items():
        assert _seq_logp(ag, x, a_ids) > lp + 1.0, (x, lp)
    # the frozen reference is the initial policy: untouched by training
    assert _seq_logp_ref(ag, (5, 6, 7), a_ids) == pytest.approx(before[(5, 6, 7)], abs=1e-5)


def _seq_logp_ref(ag: DPO, prompt, completion) -> float:
    from agents.dpo import pair_sequences
    from agents.lm_actor_critic import LMActorCritic

    d = PreferencePairs([tuple(prompt)], [tuple(completion)], [tuple(completion)], [1.0])
    obs, actions, mask = pair_sequences(d, [0], "cpu")
    ref = LMActorCritic.ref_logprobs(ag.policy, obs, actions)
    return float((ref * mask).sum(1)[0])


def test_reference_logprobs_are_computed_once_per_pair_and_match_the_reference_model():
    ag = agent()
    assert ag.ref_logps.shape == (10, 2)
    for i in (0, 3):
        d = ag.preferences
        assert float(ag.ref_logps[i, 0]) == pytest.approx(
            _seq_logp_ref(ag, d.prompt_ids[i], d.a_ids[i]), abs=1e-5
        )
        assert float(ag.ref_logps[i, 1]) == pytest.approx(
            _seq_logp_ref(ag, d.prompt_ids[i], d.b_ids[i]), abs=1e-5
        )


def test_evaluate_returns_the_return_and_the_generation_metrics():
    out = agent().evaluate(4)
    assert {"mean_return", "kl_ref", "distinct_1", "distinct_2", "eos_rate", "ref_perplexity"} <= set(out)
    assert out["kl_ref"] == pytest.approx(0.0, abs=1e-5)  # untrained: the policy is the reference


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    total = 5 * 70  # tokens: a few epochs of 10 pairs with a short last step in each epoch
    full = agent(checkpoint_dir=str(tmp_path / "a"), checkpoint_every=2)
    full.learn(total, progress_bar=False)
    part = agent(checkpoint_dir=str(tmp_path / "b"), checkpoint_every=2)
    part.learn(total // 2, progress_bar=False)
    resumed = DPO.load(str(tmp_path / "b" / "last"))
    assert resumed.iteration % 2 == 0 and 0 < resumed.num_timesteps < total
    assert torch.equal(resumed.ref_logps, part.ref_logps)
    assert resumed.preferences.a_ids == part.preferences.a_ids
    assert np.array_equal(resumed.preferences.prob_a, part.preferences.prob_a)
    resumed.learn(total - resumed.num_timesteps, progress_bar=False, reset_num_timesteps=False)
    assert resumed.iteration == full.iteration and resumed.num_timesteps == full.num_timesteps
    assert resumed.pairs_seen == full.pairs_seen
    sa, sb = full.policy.state_dict(), resumed.policy.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_epochs_visit_every_pair_once_in_a_seeded_order():
    o0, o1 = epoch_order(3, 0, 10), epoch_order(3, 1, 10)
    assert sorted(o0.tolist()) == list(range(10)) and not np.array_equal(o0, o1)
    assert np.array_equal(o0, epoch_order(3, 0, 10))


def test_comparison_objects_and_soft_labels_are_accepted():
    a = [ep((5, 6), (8, 1)), ep((5, 6), (9, 1)), ep((7,), (8, 1)), ep((7,), (9, 1))]
    b = [ep((5, 6), (10, 1)), ep((5, 6), (11, 1)), ep((7,), (12, 1)), ep((7,), (13, 1))]
    codes = np.array([Label.A, Label.B, Label.TIE, Label.SKIP], dtype=np.int8)
    answers = Comparisons(codes, np.zeros(4, np.int64), np.zeros(4, np.int8), np.arange(4))
    d = PreferencePairs.from_comparisons(a, b, answers)
    assert d.prob_a.tolist() == [1.0, 0.0, 0.5] and d.n_skipped == 1 and len(d) == 3
    d = PreferencePairs.from_comparisons(a, b, [0.8, "B", "tie", None])
    assert d.prob_a.tolist() == [0.8, 0.0, 0.5]


def test_text_only_episodes_are_encoded_with_the_tokenizer():
    from rlhf_envs.tasks.toy import TOY_TOKENIZER as tok

    a = [Episode("", "ab", (), (), True)]
    b = [Episode("", "ba", (), (), False)]
    with pytest.raises(DataError, match="tokenizer="):
        PreferencePairs.from_comparisons(a, b, [1.0])
    d = PreferencePairs.from_comparisons(a, b, [1.0], tokenizer=tok)
    assert d.prompt_ids == [(tok.eos_id,)]  # an empty prompt starts from the end-of-text token
    assert d.a_ids == [(*tok.encode("ab"), tok.eos_id)] and d.b_ids == [tuple(tok.encode("ba"))]


def test_bad_preference_data_is_refused_with_a_clear_error():
    x = (5, 6)
    a, b = [ep(x, (8, 1)), ep(x, (9, 1))], [ep(x, (10, 1)), ep((7,), (11, 1))]
    with pytest.raises(DataError, match="pair 1 compares completions of different prompts"):
        PreferencePairs.from_comparisons(a, b, [1.0, 0.0])
    b[1] = ep(x, (11, 1))
    with pytest.raises(FeedbackError, match=r"label 1 is 1.5; a probability must be in \[0, 1\]"):
        PreferencePairs.from_comparisons(a, b, [1.0, 1.5])
    with pytest.raises(FeedbackError, match=r"label 0 is -0.1"):
        PreferencePairs.from_comparisons(a, b, [-0.1, 1.0])
    with pytest.raises(FeedbackError, match="integer"):
        PreferencePairs.from_comparisons(a, b, [0, 1])  # codes or probabilities? refused
    with pytest.raises(FeedbackError, match="integer array"):
        PreferencePairs.from_comparisons(a, b, np.array([0, 1]))
    with pytest.raises(FeedbackError, match="2 pairs but 3 labels"):
        PreferencePairs.from_comparisons(a, b, [1.0, 0.0, 1.0])
    with pytest.raises(DataError, match="empty"):
        PreferencePairs.from_comparisons([], [], [])
    with pytest.raises(DataError, match="all 2 queries were skipped"):
        PreferencePairs.from_comparisons(a, b, ["skip", None])
    with pytest.raises(DataError, match=r"prob_a must be in \[0, 1\]"):
        PreferencePairs([x], [(8,)], [(9,)], [float("nan")])
    with pytest.raises(DataError, match="outside the env's vocabulary"):
        agent(data=PreferencePairs([x], [(8, 99)], [(9,)], [1.0]))
    with pytest.raises(ConfigError, match="no preference data"):
        DPO("RLHF/Reverse-v0", model=tiny_lm(), n_envs=4).learn(10, progress_bar=False)
    with pytest.raises(ConfigError, match="loss"):
        DPO("RLHF/Reverse-v0", model=tiny_lm(), n_envs=4, loss="hinge")
    with pytest.raises(ConfigError, match="beta"):
        DPO("RLHF/Reverse-v0", model=tiny_lm(), n_envs=4, beta=0.0)


def test_pairs_from_the_web_apps_label_store(tmp_path):
    from agents.human.store import Completion, LabelStore

    store = LabelStore(tmp_path / "labels.sqlite")
    store.ensure_experiment("dpo")
    comps = [Completion("good", token_ids=[8, 9, 1]), Completion("bad", token_ids=[10, 1])]
    qid = store.enqueue("dpo", "pairwise", "k1", "x", comps, raters=2, meta={"prompt_ids": [5, 6]})
    q2 = store.enqueue("dpo", "pairwise", "k2", "x", comps, meta={"prompt_ids": [5, 6]})
    store.submit(store.rater_id("ann"), qid, choice="A", shown=False)
    store.submit(store.rater_id("bob"), qid, choice="tie", shown=False)
    store.submit(store.rater_id("ann"), q2, choice="skip", shown=False)  # no usable answer
    d = PreferencePairs.from_label_store(store, "dpo")
    assert d.prob_a.tolist() == [0.75] and d.prompt_ids == [(5, 6)]
    assert d.a_ids == [(8, 9, 1)] and d.b_ids == [(10, 1)]
    with pytest.raises(DataError, match="no answered pairwise query"):
        PreferencePairs.from_label_store(store, "other")
    store.close()


def test_cli_trains_dpo_on_comparisons_of_the_tasks_simulated_human(capsys, tmp_path):
    import json

    from agents.cli_train import main

    argv = ["--algo", "dpo", "--env", "RLHF/Sentiment-v0", "--steps", "300", "--pairs", "8"]
    argv += ["--n-envs", "4", "--eval-episodes", "2", "--save", str(tmp_path / "dpo")]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["algo"] == "dpo" and out["preset"] == "lm-default-dpo"
    assert out["preferences"]["pairs"] + out["preferences"]["skipped"] == 8
    assert out["timesteps"] >= 300 and {"mean_return", "kl_ref", "distinct_2"} <= set(out)
    loaded = DPO.load(out["saved"])
    assert len(loaded.preferences) == out["preferences"]["pairs"] and loaded.num_timesteps == out["timesteps"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--algo", "ppo", "--pairs", "8"], "--pairs are options of --algo dpo"),
        (["--algo", "dpo", "--pairs", "0"], "--pairs must be a positive number"),
        (["--algo", "dpo", "--label-store", "x.db"], "--label-store and --experiment go together"),
    ],
)
def test_cli_refuses_bad_dpo_options(capsys, extra, message):
    from agents.cli_train import main

    assert main(["--env", "RLHF/Sentiment-v0", "--steps", "10", *extra]) == 2
    assert message in capsys.readouterr().err


def test_training_logs_the_loss_and_the_evaluation_to_the_log_dir(tmp_path):
    import csv

    ag = agent(log_dir=str(tmp_path), tensorboard=False)
    ag.learn(ag.data_tokens, progress_bar=False)
    ag.evaluate(2)
    with open(tmp_path / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == ag.iteration == 3
    assert {"loss", "pref_accuracy", "reward_margin", "grad_norm", "epoch"} <= set(rows[0])
    assert float(rows[-1]["epoch"]) == 1.0
    assert (tmp_path / "evaluations.csv").is_file()


def test_recorded_raters_comparisons_of_sentences_train_the_embedded_model():
    from rlhf_envs.data.hutto2014 import RatedSentence
    from rlhf_envs.feedback.recorded import RecordedRaters, episode_for

    records = [
        RatedSentence("movies", "1", "A wonderful film, I loved it.", 2.5, (3, 2, 3, 3)),
        RatedSentence("movies", "2", "A dull film, I hated it.", -2.5, (-3, -2, -3, -3)),
    ]
    a, b = [episode_for(records[0])] * 4, [episode_for(records[1])] * 4
    answers = RecordedRaters(records, seed=0).compare(a, b)  # real ratings: A wins every time
    ag = DPO(
        "RLHF/Sentiment-v0",
        seed=0,
        model="default",
        n_envs=4,
        learning_rate=1e-4,
        preferences=(a, b, answers),
    )
    tok = ag.env.task.tokenizer
    assert ag.preferences.prompt_ids[0] == (tok.eos_id,) and ag.preferences.prob_a.tolist() == [1.0] * 4
    assert ag.preferences.a_ids[0] == (*tok.encode(records[0].text), tok.eos_id)
    ag.learn(4 * ag.data_tokens, progress_bar=False)
    _, terms = ag.loss([0, 1])
    assert float(terms["margin"]) > 0.5 and float(terms["pref_accuracy"]) == 1.0


def test_sampled_comparisons_carry_the_prompt_metadata_the_gold_needs():
    """Length's gold reads ``target_words`` from each episode: sampled pairs must carry it."""
    import gymnasium as gym

    from agents.preference_data import sample_comparisons
    from rlhf_envs.feedback.simulated import SimulatedHuman

    agent = DPO("RLHF/Length-v0", seed=0, model="default", n_envs=4)
    env = gym.make_vec("RLHF/Length-v0", num_envs=1, vectorization_mode="vector_entry_point")
    human = SimulatedHuman(env.task.feedback, "Oracle", seed=0)
    env.close()
    a, b, answers, info = sample_comparisons(agent, 3, human, seed=1)
    assert len(a) == len(b) == len(answers.prob_a()) == 3
    for x, y in zip(a, b, strict=True):
        assert x.prompt == y.prompt
        words = int(x.prompt.split(" words)")[0].lstrip("("))
        assert x.metadata["target_words"] == y.metadata["target_words"] == words
    agreement = info["label_gold_agreement"]  # the Oracle rater follows the gold on every decisive pair
    assert math.isnan(agreement) or agreement == 1.0
