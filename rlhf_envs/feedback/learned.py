"""Learned reward models: a causal-LM backbone with a one-output head, fitted from human feedback.

:class:`RewardModel` wraps one or more ``transformers`` sequence-classification models
(``AutoModelForSequenceClassification`` with ``num_labels=1``) that read ``prompt + completion``
(plus EOS) and output one number at the last real token, the convention of OpenAI's
lm-human-preferences and TRL. It fits from

* ratings (regression, mean squared error),
* pairwise preferences (Bradley-Terry: ``P(A > B) = sigmoid(r_A - r_B)``, with an optional margin
  and an optional "some answers are random" floor as in Christiano et al. 2017; ties are targets of
  0.5),
* rankings (Plackett-Luce: the best item is chosen by softmax among all, then the next among the
  rest, and so on),
* per-token marks (dense targets: :meth:`RewardModel.fit_token_marks` regresses the head at every
  prefix on the running sum of the marks),

and is itself a :class:`~rlhf_envs.feedback.FeedbackModel` (``score(episodes)``), so it can be an
env's reward directly. :meth:`RewardModel.score_prefixes` applies the head at every position, so the
score of every prefix of a text costs one causal forward pass (the learned prefix scorer of
:mod:`rlhf_envs.feedback.prefix.learned`). An ensemble of ``n_members`` models, each trained on a bootstrap resample of
the training data (Christiano et al. 2017), gives an uncertainty estimate; ``aggregate`` turns the
members' scores into one: ``"mean"``, ``"mean_minus_std"`` (mean minus ``k`` standard deviations, a
pessimistic reward against over-optimisation) or ``"min"``.

Every fit holds out a seeded fraction of the data and returns a :class:`FitReport` with the
held-out pairwise accuracy. Weights are saved with ``safetensors`` (no pickle), the configuration as
JSON and the tokenizer with ``save_pretrained``, so :meth:`RewardModel.load` never executes code.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from rlhf_envs import atomic_io
from rlhf_envs.errors import ConfigError, DataError, FeedbackError, ModelFilesError
from rlhf_envs.feedback.base import Episode

AGGREGATES = ("mean", "mean_minus_std", "min")
#: where the embedded default language model lives (built by ``rlhf_envs.lm``)
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "assets" / "default_lm"
_SETTINGS_FILE = "reward_model.json"
#: entries of the settings file that :meth:`RewardModel.load` needs
_SETTINGS_KEYS = (
    "n_members", "aggregate", "k", "normalize", "max_length", "append_eos", "batch_size", "seed",
    "offsets", "scales", "last_fit",
)  # fmt: skip


def _read_json_object(file: Path) -> dict[str, Any]:
    """The JSON object in ``file``, or :class:`DataError` naming the file."""
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"reward model file {str(file)!r} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"reward model file {str(file)!r} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise DataError(
            f"reward model file {str(file)!r} must hold a JSON object, got {type(value).__name__}"
        )
    return value


Text = str | Episode


# ---------------------------------------------------------------------------------------------------
# Losses (module-level so they can be checked on their own)
# ---------------------------------------------------------------------------------------------------


def bradley_terry_loss(
    r_a: torch.Tensor,
    r_b: torch.Tensor,
    p_a: torch.Tensor,
    margin: torch.Tensor | float = 0.0,
    random_fraction: float = 0.0,
) -> torch.Tensor:
    """Mean negative log-likelihood of pairwise labels under Bradley-Terry.

    ``P(A > B) = (1 - random_fraction) * sigmoid(r_A - r_B - m) + random_fraction / 2`` where the
    margin ``m`` is subtracted in the direction of the label (Llama 2's margin loss: the preferred
    side must win by at least ``m``); ties (``p_a = 0.5``) use no margin.

    Args:
        r_a, r_b: rewards of the two sides, shape ``(N,)``.
        p_a: target probability that A is preferred: 1 (A), 0 (B) or 0.5 (tie).
        margin: per-pair or global margin, >= 0.
        random_fraction: the share of labels assumed uniformly random (Christiano et al.: 0.1).
    """
    margin = torch.as_tensor(margin, dtype=r_a.dtype, device=r_a.device)
    sign = torch.where(p_a > 0.5, 1.0, torch.where(p_a < 0.5, -1.0, 0.0)).to(r_a.dtype)
    d = r_a - r_b - sign * margin
    if random_fraction == 0.0:
        return F.binary_cross_entropy_with_logits(d, p_a.to(r_a.dtype))
    q = (1 - random_fraction) * torch.sigmoid(d) + random_fraction / 2
    return -(p_a * torch.log(q) + (1 - p_a) * torch.log1p(-q)).mean()


def plackett_luce_loss(scores: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of rankings under Plackett-Luce.

    Args:
        scores: ``(N, K)`` rewards of each ranking's items, best first, right-padded.
        lengths: ``(N,)`` number of real items in each row (>= 2).

    ``log P(ranking) = sum_i [s_i - logsumexp(s_i, ..., s_n)]``.
    """
    n, k = scores.shape
    valid = torch.arange(k, device=scores.device)[None, :] < lengths[:, None]
    s = scores.masked_fill(~valid, -torch.inf)
    # log-sum-exp of each suffix s_i..s_n: reverse cumulative logsumexp
    suffix = torch.logcumsumexp(s.flip(1), dim=1).flip(1)
    terms = torch.where(valid, s - suffix, torch.zeros_like(s))
    return -(terms.sum(1)).mean()


