"""The mixed pretraining corpus: the ChatterBot loader, keeping held-out sentences out, pretrain's
extra documents."""

from __future__ import annotations

import io
import os
import tarfile

import numpy as np
import pytest

from rlhf_envs.data import chatterbot_corpus as cb
from rlhf_envs.data import hutto2014
from rlhf_envs.data.pretrain_mix import MixConfig, held_out_texts, leaking, real_text
from rlhf_envs.errors import DataError, DataUnavailableError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- the ChatterBot loader ---------------------------------------------------------------------------


def test_parse_file_reads_turns_bare_strings_and_numbers(tmp_path):
    path = tmp_path / "food.yml"
    path.write_text(
        "categories:\n- food\nconversations:\n"
        "- - Do you like   cheese?\n  - Yes, very much.\n"
        "- - What is six times seven?\n  - 42\n"
        "- A bare question? - 'an answer'\n"
        "- - ''\n  - Only this turn counts.\n",
        encoding="utf-8",
    )
    d = cb.parse_file(path)
    assert [x.turns for x in d] == [
        ("Do you like   cheese?", "Yes, very much."),
        ("What is six times seven?", "42"),
        ("A bare question? - 'an answer'",),
        ("Only this turn counts.",),
    ]
    assert d[0].topic == "food" and [x.index for x in d] == [0, 1, 2, 3]
    assert d[0].text == "Do you like cheese? Yes, very much."


@pytest.mark.parametrize(
    "body, what",
    [
        ("conversations: 3\n", "'conversations' list"),
        ("conversations:\n- - fine\n- {a: 1}\n", "conversation 1"),
        ("conversations:\n- - fine\n  - [nested]\n", "conversation 0, turn 1"),
        ("conversations: [unclosed\n", "UTF-8 YAML"),
    ],
)
def test_parse_file_reports_malformed_files_by_name(tmp_path, body, what):
    path = tmp_path / "bad.yml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(DataError, match=what) as info:
        cb.parse_file(path)
    assert str(path) in str(info.value)


def _sdist(tmp_path, members: dict[str, bytes]):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
    path = tmp_path / cb.SDIST_FILENAME
    path.write_bytes(buf.getvalue())
    return path


def test_fetch_refuses_an_sdist_that_is_not_the_pinned_one(tmp_path):
    sdist = _sdist(tmp_path, {f"chatterbot_corpus-{cb.SDIST_VERSION}/license.md": b"x"})
    with pytest.raises(DataError, match="does not match the pinned"):
        cb.fetch(tmp_path / "cache", sdist=sdist)
    assert not cb.data_dir(tmp_path / "cache").exists()


def test_no_cache_and_no_registry_gives_one_clear_message(tmp_path, monkeypatch):
    for k, v in {
        "PIP_INDEX_URL": "http://127.0.0.1:9/",
        "PIP_NO_INDEX": "1",
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_CACHE_DIR": "1",
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "2",
    }.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(DataUnavailableError) as info:
        cb.load(tmp_path / "empty")
    msg = str(info.value)
    assert "rlhf-envs data fetch chatterbot_corpus" in msg and "chatterbot-corpus==1.3.3" in msg
    assert "pip said" in msg and not cb.data_dir(tmp_path / "empty").exists()


def test_real_chatterbot_corpus_loads():
    """Fetched from PyPI by the first run (checksummed), then read from the cache."""
    d = cb.load()
    assert len(d) == cb.EXPECTED_CONVERSATIONS == 2026
    assert sum(len(x.turns) for x in d) == 4332
    assert {x.topic for x in d} == {n[:-4] for n in cb.YAML_FILES}
    assert (cb.data_dir() / "license.md").read_text().startswith("Copyright (c) 2017, Gunther Cox")


# -- keeping held-out sentences out ------------------------------------------------------------------


def test_leaking_finds_equal_and_quoting_documents_only():
    held = ["wow!", "this film was a total waste of time."]
    docs = [
        "wow!",  # equal to a short held-out text: dropped
        "wow! what a day.",  # contains a short one: kept (ordinary phrase)
        "Honestly,  this film was a total waste of time. Skip it.",  # quotes a long one
        "this film was a total waste",  # a prefix only: kept
    ]
    assert leaking(docs, held, min_words=4) == {0, 2}


def test_mixed_corpus_keeps_every_validation_and_test_sentence_out():
    """No held-out sentence is a training document, and none of four or more words occurs anywhere
    in the training text, generated part included."""
    from rlhf_envs.lm.corpus import generate_corpus
    from rlhf_envs.lm.pretrain import PretrainConfig

    held = held_out_texts()
    assert len(held) > 6000  # validation + test of all four domains
    real = real_text(MixConfig())
    docs = real.training_documents()
    assert len(docs["rated_train"]) == 2 * len(real.sources["rated_train"]) > 2 * 16000
    assert all(hutto2014.split_of(t) == "train" for t in real.sources["rated_train"])
    assert len(real.dropped["rated_train"]) == 4  # NYT/tweet snippets quoting held-out ones
    cfg = PretrainConfig()
    generated = generate_corpus(cfg.n_documents, seed=cfg.seed)[
        : -int(cfg.n_documents * cfg.held_out_fraction)
    ]
    training = [hutto2014.normalize_text(t) for v in docs.values() for t in v] + generated
    as_documents = set(training)
    assert not [h for h in held if h in as_documents]
    joined = "\x00".join(training)
    long = [h for h in held if len(h.split()) >= 4]
    assert len(long) > 5000
    assert not [h for h in long if h in joined]


def test_pretrain_mixes_extra_documents_and_records_them(tmp_path):
    from rlhf_envs.lm.loading import load_tokenizer
    from rlhf_envs.lm.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(
        n_documents=200,
        vocab_size=420,
        n_layer=1,
        n_embd=32,
        n_head=2,
        n_positions=64,
        block_size=64,
        batch_size=4,
        steps=2,
        warmup=1,
        threads=1,
    )
    extra = {"real": ["Quixotic zephyrs quizzically jolt my knapsack."] * 40}
    a = pretrain(tmp_path / "a", cfg, log=False, extra_documents=extra, corpus_info={"corpus": "test"})
    b = pretrain(tmp_path / "b", cfg, log=False, extra_documents=extra, corpus_info={"corpus": "test"})
    assert a["held_out_perplexity"] == b["held_out_perplexity"]
    c = a["corpus"]
    assert c["corpus"] == "test"
    assert c["train_documents_by_source"] == {"generated": 196, "real": 40}
    assert 0 < c["train_token_share_by_source"]["real"] < 1
    assert np.isclose(sum(c["train_token_share_by_source"].values()), 1.0, atol=1e-3)
    # the extra text shaped the tokenizer: its words are now whole tokens
    tok = load_tokenizer(tmp_path / "a")
    assert len(tok.encode(" zephyrs")) == 1
    plain = pretrain(tmp_path / "c", cfg, log=False)
    assert "corpus" not in plain and len(load_tokenizer(tmp_path / "c").encode(" zephyrs")) > 1
