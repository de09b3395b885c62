"""Rewards learned from demonstrations: a per-token reward ``f(s, a)`` that is also a feedback model.

:class:`TokenReward` is the reward network of adversarial inverse RL (AIRL, Fu, Luo and Levine
2018) on the token MDP: the state ``s_t`` is the prefix (prompt plus the completion so far) and the
action ``a_t`` the next token. ``f(s_t, a_t)`` is read from a causal transformer backbone (the same
kind as :class:`~rlhf_envs.feedback.learned.RewardModel`'s: a transformers GPT-2-style base model,
by default the embedded model's) by a linear action head on the hidden state of the prefix's last
token: one output per token id, of which ``a_t``'s is taken (a one-output head reading the hidden
state *at* ``a_t`` learned the toy tasks' copy relation far more slowly: the action head has the
same shape as the policy's). Causal attention makes that hidden state a function of ``s_t`` only,
so one forward pass over ``prompt + completion`` gives the reward of every transition of an
episode.

As a :class:`~rlhf_envs.feedback.FeedbackModel` the episode's score is its learned return,
``sum_t f(s_t, a_t)`` over the completion tokens (EOS included when chosen), plus the absorbing
steps after EOS when a ``horizon`` is set (see :class:`TokenReward`): an env built with
``gym.make(id, feedback=reward)`` pays it on the final token, which for gamma = 1 is the same return
as paying ``f`` on every token. The AIRL training loop (``agents.airl``) fits ``f``; this module only
holds the network, scoring and persistence (safetensors + JSON; loading runs no code).

The network reads the env's token ids directly (no re-tokenisation), so a reward is tied to the
tokenizer of the envs it was trained on; ids outside its vocabulary raise
:class:`~rlhf_envs.errors.FeedbackError`.

``anchor_token`` (optional) adds a learned embedding of every token's offset from the first
occurrence of that token (e.g. the toy tasks' separator ``=``), the same inductive bias as the
toy transformer policy's ``anchor_token``: positions are also measured from the end of the prompt.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rlhf_envs import atomic_io
from rlhf_envs.errors import ConfigError, DataError, FeedbackError, ModelFilesError
from rlhf_envs.feedback.base import Episode, EpisodeBatch

_SETTINGS_FILE = "token_reward.json"
_WEIGHTS_FILE = "token_reward.safetensors"


def toy_backbone_config(vocab_size: int = 30, n_positions: int = 16, width: int = 64, layers: int = 2) -> Any:
    """A small GPT-2 config for the toy tasks' 30-token character vocabulary (2 layers, width 64)."""
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=vocab_size,
        n_positions=n_positions,
        n_embd=width,
        n_layer=layers,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=1,
        eos_token_id=1,
        pad_token_id=0,
    )


