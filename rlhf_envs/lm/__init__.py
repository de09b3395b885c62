"""Language models: loading (``loading``), the one KV-cached decoder (``decoder``, with its inference
kernels in ``kernels``) and the one sampler (``sampling``), the embedded default's corpus
(``corpus``) and pretraining (``pretrain``), and the base model as a sampling policy for evaluation
(``policy``). Nothing here imports the rest of the suite (envs, tasks, feedback).

Importing this package does not import torch or transformers; the submodules do when used.
"""

from rlhf_envs.lm.loading import DEFAULT_MODEL_DIR, load_causal_lm, load_tokenizer, resolve_model_path

__all__ = ["DEFAULT_MODEL_DIR", "load_causal_lm", "load_tokenizer", "resolve_model_path"]
