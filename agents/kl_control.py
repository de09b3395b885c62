"""The KL coefficient of the per-token penalty ``-beta * KL_t``: fixed, or adapted towards a target.

Adaptive control is Ziegler et al. (2019): after each batch whose mean per-episode KL to the
reference was ``KL``, ``beta *= 1 + clip(KL / target - 1, -0.2, 0.2) * n_episodes / horizon``.
"""

from __future__ import annotations

import numpy as np


class KLController:
    """Fixed or adaptive KL coefficient (Ziegler et al. 2019); ``value`` is the current beta.

    Adaptive: ``beta *= 1 + clip(KL / target - 1, -0.2, 0.2) * n_episodes / horizon``.
    """

    def __init__(self, coef: float, adaptive: bool, target: float, horizon: int) -> None:
        self.value = float(coef)
        self.adaptive, self.target, self.horizon = adaptive, float(target), int(horizon)

    def update(self, kl: float, n_episodes: int) -> None:
        """Move beta after a batch whose mean per-episode KL was ``kl``."""
        if self.adaptive:
            error = float(np.clip(kl / self.target - 1.0, -0.2, 0.2))
            self.value *= 1.0 + error * n_episodes / self.horizon
