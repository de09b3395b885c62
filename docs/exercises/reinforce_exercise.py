"""Exercise (a): implement the REINFORCE loss. Fill in ``reinforce_loss`` below.

Check your answer from the repository root::

    python -m docs.exercises.check reinforce

The checker compares your loss and its gradient with the answer key on small hand-made episodes,
then trains a policy on CartPole-v1 with it (``docs/exercises/cartpole_loop.py``) and expects the
policy to learn. Run this file to watch your loss train::

    python -m docs.exercises.reinforce_exercise
"""

from __future__ import annotations

import torch


def reinforce_loss(log_probs: torch.Tensor, rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """The REINFORCE loss of one episode, with the normalised return as a baseline.

    Args:
        log_probs: shape ``(T,)``, ``log pi(a_t | s_t)`` of the actions taken (they carry gradients).
        rewards: shape ``(T,)``, the reward ``r_t`` after each action.
        gamma: discount factor in ``[0, 1]``.

    Returns:
        A scalar tensor ``loss`` such that ``loss.backward()`` gives the policy-gradient estimate
        (with a minus sign, since optimisers minimise). Compute, in this order:

        1. the reward-to-go ``G_t = r_t + gamma * r_{t+1} + gamma^2 * r_{t+2} + ...`` for every t
           (example: rewards ``[1, 1, 1]``, gamma ``0.5`` -> ``G = [1.75, 1.5, 1.0]``);
        2. the advantage ``A_t = (G_t - mean(G)) / (std(G) + 1e-8)`` with the population standard
           deviation (``unbiased=False``); it is a constant, so no gradient flows through it;
        3. ``loss = -mean_t(A_t * log_probs_t)``.
    """
    # Your code here: replace the line below.
    raise NotImplementedError(
        "exercise (a): implement reinforce_loss in docs/exercises/reinforce_exercise.py"
    )


if __name__ == "__main__":
    from docs.exercises.cartpole_loop import train_cartpole

    returns = train_cartpole(reinforce_loss, episodes=200, seed=0)
    for start in range(0, len(returns), 20):
        chunk = returns[start : start + 20]
        print(f"episodes {start:3d}-{start + len(chunk) - 1:3d}: mean return {sum(chunk) / len(chunk):6.1f}")
