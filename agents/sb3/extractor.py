"""A token features extractor for SB3 policies on the text envs' Dict(input_ids, attention_mask).

SB3 casts every Box observation to float32 before the extractor; token ids are exact integers in
float32 up to 2**24, so the extractor turns them back with ``.long()`` and embeds them. A small
causal sequence encoder then reads the prefix and the features are the hidden state at the last
real token: the same readout a causal language model uses to predict the next token, which is
what the policy does here. (SB3's default for Dict observations, ``MultiInputPolicy``, flattens
the raw ids as floats, which makes token identity almost unlearnable.)

Encoders:

* ``"transformer"`` (default): learned token + position embeddings, ``n_layers`` pre-norm causal
  self-attention blocks, final LayerNorm;
* ``"gru"``: the same embeddings, a GRU over the prefix;
* ``"lm"``: the transformer body of a causal LM (the embedded default GPT-2 or ``lm=path``), a
  private trainable copy; with :func:`init_action_head_from_lm` the SB3 policy then starts as
  exactly that language model (logits = LM logits), as in RL4LMs/NLPO.

``lm=`` with the ``"transformer"`` or ``"gru"`` encoder initialises only the embeddings from the LM
(``embed_dim`` becomes the LM width).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from rlhf_envs.errors import ConfigError

ENCODERS = ("transformer", "gru", "lm")


def _load_lm(lm: Any) -> Any:
    """A private, trainable copy of a causal LM from an instance, a path, ``"default"`` or ``True``."""
    if isinstance(lm, nn.Module):
        import copy

        model = copy.deepcopy(lm)
    else:
        from rlhf_envs.lm.loading import load_causal_lm

        model = load_causal_lm(None if lm in (True, "default") else lm, cache=False)
    model.requires_grad_(True)
    model.train()
    return model


class TokenFeaturesExtractor(BaseFeaturesExtractor):
    """Embeddings plus a small causal sequence encoder; features = the last real token's state.

    Args:
        observation_space: ``Dict(input_ids=Box(int, (L,)), attention_mask=Box(int, (L,)))``.
        embed_dim: width of embeddings and encoder (ignored with ``lm``: the LM's width).
        encoder: ``"transformer"``, ``"gru"`` or ``"lm"`` (see the module doc).
        n_layers: encoder depth (transformer/GRU).
        n_heads: attention heads (transformer).
        lm: ``None``, ``True``/``"default"`` (the embedded model), a path, or a ``transformers``
            causal LM instance to initialise from (required for ``encoder="lm"``).
    """

    def __init__(
        self,
        observation_space: gym.spaces.Dict,
        embed_dim: int = 64,
        encoder: str = "transformer",
        n_layers: int = 2,
        n_heads: int = 4,
        lm: Any = None,
    ) -> None:
        if not isinstance(observation_space, gym.spaces.Dict) or set(observation_space.spaces) != {
            "input_ids",
            "attention_mask",
        }:
            raise ConfigError(
                f"TokenFeaturesExtractor needs Dict(input_ids, attention_mask) observations, got {observation_space}"
            )
        if encoder not in ENCODERS:
            raise ConfigError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
        ids_space = observation_space["input_ids"]
        vocab = int(ids_space.high.max()) + 1
        length = int(ids_space.shape[0])
        model = None
        if encoder == "lm" and lm is None:
            lm = True
        if lm is not None and lm is not False:
            model = _load_lm(lm)
            embed_dim = int(
                model.config.n_embd if hasattr(model.config, "n_embd") else model.config.hidden_size
            )
            if model.get_input_embeddings().weight.shape[0] < vocab:
                raise ConfigError(
                    f"the LM has {model.get_input_embeddings().weight.shape[0]} token embeddings but the env's "
                    f"vocabulary has {vocab} tokens"
                )
        super().__init__(observation_space, features_dim=embed_dim)
        self.encoder_type = encoder
        self.vocab_size, self.length = vocab, length
        if encoder == "lm":
            # The LM body (embeddings, blocks, final norm); its lm_head is not part of the extractor.
            self.body = model.base_model
            self.lm_head_weight = model.get_output_embeddings().weight.detach().clone()
            return
        self.tok = nn.Embedding(vocab, embed_dim)
        self.pos = nn.Embedding(length, embed_dim)
        if model is not None:
            with torch.no_grad():
                self.tok.weight.copy_(model.get_input_embeddings().weight[:vocab])
                wpe = getattr(model.base_model, "wpe", None)
                if wpe is not None and wpe.weight.shape[0] >= length:
                    self.pos.weight.copy_(wpe.weight[:length])
        else:
            nn.init.normal_(self.tok.weight, std=0.02)
            nn.init.normal_(self.pos.weight, std=0.02)
        if encoder == "transformer":
            layer = nn.TransformerEncoderLayer(
                embed_dim,
                n_heads,
                dim_feedforward=4 * embed_dim,
                dropout=0.0,
                batch_first=True,
                norm_first=True,
            )
            self.blocks = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
            self.register_buffer(
                "causal",
                torch.triu(torch.full((length, length), float("-inf")), diagonal=1),
                persistent=False,
            )
        else:
            self.blocks = nn.GRU(embed_dim, embed_dim, num_layers=n_layers, batch_first=True)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        ids = observations["input_ids"].long()
        attn = observations["attention_mask"].long()
        last = attn.sum(1).clamp(min=1) - 1
        width = int(last.max()) + 1  # everything after the longest prefix is padding
        ids, attn = ids[:, :width], attn[:, :width]
        rows = torch.arange(ids.shape[0], device=ids.device)
        if self.encoder_type == "lm":
            h = self.body(input_ids=ids, attention_mask=attn).last_hidden_state
            return h[rows, last]
        x = self.tok(ids) + self.pos.weight[:width]
        if self.encoder_type == "transformer":
            # Right padding + causal attention: no real position ever attends to a pad.
            x = self.blocks(x, mask=self.causal[:width, :width], is_causal=True)
        else:
            x, _ = self.blocks(x)
        return self.norm(x[rows, last])


def init_action_head_from_lm(model: Any) -> None:
    """Make an SB3 actor-critic policy start as its extractor's language model.

    Copies the LM's output embedding into ``policy.action_net`` (zero bias), so with
    ``net_arch=dict(pi=[], vf=[...])`` the policy's logits equal the LM's logits. Needs
    ``encoder="lm"`` and no hidden ``pi`` layers.
    """
    policy = model.policy
    extractor = (
        policy.pi_features_extractor
        if hasattr(policy, "pi_features_extractor")
        else policy.features_extractor
    )
    if getattr(extractor, "encoder_type", None) != "lm":
        raise ConfigError("init_action_head_from_lm needs a TokenFeaturesExtractor with encoder='lm'")
    head: nn.Linear = policy.action_net
    w = extractor.lm_head_weight
    if head.weight.shape[1] != w.shape[1] or policy.mlp_extractor.latent_dim_pi != w.shape[1]:
        raise ConfigError(
            "init_action_head_from_lm needs net_arch with pi=[] (features go straight to the head)"
        )
    with torch.no_grad():
        head.weight.copy_(w[: head.weight.shape[0]].to(head.weight))
        head.bias.zero_()
