"""The label store: one SQLite file in WAL mode holding experiments, queries, raters, leases and labels.

Everything a person answers goes through :meth:`LabelStore.submit`, which commits before it returns;
the web server acknowledges an answer only after that call returned. The file is opened with
``journal_mode=WAL`` and ``synchronous=FULL``: in WAL mode SQLite then syncs the write-ahead log to
disk at every commit, so an acknowledged answer survives a killed server *and* a power loss.
(``synchronous=NORMAL`` would survive a killed process but could lose the last commits on power loss;
a person's time costs far more than the fsync, so FULL is the default; see ``benchmarks/
human_server_load.py`` for what it costs.)

Tables (see :data:`SCHEMA`):

- ``experiments``: a name, the rating guidelines shown to raters, how many distinct raters each
  query needs by default;
- ``queries``: one question, keyed by a caller-chosen ``key`` unique within its experiment (the loop
  uses a content hash plus the round, so a resumed loop finds what it asked before); ``kind`` is
  ``pairwise`` (two completions), ``rating`` (one, Likert 1-5) or ``per_token`` (one, marked token by
  token); ``n_labels`` and ``open`` are kept up to date by :meth:`LabelStore.submit`;
- ``completions``: the text, token strings and ids, end-of-sequence flag and token count of each
  completion of a query (slot 0 = A, slot 1 = B);
- ``raters`` and ``sessions`` (a browser session: cookie token, CSRF token, the rater it belongs to);
- ``assignments``: a lease of a query to a rater until ``expires``, with the display order
  (``swapped``: B was shown on the left); an expired lease returns its slot to the pool;
- ``labels``: one answer, ``UNIQUE(query_id, rater_id)`` so a rater can never answer a query twice;
  pairwise choices are stored in canonical terms (A/B, not left/right) together with ``swapped``;
- ``token_marks``: per-token good (+1) / bad (-1) marks of a per-token answer, one row per token.

The store is safe to use from many threads (a small connection pool; writes are serialised with a
process-wide lock and ``BEGIN IMMEDIATE``) and from other processes at the same time (SQLite's own
locking, ``busy_timeout``): the RLHF loop enqueues and reads while the server runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import queue
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlhf_envs.errors import ConfigError, FeedbackError

SCHEMA_VERSION = 1
KINDS = ("pairwise", "rating", "per_token")
CHOICES = ("A", "B", "tie", "skip")
DEFAULT_LEASE_SECONDS = 600.0
MAX_TEXT_CHARS = 200_000
MAX_TOKENS = 20_000
MAX_NAME_CHARS = 64

SCHEMA = """
CREATE TABLE IF NOT EXISTS experiments (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    guidelines TEXT NOT NULL DEFAULT '',
    guidelines_file TEXT,
    raters_per_query INTEGER NOT NULL DEFAULT 1 CHECK (raters_per_query >= 1),
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS queries (
    id INTEGER PRIMARY KEY,
    experiment_id INTEGER NOT NULL REFERENCES experiments(id),
    key TEXT NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    kind TEXT NOT NULL CHECK (kind IN ('pairwise', 'rating', 'per_token')),
    prompt TEXT NOT NULL,
    raters_needed INTEGER NOT NULL CHECK (raters_needed >= 1),
    n_labels INTEGER NOT NULL DEFAULT 0 CHECK (n_labels >= 0),
    open INTEGER NOT NULL DEFAULT 1 CHECK (open IN (0, 1)),
    meta TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    UNIQUE (experiment_id, key)
);
CREATE INDEX IF NOT EXISTS queries_open ON queries(id) WHERE open = 1;
CREATE TABLE IF NOT EXISTS completions (
    query_id INTEGER NOT NULL REFERENCES queries(id),
    slot INTEGER NOT NULL CHECK (slot IN (0, 1)),
    text TEXT NOT NULL,
    tokens TEXT,
    token_ids TEXT,
    terminated INTEGER NOT NULL CHECK (terminated IN (0, 1)),
    n_tokens INTEGER NOT NULL CHECK (n_tokens >= 0),
    PRIMARY KEY (query_id, slot)
);
CREATE TABLE IF NOT EXISTS raters (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 64),
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token TEXT PRIMARY KEY,
    csrf TEXT NOT NULL,
    rater_id INTEGER REFERENCES raters(id),
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS assignments (
    id INTEGER PRIMARY KEY,
    query_id INTEGER NOT NULL REFERENCES queries(id),
    rater_id INTEGER NOT NULL REFERENCES raters(id),
    swapped INTEGER NOT NULL CHECK (swapped IN (0, 1)),
    issued REAL NOT NULL,
    expires REAL NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('open', 'done')),
    UNIQUE (query_id, rater_id)
);
CREATE INDEX IF NOT EXISTS assignments_rater ON assignments(rater_id, state);
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY,
    query_id INTEGER NOT NULL REFERENCES queries(id),
    rater_id INTEGER NOT NULL REFERENCES raters(id),
    choice TEXT CHECK (choice IS NULL OR choice IN ('A', 'B', 'tie', 'skip')),
    rating INTEGER CHECK (rating IS NULL OR rating BETWEEN 1 AND 5),
    swapped INTEGER NOT NULL CHECK (swapped IN (0, 1)),
    seconds REAL CHECK (seconds IS NULL OR seconds >= 0),
    lease_seconds REAL,
    created REAL NOT NULL,
    CHECK (choice IS NULL OR rating IS NULL),
    UNIQUE (query_id, rater_id)
);
CREATE INDEX IF NOT EXISTS labels_rater ON labels(rater_id);
CREATE TABLE IF NOT EXISTS token_marks (
    label_id INTEGER NOT NULL REFERENCES labels(id),
    token_index INTEGER NOT NULL CHECK (token_index >= 0),
    mark INTEGER NOT NULL CHECK (mark IN (-1, 1)),
    PRIMARY KEY (label_id, token_index)
);
"""


# ---------------------------------------------------------------------------------------------------
# Errors (in the library's hierarchy; the server maps each to an HTTP status)
# ---------------------------------------------------------------------------------------------------


class StoreError(FeedbackError):
    """A request the label store refuses; ``status`` is the HTTP status the server answers with."""

    status = 400


class UnknownQueryError(StoreError):
    """No query with that id (or key) exists."""

    status = 404


class NotAssignedError(StoreError):
    """The rater was never given this query (answers are accepted only for queries one was shown)."""

    status = 409


class AlreadyAnsweredError(StoreError):
    """The rater already answered this query, differently (an identical resubmission is accepted)."""

    status = 409


class AnswerError(StoreError):
    """An answer that does not fit the query's kind (a rating for a pairwise query, a bad mark, ...)."""

    status = 422


