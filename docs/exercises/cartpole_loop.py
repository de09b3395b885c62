"""The training loop of exercise (a): REINFORCE on CartPole-v1 with a loss function you supply.

The loop is given so the exercise is only the part that matters, the loss. It samples one
episode at a time from a small softmax policy (an MLP), hands the episode's log-probabilities and
rewards to ``loss_fn(log_probs, rewards, gamma)`` and takes one Adam step on the returned loss.
Everything random is seeded: the network's initial weights (``torch.manual_seed(seed)`` inside a
forked RNG, so the caller's global torch RNG is left alone), the action sampling (its own
``torch.Generator``) and the env (``reset(seed=seed + episode)``).
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import torch

LossFn = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


def train_cartpole(
    loss_fn: LossFn,
    episodes: int = 200,
    seed: int = 0,
    gamma: float = 0.99,
    learning_rate: float = 1e-2,
    hidden: int = 32,
) -> list[float]:
    """Train a fresh policy with ``loss_fn`` for ``episodes`` episodes; return every episode's return.

    A random policy scores about 22 per episode; the maximum is 500 (the episode is truncated).
    """
    if episodes < 1:
        raise ValueError(f"episodes must be positive, got {episodes}")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        policy = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 2))
    optimizer = torch.optim.Adam(policy.parameters(), lr=learning_rate)
    sampler = torch.Generator().manual_seed(seed + 1)
    env = gym.make("CartPole-v1")
    returns: list[float] = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        log_probs: list[torch.Tensor] = []
        rewards: list[float] = []
        done = False
        while not done:
            logits = policy(torch.as_tensor(obs, dtype=torch.float32))
            probs = torch.softmax(logits, -1)
            action = torch.multinomial(probs.detach(), 1, generator=sampler)[0]
            log_probs.append(torch.log(probs[action]))
            obs, reward, terminated, truncated, _ = env.step(int(action))
            rewards.append(float(reward))
            done = terminated or truncated
        loss = loss_fn(torch.stack(log_probs), torch.tensor(rewards, dtype=torch.float32), gamma)
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise TypeError(f"loss_fn must return a scalar tensor, got {loss!r}")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        returns.append(sum(rewards))
    env.close()
    return returns
