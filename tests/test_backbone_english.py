"""benchmarks/backbone_english.py: the base-model sentiment score of a backbone (seeded, bounded)."""

from __future__ import annotations

import pytest

from benchmarks import backbone_english as be

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_sentiment_base_score_is_seeded_and_in_range():
    from rlhf_envs.lm.loading import load_causal_lm, load_tokenizer

    tok, lm = load_tokenizer(), load_causal_lm()
    a = be.sentiment_base_score(tok, lm, n_prompts=6, max_new_tokens=8, seed=1)
    b = be.sentiment_base_score(tok, lm, n_prompts=6, max_new_tokens=8, seed=1)
    assert a == b and a["prompts"] == 6
    assert -1 <= a["mean_reward"] <= 1 and a["share_positive"] + a["share_negative"] <= 1
    assert all(" || " in s and len(s.split(" || ")[1]) > 0 for s in a["samples"])


def test_missing_candidate_says_how_to_build_it(tmp_path):
    with pytest.raises(SystemExit, match="rlhf-envs pretrain --corpus mixed"):
        be.main(["--candidate", str(tmp_path / "none"), "--out", str(tmp_path)])