# ---------------------------------------------------------------------------------------------------
# Plain records
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Completion:
    """One completion as raters see it.

    Attributes:
        text: the completion text (end-of-sequence token and padding removed).
        tokens: the completion's tokens as display strings, aligned with ``token_ids`` (needed for
            per-token queries; optional otherwise).
        token_ids: the token ids (optional).
        terminated: True when the policy ended with end-of-sequence, False when the token budget ran out.
        n_tokens: number of generated tokens (EOS counts when chosen); defaults to ``len(tokens)``.
    """

    text: str
    tokens: Sequence[str] | None = None
    token_ids: Sequence[int] | None = None
    terminated: bool = True
    n_tokens: int | None = None

    def checked(self, where: str) -> Completion:
        if not isinstance(self.text, str):
            raise ConfigError(f"{where}: text must be a string, got {type(self.text).__name__}")
        if len(self.text) > MAX_TEXT_CHARS:
            raise ConfigError(f"{where}: text has {len(self.text)} characters; at most {MAX_TEXT_CHARS}")
        toks = None if self.tokens is None else [str(t) for t in self.tokens]
        ids = None if self.token_ids is None else [int(t) for t in self.token_ids]
        if toks is not None and len(toks) > MAX_TOKENS:
            raise ConfigError(f"{where}: {len(toks)} tokens; at most {MAX_TOKENS}")
        if toks is not None and ids is not None and len(toks) != len(ids):
            raise ConfigError(f"{where}: {len(toks)} token strings but {len(ids)} token ids; they must align")
        n = self.n_tokens
        if n is None:
            n = len(ids) if ids is not None else (len(toks) if toks is not None else 0)
        if int(n) < 0:
            raise ConfigError(f"{where}: n_tokens must be >= 0, got {n}")
        return Completion(self.text, toks, ids, bool(self.terminated), int(n))


@dataclass(frozen=True)
class Answer:
    """One stored answer (a row of ``labels`` with its rater's name and its per-token marks)."""

    label_id: int
    query_id: int
    query_key: str
    rater: str
    choice: str | None
    rating: int | None
    swapped: bool
    seconds: float | None
    created: float
    marks: dict[int, int] = field(default_factory=dict)

    @property
    def prob_a(self) -> float | None:
        """The answer as P(A better): 1, 0, 0.5 for a tie, None for a skip or a non-pairwise answer."""
        return {"A": 1.0, "B": 0.0, "tie": 0.5}.get(self.choice or "")


@dataclass(frozen=True)
class Lease:
    """A query leased to a rater, in the order the rater sees it (``swapped``: B shown first)."""

    query_id: int
    kind: str
    prompt: str
    experiment: str
    guidelines: str
    completions: tuple[Completion, ...]
    swapped: bool
    expires: float

    def shown(self) -> list[Completion]:
        """The completions in display order (left, right)."""
        c = list(self.completions)
        return c[::-1] if self.swapped and len(c) == 2 else c


@dataclass
class _Pending:
    """An answer waiting for the group commit."""

    args: tuple
    done: bool = False
    result: tuple[int, bool] | None = None
    error: BaseException | None = None


@dataclass(frozen=True)
class Session:
    token: str
    csrf: str
    rater_id: int | None
    rater: str | None