def regression_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between predicted rewards and ratings."""
    return F.mse_loss(pred, target.to(pred.dtype))


# ---------------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------------


@dataclass
class FitReport:
    """What a fit did and how well it generalises.

    Attributes:
        kind: ``"ratings"``, ``"preferences"``, ``"rankings"`` or ``"token_marks"``.
        n_train, n_val: number of training and held-out examples (pairs, rankings or ratings).
        val_accuracy: held-out pairwise accuracy of the aggregated score: for preferences, the
            share of held-out non-tie pairs ordered as labelled; for rankings, the share of all
            ordered pairs implied by the held-out rankings; for ratings, the share of held-out pairs
            with different ratings ordered like the ratings. ``nan`` if there was nothing to check.
        val_loss: the fit objective on held-out data (first member).
        train_loss: final epoch's mean training loss, per member.
        seconds: wall-clock time of the fit.
        extra: kind-specific figures (e.g. held-out MSE and correlation for ratings).
    """

    kind: str
    n_train: int
    n_val: int
    val_accuracy: float
    val_loss: float
    train_loss: list[float]
    seconds: float
    extra: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        more = "".join(f", {k}={v:.4g}" for k, v in self.extra.items())
        return (
            f"fit on {self.kind}: {self.n_train} train / {self.n_val} held out, held-out accuracy "
            f"{self.val_accuracy:.3f}, held-out loss {self.val_loss:.4f}, train loss "
            f"{', '.join(f'{x:.4f}' for x in self.train_loss)}{more} ({self.seconds:.1f} s)"
        )


# ---------------------------------------------------------------------------------------------------
# The reward model
# ---------------------------------------------------------------------------------------------------


def _load_tokenizer(tokenizer: Any, model_dir: Path | None) -> Any:
    from transformers import AutoTokenizer

    if tokenizer is None:
        if model_dir is None:
            raise ConfigError("a tokenizer is required when the model is given as a config")
        tokenizer = model_dir
    if isinstance(tokenizer, str | os.PathLike):
        try:
            return AutoTokenizer.from_pretrained(
                str(tokenizer), use_fast=True, local_files_only=True, trust_remote_code=False
            )
        except Exception as exc:  # noqa: BLE001 - OSError, ValueError, the tokenizers library's errors
            raise ModelFilesError(
                f"could not load a tokenizer from {str(tokenizer)!r} ({type(exc).__name__}: {exc})"
            ) from None
    if not callable(tokenizer) or not hasattr(tokenizer, "pad_token_id"):
        raise ConfigError(
            f"tokenizer must be a path or a transformers tokenizer, got {type(tokenizer).__name__}"
        )
    return tokenizer


def _skeletons(config: Any, model_dir: Path) -> tuple[Any, set[str], dict[str, tuple[int, ...]]]:
    """The one-output sequence-classification model ``config`` describes (on the meta device), the
    tensors it may lack (its new head) and those the file may hold besides (a causal LM's output
    layer), for :func:`~rlhf_envs.lm.weights.verify_checkpoint`."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from rlhf_envs.lm import weights

    config.num_labels = 1
    try:
        cls_model = weights.skeleton(config, AutoModelForSequenceClassification)
    except Exception as exc:  # noqa: BLE001 - no sequence-classification class, sizes that do not build
        raise ModelFilesError(
            f"model file {str(model_dir / 'config.json')!r} does not describe a model a reward model can be "
            f"built on ({type(exc).__name__}: {exc})"
        ) from None
    ours = {k: tuple(v.shape) for k, v in cls_model.state_dict().items()}
    try:
        causal = weights.skeleton(config, AutoModelForCausalLM).state_dict()
        other = {k: tuple(v.shape) for k, v in causal.items()}
    except Exception:  # noqa: BLE001 - an architecture without a causal-LM class
        other = {}
    head = _head(cls_model)
    head_name = next(name for name, m in cls_model.named_modules() if m is head)
    may_lack = {f"{head_name}.{n}" for n, _ in head.named_parameters()}
    may_have = {k: v for k, v in other.items() if k not in ours}
    return cls_model, may_lack, may_have


def _head(model: torch.nn.Module) -> torch.nn.Linear:
    """The one-output linear head of a sequence-classification model (``score``, ``classifier``...)."""
    heads = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == 1]
    if not heads:
        raise ConfigError(f"{type(model).__name__} has no one-output linear head")
    return heads[-1]


class DataParallel(Protocol):
    """What a data-parallel fit needs from its runtime (``agents.distributed.World`` provides it).

    ``rank`` of ``world_size`` processes, and ``all_reduce_sum_(tensors)``: sum each tensor over
    the processes, in place. The suite stays free of any launcher: the caller brings the runtime.
    """

    rank: int
    world_size: int

    def all_reduce_sum_(self, tensors: Sequence[torch.Tensor]) -> None: ...


