"""The language-model actor-critic: a causal LM (the actor), a value head, and a frozen reference copy.

Used by ``policy="lm"`` agents (PPO, A2C, REINFORCE). During a rollout the trained LM samples
through the suite's one KV-cached decoder (:meth:`LMActorCritic.decoder`, see
:mod:`rlhf_envs.lm.decoder`), and the value head reads the decoder's hidden states; afterwards whole
sequences (prompt + completion) go through the frozen reference model (log-probs) in one batched
pass (:meth:`LMActorCritic.ref_logprobs`; :meth:`LMActorCritic.values_and_ref_logprobs` also
scores values with a policy pass), and :meth:`LMActorCritic.evaluate_batch` is the training pass.
Standard GPT-2 models run these passes through :func:`rlhf_envs.lm.gpt2_forward.gpt2_hidden_states`. Every pass restricts the logits to the env's ``n_actions`` first ids and divides them
by the same temperature (anything else would bias the KL estimate).

The value head is a linear layer on the LM's final hidden state, initialised near zero.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from gymnasium import spaces
from torch import nn

from agents.envs import is_token_space
from agents.rollout import Batch
from rlhf_envs.errors import ConfigError
from rlhf_envs.lm.decoder import Decoder, make_decoder
from rlhf_envs.lm.gpt2_forward import fast_forward_supported, gpt2_hidden_states
from rlhf_envs.lm.loading import position_ids


def model_from_meta(meta: dict[str, Any]) -> nn.Module:
    """Rebuild an untrained LM of the architecture recorded in a checkpoint (weights load after)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg_dict = dict(meta["lm_config"])
    model_type = cfg_dict.pop("model_type")
    config = AutoConfig.for_model(model_type, **cfg_dict)
    with torch.random.fork_rng(devices=[]):
        return AutoModelForCausalLM.from_config(config)


def model_source(lm: Any) -> str | None:
    """The directory an LM instance was loaded from, if it still holds a tokenizer (else None:
    a model built in memory carries no tokenizer to compare)."""
    name = getattr(getattr(lm, "config", None), "_name_or_path", None) or getattr(lm, "name_or_path", None)
    if isinstance(name, str) and name and (Path(name) / "tokenizer.json").is_file():
        return str(Path(name).resolve())
    return None


def env_tokenizer(env: Any) -> Any:
    """The tokenizer of a suite env (its task's), single or vector, or None for other envs."""
    for candidate in (env, getattr(env, "unwrapped", None)):
        tok = getattr(getattr(candidate, "task", None), "tokenizer", None)
        if tok is not None:
            return tok
    envs = getattr(env, "envs", None)  # gymnasium's SyncVectorEnv / AsyncVectorEnv wrappers
    if envs:
        return env_tokenizer(envs[0])
    return None


def check_env_tokenizer(env: Any, source: str, shown: str) -> None:
    """Raise :class:`~rlhf_envs.errors.ModelFilesError` unless the env's tokenizer is the one saved
    with the model in ``source`` (same vocabulary, ids, pad and EOS), naming both sides.

    A policy reads the env's token ids; with another tokenizer every id means another token (the
    BPE default model on the 30-character toy vocabulary of ``RLHF/Copy-v0``), and training runs
    without any other error. Skipped for envs that are not the suite's (no task tokenizer).
    """
    from rlhf_envs.errors import ModelFilesError
    from rlhf_envs.lm.loading import load_tokenizer, tokenizer_source
    from rlhf_envs.tokenization import same_tokenizer

    env_tok = env_tokenizer(env)
    if env_tok is None:
        return
    model_tok = load_tokenizer(source)
    if not same_tokenizer(env_tok, model_tok):
        env_name = getattr(getattr(env, "spec", None), "id", None) or getattr(
            getattr(getattr(env, "unwrapped", env), "spec", None), "id", None
        )
        raise ModelFilesError(
            f"policy='lm': the model {shown!r} and the env {env_name or type(env).__name__} use different "
            f"tokenizers: the model's is {tokenizer_source(model_tok)} ({model_tok.vocab_size} tokens, pad "
            f"{model_tok.pad_id}, EOS {model_tok.eos_id}), the env's is {env_tok!r} ({env_tok.vocab_size} "
            f"tokens, pad {env_tok.pad_id}, EOS {env_tok.eos_id}); the policy would read the env's ids as other "
            "tokens. Use a language env on this model (env_kwargs={'model': ...}), or pass model= a causal LM "
            "instance built for the env's vocabulary"
        )