def content_key(*parts: Any) -> str:
    """A stable hash of JSON-serialisable ``parts`` (hex SHA-256, 32 characters): a query key."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def swap_for(query_id: int, rater_id: int) -> bool:
    """Display order of a query for a rater: a fair coin, but the same coin every time the same
    rater is shown the same query (so a lease that expires and is taken again looks the same)."""
    h = hashlib.sha256(f"swap:{query_id}:{rater_id}".encode()).digest()
    return bool(h[0] & 1)


# ---------------------------------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------------------------------


class LabelStore:
    """The SQLite label store (see the module docstring).

    Args:
        path: the database file (created with its parent directory if missing).
        synchronous: ``"FULL"`` (default: every commit is on disk, also across a power loss) or
            ``"NORMAL"`` (survives a killed process; the last commits may roll back on power loss).
        busy_timeout: seconds a writer waits for another process's write lock.
        pool_size: connections kept open for reuse by threads.
    """

    def __init__(
        self,
        path: str | Path,
        synchronous: str = "FULL",
        busy_timeout: float = 30.0,
        pool_size: int = 16,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ConfigError(f"synchronous must be 'FULL', 'NORMAL' or 'EXTRA', got {synchronous!r}")
        self.path = Path(path)
        if self.path.is_dir():
            raise ConfigError(f"label database {str(self.path)!r} is a directory; give a file path")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.synchronous = synchronous
        self.busy_timeout = float(busy_timeout)
        self._pool: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue(maxsize=pool_size)
        self._write_lock = threading.Lock()
        self._pending_lock = threading.Lock()
        self._pending: list[_Pending] = []
        self._closed = False
        c = self._open()
        try:
            c.executescript("BEGIN IMMEDIATE;\n" + SCHEMA + "\nCOMMIT;")
            v = c.execute("PRAGMA user_version").fetchone()[0]
            if v == 0:
                c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif v != SCHEMA_VERSION:
                raise ConfigError(
                    f"label database {str(self.path)!r} has schema version {v}; this code reads {SCHEMA_VERSION}"
                )
        except sqlite3.DatabaseError as e:
            c.close()
            raise ConfigError(f"label database {str(self.path)!r} is not a usable SQLite file: {e}") from e
        self._pool.put_nowait(c)

    # -- connections ---------------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        try:
            c = sqlite3.connect(
                str(self.path), timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
            mode = c.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        except sqlite3.DatabaseError as e:
            raise ConfigError(f"cannot open label database {str(self.path)!r}: {e}") from e
        if str(mode).lower() != "wal":
            c.close()
            raise ConfigError(
                f"label database {str(self.path)!r}: SQLite refused WAL mode (got {mode!r}); "
                "put the file on a local file system"
            )
        c.execute(f"PRAGMA synchronous={self.synchronous}")
        c.execute("PRAGMA foreign_keys=ON")
        c.row_factory = sqlite3.Row
        return c

    @contextlib.contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        if self._closed:
            raise ConfigError(f"label store {str(self.path)!r} is closed")
        try:
            c = self._pool.get_nowait()
        except queue.Empty:
            c = self._open()
        try:
            yield c
        finally:
            if c.in_transaction:
                c.rollback()
            if self._closed:
                c.close()
            else:
                try:
                    self._pool.put_nowait(c)
                except queue.Full:
                    c.close()

    @contextlib.contextmanager
    def _write(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction: one writer per process at a time, ``BEGIN IMMEDIATE`` across processes;
        committed (and, with synchronous=FULL, synced) when the block ends without an exception.

        ``durable=False`` commits with ``synchronous=NORMAL`` (no sync of its own): for leases and
        sessions, whose loss on a power cut costs nothing (a lease returns its query to the pool). WAL
        frames are appended in order, so the next durable commit syncs them too; a killed process
        loses neither kind (the data is in the operating system's cache).
        """
        with self._write_lock, self._conn() as c:
            if not durable and self.synchronous != "NORMAL":
                c.execute("PRAGMA synchronous=NORMAL")
            try:
                c.execute("BEGIN IMMEDIATE")
                try:
                    yield c
                except BaseException:
                    c.rollback()
                    raise
                c.commit()
            finally:
                if not durable and self.synchronous != "NORMAL":
                    c.execute(f"PRAGMA synchronous={self.synchronous}")

    def close(self) -> None:
        """Close every pooled connection (the file stays; nothing is lost: every write committed)."""
        self._closed = True
        while True:
            try:
                self._pool.get_nowait().close()
            except queue.Empty:
                break

    def __enter__(self) -> LabelStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- experiments and queries (the loop's side) ---------------------------------------------------

    def ensure_experiment(
        self,
        name: str,
        guidelines: str | None = None,
        guidelines_file: str | Path | None = None,
        raters_per_query: int | None = None,
    ) -> int:
        """Create the experiment ``name`` if missing and return its id.

        ``guidelines`` (text) or ``guidelines_file`` (read now, as UTF-8) replace the stored guidelines
        when given; ``raters_per_query`` replaces the default for queries enqueued later.
        """
        if not isinstance(name, str) or not 1 <= len(name) <= 200:
            raise ConfigError(f"experiment name must be a string of 1-200 characters, got {name!r}")
        if guidelines is not None and guidelines_file is not None:
            raise ConfigError("give guidelines or guidelines_file, not both")
        if guidelines_file is not None:
            p = Path(guidelines_file)
            if not p.is_file():
                raise ConfigError(f"guidelines file {str(p)!r} does not exist or is not a file")
            guidelines = p.read_text(encoding="utf-8-sig")
        if raters_per_query is not None and (not isinstance(raters_per_query, int) or raters_per_query < 1):
            raise ConfigError(f"raters_per_query must be an integer >= 1, got {raters_per_query!r}")
        with self._write() as c:
            row = c.execute("SELECT id FROM experiments WHERE name = ?", (name,)).fetchone()
            if row is None:
                cur = c.execute(
                    "INSERT INTO experiments(name, guidelines, guidelines_file, raters_per_query, created) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (
                        name,
                        guidelines or "",
                        None if guidelines_file is None else str(guidelines_file),
                        raters_per_query or 1,
                        time.time(),
                    ),
                )
                return int(cur.lastrowid)
            eid = int(row["id"])
            if guidelines is not None:
                c.execute(
                    "UPDATE experiments SET guidelines = ?, guidelines_file = ? WHERE id = ?",
                    (guidelines, None if guidelines_file is None else str(guidelines_file), eid),
                )
            if raters_per_query is not None:
                c.execute("UPDATE experiments SET raters_per_query = ? WHERE id = ?", (raters_per_query, eid))
            return eid

    def enqueue(
        self,
        experiment: str,
        kind: str,
        key: str,
        prompt: str,
        completions: Sequence[Completion],
        raters: int | None = None,
        meta: dict[str, Any] | None = None,
    ) -> int:
        """Add one query (see :meth:`enqueue_many`) and return its id."""
        return self.enqueue_many(experiment, [(kind, key, prompt, completions, meta)], raters=raters)[0]

    def enqueue_many(
        self,
        experiment: str,
        items: Iterable[tuple[str, str, str, Sequence[Completion], dict[str, Any] | None]],
        raters: int | None = None,
    ) -> list[int]:
        """Add queries ``(kind, key, prompt, completions, meta)`` in one transaction; return their ids.

        A query whose ``key`` already exists in the experiment is not added again: its id is returned
        (and it is reopened if it had been closed before it had all its raters), so asking again after
        a crash finds the answers already given. ``raters`` (default: the experiment's
        ``raters_per_query``) is how many distinct raters each new query needs.
        """
        rows = []
        for j, (kind, key, prompt, comps, meta) in enumerate(items):
            where = f"query {j} ({key!r})"
            if kind not in KINDS:
                raise ConfigError(f"{where}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
            if not isinstance(key, str) or not 1 <= len(key) <= 200:
                raise ConfigError(f"{where}: key must be a string of 1-200 characters")
            if not isinstance(prompt, str) or len(prompt) > MAX_TEXT_CHARS:
                raise ConfigError(f"{where}: prompt must be a string of at most {MAX_TEXT_CHARS} characters")
            want = 2 if kind == "pairwise" else 1
            if len(comps) != want:
                raise ConfigError(f"{where}: a {kind} query takes {want} completion(s), got {len(comps)}")
            cc = [c.checked(f"{where} completion {i}") for i, c in enumerate(comps)]
            if kind == "per_token" and cc[0].tokens is None:
                raise ConfigError(
                    f"{where}: a per_token query needs the completion's token strings (tokens=)"
                )
            rows.append((kind, key, prompt, cc, json.dumps(meta or {})))
        if raters is not None and (not isinstance(raters, int) or raters < 1):
            raise ConfigError(f"raters must be an integer >= 1, got {raters!r}")
        eid = self.ensure_experiment(experiment)
        now = time.time()
        ids = []
        with self._write() as c:
            need = raters or int(
                c.execute("SELECT raters_per_query FROM experiments WHERE id = ?", (eid,)).fetchone()[0]
            )
            for kind, key, prompt, cc, meta in rows:
                old = c.execute(
                    "SELECT id, kind, raters_needed, n_labels FROM queries WHERE experiment_id = ? AND key = ?",
                    (eid, key),
                ).fetchone()
                if old is not None:
                    if old["kind"] != kind:
                        raise ConfigError(
                            f"query key {key!r} already exists as a {old['kind']} query, not {kind}"
                        )
                    if old["n_labels"] < old["raters_needed"]:
                        c.execute("UPDATE queries SET open = 1 WHERE id = ?", (old["id"],))
                    ids.append(int(old["id"]))
                    continue
                cur = c.execute(
                    "INSERT INTO queries(experiment_id, key, kind, prompt, raters_needed, meta, created) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (eid, key, kind, prompt, need, meta, now),
                )
                qid = int(cur.lastrowid)
                for slot, comp in enumerate(cc):
                    c.execute(
                        "INSERT INTO completions(query_id, slot, text, tokens, token_ids, terminated, n_tokens) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            qid,
                            slot,
                            comp.text,
                            None
                            if comp.tokens is None
                            else json.dumps(list(comp.tokens), ensure_ascii=False),
                            None if comp.token_ids is None else json.dumps(list(comp.token_ids)),
                            int(comp.terminated),
                            comp.n_tokens,
                        ),
                    )
                ids.append(qid)
        return ids

    def close_queries(self, query_ids: Sequence[int]) -> None:
        """Withdraw queries from the pool (raters are no longer offered them; answers given stay)."""
        with self._write() as c:
            c.executemany("UPDATE queries SET open = 0 WHERE id = ?", [(int(q),) for q in query_ids])

    def query_ids(self, experiment: str, keys: Sequence[str]) -> list[int | None]:
        """The ids of the queries with these keys (None where there is none)."""
        with self._conn() as c:
            out: list[int | None] = []
            for k in keys:
                row = c.execute(
                    "SELECT q.id FROM queries q JOIN experiments e ON e.id = q.experiment_id "
                    "WHERE e.name = ? AND q.key = ?",
                    (experiment, k),
                ).fetchone()
                out.append(None if row is None else int(row[0]))
            return out

    def query_status(self, query_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
        """Per query id: ``(answers received, raters needed)``."""
        out = {}
        with self._conn() as c:
            for q in query_ids:
                r = c.execute(
                    "SELECT n_labels, raters_needed FROM queries WHERE id = ?", (int(q),)
                ).fetchone()
                if r is None:
                    raise UnknownQueryError(f"no query with id {q}")
                out[int(q)] = (int(r[0]), int(r[1]))
        return out

    def answers(self, query_ids: Sequence[int] | None = None, experiment: str | None = None) -> list[Answer]:
        """Stored answers (all, of some queries, or of one experiment), oldest first, with marks."""
        sql = (
            "SELECT l.*, q.key AS query_key, r.name AS rater FROM labels l "
            "JOIN queries q ON q.id = l.query_id JOIN raters r ON r.id = l.rater_id "
            "JOIN experiments e ON e.id = q.experiment_id"
        )
        where, args = [], []
        if query_ids is not None:
            ids = [int(q) for q in query_ids]
            if not ids:
                return []
            where.append(f"l.query_id IN ({','.join('?' * len(ids))})")
            args += ids
        if experiment is not None:
            where.append("e.name = ?")
            args.append(experiment)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY l.id"
        with self._conn() as c:
            c.execute("BEGIN")  # one snapshot for labels and marks
            rows = c.execute(sql, args).fetchall()
            marks: dict[int, dict[int, int]] = {}
            lids = [r["id"] for r in rows]
            for i in range(0, len(lids), 500):
                chunk = lids[i : i + 500]
                for m in c.execute(
                    f"SELECT label_id, token_index, mark FROM token_marks WHERE label_id IN ({','.join('?' * len(chunk))})",
                    chunk,
                ):
                    marks.setdefault(m[0], {})[m[1]] = m[2]
            c.commit()
        return [
            Answer(
                label_id=int(r["id"]),
                query_id=int(r["query_id"]),
                query_key=r["query_key"],
                rater=r["rater"],
                choice=r["choice"],
                rating=r["rating"],
                swapped=bool(r["swapped"]),
                seconds=r["seconds"],
                created=float(r["created"]),
                marks=marks.get(int(r["id"]), {}),
            )
            for r in rows
        ]

    def query(self, query_id: int) -> dict[str, Any]:
        """One query as a dict: id, key, kind, prompt, experiment, raters_needed, n_labels, open,
        completions (list of :class:`Completion`), meta."""
        with self._conn() as c:
            q = c.execute(
                "SELECT q.*, e.name AS experiment FROM queries q JOIN experiments e ON e.id = q.experiment_id "
                "WHERE q.id = ?",
                (int(query_id),),
            ).fetchone()
            if q is None:
                raise UnknownQueryError(f"no query with id {query_id}")
            comps = self._completions(c, int(query_id))
        return {
            "id": int(q["id"]),
            "key": q["key"],
            "kind": q["kind"],
            "prompt": q["prompt"],
            "experiment": q["experiment"],
            "raters_needed": int(q["raters_needed"]),
            "n_labels": int(q["n_labels"]),
            "open": bool(q["open"]),
            "completions": comps,
            "meta": json.loads(q["meta"]),
        }

    @staticmethod
    def _completions(c: sqlite3.Connection, qid: int) -> tuple[Completion, ...]:
        return tuple(
            Completion(
                r["text"],
                None if r["tokens"] is None else json.loads(r["tokens"]),
                None if r["token_ids"] is None else json.loads(r["token_ids"]),
                bool(r["terminated"]),
                int(r["n_tokens"]),
            )
            for r in c.execute("SELECT * FROM completions WHERE query_id = ? ORDER BY slot", (qid,))
        )

    # -- raters and sessions (the server's side) -----------------------------------------------------

    def create_session(self) -> Session:
        """A new anonymous browser session with its own CSRF token."""
        s = Session(secrets.token_urlsafe(24), secrets.token_urlsafe(24), None, None)
        with self._write(durable=False) as c:
            c.execute(
                "INSERT INTO sessions(token, csrf, rater_id, created) VALUES (?, ?, NULL, ?)",
                (s.token, s.csrf, time.time()),
            )
        return s

    def session(self, token: str) -> Session | None:
        """The session with this cookie token, or None."""
        if not token or len(token) > 100:
            return None
        with self._conn() as c:
            r = c.execute(
                "SELECT s.token, s.csrf, s.rater_id, r.name FROM sessions s LEFT JOIN raters r ON r.id = s.rater_id "
                "WHERE s.token = ?",
                (token,),
            ).fetchone()
        return None if r is None else Session(r[0], r[1], r[2], r[3])

    def login(self, token: str, name: str) -> Session:
        """Attach the rater ``name`` (created if new) to the session ``token``."""
        name = normalise_name(name)
        with self._write() as c:
            if c.execute("SELECT 1 FROM sessions WHERE token = ?", (token,)).fetchone() is None:
                raise StoreError("unknown session; reload the page")
            rid = self._rater_id(c, name)
            c.execute("UPDATE sessions SET rater_id = ? WHERE token = ?", (rid, token))
        s = self.session(token)
        assert s is not None
        return s

    def logout(self, token: str) -> None:
        with self._write() as c:
            c.execute("UPDATE sessions SET rater_id = NULL WHERE token = ?", (token,))

    def rater_id(self, name: str) -> int:
        """The id of rater ``name``, created if new."""
        name = normalise_name(name)
        with self._write() as c:
            return self._rater_id(c, name)

    @staticmethod
    def _rater_id(c: sqlite3.Connection, name: str) -> int:
        r = c.execute("SELECT id FROM raters WHERE name = ?", (name,)).fetchone()
        if r is not None:
            return int(r[0])
        return int(
            c.execute("INSERT INTO raters(name, created) VALUES (?, ?)", (name, time.time())).lastrowid
        )

    # -- leases and answers (the server's side) ------------------------------------------------------

    def next_for(
        self,
        rater_id: int,
        exclude: Sequence[int] = (),
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        experiment: str | None = None,
    ) -> Lease | None:
        """Lease the next query to ``rater_id`` (None when nothing is waiting for them).

        First a still-valid lease the rater already holds (outside ``exclude``: the page passes the
        query it shows and the one it prefetched); else the oldest open query the rater has not
        answered and whose slots (``raters_needed`` minus answers minus other raters' valid leases)
        are not all taken. Runs in one write transaction, so two raters never take the last slot.
        """
        if not (isinstance(lease_seconds, int | float) and 0 < lease_seconds < math.inf):
            raise ConfigError(f"lease_seconds must be a positive number, got {lease_seconds!r}")
        ex = sorted({int(q) for q in exclude})[:50]
        now = time.time()
        ex_sql = f" AND q.id NOT IN ({','.join('?' * len(ex))})" if ex else ""
        exp_sql = " AND e.name = ?" if experiment is not None else ""
        exp_args = [experiment] if experiment is not None else []
        with self._write(durable=False) as c:
            row = c.execute(
                "SELECT q.id FROM assignments a JOIN queries q ON q.id = a.query_id "
                "JOIN experiments e ON e.id = q.experiment_id "
                f"WHERE a.rater_id = ? AND a.state = 'open' AND a.expires > ? AND q.open = 1{ex_sql}{exp_sql} "
                "ORDER BY a.issued LIMIT 1",
                [rater_id, now, *ex, *exp_args],
            ).fetchone()
            if row is None:
                row = c.execute(
                    "SELECT q.id FROM queries q JOIN experiments e ON e.id = q.experiment_id "
                    f"WHERE q.open = 1{ex_sql}{exp_sql} "
                    "AND NOT EXISTS (SELECT 1 FROM labels l WHERE l.query_id = q.id AND l.rater_id = ?) "
                    "AND q.n_labels + (SELECT COUNT(*) FROM assignments a WHERE a.query_id = q.id "
                    "  AND a.state = 'open' AND a.expires > ? AND a.rater_id <> ?) < q.raters_needed "
                    "ORDER BY q.id LIMIT 1",
                    [*ex, *exp_args, rater_id, now, rater_id],
                ).fetchone()
            if row is None:
                return None
            qid = int(row[0])
            swapped = swap_for(qid, rater_id)
            expires = now + float(lease_seconds)
            c.execute(
                "INSERT INTO assignments(query_id, rater_id, swapped, issued, expires, state) "
                "VALUES (?, ?, ?, ?, ?, 'open') ON CONFLICT(query_id, rater_id) DO UPDATE SET "
                "issued = excluded.issued, expires = excluded.expires, state = 'open'",
                (qid, rater_id, int(swapped), now, expires),
            )
            q = c.execute(
                "SELECT q.kind, q.prompt, e.name, e.guidelines FROM queries q "
                "JOIN experiments e ON e.id = q.experiment_id WHERE q.id = ?",
                (qid,),
            ).fetchone()
            comps = self._completions(c, qid)
        return Lease(qid, q[0], q[1], q[2], q[3], comps, swapped, expires)

    def submit(
        self,
        rater_id: int,
        query_id: int,
        choice: str | None = None,
        rating: int | None = None,
        marks: dict[int, int] | None = None,
        seconds: float | None = None,
        shown: bool = True,
    ) -> tuple[int, bool]:
        """Store one answer and return ``(label_id, duplicate)``; committed (on disk) when it returns.

        Args:
            rater_id: who answers (must have been leased the query, expired or not: a late answer
                from a person is kept).
            query_id: the query.
            choice: pairwise: ``"A"``, ``"B"``, ``"tie"`` or ``"skip"`` in *canonical* terms (the
                server maps left/right through the stored swap); rating / per-token: ``"skip"`` or None.
            rating: rating queries: 1-5.
            marks: per-token queries: ``{token_index: +1 or -1}`` (unmarked tokens are neutral).
            seconds: how long the rater took (the page measures it).
            shown: False lets the Python API answer without a lease (scripted raters in tests).

        An identical resubmission (a retry after a lost acknowledgement) returns the stored label with
        ``duplicate=True``; a different second answer raises :class:`AlreadyAnsweredError`.
        """
        if seconds is not None:
            if not isinstance(seconds, int | float) or not (0 <= float(seconds) < 1e7):
                raise AnswerError(f"seconds must be a number in [0, 1e7), got {seconds!r}")
            seconds = float(seconds)
        req = _Pending((int(rater_id), int(query_id), choice, rating, marks, seconds, bool(shown)))
        with self._pending_lock:
            self._pending.append(req)
        # Group commit: whoever holds the write lock next stores every answer waiting by then in one
        # transaction (one sync); each answer has its own savepoint, so a refused one does not undo
        # the others. Nobody returns before the COMMIT that holds its answer has returned.
        with self._write_lock:
            if not req.done:
                with self._pending_lock:
                    batch, self._pending = self._pending, []
                self._commit_batch(batch)
        if req.error is not None:
            raise req.error
        assert req.result is not None
        return req.result

    def _commit_batch(self, batch: list[_Pending]) -> None:
        """Store ``batch`` in one transaction (the caller holds ``_write_lock``)."""
        try:
            with self._conn() as c:
                c.execute("BEGIN IMMEDIATE")
                try:
                    for req in batch:
                        c.execute("SAVEPOINT answer")
                        try:
                            req.result = self._submit_in(c, *req.args)
                        except Exception as e:
                            req.error = e
                            c.execute("ROLLBACK TO answer")
                        c.execute("RELEASE answer")
                except BaseException:
                    c.rollback()
                    raise
                c.commit()
        except Exception as e:  # the commit failed: no answer of the batch is stored or acknowledged
            for req in batch:
                req.result, req.error = None, e
        finally:
            for req in batch:
                if req.result is None and req.error is None:
                    req.error = StoreError(
                        "the answer was not stored (the write was interrupted); send it again"
                    )
                req.done = True

    def _submit_in(
        self,
        c: sqlite3.Connection,
        rater_id: int,
        query_id: int,
        choice: str | None,
        rating: int | None,
        marks: dict[int, int] | None,
        seconds: float | None,
        shown: bool,
    ) -> tuple[int, bool]:
        now = time.time()
        q = c.execute(
            "SELECT kind, n_labels, raters_needed FROM queries WHERE id = ?", (int(query_id),)
        ).fetchone()
        if q is None:
            raise UnknownQueryError(f"no query with id {query_id}")
        kind = q["kind"]
        choice, rating, marks = _check_answer(
            kind, choice, rating, marks, q_tokens=self._n_tokens(c, query_id)
        )
        a = c.execute(
            "SELECT swapped, issued FROM assignments WHERE query_id = ? AND rater_id = ?",
            (int(query_id), int(rater_id)),
        ).fetchone()
        if a is None and shown:
            raise NotAssignedError(f"query {query_id} was not given to this rater; fetch it first")
        swapped = int(a["swapped"]) if a is not None else 0
        old = c.execute(
            "SELECT id, choice, rating FROM labels WHERE query_id = ? AND rater_id = ?",
            (int(query_id), int(rater_id)),
        ).fetchone()
        if old is not None:
            old_marks = {
                int(r[0]): int(r[1])
                for r in c.execute(
                    "SELECT token_index, mark FROM token_marks WHERE label_id = ?", (old["id"],)
                )
            }
            if (old["choice"], old["rating"], old_marks) == (choice, rating, marks):
                return int(old["id"]), True
            raise AlreadyAnsweredError(
                f"query {query_id} was already answered by this rater ({old['choice'] or old['rating']}); "
                "answers cannot be changed"
            )
        lid = int(
            c.execute(
                "INSERT INTO labels(query_id, rater_id, choice, rating, swapped, seconds, lease_seconds, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    int(query_id),
                    int(rater_id),
                    choice,
                    rating,
                    swapped,
                    seconds,
                    None if a is None else now - float(a["issued"]),
                    now,
                ),
            ).lastrowid
        )
        if marks:
            c.executemany(
                "INSERT INTO token_marks(label_id, token_index, mark) VALUES (?, ?, ?)",
                [(lid, i, m) for i, m in sorted(marks.items())],
            )
        n = int(q["n_labels"]) + 1
        c.execute(
            "UPDATE queries SET n_labels = ?, open = CASE WHEN ? >= raters_needed THEN 0 ELSE open END "
            "WHERE id = ?",
            (n, n, int(query_id)),
        )
        if a is not None:
            c.execute(
                "UPDATE assignments SET state = 'done' WHERE query_id = ? AND rater_id = ?",
                (int(query_id), int(rater_id)),
            )
        return lid, False

    @staticmethod
    def _n_tokens(c: sqlite3.Connection, query_id: int) -> int | None:
        r = c.execute(
            "SELECT tokens FROM completions WHERE query_id = ? AND slot = 0", (int(query_id),)
        ).fetchone()
        return None if r is None or r[0] is None else len(json.loads(r[0]))

    def swapped_for(self, rater_id: int, query_id: int) -> bool:
        """The display order of ``query_id`` for ``rater_id`` (raises if never leased to them)."""
        with self._conn() as c:
            a = c.execute(
                "SELECT swapped FROM assignments WHERE query_id = ? AND rater_id = ?",
                (int(query_id), int(rater_id)),
            ).fetchone()
            if a is None:
                if c.execute("SELECT 1 FROM queries WHERE id = ?", (int(query_id),)).fetchone() is None:
                    raise UnknownQueryError(f"no query with id {query_id}")
                raise NotAssignedError(f"query {query_id} was not given to this rater; fetch it first")
            return bool(a[0])

    def progress(self, rater_id: int | None = None) -> dict[str, int]:
        """``answered`` (by this rater), ``waiting`` (open queries this rater can be given now: not
        answered by them, with a slot not leased to someone else), ``open`` (open queries in all),
        ``labels`` (answers in all)."""
        with self._conn() as c:
            out = {
                "open": int(c.execute("SELECT COUNT(*) FROM queries WHERE open = 1").fetchone()[0]),
                "labels": int(c.execute("SELECT COUNT(*) FROM labels").fetchone()[0]),
                "answered": 0,
                "waiting": 0,
            }
            if rater_id is not None:
                out["answered"] = int(
                    c.execute("SELECT COUNT(*) FROM labels WHERE rater_id = ?", (rater_id,)).fetchone()[0]
                )
                out["waiting"] = int(
                    c.execute(
                        "SELECT COUNT(*) FROM queries q WHERE q.open = 1 AND NOT EXISTS "
                        "(SELECT 1 FROM labels l WHERE l.query_id = q.id AND l.rater_id = ?) "
                        "AND q.n_labels + (SELECT COUNT(*) FROM assignments a WHERE a.query_id = q.id "
                        "  AND a.state = 'open' AND a.expires > ? AND a.rater_id <> ?) < q.raters_needed",
                        (rater_id, time.time(), rater_id),
                    ).fetchone()[0]
                )
        return out

    # -- reading everything (admin, export) ----------------------------------------------------------

    def export_rows(self) -> list[dict[str, Any]]:
        """Every label joined with its query, rater and completions, as flat dicts (CSV/JSONL export)."""
        with self._conn() as c:
            c.execute("BEGIN")
            rows = c.execute(
                "SELECT l.id AS label_id, e.name AS experiment, q.id AS query_id, q.key AS query_key, "
                "q.kind, q.prompt, r.name AS rater, l.choice, l.rating, l.swapped, l.seconds, "
                "l.lease_seconds, l.created FROM labels l JOIN queries q ON q.id = l.query_id "
                "JOIN raters r ON r.id = l.rater_id JOIN experiments e ON e.id = q.experiment_id ORDER BY l.id"
            ).fetchall()
            comps: dict[int, dict[int, sqlite3.Row]] = {}
            for r in c.execute("SELECT query_id, slot, text, terminated, n_tokens FROM completions"):
                comps.setdefault(int(r[0]), {})[int(r[1])] = r
            marks: dict[int, list[tuple[int, int]]] = {}
            for m in c.execute(
                "SELECT label_id, token_index, mark FROM token_marks ORDER BY label_id, token_index"
            ):
                marks.setdefault(int(m[0]), []).append((int(m[1]), int(m[2])))
            c.commit()
        out = []
        for r in rows:
            d = dict(r)
            d["swapped"] = bool(d["swapped"])
            cq = comps.get(int(r["query_id"]), {})
            for slot, name in ((0, "a"), (1, "b")):
                x = cq.get(slot)
                d[f"completion_{name}"] = None if x is None else x["text"]
                d[f"terminated_{name}"] = None if x is None else bool(x["terminated"])
                d[f"n_tokens_{name}"] = None if x is None else int(x["n_tokens"])
            d["marks"] = [[i, m] for i, m in marks.get(int(r["label_id"]), [])]
            out.append(d)
        return out

    def rater_stats(self) -> list[dict[str, Any]]:
        """Per rater: answers, skips, median and mean seconds per answer, first and last answer time."""
        with self._conn() as c:
            rows = c.execute(
                "SELECT r.name, l.seconds, l.choice, l.created FROM labels l JOIN raters r ON r.id = l.rater_id "
                "ORDER BY r.name, l.id"
            ).fetchall()
        per: dict[str, list[sqlite3.Row]] = {}
        for r in rows:
            per.setdefault(r["name"], []).append(r)
        out = []
        for name, rs in per.items():
            secs = sorted(float(r["seconds"]) for r in rs if r["seconds"] is not None)
            out.append(
                {
                    "rater": name,
                    "answers": len(rs),
                    "skips": sum(r["choice"] == "skip" for r in rs),
                    "median_seconds": _median(secs),
                    "mean_seconds": (sum(secs) / len(secs)) if secs else None,
                    "first": min(float(r["created"]) for r in rs),
                    "last": max(float(r["created"]) for r in rs),
                }
            )
        return out

    def query_kinds(self) -> dict[int, str]:
        """Query id -> kind, for every query."""
        with self._conn() as c:
            return {int(r[0]): r[1] for r in c.execute("SELECT id, kind FROM queries")}

    def experiments(self) -> list[dict[str, Any]]:
        with self._conn() as c:
            return [
                dict(r)
                for r in c.execute(
                    "SELECT e.name, e.raters_per_query, e.guidelines_file, "
                    "(SELECT COUNT(*) FROM queries q WHERE q.experiment_id = e.id) AS queries, "
                    "(SELECT COUNT(*) FROM queries q WHERE q.experiment_id = e.id AND q.open = 1) AS open "
                    "FROM experiments e ORDER BY e.id"
                )
            ]


