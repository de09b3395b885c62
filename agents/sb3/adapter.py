"""An SB3 ``VecEnv`` over the natively batched text vector env (no per-sub-env Python envs).

Stable-Baselines3 has no adapter for Gymnasium ``VectorEnv`` objects, and wrapping every sub-env in
its own ``DummyVecEnv`` copy would throw away the batched feedback and reference calls. So
:class:`NativeVecEnv` drives one ``TextGenerationVectorEnv`` in ``SameStep`` autoreset mode and
translates its batched outputs to SB3's per-env conventions:

* ``dones = terminated | truncated``; for a sub-env that finished, ``infos[i]`` is the info of its
  *last* step (from ``infos["final_info"]``: ``reward_task``, ``success``, ``completion``, ...), with
  ``infos[i]["terminal_observation"]`` = ``infos["final_obs"][i]`` and the returned observation is
  already the first one of the next episode (its reset info goes to ``reset_infos[i]``), exactly as
  ``DummyVecEnv`` does;
* ``infos[i]["TimeLimit.truncated"]`` = ``truncated and not terminated`` (SB3 then bootstraps the
  value of the terminal observation). With ``bootstrap_truncated=False`` the key is ``False``: the
  token budget is treated as the end of the task, which is the custom PPO's convention for text envs
  (the feedback model has already paid the final reward there); see :func:`agents.sb3.train_baseline`;
* ``env_method("action_masks")`` returns one bool mask per sub-env (what sb3-contrib's MaskablePPO
  calls), either the env's own mask or a mask computed by ``mask_fn`` from the current observations
  (e.g. :class:`ReferenceTopMask`, NLPO's top-p mask of a reference language model).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvStepReturn

from rlhf_envs.errors import ConfigError

#: a function from the batched observation dict to bool masks of shape (num_envs, n_actions)
MaskFn = Callable[[dict[str, np.ndarray]], np.ndarray]


def make_native_vec_env(env_id: str, n_envs: int, **env_kwargs: Any) -> VectorEnv:
    """The natively batched vector env for ``env_id`` in ``SameStep`` autoreset mode.

    Raises :class:`ConfigError` for ids without a ``vector_entry_point`` (use SB3's ``make_vec_env``
    for ordinary Gymnasium envs).
    """
    import rlhf_envs  # noqa: F401  (registers the ids)

    try:
        spec = gym.spec(env_id)
    except gym.error.Error as exc:
        raise ConfigError(f"unknown env id {env_id!r}: {exc}") from None
    if spec.vector_entry_point is None:
        raise ConfigError(
            f"{env_id!r} has no natively batched vector env (vector_entry_point); wrap it with "
            "stable_baselines3.common.env_util.make_vec_env instead"
        )
    return gym.make_vec(
        env_id,
        num_envs=n_envs,
        vectorization_mode="vector_entry_point",
        autoreset_mode=AutoresetMode.SAME_STEP,
        **env_kwargs,
    )


def _row(infos: dict[str, Any], i: int, out: dict[str, Any]) -> dict[str, Any]:
    """Copy sub-env ``i``'s entries of a batched gymnasium info dict (``_key`` masks) into ``out``."""
    for key, value in infos.items():
        if key.startswith("_") or key in ("final_obs", "final_info"):
            continue
        mask = infos.get(f"_{key}")
        if mask is not None and not mask[i]:
            continue
        v = value[i]
        out[key] = v.item() if isinstance(v, np.generic) else (v.copy() if isinstance(v, np.ndarray) else v)
    return out