class RewardModel:
    """A reward model (or a bootstrap ensemble of them) on a causal-LM backbone.

    Args:
        model: a directory holding a ``transformers`` model (a causal LM such as the embedded
            default model, or a sequence-classification checkpoint), a ``PretrainedConfig`` (a
            freshly initialised backbone of that shape), or ``None`` for the embedded default model
            in ``rlhf_envs/assets/default_lm``.
        tokenizer: a directory or a ``transformers`` fast tokenizer; defaults to ``model``'s
            directory. A tokenizer without a pad token (or whose pad is EOS) gets a distinct
            ``<pad>`` token added and the embeddings resized, so the head reads the last real token.
        n_members: ensemble size (each member trains on its own bootstrap resample when > 1).
        aggregate: ``"mean"``, ``"mean_minus_std"`` or ``"min"`` over members.
        k: the number of standard deviations subtracted by ``"mean_minus_std"``.
        normalize: after each fit, shift and scale each member to mean 0, std 1 on its training
            texts before aggregating (Christiano et al.), so members are on one scale.
        max_length: texts longer than this many tokens keep their *last* ``max_length`` tokens.
        append_eos: append the tokenizer's EOS so the head reads a fixed end-of-text position.
        batch_size: scoring batch size.
        seed: seeds head initialisation, bootstrap resampling, data order and held-out splits.
        device: torch device.
        allow_pickle: when ``model`` is a directory, also accept pickle weights
            (``pytorch_model.bin``, read with ``weights_only=True``); by default only safetensors load.

    A directory's files are checked against its ``config.json`` before anything loads (see
    :mod:`rlhf_envs.lm.weights`): it must hold a causal LM (whose output layer is replaced by a new
    one-output head) or a one-output sequence-classification model, with no tensor missing, left
    over, of the wrong shape or non-finite, and its tokenizer must belong to it
    (:func:`~rlhf_envs.lm.loading.check_tokenizer_fits`); otherwise a
    :class:`~rlhf_envs.errors.ModelFilesError` names the file.
    """

    def __init__(
        self,
        model: str | os.PathLike | Any | None = None,
        tokenizer: str | os.PathLike | Any | None = None,
        *,
        n_members: int = 1,
        aggregate: str = "mean",
        k: float = 1.0,
        normalize: bool = False,
        max_length: int = 256,
        append_eos: bool = True,
        batch_size: int = 64,
        seed: int = 0,
        device: str | torch.device = "cpu",
        allow_pickle: bool = False,
    ) -> None:
        from transformers import PretrainedConfig

        if isinstance(n_members, bool) or not isinstance(n_members, int) or n_members < 1:
            raise ConfigError(f"n_members must be a positive int, got {n_members!r}")
        if aggregate not in AGGREGATES:
            raise ConfigError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
        if not (isinstance(k, int | float) and math.isfinite(k) and k >= 0):
            raise ConfigError(f"k must be a finite number >= 0, got {k!r}")
        for name, v in (("max_length", max_length), ("batch_size", batch_size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be a positive int, got {v!r}")
        if not isinstance(allow_pickle, bool):
            raise ConfigError(f"allow_pickle must be True or False, got {allow_pickle!r}")
        self._allow_pickle = allow_pickle
        self.n_members, self.aggregate, self.k = n_members, aggregate, float(k)
        self.normalize, self.max_length, self.append_eos = bool(normalize), max_length, bool(append_eos)
        self.batch_size, self.seed, self.device = batch_size, int(seed), torch.device(device)

        if model is None:
            if not (DEFAULT_MODEL_DIR / "config.json").exists():
                raise ConfigError(
                    f"no embedded default model at {DEFAULT_MODEL_DIR}; pass model=<directory> or a "
                    "transformers config (e.g. GPT2Config) with a tokenizer"
                )
            model = DEFAULT_MODEL_DIR
        model_dir = None
        if isinstance(model, PretrainedConfig):
            config = copy.deepcopy(model)
        elif isinstance(model, str | os.PathLike):
            model_dir = Path(model)
            if not (model_dir / "config.json").exists():
                raise ConfigError(
                    f"{str(model_dir)!r} is not a transformers model directory (no config.json)"
                )
            from rlhf_envs.lm.weights import read_config

            config = None
            dir_config = read_config(model_dir)  # checked before the tokenizer loader reads it
        else:
            raise ConfigError(
                f"model must be a directory, a transformers config or None, got {type(model).__name__}"
            )

        self.tokenizer = _load_tokenizer(tokenizer, model_dir)
        tok = self.tokenizer
        parts = None
        if model_dir is not None:
            from rlhf_envs.lm.loading import check_tokenizer_fits, tokenizer_source

            parts = _skeletons(dir_config, model_dir)
            check_tokenizer_fits(
                tok,
                int(parts[0].get_input_embeddings().num_embeddings),
                dir_config,
                tokenizer_source(tok),
                repr(str(model_dir)),
            )
        if self.append_eos and tok.eos_token_id is None:
            from rlhf_envs.lm.loading import tokenizer_source

            raise ConfigError(
                f"append_eos=True but the tokenizer {tokenizer_source(tok)} has no EOS token; set one "
                "(tokenizer.eos_token = ..., then save it again) or pass append_eos=False"
            )
        added = 0
        if tok.pad_token_id is None or tok.pad_token_id == tok.eos_token_id:
            added = tok.add_special_tokens({"pad_token": "<pad>"})

        with torch.random.fork_rng(devices=[]):  # seeded init without touching the global RNG
            torch.manual_seed(self.seed)
            first = self._build_first(config, model_dir, dir_config if model_dir is not None else None, parts)
        if added or first.get_input_embeddings().num_embeddings < len(tok):
            first.resize_token_embeddings(len(tok))
        first.config.pad_token_id = tok.pad_token_id
        self.config = first.config
        self.members: list[torch.nn.Module] = [first]
        for m in range(1, n_members):
            member = copy.deepcopy(first)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed * 1000 + m)
                _head(member).reset_parameters()
            self.members.append(member)
        for member in self.members:
            member.to(self.device).eval()
        self.offsets = np.zeros(n_members)
        self.scales = np.ones(n_members)
        self.last_fit: FitReport | None = None

    def _build_first(
        self, config: Any, model_dir: Path | None, dir_config: Any = None, parts: tuple | None = None
    ) -> torch.nn.Module:
        from transformers import AutoModelForSequenceClassification

        from rlhf_envs.lm import weights

        tok = self.tokenizer
        if config is not None:
            config.num_labels = 1
            config.pad_token_id = tok.pad_token_id
            return AutoModelForSequenceClassification.from_config(config)
        skeleton, may_lack, may_have = parts if parts is not None else _skeletons(dir_config, model_dir)
        ck = weights.verify_checkpoint(
            model_dir, skeleton, allow_pickle=self._allow_pickle, may_lack=may_lack, may_have=may_have
        )
        dir_config.pad_token_id = tok.pad_token_id
        try:
            with weights.quiet_load_report():
                first, info = AutoModelForSequenceClassification.from_pretrained(
                    str(model_dir),
                    config=dir_config,
                    local_files_only=True,
                    use_safetensors=None if self._allow_pickle else True,
                    trust_remote_code=False,
                    output_loading_info=True,
                )
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelFilesError(
                f"could not load a reward-model backbone from {str(model_dir)!r} ({type(exc).__name__}: {exc})"
            ) from None
        if not weights.comparable(first):
            weights.check_loading_info(info, model_dir, ck, may_lack)
        weights.check_finite(first, ck, model_dir)
        return first

    # -- text -> ids --------------------------------------------------------------------------------

    def _text(self, item: Text) -> str:
        if isinstance(item, Episode):
            return item.prompt + item.completion
        if isinstance(item, str):
            return item
        raise FeedbackError(f"RewardModel reads Episodes or strings, got {type(item).__name__}")

    def encode(self, items: Sequence[Text]) -> list[list[int]]:
        """Token ids of each ``prompt + completion`` (left-truncated to ``max_length``, EOS appended)."""
        texts = [self._text(x) for x in items]
        enc = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        room = self.max_length - int(self.append_eos)
        out = []
        for i, ids in enumerate(enc):
            if not ids:
                raise FeedbackError(
                    f"RewardModel: item {i} has an empty text ({texts[i]!r}); there is nothing to score"
                )
            ids = list(ids[-room:]) if room > 0 else []
            if self.append_eos:
                ids.append(self.tokenizer.eos_token_id)
            out.append(ids)
        return out

    def _batch(self, ids: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(x) for x in ids)
        pad = self.tokenizer.pad_token_id
        arr = np.full((len(ids), width), pad, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for i, x in enumerate(ids):
            arr[i, : len(x)] = x
            mask[i, : len(x)] = 1
        return torch.from_numpy(arr).to(self.device), torch.from_numpy(mask).to(self.device)

    def _forward(self, member: torch.nn.Module, ids: Sequence[Sequence[int]]) -> torch.Tensor:
        input_ids, mask = self._batch(ids)
        return member(input_ids=input_ids, attention_mask=mask).logits[:, 0].float()

    # -- scoring ------------------------------------------------------------------------------------

    def member_scores(self, items: Sequence[Text], batch_size: int | None = None) -> np.ndarray:
        """Each member's (normalised) score of each item: shape ``(n_members, len(items))``.

        Items are sorted by length and scored ``batch_size`` at a time, so padding stays small.
        """
        if len(items) == 0:
            return np.zeros((self.n_members, 0), dtype=np.float64)
        out = self._scores_of_ids(self.encode(items), batch_size)
        bad = np.argwhere(~np.isfinite(out))
        if bad.size:
            m, i = bad[0]
            raise FeedbackError(
                f"RewardModel member {m} produced {out[m, i]} for item {i} ({self._text(items[i])!r})"
            )
        return out

    @torch.inference_mode()
    def _scores_of_ids(self, ids: list[list[int]], batch_size: int | None = None) -> np.ndarray:
        bs = batch_size or self.batch_size
        order = np.argsort([len(x) for x in ids], kind="stable")
        out = np.empty((self.n_members, len(ids)), dtype=np.float64)
        for m, member in enumerate(self.members):
            member.eval()
            for start in range(0, len(ids), bs):
                idx = order[start : start + bs]
                out[m, idx] = self._forward(member, [ids[i] for i in idx]).cpu().numpy()
        return (out - self.offsets[:, None]) / self.scales[:, None]

    def aggregate_scores(self, member_scores: np.ndarray) -> np.ndarray:
        """Combine ``(n_members, B)`` scores into ``(B,)`` with this model's ``aggregate`` rule."""
        if self.aggregate == "mean" or self.n_members == 1:
            return member_scores.mean(0)
        if self.aggregate == "min":
            return member_scores.min(0)
        return member_scores.mean(0) - self.k * member_scores.std(0)

    def score_texts(self, items: Sequence[Text], batch_size: int | None = None) -> np.ndarray:
        """Aggregated reward of each text (or episode), float32."""
        return self.aggregate_scores(self.member_scores(items, batch_size)).astype(np.float32)

    def score(self, episodes: Sequence[Episode]) -> np.ndarray:
        """The :class:`~rlhf_envs.feedback.FeedbackModel` interface: one float32 reward per episode."""
        return self.score_texts(episodes)

    def compare(self, a: Sequence[Text], b: Sequence[Text]) -> np.ndarray:
        """Bradley-Terry probability that ``a[i]`` is preferred to ``b[i]`` under the aggregated score."""
        if len(a) != len(b):
            raise FeedbackError(f"compare: {len(a)} A items but {len(b)} B items; they must pair up")
        s = self.score_texts([*a, *b]).astype(np.float64)
        return (1.0 / (1.0 + np.exp(-(s[: len(a)] - s[len(a) :])))).astype(np.float32)

    def disagreement(self, a: Sequence[Text], b: Sequence[Text]) -> np.ndarray:
        """Std over members of each member's P(a[i] > b[i]): Christiano et al.'s query-selection signal
        (ask the human about the pairs with the largest values). Zero for a single model."""
        if len(a) != len(b):
            raise FeedbackError(f"disagreement: {len(a)} A items but {len(b)} B items; they must pair up")
        m = self.member_scores([*a, *b])
        p = 1.0 / (1.0 + np.exp(-(m[:, : len(a)] - m[:, len(a) :])))
        return p.std(0).astype(np.float32)

    def uncertainty(self, items: Sequence[Text]) -> np.ndarray:
        """Standard deviation of the members' scores (0 for a single model)."""
        return self.member_scores(items).std(0).astype(np.float32)

    # -- every prefix in one pass -------------------------------------------------------------------

    def _prefix_forward(self, member: torch.nn.Module, ids: Sequence[Sequence[int]]) -> torch.Tensor:
        """The reward head applied at every position: ``(B, W)``, position ``j`` reading tokens ``0..j``.

        The backbone runs once; the one-output head (a linear map of the last hidden state, which is
        what decoder ``*ForSequenceClassification`` models apply before picking the last real token)
        is applied to every position's hidden state. At a sequence's last real token this is exactly
        the score :meth:`score_texts` reads there; causal attention makes position ``j`` independent
        of everything after it, padding included.
        """
        input_ids, mask = self._batch(ids)
        hidden = member.base_model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        return _head(member)(hidden)[..., 0].float()

    @torch.inference_mode()
    def score_prefixes(self, ids: Sequence[Sequence[int]], batch_size: int | None = None) -> list[np.ndarray]:
        """The aggregated reward of every prefix of each token-id sequence, one forward pass per batch.

        Args:
            ids: sequences of this model's token ids (no EOS is appended: entry ``j`` of the result
                scores the prefix ``ids[:j + 1]`` as it stands).
            batch_size: sequences per forward pass (default: the model's ``batch_size``).

        Returns:
            per sequence a float32 array of its length; entry ``j`` equals
            ``score_prefixes([ids[:j + 1]])[0][-1]`` (one pass per prefix) up to float rounding.
            Member scores are normalised with the fitted offsets and scales and then aggregated as in
            :meth:`score_texts`.
        """
        seqs = [list(x) for x in ids]
        for i, x in enumerate(seqs):
            if not x:
                raise FeedbackError(f"score_prefixes: sequence {i} is empty; there is nothing to score")
            if len(x) > self.max_length:
                raise FeedbackError(
                    f"score_prefixes: sequence {i} has {len(x)} tokens, more than max_length={self.max_length}"
                )
        bs = batch_size or self.batch_size
        order = np.argsort([len(x) for x in seqs], kind="stable")
        per: list[list[np.ndarray]] = [[np.empty(0)] * len(seqs) for _ in self.members]
        for m, member in enumerate(self.members):
            member.eval()
            for start in range(0, len(seqs), bs):
                idx = order[start : start + bs]
                vals = self._prefix_forward(member, [seqs[i] for i in idx]).cpu().numpy().astype(np.float64)
                for j, i in enumerate(idx):
                    per[m][i] = (vals[j, : len(seqs[i])] - self.offsets[m]) / self.scales[m]
        out = []
        for i in range(len(seqs)):
            agg = self.aggregate_scores(np.stack([per[m][i] for m in range(self.n_members)]))
            if not np.all(np.isfinite(agg)):
                raise FeedbackError(f"RewardModel: a prefix score of sequence {i} is not finite")
            out.append(agg.astype(np.float32))
        return out

    # -- fitting ------------------------------------------------------------------------------------

    def fit_ratings(self, items: Sequence[Text], ratings: Sequence[float], **kw: Any) -> FitReport:
        """Regress the score on numeric ratings (e.g. Likert 1-5). See :meth:`_fit` for options."""
        if len(items) != len(ratings):
            raise FeedbackError(f"fit_ratings: {len(items)} items but {len(ratings)} ratings")
        y = np.asarray(ratings, dtype=np.float64)
        if y.ndim != 1 or not np.all(np.isfinite(y)):
            raise FeedbackError("fit_ratings: ratings must be a 1-D sequence of finite numbers")
        texts, index = self._intern(items)
        groups = [((index[i],), float(y[i])) for i in range(len(items))]
        return self._fit("ratings", texts, groups, **kw)

    def fit_preferences(
        self,
        a: Sequence[Text],
        b: Sequence[Text],
        labels: Sequence[Any],
        margins: Sequence[float] | float = 0.0,
        random_fraction: float = 0.0,
        **kw: Any,
    ) -> FitReport:
        """Fit Bradley-Terry on pairwise preferences.

        Args:
            a, b: the two sides of each comparison.
            labels: the answers: the object a rater's ``compare(a, b)`` returned (e.g.
                :class:`~rlhf_envs.feedback.simulated.Comparisons`; anything with ``prob_a()``), or
                per pair the probability that A is preferred as a float (1.0 / "A", 0.0 / "B",
                0.5 / "tie"); skipped queries (``"skip"`` or ``None``) are dropped.
                :class:`~rlhf_envs.feedback.simulated.Label` members are accepted. Plain integers
                are refused: ``Comparisons.labels`` holds integer *codes* (0 = A, 1 = B), the
                opposite of probabilities, and reading one as the other trains a reversed model.
            margins: a margin per pair (or one for all), >= 0: the preferred side must win by it.
            random_fraction: share of labels assumed uniformly random (Christiano et al. use 0.1).
        """
        labels = _preference_labels(labels)
        if not len(a) == len(b) == len(labels):
            raise FeedbackError(
                f"fit_preferences: {len(a)} A items, {len(b)} B items and {len(labels)} labels; they must match"
            )
        m = np.broadcast_to(np.asarray(margins, dtype=np.float64), (len(a),))
        if not np.all(np.isfinite(m)) or np.any(m < 0):
            raise FeedbackError("fit_preferences: margins must be finite and >= 0")
        if not 0.0 <= random_fraction < 1.0:
            raise ConfigError(f"random_fraction must be in [0, 1), got {random_fraction!r}")
        p = [_label_to_prob(x, i) for i, x in enumerate(labels)]
        keep = [i for i, x in enumerate(p) if x is not None]
        texts, index = self._intern([*a, *b])
        n = len(a)
        groups = [((index[i], index[n + i]), (p[i], float(m[i]))) for i in keep]
        return self._fit("preferences", texts, groups, random_fraction=random_fraction, **kw)

    def fit_rankings(self, rankings: Sequence[Sequence[Text]], **kw: Any) -> FitReport:
        """Fit Plackett-Luce on rankings, each a sequence of at least two items, best first."""
        flat: list[Text] = []
        shape = []
        for j, r in enumerate(rankings):
            if isinstance(r, str | Episode) or len(r) < 2:
                raise FeedbackError(f"fit_rankings: ranking {j} must be a sequence of at least two items")
            flat += list(r)
            shape.append(len(r))
        texts, index = self._intern(flat)
        groups, pos = [], 0
        for n in shape:
            groups.append((tuple(index[pos : pos + n]), None))
            pos += n
        return self._fit("rankings", texts, groups, **kw)

    def fit_token_marks(
        self,
        episodes: Sequence[Episode],
        marks: Sequence[Sequence[float]],
        tokenizer: Any = None,
        **kw: Any,
    ) -> FitReport:
        """Fit the prefix head on per-token marks: dense targets, one per prefix of each episode.

        ``marks[i][t]`` is the mark of completion token ``t`` of ``episodes[i]`` (+1 good, -1 bad,
        0 unmarked, or a mean over raters in between), as the web app's per-token answers
        (``agents.human.web_human.token_targets``) and
        :class:`~rlhf_envs.feedback.prefix.marks.SimulatedTokenMarker` give them. The target of the
        state with ``t`` completion tokens is the running sum ``c_t = marks[0] + ... + marks[t - 1]``
        (``c_0 = 0`` at the prompt's last token), and the loss is a per-position regression of the
        prefix head (:meth:`score_prefixes`): the mean squared error of ``Phi(s_t)`` against ``c_t``
        over every prefix plus that of each step ``Phi(s_{t+1}) - Phi(s_t)`` against the token's
        mark (the second term makes the local steps, which shaping pays, the direct target). So after the fit the prefix head is a potential whose steps are the marks
        (``Phi(s_{t+1}) - Phi(s_t) ~ mark of token t``), ready for potential-based shaping, and
        the final score of an episode is its net mark.

        Args:
            episodes: episodes with ``prompt_ids`` and ``completion_ids``.
            marks: one float sequence per episode, as long as its ``completion_ids``.
            tokenizer: the tokenizer of those ids (``None``: they are this model's own ids);
                another vocabulary is mapped token by token
                (:class:`~rlhf_envs.feedback.prefix.learned.TokenAligner`).
            **kw: the options of every fit (``epochs``, ``lr``, ``train_batch_size``,
                ``val_fraction``, ...). Offsets and scales are reset (targets are in marks).

        The report's ``val_accuracy`` is the share of held-out marked tokens (mark != 0) whose
        predicted step ``Phi(s_{t+1}) - Phi(s_t)`` has the mark's sign; ``extra["val_mse"]`` the
        held-out per-prefix squared error.
        """
        from rlhf_envs.feedback.prefix.learned import TokenAligner

        if len(episodes) != len(marks):
            raise FeedbackError(f"fit_token_marks: {len(episodes)} episodes but {len(marks)} mark arrays")
        aligner = TokenAligner(self.tokenizer, tokenizer)
        texts, groups = [], []
        for i, (ep, mk) in enumerate(zip(episodes, marks, strict=True)):
            if not isinstance(ep, Episode):
                raise FeedbackError(f"fit_token_marks: item {i} is {type(ep).__name__}, not an Episode")
            y = np.asarray(mk, dtype=np.float64)
            if y.shape != (len(ep.completion_ids),) or not np.all(np.isfinite(y)):
                raise FeedbackError(
                    f"fit_token_marks: marks {i} must be {len(ep.completion_ids)} finite numbers (one per "
                    f"completion token), got shape {y.shape}"
                )
            ids, ends = aligner.align(ep.prompt_ids, ep.completion_ids)
            if len(ids) > self.max_length:
                raise FeedbackError(
                    f"fit_token_marks: episode {i} has {len(ids)} tokens, more than max_length={self.max_length}"
                )
            texts.append(ids)
            groups.append(((i,), (ends - 1, np.concatenate([[0.0], np.cumsum(y)]), y)))
        return self._fit("token_marks", texts, groups, **kw)

    def _intern(self, items: Sequence[Text]) -> tuple[list[list[int]], list[int]]:
        """Encode the distinct texts once; return their ids and each item's index into them."""
        strings = [self._text(x) for x in items]
        unique: dict[str, int] = {}
        index = [unique.setdefault(s, len(unique)) for s in strings]
        if not strings:
            raise FeedbackError("nothing to fit: no items were given")
        return self.encode(list(unique)), index

    def _fit(
        self,
        kind: str,
        texts: list[list[int]],
        groups: list[tuple[tuple[int, ...], Any]],
        *,
        epochs: int = 3,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        train_batch_size: int = 32,
        val_fraction: float = 0.1,
        random_fraction: float = 0.0,
        bootstrap: bool | None = None,
        verbose: bool = False,
        data_parallel: DataParallel | None = None,
    ) -> FitReport:
        """Shared training loop.

        Options (keyword arguments of every ``fit_*``): ``epochs``; ``lr`` (AdamW, linear decay to 0);
        ``weight_decay``; ``train_batch_size`` (examples per step); ``val_fraction`` (held-out share,
        seeded); ``bootstrap`` (resample the training set per member; default: when
        ``n_members > 1``); ``verbose`` (print the report); ``data_parallel`` (see
        :class:`DataParallel`: every rank passes the same data and computes the gradient of its
        share of each step's batch; the summed gradients are the whole batch's).
        """
        t0 = time.perf_counter()
        if not groups:
            raise FeedbackError(f"nothing to fit: no usable {kind} (all skipped?)")
        if not 0.0 <= val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ConfigError(f"epochs must be a positive int, got {epochs!r}")
        rng = np.random.default_rng([self.seed, 17])
        perm = rng.permutation(len(groups))
        n_val = int(round(val_fraction * len(groups)))
        if len(groups) - n_val < 1:
            raise FeedbackError(f"only {len(groups)} {kind}: too few to hold out {val_fraction:.0%}")
        val = [groups[i] for i in perm[:n_val]]
        train = [groups[i] for i in perm[n_val:]]
        bootstrap = self.n_members > 1 if bootstrap is None else bootstrap

        losses = []
        for m, member in enumerate(self.members):
            mrng = np.random.default_rng([self.seed, 31, m])
            data = [train[i] for i in mrng.integers(0, len(train), len(train))] if bootstrap else train
            losses.append(
                self._train_member(
                    member,
                    kind,
                    texts,
                    data,
                    mrng,
                    epochs,
                    lr,
                    weight_decay,
                    train_batch_size,
                    random_fraction,
                    data_parallel,
                )
            )
        self.offsets[:] = 0.0
        self.scales[:] = 1.0
        if self.normalize and kind != "token_marks":  # (token-mark targets are in marks already)
            used = sorted({i for g, _ in train for i in g})
            raw = self._scores_of_ids([texts[i] for i in used])
            self.offsets = raw.mean(1)
            self.scales = np.maximum(raw.std(1), 1e-6)

        report = self._evaluate(kind, texts, val, random_fraction)
        report.n_train, report.train_loss = len(train), losses
        report.seconds = time.perf_counter() - t0
        self.last_fit = report
        if verbose:
            print(report)
        return report

    def _group_loss(
        self, member: torch.nn.Module, kind: str, texts: list[list[int]], batch: list, random_fraction: float
    ) -> torch.Tensor:
        if kind == "token_marks":
            heads = self._prefix_forward(member, [texts[g[0]] for g, _ in batch])
            rows = np.concatenate([np.full(len(t[0]), j) for j, (_, t) in enumerate(batch)])
            cols = np.concatenate([t[0] for _, t in batch])
            target = torch.tensor(np.concatenate([t[1] for _, t in batch]), device=heads.device)
            level = regression_loss(heads[torch.as_tensor(rows), torch.as_tensor(cols)], target)
            # the steps Phi(s_{t+1}) - Phi(s_t) against the marks themselves
            srows = torch.as_tensor(np.concatenate([np.full(len(t[2]), j) for j, (_, t) in enumerate(batch)]))
            prev = torch.as_tensor(np.concatenate([t[0][:-1] for _, t in batch]))
            nxt = torch.as_tensor(np.concatenate([t[0][1:] for _, t in batch]))
            marks = torch.tensor(np.concatenate([t[2] for _, t in batch]), device=heads.device)
            return level + regression_loss(heads[srows, nxt] - heads[srows, prev], marks)
        needed = sorted({i for g, _ in batch for i in g})
        pos = {t: j for j, t in enumerate(needed)}
        r = self._forward(member, [texts[i] for i in needed])
        if kind == "ratings":
            pred = r[[pos[g[0]] for g, _ in batch]]
            return regression_loss(pred, torch.tensor([y for _, y in batch], device=r.device))
        if kind == "preferences":
            ra = r[[pos[g[0]] for g, _ in batch]]
            rb = r[[pos[g[1]] for g, _ in batch]]
            p = torch.tensor([t[0] for _, t in batch], device=r.device, dtype=r.dtype)
            mg = torch.tensor([t[1] for _, t in batch], device=r.device, dtype=r.dtype)
            return bradley_terry_loss(ra, rb, p, mg, random_fraction)
        width = max(len(g) for g, _ in batch)
        idx = torch.tensor([[pos[t] for t in g] + [0] * (width - len(g)) for g, _ in batch], device=r.device)
        lengths = torch.tensor([len(g) for g, _ in batch], device=r.device)
        return plackett_luce_loss(r[idx], lengths)

    def _train_member(
        self,
        member: torch.nn.Module,
        kind: str,
        texts: list[list[int]],
        data: list,
        rng: np.random.Generator,
        epochs: int,
        lr: float,
        weight_decay: float,
        batch_size: int,
        random_fraction: float,
        data_parallel: DataParallel | None = None,
    ) -> float:
        with torch.random.fork_rng(devices=[]):  # dropout draws from a seeded, private stream
            torch.manual_seed(int(rng.integers(2**31)))
            return self._train_loop(
                member,
                kind,
                texts,
                data,
                rng,
                epochs,
                lr,
                weight_decay,
                batch_size,
                random_fraction,
                data_parallel,
            )

    def _train_loop(
        self,
        member: torch.nn.Module,
        kind: str,
        texts: list[list[int]],
        data: list,
        rng: np.random.Generator,
        epochs: int,
        lr: float,
        weight_decay: float,
        batch_size: int,
        random_fraction: float,
        data_parallel: DataParallel | None = None,
    ) -> float:
        dp = data_parallel if data_parallel is not None and data_parallel.world_size > 1 else None
        params = list(member.parameters())
        opt = torch.optim.AdamW(member.parameters(), lr=lr, weight_decay=weight_decay)
        steps_per_epoch = math.ceil(len(data) / batch_size)
        total = steps_per_epoch * epochs
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / total)
        member.train()
        last = float("nan")
        for _ in range(epochs):
            order = rng.permutation(len(data))
            running = 0.0
            for s in range(steps_per_epoch):
                batch = [data[i] for i in order[s * batch_size : (s + 1) * batch_size]]
                if dp is None:
                    loss = self._group_loss(member, kind, texts, batch, random_fraction)
                    if not torch.isfinite(loss):
                        raise FeedbackError(f"RewardModel: training loss became {loss.item()} (lower lr?)")
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                else:  # this rank's share; its mean loss weighted by its share of the batch
                    lo = len(batch) * dp.rank // dp.world_size
                    hi = len(batch) * (dp.rank + 1) // dp.world_size
                    mine = batch[lo:hi]
                    part = (
                        self._group_loss(member, kind, texts, mine, random_fraction)
                        * (len(mine) / len(batch))
                        if mine
                        else sum(p.sum() * 0.0 for p in params)
                    )
                    opt.zero_grad(set_to_none=True)
                    part.backward()
                    loss = part.detach().reshape(1).clone()
                    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
                    dp.all_reduce_sum_([*grads, loss])
                    for p, g in zip(params, grads, strict=True):
                        p.grad = g
                    if not torch.isfinite(loss).all():
                        raise FeedbackError(f"RewardModel: training loss became {loss.item()} (lower lr?)")
                torch.nn.utils.clip_grad_norm_(member.parameters(), 1.0)
                opt.step()
                sched.step()
                running += loss.item() * len(batch)
            last = running / len(data)
        member.eval()
        return last

    @torch.inference_mode()
    def _evaluate(self, kind: str, texts: list[list[int]], val: list, random_fraction: float) -> FitReport:
        nan = float("nan")
        if not val:
            return FitReport(kind, 0, 0, nan, nan, [], 0.0)
        if kind == "token_marks":
            return self._evaluate_marks(texts, val)
        used = sorted({i for g, _ in val for i in g})
        s = dict(zip(used, self.aggregate_scores(self._scores_of_ids([texts[i] for i in used])), strict=True))
        val_loss = float(self._group_loss(self.members[0], kind, texts, val, random_fraction))
        extra: dict[str, float] = {}
        if kind == "preferences":
            pairs = [(s[g[0]], s[g[1]], t[0]) for g, t in val if t[0] != 0.5]
            hits = [(ra > rb) == (p > 0.5) for ra, rb, p in pairs]
        elif kind == "rankings":
            hits = [s[g[i]] > s[g[j]] for g, _ in val for i in range(len(g)) for j in range(i + 1, len(g))]
        else:
            pred = np.array([s[g[0]] for g, _ in val])
            y = np.array([t for _, t in val])
            i, j = np.triu_indices(len(y), 1)
            diff = y[i] != y[j]
            hits = list(((pred[i] > pred[j]) == (y[i] > y[j]))[diff])
            extra["val_mse"] = float(np.mean((pred - y) ** 2))
            if len(y) > 1 and np.std(pred) > 0 and np.std(y) > 0:
                extra["val_pearson"] = float(np.corrcoef(pred, y)[0, 1])
        acc = float(np.mean(hits)) if hits else nan
        return FitReport(kind, 0, len(val), acc, val_loss, [], 0.0, extra)

    def _evaluate_marks(self, texts: list[list[int]], val: list) -> FitReport:
        heads = self.score_prefixes([texts[g[0]] for g, _ in val])
        sq, hits = [], []
        for h, (_, (pos, target, y)) in zip(heads, val, strict=True):
            phi = h[pos].astype(np.float64)
            sq.append((phi - target) ** 2)
            step = np.diff(phi)
            hits.extend((np.sign(step) == np.sign(y))[y != 0].tolist())
        mse = float(np.mean(np.concatenate(sq)))
        acc = float(np.mean(hits)) if hits else float("nan")
        return FitReport("token_marks", 0, len(val), acc, mse, [], 0.0, {"val_mse": mse})

    # -- persistence --------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the model to directory ``path``: JSON settings, safetensors weights, tokenizer."""
        from safetensors.torch import save_model

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.config.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        for m, member in enumerate(self.members):
            save_model(member, str(path / f"member_{m}.safetensors"))
        settings = {
            "n_members": self.n_members,
            "aggregate": self.aggregate,
            "k": self.k,
            "normalize": self.normalize,
            "max_length": self.max_length,
            "append_eos": self.append_eos,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "offsets": self.offsets.tolist(),
            "scales": self.scales.tolist(),
            "last_fit": asdict(self.last_fit) if self.last_fit else None,
        }
        atomic_io.write_json(path / _SETTINGS_FILE, settings, indent=2)  # last: marks a complete save

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> RewardModel:
        """Load a model written by :meth:`save` (safetensors and JSON only: no code runs).

        Every file is checked: a missing, truncated or malformed file, a settings entry that is
        missing or out of range, weights that do not fit the architecture or are not finite, and a
        ``config.json`` naming custom code (``auto_map``) raise :class:`DataError` naming the file.
        """
        from safetensors.torch import load_file, load_model
        from transformers import AutoConfig

        path = Path(path)
        settings_file = path / _SETTINGS_FILE
        if not settings_file.is_file():
            raise ConfigError(f"{str(path)!r} holds no saved RewardModel ({_SETTINGS_FILE} missing)")
        s = _read_json_object(settings_file)
        missing = [k for k in _SETTINGS_KEYS if k not in s]
        if missing:
            raise DataError(
                f"reward model file {str(settings_file)!r} lacks {', '.join(map(repr, missing))}; "
                "it was not written by RewardModel.save (or was edited)"
            )
        config_file = path / "config.json"
        if "auto_map" in _read_json_object(config_file):
            raise DataError(
                f"reward model file {str(config_file)!r} names custom model code (auto_map); "
                "loading a reward model never runs code"
            )
        try:
            config = AutoConfig.from_pretrained(str(path), local_files_only=True)
        except Exception as exc:  # unknown model_type, malformed fields
            raise DataError(
                f"reward model file {str(config_file)!r} is not a usable transformers config "
                f"({type(exc).__name__}: {exc})"
            ) from None
        try:
            rm = cls(
                config,
                str(path),
                n_members=s["n_members"],
                aggregate=s["aggregate"],
                k=s["k"],
                normalize=s["normalize"],
                max_length=s["max_length"],
                append_eos=s["append_eos"],
                batch_size=s["batch_size"],
                seed=s["seed"],
                device=device,
            )
        except ConfigError as exc:
            raise DataError(f"reward model {str(path)!r}: {exc}") from None
        except Exception as exc:  # the tokenizer files (or the settings' types) do not load
            raise DataError(
                f"reward model {str(path)!r}: cannot be rebuilt from its files ({type(exc).__name__}: {exc})"
            ) from None
        from rlhf_envs.lm.loading import check_tokenizer_fits, tokenizer_source

        vocab = getattr(config, "vocab_size", None)
        if isinstance(vocab, int) and not isinstance(vocab, bool):
            check_tokenizer_fits(
                rm.tokenizer, vocab, config, tokenizer_source(rm.tokenizer), repr(str(config_file))
            )
        for m, member in enumerate(rm.members):
            weights_file = path / f"member_{m}.safetensors"
            if not weights_file.is_file():
                raise DataError(
                    f"reward model file {str(weights_file)!r} is missing (n_members={rm.n_members})"
                )
            try:
                tensors = load_file(str(weights_file))
            except Exception as exc:  # SafetensorError on a truncated or garbage file
                raise DataError(
                    f"reward model file {str(weights_file)!r} is not a readable safetensors file "
                    f"({type(exc).__name__}: {exc})"
                ) from None
            bad = [
                k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())
            ]
            if bad:
                raise DataError(
                    f"reward model file {str(weights_file)!r}: weight {bad[0]!r} is not finite (NaN or inf)"
                )
            try:
                missing, unexpected = load_model(
                    member, str(weights_file), strict=False, device=str(rm.device)
                )
            except RuntimeError as exc:  # shape mismatches
                raise DataError(
                    f"reward model file {str(weights_file)!r} does not fit its config.json: {exc}"
                ) from None
            if missing or unexpected:
                raise DataError(
                    f"reward model file {str(weights_file)!r} does not match the architecture in "
                    f"config.json: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
                )
            member.to(rm.device).eval()
        for key in ("offsets", "scales", "last_fit"):
            try:
                if key == "last_fit":
                    rm.last_fit = FitReport(**s[key]) if s[key] else None
                else:
                    setattr(rm, key, np.asarray(s[key], dtype=np.float64))
            except (TypeError, ValueError) as exc:
                raise DataError(
                    f"reward model file {str(settings_file)!r}: malformed {key!r} ({exc})"
                ) from None
        if rm.offsets.shape != (rm.n_members,) or rm.scales.shape != (rm.n_members,):
            raise DataError(
                f"reward model file {str(settings_file)!r}: 'offsets' and 'scales' must hold one number per "
                f"member ({rm.n_members})"
            )
        if not (np.isfinite(rm.offsets).all() and np.isfinite(rm.scales).all() and (rm.scales > 0).all()):
            raise DataError(
                f"reward model file {str(settings_file)!r}: 'offsets' must be finite and 'scales' finite and > 0"
            )
        return rm

    def __repr__(self) -> str:
        return (
            f"RewardModel({self.config.model_type}, n_members={self.n_members}, aggregate={self.aggregate!r}, "
            f"params/member={sum(p.numel() for p in self.members[0].parameters()):,})"
        )


