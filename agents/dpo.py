"""Direct Preference Optimisation (DPO; Rafailov et al. 2023) and its IPO variant (Azar et al. 2023),
trained offline from a preference data set.

DPO skips the reward model and the rollouts of RLHF: it fits the policy directly on pairs of
completions ``(A, B)`` of one prompt ``x`` with a label ``p = P(A preferred)``
(:class:`agents.preference_data.PreferencePairs`). With ``pi`` the policy, ``pi_ref`` the frozen
reference (the initial policy: :class:`agents.lm_actor_critic.LMActorCritic` copies it at
construction), and sequence log-probabilities summed over the completion tokens, the implicit reward
margin of A over B is

    h = (log pi(A|x) - log pi_ref(A|x)) - (log pi(B|x) - log pi_ref(B|x))

and the losses, averaged over the pairs of a minibatch, are

* ``loss="sigmoid"`` (DPO): ``-(p log sigma(beta h) + (1 - p) log sigma(-beta h))``, the
  Bradley-Terry likelihood of the label under the implicit reward ``beta log(pi / pi_ref)``; a hard
  label (p = 1) is the paper's loss, a soft one is the cross-entropy with the label (conservative
  DPO's label smoothing is p = 1 - eps), a tie (p = 0.5) pulls ``h`` towards 0;
* ``loss="ipo"`` (IPO): ``(h - (2p - 1) / (2 beta))^2``, the paper's squared loss with target
  ``1 / (2 beta)`` for a hard label (``tau = beta``); it regresses the margin to a finite value
  instead of pushing it to infinity on separable data. Sequence log-probabilities are sums, as in
  the paper (TRL's "ipo" divides them by the length).

The reference log-probabilities are computed once per pair, when the data is set (one no-grad
pass of the reference model), and saved with every checkpoint together with the data.

One gradient step takes the next ``batch_size`` pairs of the current epoch (each epoch a fresh
permutation of the pairs, drawn from ``(seed, epoch)``, so the order depends on neither batching nor
interruptions), runs both completions of each pair through the policy in one batched pass (prompts
left-padded, completions right-padded, as the rollout lays them out), and takes the optimiser step
of every agent (gradient-norm clip, non-finite loss or gradients raise before the weights change).

``learn(total_timesteps)`` counts *completion tokens trained on* (both sides of every pair in the
step, counted again in every epoch); ``agent.data_tokens`` is one epoch's worth. The rest is the
agents' surface: ``evaluate(k)`` samples ``k`` episodes from the env (task reward and the
generation metrics, KL to the reference included), ``save`` / ``load`` (exact resume), logging.
"""

from __future__ import annotations

import os
import time
import types
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from agents.base import OnPolicyAgent
from agents.checks import check_choice, check_float, check_int
from agents.config import OnPolicyConfig
from agents.preference_data import PreferencePairs
from agents.run_logger import TrainingLogger
from agents.threads import uses_config_threads
from rlhf_envs.errors import ConfigError, DataError

LOSSES = ("sigmoid", "ipo")
#: prefix of the checkpoint tensors that hold the preference data
DATA_PREFIX = "dpo.data"


@dataclass
class DPOConfig(OnPolicyConfig):
    """DPO's settings (language-model policies only). Rollout and value fields of
    :class:`OnPolicyConfig` (``n_steps``, ``gamma``, ``gae_lambda``, ``vf_coef``, ``ent_coef``,
    ``kl_coef``, ...) are unused; ``n_envs`` is the evaluation's batch of episodes;
    ``checkpoint_every`` counts gradient steps."""

    #: the KL strength beta of the implicit reward ``beta log(pi / pi_ref)`` (IPO: tau)
    beta: float = 0.1
    #: "sigmoid" (DPO) or "ipo"; see :mod:`agents.dpo`
    loss: str = "sigmoid"
    #: preference pairs per gradient step (each gives two sequences)
    batch_size: int = 16
    #: pairs per no-grad pass when the reference log-probs are computed (memory only)
    ref_batch_size: int = 64
    anneal_lr: bool = False

    ALGO: ClassVar[str | None] = "dpo"
    LM_PRESET: ClassVar[str | None] = "lm-default-dpo"

    def validate(self) -> None:
        super().validate()
        check_float("beta", self.beta, 0.0, low_open=True)
        check_choice("loss", self.loss, LOSSES)
        check_int("batch_size", self.batch_size, 1)
        check_int("ref_batch_size", self.ref_batch_size, 1)
        if self.policy != "lm":
            raise ConfigError(
                f"policy must be 'lm' for DPO: it trains a language model on pairs of completions; "
                f"got policy={self.policy!r}"
            )

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> DPOConfig:
        """As :meth:`OnPolicyConfig.from_kwargs`, with ``policy="lm"`` unless given."""
        kwargs.setdefault("policy", "lm")
        return super().from_kwargs(**kwargs)  # type: ignore[return-value]