class NativeVecEnv(VecEnv):
    """SB3 ``VecEnv`` over a Gymnasium ``VectorEnv`` with ``SameStep`` autoreset (see the module doc).

    Args:
        venv: the vector env (``autoreset_mode`` must be ``SameStep``; build one with
            :func:`make_native_vec_env`).
        bootstrap_truncated: report ``TimeLimit.truncated`` (SB3 bootstraps truncated episodes) or
            always ``False`` (the token budget ends the task).
        mask_fn: optional function from the current batched observation to bool masks
            ``(num_envs, n)``; ``None`` uses ``venv.action_masks()``.
    """

    def __init__(
        self, venv: VectorEnv, bootstrap_truncated: bool = True, mask_fn: MaskFn | None = None
    ) -> None:
        mode = venv.metadata.get("autoreset_mode")
        if mode != AutoresetMode.SAME_STEP:
            raise ConfigError(
                f"NativeVecEnv needs a vector env with autoreset_mode=SameStep (SB3's convention: the "
                f"terminal observation travels in the info), got {mode!r}; build it with make_native_vec_env"
            )
        self.venv = venv
        self.bootstrap_truncated = bool(bootstrap_truncated)
        self.mask_fn = mask_fn
        self.render_mode = getattr(venv, "render_mode", None)
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self._actions: np.ndarray | None = None
        self._obs: dict[str, np.ndarray] | None = None

    # -- VecEnv API --------------------------------------------------------------------------------

    def reset(self) -> dict[str, np.ndarray]:
        seeds: Any = None
        if any(s is not None for s in self._seeds):
            seeds = [None if s is None else int(s) for s in self._seeds]
        if any(self._options):
            raise ConfigError("NativeVecEnv does not support per-env reset options")
        obs, infos = self.venv.reset(seed=seeds)
        self.reset_infos = [_row(infos, i, {}) for i in range(self.num_envs)]
        self._reset_seeds()
        self._reset_options()
        self._obs = obs
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(self.num_envs).astype(np.int64)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async()")
        obs, rewards, terminated, truncated, infos = self.venv.step(self._actions)
        self._actions = None
        dones = np.asarray(terminated) | np.asarray(truncated)
        final_obs = infos.get("final_obs")
        final_info = infos.get("final_info", {})
        out: list[dict[str, Any]] = []
        for i in range(self.num_envs):
            if dones[i]:
                info = _row(final_info, i, {})
                info["terminal_observation"] = {k: np.array(v, copy=True) for k, v in final_obs[i].items()}
                info["TimeLimit.truncated"] = (
                    bool(truncated[i] and not terminated[i]) if self.bootstrap_truncated else False
                )
                if "success" in info:  # SB3 logs rollout/success_rate from "is_success"
                    info["is_success"] = bool(info["success"])
                self.reset_infos[i] = _row(infos, i, {})
            else:
                info = _row(infos, i, {})
                info["TimeLimit.truncated"] = False
            out.append(info)
        self._obs = obs
        return obs, np.asarray(rewards, dtype=np.float32), dones, out

    def close(self) -> None:
        self.venv.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The vector env's attribute, once per requested sub-env (they share one object)."""
        value = getattr(self.venv, attr_name)  # AttributeError -> has_attr() is False
        return [value for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set an attribute of the shared vector env (only for all sub-envs at once)."""
        if len(self._indices(indices)) != self.num_envs:
            raise ConfigError(
                "the sub-envs of a native vector env share their attributes; set them for all envs"
            )
        setattr(self.venv, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        """Call a batched method of the vector env and split its per-env result.

        ``action_masks`` returns bool ``(n,)`` masks per sub-env (from ``mask_fn`` when given).
        Other methods are called once; an array result with a leading ``num_envs`` axis is split,
        anything else is repeated for every requested sub-env.
        """
        idx = self._indices(indices)
        if method_name == "action_masks":
            result: Any = self.action_masks()
        else:
            result = getattr(self.venv, method_name)(*method_args, **method_kwargs)
        if isinstance(result, np.ndarray | tuple | list) and len(result) == self.num_envs:
            return [result[i] for i in idx]
        return [result for _ in idx]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None for _ in range(self.num_envs)]

    def render(self, mode: str | None = None) -> Any:
        """The vector env's ``ansi`` render (one ``prompt|completion`` string per sub-env)."""
        return self.venv.render()

    # -- masks -------------------------------------------------------------------------------------

    def action_masks(self) -> np.ndarray:
        """Bool masks ``(num_envs, n_actions)`` for the current observations."""
        if self.mask_fn is not None:
            if self._obs is None:
                raise RuntimeError("action_masks() called before reset()")
            masks = np.asarray(self.mask_fn(self._obs), dtype=bool)
        else:
            masks = np.asarray(self.venv.action_masks(), dtype=bool)
        if masks.shape != (self.num_envs, self.action_space.n):
            raise ValueError(
                f"action masks must have shape {(self.num_envs, self.action_space.n)}, got {masks.shape}"
            )
        return masks

    def _indices(self, indices: VecEnvIndices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, int | np.integer):
            return [int(indices)]
        return [int(i) for i in indices]


class ReferenceTopMask:
    """NLPO's action mask: the tokens in the top-k / top-p set of a frozen reference LM.

    Called with the batched observation, it computes the reference's next-token distribution for
    every sub-env with the suite's KV-cached decoder (:class:`rlhf_envs.lm.decoder.PrefixLogits`: one
    decoding step per sub-env whose prefix grew by a token, a prefill for one that started a new
    episode) and keeps, for each sub-env, the ``top_k`` most likely next tokens (``None``: no
    limit) further cut to the smallest set whose probability reaches ``top_p``. The most likely
    token is always allowed, so no mask is empty. ``always_allow`` ids (EOS, say) stay allowed.

    Args:
        lm: a ``transformers`` causal LM (used under ``torch.no_grad``, never modified).
        top_k: keep at most this many tokens (``None`` = vocabulary size).
        top_p: nucleus threshold in (0, 1].
        temperature: logits are divided by it before the softmax.
        always_allow: token ids that are never masked out.
    """

    def __init__(
        self,
        lm: Any,
        top_k: int | None = None,
        top_p: float = 0.9,
        temperature: float = 1.0,
        always_allow: Sequence[int] = (),
    ) -> None:
        if top_k is not None and top_k < 1:
            raise ConfigError(f"top_k must be a positive int or None, got {top_k!r}")
        if not 0.0 < top_p <= 1.0:
            raise ConfigError(f"top_p must be in (0, 1], got {top_p!r}")
        from rlhf_envs.lm.decoder import PrefixLogits

        self.lm, self.top_k, self.top_p, self.temperature = lm, top_k, float(top_p), float(temperature)
        self.always_allow = np.asarray(list(always_allow), dtype=np.int64)
        self._logits = PrefixLogits(lm, self.temperature)

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        lengths = np.asarray(obs["attention_mask"]).astype(np.int64).sum(1).clip(min=1)
        with torch.no_grad():
            probs = torch.softmax(self._logits(obs["input_ids"], lengths), dim=-1).cpu()
            sorted_p, order = probs.sort(dim=-1, descending=True)
            before = sorted_p.cumsum(-1) - sorted_p  # mass of the strictly more likely tokens
            keep_sorted = before < self.top_p
            if self.top_k is not None:
                keep_sorted[:, self.top_k :] = False
            keep_sorted[:, 0] = True
            mask = torch.zeros_like(keep_sorted).scatter(1, order, keep_sorted)
        out = mask.numpy()
        if self.always_allow.size:
            out[:, self.always_allow] = True
        return out
