"""Per-token marks from the rating app's store feed the RLHF loop's reward-model fit (dense targets)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from agents.human.store import Completion, LabelStore
from agents.rlhf.reward_fitting import fit_reward_model, token_mark_targets
from rlhf_envs.feedback.base import Episode
from rlhf_envs.feedback.prefix import LearnedPrefixScorer, as_batch

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _store_with_marks(tmp_path, tok) -> tuple[LabelStore, list[Episode]]:
    """Two raters mark the tokens of four completions on the store (through its Python API)."""
    store = LabelStore(tmp_path / "labels.sqlite")
    store.ensure_experiment("dense")
    texts = [("I bought this phone.", " It is great"), ("We ate here.", " The food was awful")]
    eps = []
    for i, (p, c) in enumerate(texts * 2):
        pid, cid = tok.encode(p), tok.encode(c) + [tok.eos_id]
        eps.append(Episode(p, c, tuple(pid), tuple(cid), True, {}, i))
    qids = []
    for i, e in enumerate(eps):
        comp = Completion(
            e.completion, [tok.decode([t]) for t in e.completion_ids], list(e.completion_ids), True
        )
        qids.append(
            store.enqueue(
                "dense", "per_token", f"q{i}", e.prompt, [comp], meta={"prompt_ids": list(e.prompt_ids)}
            )
        )
    a, b = store.rater_id("ann"), store.rater_id("bob")
    for q, e in zip(qids, eps, strict=True):
        last = len(e.completion_ids) - 2  # the sentiment word before EOS
        sign = 1 if "great" in e.completion else -1
        store.submit(a, q, marks={last: sign}, shown=False)
        store.submit(b, q, marks={last: sign, 0: -sign}, shown=False)
    return store, eps


@pytest.mark.slow
def test_web_token_marks_reach_the_loop_fit(tmp_path) -> None:
    from agents.rlhf import RLHFConfig
    from rlhf_envs.lm.loading import load_tokenizer

    tok = load_tokenizer(None)
    store, eps = _store_with_marks(tmp_path, tok)
    assert token_mark_targets(SimpleNamespace()) == []  # a human without a store gives none
    targets = token_mark_targets(SimpleNamespace(store=store, experiment="dense"))
    assert len(targets) == 4
    for (ep, marks), want in zip(targets, eps, strict=True):
        assert ep.completion_ids == want.completion_ids and ep.prompt_ids == want.prompt_ids
        sign = 1 if "great" in want.completion else -1
        expected = np.zeros(len(want.completion_ids))
        expected[-2], expected[0] = sign, -sign / 2  # mean over the two raters
        np.testing.assert_allclose(marks, expected)
    cfg = RLHFConfig(n_members=1, selection="random", rm_epochs=30, rm_lr=1e-3)
    rm, log = fit_reward_model(cfg, eps[:2], eps[2:], [1.0, 0.0], seed=0, token_marks=targets)
    assert log["rm_mark_episodes"] == 4 and np.isfinite(log["rm_marks_loss"])
    table = LearnedPrefixScorer(rm, tok).score_prefixes(as_batch([e for e, _ in targets], tok.pad_id))
    for b, (_, marks) in enumerate(targets):
        steps = np.diff(table[b, : len(marks) + 1])
        assert np.sign(steps[-2]) == np.sign(marks[-2])  # the marked word moves the potential its way
    _, plain = fit_reward_model(cfg, eps[:2], eps[2:], [1.0, 0.0], seed=0)
    assert "rm_mark_episodes" not in plain