_CODES_HINT = (
    "pass the object compare() returned (fit_preferences(a, b, answers)) or answers.prob_a(), "
    "'A'/'B'/'tie'/'skip', or float probabilities such as 1.0"
)


def _preference_labels(labels: Any) -> Any:
    """``fit_preferences``' labels: a comparisons object -> its ``prob_a()``; integer arrays refused."""
    prob_a = getattr(labels, "prob_a", None)
    if callable(prob_a):
        return list(prob_a())
    if isinstance(labels, np.ndarray) and labels.dtype.kind in "iub":
        raise FeedbackError(
            f"fit_preferences: labels is an integer array (dtype {labels.dtype}): these look like the codes of "
            f"Comparisons.labels (0 = A, 1 = B, 2 = tie, 3 = skip), not probabilities that A wins; {_CODES_HINT}"
        )
    if isinstance(labels, str | bytes) or not hasattr(labels, "__len__"):
        raise FeedbackError(
            f"fit_preferences: labels must be a sequence (one answer per pair) or a comparisons object, "
            f"got {type(labels).__name__}"
        )
    return labels


def _label_to_prob(x: Any, i: int) -> float | None:
    """Map a preference label to P(A preferred); ``None`` for a skipped query."""
    if x is None:
        return None
    name = getattr(x, "name", None)
    if name is not None and not isinstance(x, bool):  # a simulated.Label enum member
        x = name
    elif isinstance(x, bool | int | np.integer | np.bool_):
        raise FeedbackError(
            f"label {i} is the integer {x!r}: integers are ambiguous (Comparisons.labels codes 0 = A and "
            f"1 = B are the opposite of probabilities); {_CODES_HINT}"
        )
    if isinstance(x, str):
        key = x.strip().lower()
        table = {"a": 1.0, "b": 0.0, "tie": 0.5, "equal": 0.5, "skip": None}
        if key not in table:
            raise FeedbackError(
                f"label {i} is {x!r}; allowed: 'A', 'B', 'tie', 'skip' or a probability in [0, 1]"
            )
        return table[key]
    try:
        p = float(x)
    except (TypeError, ValueError):
        raise FeedbackError(
            f"label {i} is {x!r}; allowed: 'A', 'B', 'tie', 'skip' or a probability in [0, 1]"
        ) from None
    if not 0.0 <= p <= 1.0:  # (False for NaN)
        raise FeedbackError(f"label {i} is {p}; a probability must be in [0, 1]")
    return p
