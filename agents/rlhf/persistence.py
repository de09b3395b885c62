"""How a run of the RLHF loop lives on disk, and the commit protocol that makes it resumable.

A run directory holds::

    state.json                         the commit point: config, log, counters, human state
    rounds/round_NNN/feedback.json     every answer so far (episodes as JSON, labels, gold values)
    rounds/round_NNN/reward_model/     the reward model fitted in round NNN
    rounds/round_NNN/agent/            the agent after round NNN (only the newest is kept)
    human_answers.jsonl                a person's answers, each durable the moment it is given
                                       (:mod:`agents.rlhf.answer_journal`; terminal human only)

Everything is written atomically (:mod:`rlhf_envs.atomic_io`), and ``state.json`` is replaced
last: a run killed at any moment resumes from the last committed round, with the same feedback
and the same numbers as an uninterrupted run; the answers a person gave in the round that was not
committed are read back from the journal instead of being asked again. Files left by a round that
was not committed are overwritten when that round runs again.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

from rlhf_envs import atomic_io
from rlhf_envs.errors import ConfigError, DataError
from rlhf_envs.feedback.base import Episode

STATE_FILE = "state.json"
#: 2 names the reward model's directory ``reward_model_dir`` (format 1: ``rm_dir``); both are read
STATE_FORMAT = 2


def episode_to_json(e: Episode) -> dict[str, Any]:
    """An :class:`Episode` as a JSON object (its ``metadata`` is not kept: the loop sets none)."""
    return {
        "prompt": e.prompt,
        "completion": e.completion,
        "prompt_ids": list(e.prompt_ids),
        "completion_ids": list(e.completion_ids),
        "terminated": e.terminated,
        "seed": e.seed,
    }


def episode_from_json(d: dict[str, Any]) -> Episode:
    """Inverse of :func:`episode_to_json`."""
    return Episode(
        d["prompt"],
        d["completion"],
        tuple(d["prompt_ids"]),
        tuple(d["completion_ids"]),
        bool(d["terminated"]),
        {},
        int(d["seed"]),
    )


def json_default(obj: Any) -> Any:
    """``json`` fallback for numpy scalars, tuples and sets."""
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, tuple | set):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _as_saved(x: Any) -> Any:
    """``x`` as it reads back from JSON (tuples become lists, numpy scalars numbers)."""
    return json.loads(json.dumps(x, default=json_default))


def check_same_settings(
    saved: dict[str, Any], given: dict[str, Any], run_dir: Path, defaults: dict[str, Any] | None = None
) -> None:
    """Refuse to resume ``run_dir`` with settings other than the saved ones (``rounds`` may grow).

    A setting missing from ``saved`` (a run saved before that setting existed) counts as its value
    in ``defaults``, the behaviour that run had.
    """
    defaults = defaults or {}
    saved = {**{k: v for k, v in defaults.items() if k not in saved}, **saved}
    diff = sorted(k for k in given if k != "rounds" and _as_saved(given[k]) != _as_saved(saved.get(k)))
    if diff:
        raise ConfigError(
            f"cannot resume {str(run_dir)!r}: settings differ from the saved run: "
            + ", ".join(f"{k} (saved {saved.get(k)!r}, given {given[k]!r})" for k in diff)
        )


def human_state(human: Any) -> dict[str, Any] | None:
    """What is needed to resume the human: its ``state_dict()``, else its dataclass ledger."""
    if callable(getattr(human, "state_dict", None)):
        return {"kind": "state_dict", "state": human.state_dict()}
    ledger = getattr(human, "ledger", None)
    if ledger is not None and dataclasses.is_dataclass(ledger):
        return {"kind": "ledger", "state": dataclasses.asdict(ledger)}
    return None


def restore_human_state(human: Any, saved: dict[str, Any] | None) -> None:
    """Inverse of :func:`human_state` (a human that cannot take the saved kind is left as it is)."""
    if saved is None:
        return
    if saved["kind"] == "state_dict" and callable(getattr(human, "load_state_dict", None)):
        human.load_state_dict(saved["state"])
    elif saved["kind"] == "ledger" and getattr(human, "ledger", None) is not None:
        for k, v in saved["state"].items():
            setattr(human.ledger, k, v)


#: entries every committed ``state.json`` has
STATE_KEYS = ("config", "rounds_done", "history", "initial", "ppo_tokens_total", "round_dir")


def read_json(path: Path, kind: type) -> Any:
    """The JSON value in ``path`` (a ``kind``: dict or list), or a :class:`DataError` naming the file."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"run file {str(path)!r} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"run file {str(path)!r} is not valid JSON ({exc})") from None
    if not isinstance(value, kind):
        raise DataError(
            f"run file {str(path)!r} must hold a JSON {kind.__name__}, got {type(value).__name__}"
        )
    return value