class TokenRewardNet(nn.Module):
    """A causal transformer backbone and an action head: ``f(s, a) = w_a . h(s) + b_a``.

    ``h(s)`` is the backbone's hidden state at the last token of the prefix ``s``; the head has one
    output per token (the shape of a language-model head, one reward per possible action), so one
    pass over a sequence scores every transition in it. A pretrained backbone's head starts as its
    tied output embedding (``f`` = the base model's logits); a fresh one starts near zero.
    """

    def __init__(
        self, backbone: nn.Module, anchor_token: int | None, generator: torch.Generator, from_embeddings: bool
    ) -> None:
        super().__init__()
        self.backbone = backbone
        hidden = int(backbone.get_input_embeddings().weight.shape[1])
        self.n_positions = int(
            getattr(backbone.config, "n_positions", 0) or backbone.config.max_position_embeddings
        )
        self.vocab_size = int(backbone.get_input_embeddings().weight.shape[0])
        self.anchor_token = anchor_token
        self.anchor_emb = nn.Embedding(2 * self.n_positions, hidden) if anchor_token is not None else None
        self.head = nn.Linear(hidden, self.vocab_size)
        #: f of the absorbing state after EOS (Kostrikov et al. 2019), used when a horizon is set
        self.absorbing = nn.Parameter(torch.zeros(()))
        with torch.no_grad():
            if from_embeddings:
                self.head.weight.copy_(backbone.get_input_embeddings().weight)
            else:
                self.head.weight.normal_(0.0, 0.01, generator=generator)
            self.head.bias.zero_()
            if self.anchor_emb is not None:
                self.anchor_emb.weight.normal_(0.0, 0.02, generator=generator)

    def action_scores(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(B, T - 1, V)``: ``f(ids[:, :t + 1], a)`` for every action ``a`` after each prefix."""
        emb = self.backbone.get_input_embeddings()(ids)
        if self.anchor_emb is not None:
            length = ids.shape[1]
            pos = torch.arange(length, device=ids.device)
            hit = (ids == self.anchor_token) & mask.bool()
            first = torch.where(hit, pos, length).amin(-1, keepdim=True)
            offsets = torch.where(
                first < length, pos - first + self.n_positions - 1, 2 * self.n_positions - 1
            )
            emb = emb + self.anchor_emb(offsets)
        hidden = self.backbone(inputs_embeds=emb, attention_mask=mask).last_hidden_state
        return self.head(hidden[:, :-1]).float()

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` float: entry ``t >= 1`` is ``f(ids[:, :t], ids[:, t])`` (right-padded rows); entry 0 is 0."""
        f = self.action_scores(ids, mask).gather(-1, ids[:, 1:, None]).squeeze(-1)
        return torch.nn.functional.pad(f, (1, 0))


class TokenReward:
    """A learned per-token reward ``f(s, a)``; ``score(episodes)`` is each episode's sum of ``f``.

    Args:
        model: ``None`` for the embedded default language model's backbone (pretrained weights, a
            fresh head), a directory holding a transformers causal LM, or a ``PretrainedConfig``
            (a freshly initialised backbone of that shape, e.g. :func:`toy_backbone_config`).
        anchor_token: see the module docstring (``None``: absolute positions only).
        horizon: the env's completion budget (``max_new_tokens``). When set, an episode that ends
            with EOS after ``T < horizon`` tokens continues in an absorbing state for the remaining
            ``horizon - T`` steps, each paid a learned constant ``f_abs`` (Kostrikov et al. 2019,
            "Discriminator-Actor-Critic"): without it a learned per-token reward that is negative
            on average teaches the policy to stop at once, and a positive one to never stop.
            ``None``: no absorbing steps.
        seed: seeds the head (and a fresh backbone's) initialisation.
        device: torch device.
    """

    def __init__(
        self,
        model: str | os.PathLike | Any | None = None,
        *,
        anchor_token: int | None = None,
        horizon: int | None = None,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> None:
        from transformers import AutoModel, PretrainedConfig

        from rlhf_envs.feedback.learned import DEFAULT_MODEL_DIR

        if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
            raise ConfigError(f"seed must be an int, got {seed!r}")
        if anchor_token is not None and (
            isinstance(anchor_token, bool)
            or not isinstance(anchor_token, int | np.integer)
            or anchor_token < 0
        ):
            raise ConfigError(f"anchor_token must be None or a non-negative token id, got {anchor_token!r}")
        if horizon is not None and (
            isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon < 1
        ):
            raise ConfigError(f"horizon must be None or a positive int, got {horizon!r}")
        self.horizon = None if horizon is None else int(horizon)
        self.seed, self.device = int(seed), torch.device(device)
        self.anchor_token = None if anchor_token is None else int(anchor_token)
        model = DEFAULT_MODEL_DIR if model is None else model
        with torch.random.fork_rng(devices=[]):  # seeded, without touching the global generator
            torch.manual_seed(self.seed)
            if isinstance(model, PretrainedConfig):
                backbone = AutoModel.from_config(model)
            elif isinstance(model, str | os.PathLike):
                if not (Path(model) / "config.json").is_file():
                    raise ConfigError(
                        f"{str(model)!r} is not a transformers model directory (no config.json)"
                    )
                backbone = _load_backbone(Path(model))
            else:
                raise ConfigError(
                    f"model must be None, a directory or a transformers config, got {type(model).__name__}"
                )
        gen = torch.Generator().manual_seed(self.seed)
        pretrained = isinstance(model, str | os.PathLike)
        self.net = TokenRewardNet(backbone, self.anchor_token, gen, from_embeddings=pretrained).to(
            self.device
        )
        if self.anchor_token is not None and self.anchor_token >= self.net.vocab_size:
            raise ConfigError(
                f"anchor_token {self.anchor_token} is outside the vocabulary ({self.net.vocab_size})"
            )
        self.net.eval()

    # -- episodes -> padded token arrays --------------------------------------------------------------

    def encode(
        self, episodes: Sequence[Episode]
    ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
        """``(ids (B, T), mask (B, T), prompt_lengths, completion_lengths)``, right-padded with 0."""
        if isinstance(episodes, EpisodeBatch):
            p_ids, p_len = episodes.prompt_ids, np.asarray(episodes.prompt_lengths, dtype=np.int64)
            c_ids, c_len = episodes.completion_ids, np.asarray(episodes.completion_lengths, dtype=np.int64)
            rows = [(p_ids[i, : p_len[i]], c_ids[i, : c_len[i]]) for i in range(len(episodes))]
        else:
            rows = []
            for i, ep in enumerate(episodes):
                if not isinstance(ep, Episode):
                    raise FeedbackError(f"TokenReward scores Episodes; item {i} is a {type(ep).__name__}")
                rows.append(
                    (np.asarray(ep.prompt_ids, dtype=np.int64), np.asarray(ep.completion_ids, dtype=np.int64))
                )
            p_len = np.array([len(p) for p, _ in rows], dtype=np.int64)
            c_len = np.array([len(c) for _, c in rows], dtype=np.int64)
        total = p_len + c_len
        width = max(int(total.max()) if len(rows) else 1, 1)
        if width > self.net.n_positions:
            i = int(np.argmax(total))
            raise FeedbackError(
                f"TokenReward: episode {i} has {int(total[i])} tokens; the backbone holds at most "
                f"{self.net.n_positions} (n_positions)"
            )
        ids = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, (p, c) in enumerate(rows):
            seq = np.concatenate([p, c])
            ids[i, : len(seq)] = seq
            mask[i, : len(seq)] = 1
        if len(rows) and (ids.min() < 0 or ids.max() >= self.net.vocab_size):
            i = int(np.flatnonzero((ids < 0).any(1) | (ids >= self.net.vocab_size).any(1))[0])
            raise FeedbackError(
                f"TokenReward: episode {i} holds a token id outside [0, {self.net.vocab_size}); the reward "
                "reads the token ids of the envs it was trained on"
            )
        return (
            torch.from_numpy(ids).to(self.device),
            torch.from_numpy(mask).to(self.device),
            p_len,
            c_len,
        )

    def completion_rewards(self, episodes: Sequence[Episode]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(f (B, C), mask (B, C))`` over completion tokens, differentiable (for training).

        Row ``i``, column ``t`` is ``f(s_t, a_t)`` for the ``t``-th completion token of episode ``i``;
        with a ``horizon``, columns ``T_i .. horizon - 1`` hold the absorbing reward ``f_abs`` and
        are part of the mask (their ``log pi`` is 0: the absorbing state has one action).
        """
        ids, mask, p_len, c_len = self.encode(episodes)
        f_all = self.net(ids, mask)
        width = max(int(c_len.max()) if len(c_len) else 0, self.horizon or 0, 1)
        t = torch.arange(width, device=self.device)[None, :]
        c = torch.as_tensor(c_len, device=self.device)[:, None]
        cols = torch.as_tensor(p_len, device=self.device)[:, None] + t
        cmask = t < c
        cols = torch.where(cmask, cols, 0).clamp(max=ids.shape[1] - 1)
        f = f_all.gather(1, cols) * cmask
        if self.horizon is not None:
            absorbing = (t >= c) & (t < self.horizon)
            f = f + absorbing * self.net.absorbing
            cmask = cmask | absorbing
        return f, cmask

    def action_log_likelihood(self, episodes: Sequence[Episode]) -> torch.Tensor:
        """Mean ``log softmax_a f(s_t, a)`` of the episodes' own tokens: maximum likelihood of the
        action head read as a policy (``f = log pi_E`` is AIRL's equilibrium up to shaping, so this
        is a warm start for ``f`` from demonstrations). Differentiable."""
        ids, mask, p_len, c_len = self.encode(episodes)
        logp = torch.log_softmax(self.net.action_scores(ids, mask), -1)
        logp = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
        t = torch.arange(1, ids.shape[1], device=self.device)[None, :]
        p = torch.as_tensor(p_len, device=self.device)[:, None]
        keep = (t >= p) & (t < p + torch.as_tensor(c_len, device=self.device)[:, None])
        return (logp * keep).sum() / keep.sum().clamp(min=1)

    @torch.no_grad()
    def token_rewards(self, episodes: Sequence[Episode]) -> list[np.ndarray]:
        """``f(s_t, a_t)`` of every completion token (then the absorbing steps), float32 per episode."""
        f, cmask = self.completion_rewards(episodes)
        lengths = cmask.sum(1).cpu().numpy()
        arr = f.cpu().numpy().astype(np.float32)
        return [arr[i, : lengths[i]].copy() for i in range(len(arr))]

    def score(self, episodes: Sequence[Episode]) -> np.ndarray:
        """The feedback-model interface: each episode's learned return ``sum_t f(s_t, a_t)``, float32."""
        if len(episodes) == 0:
            return np.zeros(0, dtype=np.float32)
        was_training = self.net.training
        self.net.eval()
        try:
            with torch.no_grad():
                f, _ = self.completion_rewards(episodes)
        finally:
            self.net.train(was_training)
        return f.sum(1).cpu().numpy().astype(np.float32)

    # -- persistence --------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> str:
        """Write directory ``path``: the backbone's ``config.json``, safetensors weights, JSON settings."""
        from safetensors.torch import save_model

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.net.backbone.config.save_pretrained(path)
        save_model(self.net, str(path / _WEIGHTS_FILE))
        settings = {
            "anchor_token": self.anchor_token,
            "horizon": self.horizon,
            "seed": self.seed,
            "format": 1,
        }
        atomic_io.write_json(path / _SETTINGS_FILE, settings, indent=2)  # last: marks a complete save
        return str(path)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> TokenReward:
        """Load a reward written by :meth:`save` (JSON and safetensors only: no code runs).

        A missing or malformed file, a config naming custom code, or weights that do not fit or are
        not finite raise :class:`~rlhf_envs.errors.DataError` naming the file.
        """
        from safetensors.torch import load_file
        from transformers import AutoConfig

        path = Path(path)
        settings_file = path / _SETTINGS_FILE
        if not settings_file.is_file():
            raise ConfigError(f"{str(path)!r} holds no saved TokenReward ({_SETTINGS_FILE} missing)")
        try:
            settings = json.loads(settings_file.read_text(encoding="utf-8"))
            anchor, seed, horizon = settings["anchor_token"], int(settings["seed"]), settings["horizon"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"TokenReward file {str(settings_file)!r} is malformed ({exc!r})") from None
        config_file = path / "config.json"
        try:
            raw = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"TokenReward file {str(config_file)!r} is not readable JSON ({exc})") from None
        if not isinstance(raw, dict) or "auto_map" in raw:
            raise DataError(
                f"TokenReward file {str(config_file)!r} must be a plain transformers config (no auto_map)"
            )
        try:
            config = AutoConfig.from_pretrained(str(path), local_files_only=True)
            reward = cls(config, anchor_token=anchor, horizon=horizon, seed=seed, device=device)
        except ConfigError as exc:
            raise DataError(f"TokenReward {str(path)!r}: {exc}") from None
        except Exception as exc:  # unknown model type, malformed fields
            raise DataError(
                f"TokenReward file {str(config_file)!r} is not a usable config ({type(exc).__name__}: {exc})"
            ) from None
        weights_file = path / _WEIGHTS_FILE
        try:
            tensors = load_file(str(weights_file))
        except Exception as exc:  # missing, truncated or garbage
            raise DataError(
                f"TokenReward file {str(weights_file)!r} is not a readable safetensors file ({type(exc).__name__}: {exc})"
            ) from None
        for name, t in tensors.items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise DataError(f"TokenReward file {str(weights_file)!r}: weight {name!r} is not finite")
        try:
            reward.net.load_state_dict(tensors, strict=True)
        except RuntimeError as exc:
            raise DataError(
                f"TokenReward file {str(weights_file)!r} does not fit config.json: {exc}"
            ) from None
        reward.net.to(reward.device).eval()
        return reward

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.net.parameters())
        return f"TokenReward({self.net.backbone.config.model_type}, params={n:,}, anchor_token={self.anchor_token})"


def auc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties counting half."""
    pos = np.asarray(positive, dtype=np.float64)
    neg = np.asarray(negative, dtype=np.float64)
    if pos.size == 0 or neg.size == 0:
        return math.nan
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + 0.5 * ties)


def _load_backbone(model_dir: Path) -> Any:
    """The transformer body of the model saved in ``model_dir`` (a causal LM's output layer may be
    in the file and is left out), with every model load's checks: the weights must match
    ``config.json`` (no missing, extra or reshaped tensors), be finite, and be safetensors; nothing
    is downloaded and no custom code runs (:mod:`rlhf_envs.lm.weights`)."""
    from transformers import AutoModel, AutoModelForCausalLM

    from rlhf_envs.lm import weights

    config = weights.read_config(model_dir)
    try:
        body = weights.skeleton(config, AutoModel)
    except Exception as exc:  # noqa: BLE001 - an architecture without a body class, sizes that do not build
        raise ModelFilesError(
            f"model file {str(model_dir / 'config.json')!r} does not describe a model a token reward can "
            f"be built on ({type(exc).__name__}: {exc})"
        ) from None
    ours = {k: tuple(v.shape) for k, v in body.state_dict().items()}
    try:
        causal = weights.skeleton(config, AutoModelForCausalLM).state_dict()
        may_have = {k: tuple(v.shape) for k, v in causal.items() if k not in ours}
    except Exception:  # noqa: BLE001 - an architecture without a causal-LM class
        may_have = {}
    ck = weights.verify_checkpoint(model_dir, body, may_have=may_have)
    try:
        with weights.quiet_load_report():
            backbone, info = AutoModel.from_pretrained(
                str(model_dir),
                config=config,
                local_files_only=True,
                use_safetensors=True,
                trust_remote_code=False,
                output_loading_info=True,
            )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelFilesError(
            f"could not load a token-reward backbone from {str(model_dir)!r} ({type(exc).__name__}: {exc})"
        ) from None
    if not weights.comparable(backbone):
        weights.check_loading_info(info, model_dir, ck)
    weights.check_finite(backbone, ck, model_dir)
    return backbone