class LMActorCritic(nn.Module):
    """A causal LM (the actor), a value head on its last hidden state, and a frozen reference copy.

    The LM passed in is trained in place; the reference is a deep copy taken at construction.
    Logits are restricted to the env's ``n_actions`` first ids (the env's vocabulary) and divided by
    ``temperature`` in every pass.
    """

    def __init__(
        self,
        lm: nn.Module,
        n_actions: int,
        temperature: float,
        value_init_std: float,
        generator: torch.Generator,
        value_head: bool = True,
    ) -> None:
        super().__init__()
        self.lm = lm
        self.ref = copy.deepcopy(lm)
        for p in self.ref.parameters():
            p.requires_grad_(False)
        self.ref.eval()
        self.n_actions = int(n_actions)
        self.temperature = float(temperature)
        #: the directory whose tokenizer the LM was saved with (None for a model built in memory)
        self.tokenizer_source: str | None = None
        hidden = int(lm.get_output_embeddings().weight.shape[1])
        #: ``None`` for the critic-free agents (RLOO, GRPO, ES): no value model, values are zeros
        self.value_head: nn.Linear | None = None
        if value_head:
            self.value_head = nn.Linear(hidden, 1)
            with torch.no_grad():
                self.value_head.weight.normal_(0.0, value_init_std, generator=generator)
                self.value_head.bias.zero_()
        self.train()

    def train(self, mode: bool = True) -> LMActorCritic:
        """Dropout stays off in both LMs: rollout, reference and training passes must agree."""
        super().train(mode)
        self.lm.eval()
        self.ref.eval()
        return self

    @classmethod
    def from_config(
        cls,
        cfg: Any,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        generator: torch.Generator,
        env: Any = None,
        value_head: bool = True,
    ) -> LMActorCritic:
        """Build from an agent config (``cfg.model`` is an LM instance or a path); ``value_head=False``
        for the critic-free agents.

        When the model comes with a tokenizer (a path, or an instance loaded from a directory that
        holds one) and ``env`` is a suite env, the env's tokenizer must be that tokenizer
        (:func:`check_env_tokenizer`).
        """
        if not is_token_space(observation_space):
            raise ConfigError(
                f"policy='lm' needs the rlhf token observation Dict(input_ids, attention_mask), got {observation_space}"
            )
        if not isinstance(action_space, spaces.Discrete) or int(action_space.start) != 0:
            raise ConfigError(f"policy='lm' needs a Discrete(vocab_size) action space, got {action_space}")
        lm = cfg.model
        if isinstance(lm, str):  # "default" = the embedded model; else a directory or cached hub name
            from rlhf_envs.lm.loading import load_causal_lm, resolve_model_path

            source = resolve_model_path(lm)
            if env is not None:  # the cheap check first, before the weights load
                check_env_tokenizer(env, source, lm)
            lm = load_causal_lm(lm, device=cfg.device, cache=False)
            lm.requires_grad_(True)
        else:
            source = model_source(lm)
            if env is not None and source is not None:
                check_env_tokenizer(env, source, source)
        if not hasattr(lm, "get_output_embeddings") or lm.get_output_embeddings() is None:
            raise ConfigError(
                f"model must be a transformers causal LM with an output embedding, got {type(lm).__name__}"
            )
        vocab = int(lm.get_output_embeddings().weight.shape[0])
        if vocab < action_space.n:
            raise ConfigError(
                f"the LM's vocabulary ({vocab}) is smaller than the env's action space ({action_space.n})"
            )
        if source is not None:  # the tokenizer saved with the model belongs to it
            from rlhf_envs.lm.loading import check_compatible, load_tokenizer

            check_compatible(load_tokenizer(source), lm, repr(source))
        policy = cls(
            lm,
            int(action_space.n),
            cfg.temperature,
            cfg.value_head_init_std,
            generator,
            value_head=value_head,
        )
        policy.tokenizer_source = source
        return policy

    def checkpoint_meta(self) -> dict[str, Any]:
        """The LM architecture (for :func:`model_from_meta`)."""
        return {"lm_config": self.lm.config.to_dict(), "lm_class": type(self.lm).__name__}

    # -- passes -----------------------------------------------------------------------------------

    def _logits(self, model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        """Temperature-scaled logits over the env's vocabulary (training and reference passes)."""
        head = model.get_output_embeddings()
        if type(head) is nn.Linear:  # only the env's ``n_actions`` rows of the output matrix
            bias = None if head.bias is None else head.bias[: self.n_actions]
            logits = torch.nn.functional.linear(hidden, head.weight[: self.n_actions], bias).float()
        else:
            logits = head(hidden)[..., : self.n_actions].float()
        return logits if self.temperature == 1.0 else logits / self.temperature

    def decoder(self, rows: int, capacity: int) -> Decoder:
        """A KV-cached decoder over the trained LM for ``rows`` rows of ``capacity`` cache slots.

        Its logits are this policy's: the env's ``n_actions`` first ids, divided by the temperature
        (what :meth:`evaluate_batch` computes over whole sequences, up to float rounding).
        """
        return make_decoder(self.lm, rows, capacity, self.n_actions, self.temperature)

    def _sequence_pass(self, model: nn.Module, obs: dict[str, torch.Tensor], n_response: int):  # noqa: ANN202
        ids, mask = obs["input_ids"], obs["attention_mask"]
        # hidden state at position P-1+t predicts completion token t (and is the state it is taken in)
        t = ids.shape[1]
        keep = slice(max(t - n_response - 1, 0), t - 1)
        if fast_forward_supported(model):  # GPT-2: the same math without transformers' overhead,
            # and the last block's outputs only where they are used
            return gpt2_hidden_states(model, ids, mask, position_ids(mask), keep=keep)
        hidden = model.base_model(
            input_ids=ids, attention_mask=mask, position_ids=position_ids(mask)
        ).last_hidden_state
        return hidden[:, keep]

    def evaluate_batch(
        self, batch: Batch, entropy_grad: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: ``(log-probs, entropies, values)`` of the completion tokens, ``(B, R)``.

        ``entropy_grad=False`` computes the entropies (same values) outside autograd: for a loss
        whose entropy coefficient is 0, where their gradient would be multiplied by 0 anyway, this
        saves the vocabulary-sized backward ops and leaves every gradient as it was.
        """
        h = self._sequence_pass(self.lm, batch.obs, batch.actions.shape[1])
        logp_all = torch.log_softmax(self._logits(self.lm, h), dim=-1)
        logp = logp_all.gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1)
        with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
            entropy = -(logp_all.exp() * logp_all).sum(-1)
        return logp, entropy, self._values(h)

    def _values(self, h: torch.Tensor) -> torch.Tensor:
        if self.value_head is None:
            return torch.zeros(h.shape[:-1], device=h.device)
        return self.value_head(h).squeeze(-1).float()

    @torch.no_grad()
    def values_and_ref_logprobs(
        self, obs: dict[str, torch.Tensor], actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One batched policy pass (values) and one reference pass (log-probs) over whole sequences."""
        n = actions.shape[1]
        if self.value_head is None:  # critic-free: no policy pass needed
            values = torch.zeros(actions.shape, device=actions.device)
        else:
            values = self._values(self._sequence_pass(self.lm, obs, n))
        return values, self.ref_logprobs(obs, actions)

    @torch.no_grad()
    def ref_logprobs(self, obs: dict[str, torch.Tensor], actions: torch.Tensor) -> torch.Tensor:
        """The frozen reference model's log-probs of the completion tokens ``(B, R)``, one pass."""
        h_ref = self._sequence_pass(self.ref, obs, actions.shape[1])
        return (
            torch.log_softmax(self._logits(self.ref, h_ref), dim=-1)
            .gather(-1, actions.unsqueeze(-1))
            .squeeze(-1)
        )

    @torch.no_grad()
    def kl_and_ref_logprobs(
        self, obs: dict[str, torch.Tensor], actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(exact per-token KL(pi || p_ref) at every completion position, reference log-probs of
        the chosen tokens)``, both ``(B, R)``: one pass of each model over whole sequences, with the
        full distributions (evaluation only; the training buffer never holds them)."""
        n = actions.shape[1]
        logp = torch.log_softmax(self._logits(self.lm, self._sequence_pass(self.lm, obs, n)), dim=-1)
        ref = torch.log_softmax(self._logits(self.ref, self._sequence_pass(self.ref, obs, n)), dim=-1)
        kl = (logp.exp() * (logp - ref)).sum(-1)
        return kl, ref.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
