"""rlhf_envs: reinforcement learning from feedback on text, as Gymnasium environments.

Importing the package registers every env id under the ``RLHF/`` namespace::

    import gymnasium as gym
    import rlhf_envs

    env = gym.make("RLHF/Copy-v0", render_mode="ansi")
    vec = gym.make_vec("RLHF/Copy-v0", num_envs=64)
"""

from rlhf_envs import tasks  # noqa: F401  (registers the task classes)
from rlhf_envs.registration import list_envs, register_envs

__version__ = "0.1.0"

register_envs()

__all__ = ["list_envs", "__version__"]
