"""People in the loop: a local rating web app with a SQLite label store, used by the RLHF loop.

- :mod:`agents.human.store`: :class:`LabelStore` (SQLite, WAL, every answer committed before it is
  acknowledged), the Python API to enqueue queries and read answers;
- :mod:`agents.human.server`: :class:`RatingServer` (standard-library HTTP server) with the rating
  page, the admin page, exports and the JSON API;
- :mod:`agents.human.agreement`: percent agreement, Fleiss' kappa, Krippendorff's alpha, position bias;
- :mod:`agents.human.web_human`: :class:`WebHuman`, the loop's human (same contract as TerminalHuman);
- :mod:`agents.human.cli`: ``rlhf-envs human serve|enqueue|guidelines|status|export``.

Names are imported lazily, so ``import agents.human.store`` does not start a server module.
"""

from __future__ import annotations

from typing import Any

_NAMES = {
    "LabelStore": "agents.human.store",
    "Completion": "agents.human.store",
    "RatingServer": "agents.human.server",
    "WebHuman": "agents.human.web_human",
    "rating_targets": "agents.human.web_human",
    "token_targets": "agents.human.web_human",
    "token_marks": "agents.human.web_human",
    "TokenMarks": "agents.human.web_human",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        import importlib

        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'agents.human' has no attribute {name!r}")