def normalise_name(name: Any) -> str:
    """A rater name: 1-64 printable characters after stripping spaces (anything else is refused)."""
    if not isinstance(name, str):
        raise AnswerError("rater name must be a string")
    name = " ".join(name.split())
    if not 1 <= len(name) <= MAX_NAME_CHARS or not name.isprintable():
        raise AnswerError(f"rater name must be 1-{MAX_NAME_CHARS} printable characters")
    return name


def _median(xs: Sequence[float]) -> float | None:
    if not xs:
        return None
    n = len(xs)
    return float(xs[n // 2]) if n % 2 else float((xs[n // 2 - 1] + xs[n // 2]) / 2)


def _check_answer(
    kind: str, choice: Any, rating: Any, marks: Any, q_tokens: int | None
) -> tuple[str | None, int | None, dict[int, int]]:
    """Validate an answer against the query's kind; return it normalised."""
    if choice is not None and choice not in CHOICES:
        raise AnswerError(f"choice must be one of {', '.join(CHOICES)}, got {choice!r}")
    if kind == "pairwise":
        if choice is None:
            raise AnswerError("a pairwise answer needs a choice (left, right, tie or skip)")
        if rating is not None or marks:
            raise AnswerError("a pairwise answer takes a choice only (no rating, no marks)")
        return choice, None, {}
    if choice not in (None, "skip"):
        raise AnswerError(f"a {kind} answer takes no choice other than 'skip', got {choice!r}")
    if kind == "rating":
        if marks:
            raise AnswerError("a rating answer takes no per-token marks")
        if choice == "skip":
            if rating is not None:
                raise AnswerError("a skipped answer has no rating")
            return "skip", None, {}
        if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
            raise AnswerError(f"rating must be an integer 1-5, got {rating!r}")
        return None, int(rating), {}
    # per_token
    if rating is not None:
        raise AnswerError("a per-token answer takes marks, not a rating")
    if choice == "skip":
        if marks:
            raise AnswerError("a skipped answer has no marks")
        return "skip", None, {}
    if marks is None:
        marks = {}
    if not isinstance(marks, dict):
        raise AnswerError("marks must map token indices to +1 (good) or -1 (bad)")
    out: dict[int, int] = {}
    for k, v in marks.items():
        try:
            i = int(k)
        except (TypeError, ValueError):
            raise AnswerError(f"mark index {k!r} is not an integer") from None
        if isinstance(v, bool) or v not in (-1, 1):
            raise AnswerError(f"mark of token {i} must be +1 (good) or -1 (bad), got {v!r}")
        if i < 0 or (q_tokens is not None and i >= q_tokens):
            raise AnswerError(f"mark index {i} is outside the completion's {q_tokens} tokens")
        out[i] = int(v)
    return None, None, out
