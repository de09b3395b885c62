"""Stable-Baselines3 / sb3-contrib baselines trained unmodified against the rlhf envs.

* :class:`NativeVecEnv` / :func:`make_sb3_env`: the natively batched vector env as an SB3 ``VecEnv``
  (terminal observations, ``TimeLimit.truncated``, action masks through ``env_method``);
* :class:`TokenFeaturesExtractor`: token embeddings plus a small causal encoder (or the embedded LM);
* :class:`KLPenaltyCallback`: the per-token KL penalty to the reference from the SB3 policy's own
  log-probs (PPO, A2C, MaskablePPO; not DQN);
* :func:`train_baseline`, :func:`evaluate_baseline`, :func:`load_baseline`, :func:`random_baseline`.

Same objective as the custom PPO, per algorithm:

=============  ==============================================================================
PPO, A2C       task reward on the final token, per-token ``-beta * (log pi - log pi_ref)`` from
               the policy's own rollout log-probs (``KLPenaltyCallback``, default beta 0.05 on
               language tasks), gamma 1, no bootstrap at the token budget.
MaskablePPO    the same, with the policy restricted to the env's mask (toy tasks) or the
               reference model's top-p set (language tasks, NLPO); the KL is then that of the
               masked policy to the unmasked reference, as in NLPO.
DQN            no KL penalty: DQN has no policy log-probs (epsilon-greedy over argmax Q), so
               ``kl_coef > 0`` is refused; it is also refused on language-sized vocabularies
               (above 256 actions) since it cannot use an action mask. Toy tasks only.
=============  ==============================================================================

The env's own shaping (``kl_coef`` of a language env, which pays ``kl_coef * ref_logprob``) is a
different mechanism: leave it at 0 when the callback is used, or the reference term counts twice.

Example::

    from agents.sb3 import train_baseline, evaluate_baseline
    model = train_baseline("ppo", "RLHF/Copy-v0", 100_000, seed=0, progress_bar=True)
    evaluate_baseline(model, "RLHF/Copy-v0")  # {'mean_task_reward': ..., 'success_rate': ...}
"""

from agents.sb3.adapter import NativeVecEnv, ReferenceTopMask, make_native_vec_env
from agents.sb3.callbacks import REF_LOGPROB_KEY, EpisodeStatsCallback, KLPenaltyCallback
from agents.sb3.extractor import TokenFeaturesExtractor, init_action_head_from_lm
from agents.sb3.train import (
    ALGOS,
    canonical_algo,
    evaluate_baseline,
    load_baseline,
    make_sb3_env,
    random_baseline,
    train_baseline,
)

__all__ = [
    "ALGOS",
    "REF_LOGPROB_KEY",
    "EpisodeStatsCallback",
    "KLPenaltyCallback",
    "NativeVecEnv",
    "ReferenceTopMask",
    "TokenFeaturesExtractor",
    "canonical_algo",
    "evaluate_baseline",
    "init_action_head_from_lm",
    "load_baseline",
    "make_native_vec_env",
    "make_sb3_env",
    "random_baseline",
    "train_baseline",
]
