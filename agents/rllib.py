"""Ray RLlib against the suite: register every ``RLHF/`` id with Ray and flatten the observation.

Install the extra first (``pip install -e ".[rllib]"``: ``ray[rllib]==2.60.0``). RLlib's env
runners are separate processes that never import ``rlhf_envs``, so a plain ``gym.make`` of an
``RLHF/`` id fails there; :func:`register_rllib_envs` registers each id with
``ray.tune.registry.register_env`` under the same name, with a creator that imports the suite in
the runner. The Dict observation (``input_ids`` and ``attention_mask``) goes through RLlib's
``FlattenObservations`` env-to-module connector (:func:`flatten_observations`), so RLlib's default
MLP encoder can read it::

    from ray.rllib.algorithms.ppo import PPOConfig
    from agents.rllib import flatten_observations, register_rllib_envs

    register_rllib_envs()
    config = (
        PPOConfig()
        .environment("RLHF/Copy-v0", env_config={"max_length": 3})
        .env_runners(
            num_env_runners=2,
            num_envs_per_env_runner=8,
            gym_env_vectorize_mode="vector_entry_point",  # the suite's native vector env per runner
            env_to_module_connector=flatten_observations,
        )
    )
    algo = config.build_algo()

``env_config`` holds the env's keyword arguments (as for ``gym.make``).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from rlhf_envs.errors import ConfigError


def _require_ray() -> None:
    try:
        import ray  # noqa: F401
        from ray.rllib.connectors.env_to_module import FlattenObservations  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"Ray RLlib is not installed ({exc}); install the extra: pip install -e '.[rllib]' "
            "(ray[rllib]==2.60.0)"
        ) from None


def make_env(env_id: str, env_config: Any = None) -> Any:
    """``gym.make(env_id, **env_config)`` with the suite imported (RLlib's env creator).

    ``env_config`` is RLlib's ``EnvContext`` (a dict of the env's keyword arguments). With
    ``gym_env_vectorize_mode="vector_entry_point"`` RLlib adds ``num_envs``: then the suite's
    natively batched vector env of that many sub-envs is returned (one batched step for all of a
    runner's sub-envs instead of a Python loop over copies).
    """
    import gymnasium as gym

    import rlhf_envs  # noqa: F401  (registers the ids in this process: an env runner)

    kwargs = dict(env_config or {})
    num_envs = kwargs.pop("num_envs", None)
    if num_envs is not None:
        return gym.make_vec(env_id, num_envs=int(num_envs), vectorization_mode="vector_entry_point", **kwargs)
    return gym.make(env_id, **kwargs)


def register_rllib_envs(ids: list[str] | None = None) -> list[str]:
    """Register ``ids`` (default: every ``rlhf_envs.list_envs()`` id) with Ray; returns them.

    Each id is registered under its own name, so ``PPOConfig().environment("RLHF/Copy-v0")``
    finds it in every env runner of a Ray cluster.
    """
    _require_ray()
    from ray.tune.registry import register_env

    import rlhf_envs

    known = rlhf_envs.list_envs()
    ids = list(known) if ids is None else list(ids)
    unknown = sorted(set(ids) - set(known))
    if unknown:
        raise ConfigError(f"not RLHF env ids: {', '.join(unknown)}; known: {', '.join(known)}")
    for env_id in ids:
        register_env(env_id, partial(make_env, env_id))
    return ids


def flatten_observations(*_args: Any, **_kwargs: Any) -> Any:
    """RLlib's ``FlattenObservations`` connector (pass as ``env_to_module_connector=``).

    It concatenates ``input_ids`` and ``attention_mask`` into one float vector per step. It accepts
    whatever arguments RLlib passes the factory (the env, and in recent versions its spaces and
    device).
    """
    _require_ray()
    from ray.rllib.connectors.env_to_module import FlattenObservations

    return FlattenObservations()