def dpo_loss(
    logp_a: torch.Tensor,
    logp_b: torch.Tensor,
    ref_a: torch.Tensor,
    ref_b: torch.Tensor,
    prob_a: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DPO's loss (mean over pairs) and the margins ``h``; all inputs ``(n,)`` sequence log-probs."""
    h = (logp_a - ref_a) - (logp_b - ref_b)
    z = beta * h
    loss = -(prob_a * F.logsigmoid(z) + (1.0 - prob_a) * F.logsigmoid(-z))
    return loss.mean(), h


def ipo_loss(
    logp_a: torch.Tensor,
    logp_b: torch.Tensor,
    ref_a: torch.Tensor,
    ref_b: torch.Tensor,
    prob_a: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """IPO's loss ``mean((h - (2p - 1) / (2 beta))^2)`` and the margins ``h``."""
    h = (logp_a - ref_a) - (logp_b - ref_b)
    target = (2.0 * prob_a - 1.0) / (2.0 * beta)
    return ((h - target) ** 2).mean(), h


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of the ``n`` pairs in ``epoch``: a permutation drawn from ``(seed, epoch)``."""
    return np.random.default_rng([int(seed), int(epoch), 0xD90]).permutation(n)


def pair_sequences(
    data: PreferencePairs, idx: Any, device: str
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Rows ``2j`` (prompt + A) and ``2j + 1`` (prompt + B) of the pairs ``idx``, laid out as a rollout:
    prompts left-padded to the longest, completions right-padded. Returns ``(obs, actions, mask)``
    with ``obs`` the ``(2n, P + R)`` ids and attention mask, ``actions`` / ``mask`` ``(2n, R)``."""
    rows = [(data.prompt_ids[i], c) for i in idx for c in (data.a_ids[i], data.b_ids[i])]
    p_max = max(len(p) for p, _ in rows)
    r_max = max(len(c) for _, c in rows)
    ids = torch.zeros(len(rows), p_max + r_max, dtype=torch.long)
    attn = torch.zeros_like(ids)
    actions = torch.zeros(len(rows), r_max, dtype=torch.long)
    mask = torch.zeros(len(rows), r_max, dtype=torch.bool)
    for k, (p, c) in enumerate(rows):
        ids[k, p_max - len(p) : p_max] = torch.tensor(p)
        attn[k, p_max - len(p) : p_max + len(c)] = 1
        ids[k, p_max : p_max + len(c)] = torch.tensor(c)
        actions[k, : len(c)] = torch.tensor(c)
        mask[k, : len(c)] = True
    obs = {"input_ids": ids.to(device), "attention_mask": attn.to(device)}
    return obs, actions.to(device), mask.to(device)


class DPO(OnPolicyAgent):
    """DPO / IPO agent: ``DPO(env_id, seed=0, model=..., preferences=pairs, beta=0.1, loss="sigmoid")``.

    ``preferences`` is a :class:`~agents.preference_data.PreferencePairs` or a tuple
    ``(a_episodes, b_episodes, answers)`` (what ``RewardModel.fit_preferences`` takes; the env's
    tokenizer encodes text-only episodes); :meth:`set_preferences` replaces it later. Options:
    :class:`DPOConfig`. Example::

        a, b, answers, _ = sample_comparisons(base_agent, 512, SimulatedHuman(task.feedback), seed=0)
        agent = DPO("RLHF/Sentiment-v0", seed=0, model="default", preferences=(a, b, answers))
        agent.learn(3 * agent.data_tokens)   # three epochs
        agent.evaluate(64)   # {'mean_return': ..., 'kl_ref': ..., 'distinct_1': ..., ...}
    """

    config_class = DPOConfig
    config: DPOConfig

    def __init__(self, env_or_id: Any, seed: int = 0, preferences: Any = None, **config: Any) -> None:
        super().__init__(env_or_id, seed=seed, **config)
        if self.world.active:
            raise ConfigError("DPO trains in one process; launch it without torchrun")
        self.preferences: PreferencePairs | None = None
        #: the reference model's summed log-probs of each pair's A and B completions, ``(n, 2)``
        self.ref_logps: torch.Tensor | None = None
        #: pairs trained on so far over all epochs (the position in the data; checkpointed)
        self.pairs_seen = 0
        if preferences is not None:
            self.set_preferences(preferences)

    def _build_policy(self) -> torch.nn.Module:
        from agents.lm_actor_critic import LMActorCritic

        return LMActorCritic.from_config(
            self.config,
            self.observation_space,
            self.action_space,
            self.init_rng,
            env=self.env,
            value_head=False,
        )

    # -- the data ---------------------------------------------------------------------------------

    def set_preferences(self, preferences: Any) -> None:
        """Train on ``preferences`` from now on (from its first epoch): a :class:`PreferencePairs`
        or ``(a, b, answers)``. Checks that its token ids fit the policy, then computes the
        reference log-probs of every pair once."""
        if isinstance(preferences, tuple) and len(preferences) == 3:
            from agents.lm_actor_critic import env_tokenizer

            a, b, answers = preferences
            preferences = PreferencePairs.from_comparisons(a, b, answers, env_tokenizer(self.env))
        if not isinstance(preferences, PreferencePairs):
            raise DataError(
                "preferences must be a PreferencePairs (agents.preference_data) or a tuple "
                f"(a_episodes, b_episodes, answers), got {type(preferences).__name__}"
            )
        lm_cfg = self.policy.lm.config
        positions = getattr(lm_cfg, "n_positions", None) or getattr(lm_cfg, "max_position_embeddings", None)
        preferences.check_fits(self.policy.n_actions, positions)
        self.preferences = preferences
        self.ref_logps = self._reference_logps(preferences)
        self.pairs_seen = 0

    @torch.no_grad()
    def _reference_logps(self, data: PreferencePairs) -> torch.Tensor:
        out = []
        for start in range(0, len(data), self.config.ref_batch_size):
            idx = range(start, min(start + self.config.ref_batch_size, len(data)))
            obs, actions, mask = pair_sequences(data, idx, self.config.device)
            ref = self.policy.ref_logprobs(obs, actions)
            out.append((ref * mask).sum(1).view(-1, 2).cpu())
        return torch.cat(out)

    @property
    def data_tokens(self) -> int:
        """Completion tokens in one epoch of the data (both sides of every pair)."""
        return 0 if self.preferences is None else self.preferences.completion_tokens()

    def _next_pairs(self) -> np.ndarray:
        """The pairs of the next gradient step (the rest of the epoch if fewer than ``batch_size``)."""
        assert self.preferences is not None
        n = len(self.preferences)
        epoch, pos = divmod(self.pairs_seen, n)
        return epoch_order(self.seed, epoch, n)[pos : pos + self.config.batch_size]

    # -- training ---------------------------------------------------------------------------------

    def loss(self, idx: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The configured loss on the pairs ``idx`` and the terms to log."""
        cfg = self.config
        data = self.preferences
        assert data is not None and self.ref_logps is not None
        obs, actions, mask = pair_sequences(data, idx, cfg.device)
        logp, _, _ = self.policy.evaluate_batch(types.SimpleNamespace(obs=obs, actions=actions))
        seq = (logp * mask).sum(1).view(-1, 2)
        ref = self.ref_logps[torch.as_tensor(np.asarray(idx), dtype=torch.long)].to(seq.device)
        p = torch.as_tensor(data.prob_a[np.asarray(idx)], dtype=seq.dtype, device=seq.device)
        fn = dpo_loss if cfg.loss == "sigmoid" else ipo_loss
        loss, h = fn(seq[:, 0], seq[:, 1], ref[:, 0], ref[:, 1], p, cfg.beta)
        with torch.no_grad():
            sign = torch.sign(p - 0.5)
            decisive = sign != 0
            n_dec = decisive.sum().clamp(min=1)
            terms = {
                "loss": loss,
                "margin": (sign * h).sum() / n_dec,
                "reward_margin": cfg.beta * (sign * h).sum() / n_dec,
                "pref_accuracy": ((sign * h > 0) & decisive).sum() / n_dec,
                "logratio_a": (seq[:, 0] - ref[:, 0]).mean(),
                "logratio_b": (seq[:, 1] - ref[:, 1]).mean(),
                "logp_mean": seq.mean(),
            }
        return loss, terms

    @uses_config_threads
    def learn(
        self,
        total_timesteps: int,
        callback: Any = None,
        progress_bar: bool = True,
        reset_num_timesteps: bool = True,
    ) -> DPO:
        """Train for ``total_timesteps`` completion tokens (both sides of each pair, every epoch).

        ``callback(agent, metrics)`` runs after every gradient step; returning ``False`` stops. To
        resume from a checkpoint: ``agent = DPO.load(path)`` then
        ``agent.learn(total - agent.num_timesteps, reset_num_timesteps=False)``: it repeats the
        uninterrupted run exactly on CPU (the data and the position in it are in the checkpoint).
        """
        if (
            isinstance(total_timesteps, bool)
            or not isinstance(total_timesteps, int | np.integer)
            or total_timesteps < 0
        ):
            raise ValueError(f"total_timesteps must be a non-negative int, got {total_timesteps!r}")
        if self.preferences is None:
            raise ConfigError(
                "DPO has no preference data: pass preferences= to DPO(...) or call set_preferences(...)"
            )
        cfg = self.config
        if reset_num_timesteps:
            self.num_timesteps = self.iteration = 0
        self._total_timesteps = self.num_timesteps + int(total_timesteps)
        logger = TrainingLogger(
            cfg.log_dir, self._total_timesteps, self.num_timesteps, progress_bar, cfg.tensorboard
        )
        n = len(self.preferences)
        try:
            while self.num_timesteps < self._total_timesteps:
                progress_remaining = 1.0 - self.num_timesteps / self._total_timesteps
                lr = cfg.learning_rate * (progress_remaining if cfg.anneal_lr else 1.0)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                t0 = time.perf_counter()
                idx = self._next_pairs()
                self.policy.train()
                loss, terms = self.loss(idx)
                grad_norm = self.optimize(loss, types.SimpleNamespace(), terms)  # type: ignore[arg-type]
                self.policy.eval()
                tokens = self.preferences.completion_tokens(idx.tolist())
                self.num_timesteps += tokens
                self.iteration += 1
                self.pairs_seen += len(idx)
                dt = time.perf_counter() - t0
                metrics = {k: float(v.detach()) for k, v in terms.items()}
                metrics.update(
                    grad_norm=grad_norm,
                    iteration=self.iteration,
                    epoch=self.pairs_seen / n,
                    learning_rate=lr,
                    fps=tokens / max(dt, 1e-9),
                    update_seconds=dt,
                )
                logger.log(self.num_timesteps, metrics, tokens)
                if cfg.checkpoint_dir is not None and self.iteration % cfg.checkpoint_every == 0:
                    self.save(os.path.join(cfg.checkpoint_dir, "last"))
                if callback is not None and callback(self, metrics) is False:
                    break
        finally:
            logger.close()
        return self

    def train(self, batch: Any, progress_remaining: float) -> dict[str, float]:
        """Not used: DPO's :meth:`learn` takes its steps on the preference data itself."""
        raise NotImplementedError("DPO trains offline: call learn(total_timesteps)")

    def _diagnose(self, what: str, batch: Any, terms: dict[str, torch.Tensor]) -> str:
        parts = [f"{k}={float(v.detach()):.4g}" for k, v in terms.items()]
        keep = f"; last checkpoint {self.last_checkpoint!r} is intact" if self.last_checkpoint else ""
        return (
            f"non-finite {what} at DPO step {self.iteration} ({', '.join(parts)}); try a lower "
            f"learning rate or a larger beta; weights not updated{keep}"
        )

    # -- checkpoints ------------------------------------------------------------------------------

    def _checkpoint_extras(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        if self.preferences is None:
            return {}, {"dpo": {"pairs_seen": self.pairs_seen, "data": None}}
        tensors = self.preferences.to_tensors(DATA_PREFIX)
        assert self.ref_logps is not None
        tensors["dpo.ref_logps"] = self.ref_logps.clone()
        return tensors, {"dpo": {"pairs_seen": self.pairs_seen, "data": self.preferences.summary()}}

    def _restore_checkpoint_extras(self, ck: Any) -> None:
        from agents.checkpoint import CheckpointError

        state = ck.meta.get("dpo")
        if not isinstance(state, dict):
            raise CheckpointError(f"checkpoint file {ck.file('config.json')!r} lacks DPO's 'dpo' entry")
        seen = state.get("pairs_seen")
        if isinstance(seen, bool) or not isinstance(seen, int) or seen < 0:
            raise CheckpointError(
                f"checkpoint file {ck.file('config.json')!r}: 'dpo.pairs_seen' must be an int >= 0, got {seen!r}"
            )
        if state.get("data") is not None:
            try:
                data = PreferencePairs.from_tensors(ck.tensors, DATA_PREFIX, state["data"])
                ref = ck.tensors["dpo.ref_logps"].float()
            except (KeyError, DataError) as exc:
                raise CheckpointError(
                    f"checkpoint file {ck.file('state.safetensors')!r}: invalid preference data ({exc})"
                ) from None
            if ref.shape != (len(data), 2) or not bool(torch.isfinite(ref).all()):
                raise CheckpointError(
                    f"checkpoint file {ck.file('state.safetensors')!r}: 'dpo.ref_logps' must be finite, "
                    f"shape ({len(data)}, 2), got {tuple(ref.shape)}"
                )
            self.preferences, self.ref_logps = data, ref
        self.pairs_seen = seen

    def __repr__(self) -> str:
        n = 0 if self.preferences is None else len(self.preferences)
        return (
            f"DPO(env={self.env_id or type(self.env).__name__}, seed={self.seed}, loss={self.config.loss}, "
            f"beta={self.config.beta}, pairs={n})"
        )


__all__ = ["DPO", "DPOConfig", "dpo_loss", "epoch_order", "ipo_loss", "pair_sequences"]
