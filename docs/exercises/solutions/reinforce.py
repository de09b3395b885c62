"""Reference solution of exercise (a): the REINFORCE loss with a normalised-return baseline.

python -m docs.exercises.check reinforce --solution
"""

from __future__ import annotations

import torch


def reinforce_loss(log_probs: torch.Tensor, rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """``-mean_t(A_t * log pi(a_t|s_t))`` with ``A`` the normalised reward-to-go (see the exercise)."""
    returns = torch.empty_like(rewards)
    running = torch.zeros((), dtype=rewards.dtype)
    for t in range(len(rewards) - 1, -1, -1):  # G_t = r_t + gamma * G_{t+1}, from the end
        running = rewards[t] + gamma * running
        returns[t] = running
    advantages = (returns - returns.mean()) / (returns.std(unbiased=False) + 1e-8)
    return -(advantages.detach() * log_probs).mean()


if __name__ == "__main__":
    from docs.exercises.cartpole_loop import train_cartpole

    returns = train_cartpole(reinforce_loss, episodes=200, seed=0)
    for start in range(0, len(returns), 20):
        chunk = returns[start : start + 20]
        print(f"episodes {start:3d}-{start + len(chunk) - 1:3d}: mean return {sum(chunk) / len(chunk):6.1f}")