class RunDirectory:
    """The files of one run under ``root`` (see the module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def state_path(self) -> Path:
        return self.root / STATE_FILE

    def round_dir(self, r: int) -> Path:
        return self.root / "rounds" / f"round_{r:03d}"

    def reward_model_dir(self, r: int) -> Path:
        return self.round_dir(r) / "reward_model"

    def agent_dir(self, r: int) -> Path:
        return self.round_dir(r) / "agent"

    def save_reward_model(self, r: int, reward_model: Any) -> Path:
        """Write round ``r``'s reward model (anything with ``save(directory)``) atomically."""
        path = self.reward_model_dir(r)
        atomic_io.write_directory(path, reward_model.save)
        return path

    def commit(self, r: int, feedback: list[dict[str, Any]], agent: Any, state: dict[str, Any]) -> None:
        """Commit round ``r``: feedback and agent first, ``state.json`` last; then prune old agents.

        ``state`` is the loop's state (see :meth:`RLHFLoop._state <agents.rlhf.loop.RLHFLoop>`);
        ``round_dir`` and the format number are added here.
        """
        rdir = self.round_dir(r)
        rdir.mkdir(parents=True, exist_ok=True)
        atomic_io.write_json(rdir / "feedback.json", feedback, default=json_default)
        agent.save(str(self.agent_dir(r)))
        state = {"format": STATE_FORMAT, **state, "round_dir": self.relative(rdir)}
        atomic_io.write_json(self.state_path, state, default=json_default)
        for old in range(r):  # only the newest agent checkpoint is kept (also after a crash here)
            previous = self.agent_dir(old)
            if previous.exists():
                shutil.rmtree(previous, ignore_errors=True)

    def relative(self, path: Path | None) -> str | None:
        return None if path is None else str(path.relative_to(self.root))

    def read_state(self) -> dict[str, Any] | None:
        """The committed state (format 1 upgraded to the current keys), or ``None`` for a new run."""
        if not self.state_path.exists():
            return None
        state = read_json(self.state_path, dict)
        missing = [k for k in STATE_KEYS if k not in state]
        if missing:
            raise DataError(
                f"run state {str(self.state_path)!r} lacks {', '.join(map(repr, missing))}; "
                "it is not a state.json of the RLHF loop (or it was edited)"
            )
        if not isinstance(state["config"], dict) or not isinstance(state["history"], list):
            raise DataError(
                f"run state {str(self.state_path)!r}: 'config' must be an object and 'history' a list"
            )
        fmt = state.get("format", 1)
        if fmt not in (1, STATE_FORMAT):
            raise ConfigError(
                f"{str(self.state_path)!r} has format {fmt}; this version reads 1 and {STATE_FORMAT}"
            )
        if fmt == 1:
            state["reward_model_dir"] = state.pop("rm_dir", None)
        return state

    def resolve(self, relative: str | None) -> Path | None:
        return None if relative is None else self.root / relative

    def read_feedback(self, state: dict[str, Any]) -> list[dict[str, Any]]:
        """The feedback saved with the committed round."""
        path = self.root / state["round_dir"] / "feedback.json"
        feedback = read_json(path, list)
        for i, rec in enumerate(feedback):
            if not isinstance(rec, dict) or not all(k in rec for k in ("a", "b", "labels")):
                raise DataError(f"feedback file {str(path)!r}: record {i} lacks 'a', 'b' or 'labels'")
        return feedback

    def committed_agent_dir(self, state: dict[str, Any]) -> Path:
        return self.root / state["round_dir"] / "agent"
