"""Turning whatever the user passed (an id, an Env, a VectorEnv) into one vector env the agent steps.

Agents always talk to a Gymnasium ``VectorEnv``: ids with a ``vector_entry_point`` (every rlhf id)
get the natively batched env, other ids a ``SyncVectorEnv``; a single ``Env`` instance becomes a
one-env ``SyncVectorEnv``. The autoreset mode is read from ``metadata["autoreset_mode"]`` so the
rollout code knows whether to mask reset steps (NEXT_STEP), read ``final_obs`` (SAME_STEP) or reset
finished sub-envs itself (DISABLED).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from rlhf_envs.errors import ConfigError


def make_vector_env(env_or_id: Any, n_envs: int, env_kwargs: dict[str, Any] | None = None) -> VectorEnv:
    """Return a ``VectorEnv`` for an env id, an ``Env`` instance or a ``VectorEnv`` instance."""
    env_kwargs = dict(env_kwargs or {})
    if isinstance(env_or_id, VectorEnv):
        return env_or_id
    if isinstance(env_or_id, gym.Env):
        env = env_or_id
        return gym.vector.SyncVectorEnv([lambda: env])
    if isinstance(env_or_id, str):
        if env_or_id.startswith("RLHF/") or env_or_id.split(":")[-1].startswith("RLHF/"):
            import rlhf_envs  # noqa: F401  (registers the ids)
        env_id = env_or_id.split(":")[-1]
        if ":" in env_or_id:
            gym.make(env_or_id).close()  # imports the module named before the colon
        try:
            spec = gym.spec(env_id)
        except gym.error.Error as exc:
            raise ConfigError(f"unknown env id {env_or_id!r}: {exc}") from None
        mode = "vector_entry_point" if spec.vector_entry_point is not None else "sync"
        return gym.make_vec(env_id, num_envs=n_envs, vectorization_mode=mode, **env_kwargs)
    raise ConfigError(
        f"env_or_id must be an env id string, a gymnasium.Env or a gymnasium.vector.VectorEnv, "
        f"got {type(env_or_id).__name__}"
    )


def without_env_reference(env_or_id: Any, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``env_kwargs`` plus ``ref_logprobs=False`` when an LM-policy agent will build a language env.

    The language tasks run a frozen reference model inside the env so that any learner sees
    ``info["ref_logprob"]``. The custom agent's LM policy computes the reference log-probs itself,
    over whole sequences at update time, so the env's per-step pass would be paid twice: switching
    it off roughly halves the rollout time on the embedded model. The rewards are unchanged. A
    caller that sets ``ref_logprobs`` (or an env ``kl_coef``, which needs it) keeps its choice;
    ids whose task has no such option, and env instances, are left alone.
    """
    if not isinstance(env_or_id, str) or "ref_logprobs" in env_kwargs or env_kwargs.get("kl_coef"):
        return env_kwargs
    try:
        spec = gym.spec(env_or_id.split(":")[-1])
    except gym.error.Error:
        return env_kwargs  # make_vector_env reports the unknown id
    task = spec.kwargs.get("task")
    if not isinstance(task, str):
        return env_kwargs
    from rlhf_envs.tasks import task_class, task_parameters

    cls = task_class(task)
    if cls is None or "ref_logprobs" not in task_parameters(cls):
        return env_kwargs
    return {**env_kwargs, "ref_logprobs": False}


#: keyword arguments every rlhf env id takes besides its task's parameters
ENV_ARGUMENTS = ("render_mode", "shaping", "autoreset_mode")
#: task parameters that name a file or directory (plus any parameter annotated ``os.PathLike``)
FILE_PARAMETERS = ("model", "prompts", "proxy", "reference")


def env_parameters(env_id: str) -> tuple[set[str] | None, set[str]]:
    """``(allowed keyword arguments, those that name files)`` of a registered env id.

    For an rlhf id: its task's parameters plus :data:`ENV_ARGUMENTS`; the file-valued ones are
    :data:`FILE_PARAMETERS` and any parameter annotated as ``os.PathLike``. For another id: the
    parameters of its entry point (``None`` if it takes ``**kwargs``), none known to name files.
    Raises :class:`ConfigError` for an id that is not registered (nothing is imported to find it).
    """
    import inspect

    import rlhf_envs  # noqa: F401  (registers the ids)

    try:
        spec = gym.spec(env_id)
    except gym.error.Error as exc:
        raise ConfigError(f"unknown env id {env_id!r}: {exc}") from None
    task = spec.kwargs.get("task")
    if isinstance(task, str):
        from rlhf_envs.tasks import task_class, task_parameters

        cls = task_class(task)
        if cls is None:
            raise ConfigError(f"env id {env_id!r} names task {task!r}, which is not registered")
        params = task_parameters(cls)
        annotations = inspect.signature(cls.__init__).parameters
        files = {p for p in params if p in FILE_PARAMETERS or "PathLike" in str(annotations[p].annotation)}
        return set(params) | set(ENV_ARGUMENTS), files
    creator = spec.entry_point
    if isinstance(creator, str):
        creator = gym.envs.registration.load_env_creator(creator)  # the module gym.make imports
    try:
        sig = inspect.signature(creator)
    except (TypeError, ValueError):
        return None, set()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return None, set()
    return {p for p in sig.parameters if p != "self"}, set()


def names_a_file(name: str, value: Any) -> bool:
    """Whether ``value`` of the file-valued parameter ``name`` points at a file or directory.

    ``None`` and ``"default"`` (the embedded model) and inline prompt lists do not.
    """
    import os

    if value is None or (name in ("model", "reference") and value == "default"):
        return False
    return isinstance(value, str | os.PathLike)


def autoreset_mode(env: VectorEnv) -> AutoresetMode:
    """The env's autoreset mode (NEXT_STEP when the env does not say, as in Gymnasium < 1.1)."""
    mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
    return mode if isinstance(mode, AutoresetMode) else AutoresetMode(mode)


def is_token_space(space: spaces.Space) -> bool:
    """True for the rlhf text observation: Dict(input_ids int Box[L], attention_mask int Box[L])."""
    if not isinstance(space, spaces.Dict) or set(space.spaces) != {"input_ids", "attention_mask"}:
        return False
    ids, mask = space["input_ids"], space["attention_mask"]
    return (
        isinstance(ids, spaces.Box)
        and isinstance(mask, spaces.Box)
        and ids.dtype.kind in "iu"
        and len(ids.shape) == 1
        and mask.shape == ids.shape
    )


def env_id_of(env_or_id: Any) -> str | None:
    """The env id when the agent can rebuild the env itself (for evaluation envs and ``load``)."""
    if isinstance(env_or_id, str):
        return env_or_id
    spec = getattr(env_or_id, "spec", None)
    return getattr(spec, "id", None) if spec is not None else None
