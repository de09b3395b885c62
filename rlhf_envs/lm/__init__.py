"""Language models: loading (``loading``), the embedded default's corpus (``corpus``) and pretraining
(``pretrain``), and the base model as a sampling policy for evaluation (``policy``).

Importing this package does not import torch or transformers; the submodules do when used.
"""

from rlhf_envs.lm.loading import DEFAULT_MODEL_DIR, load_causal_lm, load_tokenizer, resolve_model_path

__all__ = ["DEFAULT_MODEL_DIR", "load_causal_lm", "load_tokenizer", "resolve_model_path"]
