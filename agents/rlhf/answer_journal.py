"""Every answer a person types is on disk the moment it is given: an append-only JSON-lines journal.

The RLHF loop commits a round (feedback, reward model, agent, ``state.json``) only after the
reward-model fit, PPO and evaluation, so a crash in between used to lose the round's answers, and
the person was asked the same questions again. :class:`AnswerJournal` closes that gap for
:class:`~agents.rlhf.humans.TerminalHuman`: each answer is appended as one JSON line, flushed and
``fsync``-ed before the next question is shown. A resumed round asks the same questions (same seed,
same samples), finds their keys in the journal and reuses the answers instead of asking again.

The key of a question is a hash of its content and of its position (the ``compare`` call's index,
restored with the loop's committed state, and the pair's index in it), the same scheme as the web
rating app's queries (:func:`agents.human.store.content_key`), which keeps its answers in SQLite.

A crash can cut the last line short: that answer was never acknowledged (the next question had
not been shown), so the torn line is dropped when the journal is opened and the question is asked
again. A damaged line anywhere else is an error naming the file and line.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from rlhf_envs import atomic_io
from rlhf_envs.errors import DataError

#: the journal's file name in a run directory (see :class:`agents.rlhf.persistence.RunDirectory`)
JOURNAL_FILE = "human_answers.jsonl"


class AnswerJournal:
    """Answers by key, read from ``path`` when opened and appended (durably) as they are given."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.answers: dict[str, dict[str, Any]] = {}
        self._file: Any = None
        self._read()

    def _read(self) -> None:
        if not self.path.exists():
            return
        if not self.path.is_file():
            raise DataError(f"answer journal {str(self.path)!r} is not a file")
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # a torn last line: that answer was never acknowledged; drop it
            with open(self.path, "r+b") as f:
                f.truncate(end)
                f.flush()
                os.fsync(f.fileno())
            data = data[:end]
        for number, line in enumerate(data.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise DataError(
                    f"answer journal {str(self.path)!r}, line {number}: not valid JSON ({exc})"
                ) from None
            if (
                not isinstance(record, dict)
                or not isinstance(record.get("key"), str)
                or "label" not in record
            ):
                raise DataError(
                    f"answer journal {str(self.path)!r}, line {number}: expected an object with 'key' and 'label'"
                )
            self.answers[record["key"]] = record

    def __contains__(self, key: str) -> bool:
        return key in self.answers

    def __len__(self) -> int:
        return len(self.answers)

    def get(self, key: str) -> dict[str, Any] | None:
        """The record saved under ``key`` (``None`` if that question was never answered)."""
        return self.answers.get(key)

    def append(self, key: str, label: Any, **fields: Any) -> None:
        """Write one answer and ``fsync`` it before returning (then it survives a crash)."""
        record = {"key": key, "label": label, "time": time.time(), **fields}
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        if self._file is None:
            new = not self.path.exists()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")
            if new:
                atomic_io.fsync_directory(self.path.parent)
        self._file.write(line)
        self._file.flush()
        os.fsync(self._file.fileno())
        self.answers[key] = record

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
