"""Real text for pretraining the embedded model: the ``mixed`` corpus of ``rlhf-envs pretrain``.

``rlhf-envs pretrain --corpus mixed`` trains the tokenizer and the model on the generated grammar
corpus (:mod:`rlhf_envs.lm.corpus`, as for the shipped model) *plus* real English the project may
use, so that the backbone of the reward models can read real sentences (issue 16, item 2):

* ``rated_train``: the rated sentences of Hutto & Gilbert (ICWSM 2014; MIT licence;
  :mod:`rlhf_envs.data.hutto2014`), **train split only**, all four domains, one document per
  sentence. Validation and test sentences are held out of pretraining as they are of every fit.
* ``dialogues``: the English conversations of the ``chatterbot-corpus`` 1.3.3 package (BSD-3-Clause;
  :mod:`rlhf_envs.data.chatterbot_corpus`), one document per conversation (turns joined by spaces).

Keeping the held-out sentences out. Every held-out (validation or test) sentence is compared, in
whitespace-normalised form, with every real training document: a document is dropped if it *equals*
a held-out sentence, or if a held-out sentence of :attr:`MixConfig.min_leak_words` or more words
occurs in it as a substring (a few NYT training snippets quote a held-out one). Held-out texts of
one to three words ("wow!", "Of course!", "perfect.") are ordinary English phrases that no real
corpus can avoid, so they only count when they are the whole document. The generated corpus is
written by the project's grammar; the tests check it holds no held-out sentence of four or more words.

The mix. Real documents are repeated (``rated_repeats``, ``dialogue_repeats`` times, default 2
each) and shuffled with the generated documents by the pretraining run's seed. With the defaults,
the 40,000 generated documents and a 4,096-token BPE, 46% of the 2.45M training tokens are real
text: generated 1,321,193 tokens (54.0%), rated sentences 1,015,804 (41.5%), dialogues 111,208
(4.5%) (the run's ``training_info.json`` records these counts and shares). The generated
corpus's held-out 2% stays the held-out set of pretraining, so held-out perplexity on generated
text is comparable with the shipped model's.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

from rlhf_envs.data import chatterbot_corpus, hutto2014
from rlhf_envs.data.hutto2014 import normalize_text

CORPORA = ("generated", "mixed")


@dataclass(frozen=True)
class MixConfig:
    """The real part of the mixed corpus (the defaults built the candidate measured in
    ``benchmarks/results/backbone_english.json``)."""

    rated_repeats: int = 2
    dialogue_repeats: int = 2
    include_dialogues: bool = True
    min_leak_words: int = 4


@dataclass
class RealText:
    """The real training documents by source (each once), what was dropped, and the mix settings."""

    sources: dict[str, list[str]]
    repeats: dict[str, int]
    dropped: dict[str, list[str]] = field(default_factory=dict)
    config: MixConfig = field(default_factory=MixConfig)

    def training_documents(self) -> dict[str, list[str]]:
        """Each source's documents repeated its number of times (the pretraining input)."""
        return {s: docs * self.repeats[s] for s, docs in self.sources.items()}

    def describe(self) -> dict:
        """Counts and settings for ``training_info.json``."""
        return {
            "corpus": "mixed",
            "mix": asdict(self.config),
            "real_sources": {
                s: {
                    "documents": len(d),
                    "words": sum(len(x.split()) for x in d),
                    "repeats": self.repeats[s],
                    "dropped_as_held_out_overlap": len(self.dropped.get(s, [])),
                }
                for s, d in self.sources.items()
            },
            "sources_licences": {
                "generated": "the project's grammar (MIT)",
                "rated_train": "Hutto & Gilbert (ICWSM 2014), vaderSentiment 3.3.2 sdist, MIT; train split only",
                "dialogues": f"chatterbot-corpus {chatterbot_corpus.SDIST_VERSION}, {chatterbot_corpus.LICENSE}",
            },
        }


def held_out_texts(root: str | os.PathLike | None = None) -> list[str]:
    """The whitespace-normalised texts of every validation and test sentence (all domains)."""
    return sorted({normalize_text(r.text) for r in hutto2014.load(root=root) if r.split != "train"})


def leaking(documents: list[str], held_out: list[str], min_words: int) -> set[int]:
    """Indices of ``documents`` that equal a held-out text, or contain one of ``min_words``+ words."""
    norm = [normalize_text(d) for d in documents]
    exact = set(held_out)
    out = {i for i, d in enumerate(norm) if d in exact}
    long = [h for h in held_out if len(h.split()) >= min_words]
    joined = "\x00".join(norm)
    starts, pos = [], 0
    for d in norm:
        starts.append(pos)
        pos += len(d) + 1
    import bisect

    for h in long:
        at = joined.find(h)
        while at != -1:
            out.add(bisect.bisect_right(starts, at) - 1)
            at = joined.find(h, at + 1)
    return out


def real_text(config: MixConfig | None = None, root: str | os.PathLike | None = None) -> RealText:
    """The real training documents of the mixed corpus (fetching the data sets at first use)."""
    cfg = config or MixConfig()
    held = held_out_texts(root)
    sources = {"rated_train": [normalize_text(r.text) for r in hutto2014.load(split="train", root=root)]}
    repeats = {"rated_train": cfg.rated_repeats}
    if cfg.include_dialogues:
        sources["dialogues"] = [d.text for d in chatterbot_corpus.load(root=root)]
        repeats["dialogues"] = cfg.dialogue_repeats
    dropped = {}
    for s, docs in sources.items():
        bad = leaking(docs, held, cfg.min_leak_words)
        dropped[s] = [docs[i] for i in sorted(bad)]
        sources[s] = [d for i, d in enumerate(docs) if i not in bad]
    return RealText(sources, repeats, dropped, cfg)
