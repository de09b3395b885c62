"""The rating web server: the standard library's ``ThreadingHTTPServer`` over a :class:`LabelStore`.

Why the standard library: the app is ten small JSON routes and a few static files for a handful of
people on one machine; ``http.server`` needs no dependency, starts in milliseconds, runs a thread per
connection (SQLite releases the GIL while it syncs), and the work per request is one short SQLite
transaction, so a framework would add code to audit without adding speed (see
``benchmarks/human_server_load.py``). What a framework would otherwise give is done here explicitly:
body size limits, JSON validation with 4xx answers, CSRF tokens, security headers, timeouts.

URLs (stable; scripts may rely on them):

- ``GET /`` the rating page; ``GET /static/<file>`` its script and style (shipped as package data);
- ``GET /admin`` the admin page; ``GET /export.csv`` and ``GET /export.jsonl`` every label;
- ``GET /healthz`` ``{"status": "ok", ...}``;
- ``GET /api/session`` ``{"csrf": ..., "rater": ...}`` (creates the session cookie if missing);
- ``POST /api/login`` ``{"name": ...}``, ``POST /api/logout``;
- ``GET /api/next?exclude=1,2`` the next query leased to this rater (or ``null``) and progress
  (it leases, so it needs the CSRF token header like a ``POST``);
- ``POST /api/submit`` ``{"query_id": n, "choice": "left"|"right"|"tie"|"skip"}`` (pairwise),
  ``{"query_id": n, "rating": 1-5}`` or ``{"query_id": n, "marks": {"3": 1, "4": -1}}``, optional
  ``"seconds"``; the answer is committed to disk before the response is sent;
- ``GET /api/admin/stats`` the admin page's numbers as JSON.

Every ``POST`` needs the session cookie, ``Content-Type: application/json`` and the session's CSRF
token in ``X-CSRF-Token``; a cross-origin ``Origin`` is refused. Bound to 127.0.0.1 by default; any
other address needs ``allow_remote=True`` and an access token (then every request needs it, given
once as ``?access=TOKEN``, kept in a cookie). With an admin token the admin page and exports need
``?key=TOKEN`` once (kept in a cookie) or the header ``X-Admin-Key``.

Run it with ``python -m agents.human.server --db runs/labels.sqlite --port 0`` (prints the URL) or
``rlhf-envs human serve --db ...``.
"""

from __future__ import annotations

import argparse
import csv
import hmac
import io
import ipaddress
import json
import math
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from agents.human.agreement import agreement_report
from agents.human.store import DEFAULT_LEASE_SECONDS, Completion, LabelStore, Lease, StoreError
from rlhf_envs.errors import ConfigError

MAX_BODY_BYTES = 64 * 1024
SESSION_COOKIE = "rh_session"
ACCESS_COOKIE = "rh_access"
ADMIN_COOKIE = "rh_admin"
STATIC_FILES = {
    "app.js": "text/javascript; charset=utf-8",
    "admin.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
PAGES = {"/": "index.html", "/admin": "admin.html"}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
SUBMIT_KEYS = {"query_id", "choice", "rating", "marks", "seconds"}
CHOICE_MAP = {"tie": "tie", "skip": "skip"}


class HTTPError(Exception):
    """A request refused with ``status`` and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _static_bytes(name: str) -> bytes:
    return resources.files("agents.human").joinpath("static", name).read_bytes()


class RatingServer(ThreadingHTTPServer):
    """The HTTP server; ``RatingServer(store, ...)`` binds at once (``port=0`` picks a free port).

    Args:
        store: the :class:`LabelStore` (or a path to its SQLite file).
        host, port: where to listen (default 127.0.0.1 and a free port).
        allow_remote: required to bind anything but a loopback address.
        access_token: required from every client when set; required to bind a non-loopback address.
        admin_token: when set, the admin page, exports and admin API need it.
        lease_seconds: how long a fetched query stays reserved for its rater.
        experiment: serve only this experiment's queries (default: all).
        max_body: largest request body accepted, in bytes.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        store: LabelStore | str | Path,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_remote: bool = False,
        access_token: str | None = None,
        admin_token: str | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        experiment: str | None = None,
        max_body: int = MAX_BODY_BYTES,
        verbose: bool = False,
    ) -> None:
        if not is_loopback(host):
            if not allow_remote:
                raise ConfigError(
                    f"refusing to bind {host!r}: only loopback addresses (127.0.0.1, ::1, localhost) are "
                    "allowed unless allow_remote=True (--allow-remote) is given with an access token"
                )
            if not access_token:
                raise ConfigError(f"binding {host!r} (not loopback) needs an access token (--token)")
        for name, tok in (("access token", access_token), ("admin token", admin_token)):
            if tok is not None and (len(tok) < 8 or not tok.isascii() or not tok.isprintable()):
                raise ConfigError(f"the {name} must be at least 8 printable ASCII characters")
        if not (isinstance(lease_seconds, int | float) and 0 < lease_seconds < math.inf):
            raise ConfigError(f"lease_seconds must be a positive number, got {lease_seconds!r}")
        self.store = store if isinstance(store, LabelStore) else LabelStore(store)
        self.access_token, self.admin_token = access_token, admin_token
        self.lease_seconds = float(lease_seconds)
        self.experiment = experiment
        self.max_body = int(max_body)
        self.verbose = verbose
        self.pages = {p: _static_bytes(f) for p, f in PAGES.items()}
        self.static = {f: _static_bytes(f) for f in STATIC_FILES}
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), Handler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8765/``."""
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}/"

    def start_background(self) -> RatingServer:
        """Serve on a daemon thread (for tests and notebooks); :meth:`stop` ends it."""
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (the database stays as it is: every answer committed)."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        self.server_close()


class Handler(BaseHTTPRequestHandler):
    """One HTTP connection (keep-alive). Routes in :meth:`_route`."""

    server: RatingServer
    protocol_version = "HTTP/1.1"
    server_version = "rlhf-envs-rating"
    sys_version = ""
    timeout = 60
    disable_nagle_algorithm = True  # headers and body go out without waiting for a delayed ACK

    # -- plumbing -------------------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if self.server.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self._handle("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        self._new_cookies: list[str] = []
        try:
            self._body_read = False
            url = urlsplit(self.path)
            self.query = parse_qs(url.query, keep_blank_values=True)
            self.route = url.path
            self._check_access()
            status, ctype, body, extra = self._route(method)
        except HTTPError as e:
            status, ctype, body, extra = e.status, "application/json", _json({"error": e.message}), {}
        except StoreError as e:
            status, ctype, body, extra = e.status, "application/json", _json({"error": str(e)}), {}
        except Exception:  # a bug: say so without leaking details to the client
            traceback.print_exc()
            status, ctype, body, extra = 500, "application/json", _json({"error": "internal error"}), {}
        if method == "POST" and not self._body_read:
            self.close_connection = True  # an unread body would be parsed as the next request
        self._send(status, ctype, body, extra)

    def _send(self, status: int, ctype: str, body: bytes, extra: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in SECURITY_HEADERS.items():
            self.send_header(k, v)
        for k, v in extra.items():
            self.send_header(k, v)
        for c in self._new_cookies:
            self.send_header("Set-Cookie", c)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _cookies(self) -> SimpleCookie:
        c: SimpleCookie = SimpleCookie()
        try:
            c.load(self.headers.get("Cookie", ""))
        except CookieError:  # a malformed Cookie header counts as no cookie: the page starts a new session
            pass
        return c

    def _cookie(self, name: str) -> str | None:
        m = self._cookies().get(name)
        return None if m is None else m.value

    def _set_cookie(self, name: str, value: str) -> None:
        self._new_cookies.append(f"{name}={value}; Path=/; HttpOnly; SameSite=Strict")

    def _check_access(self) -> None:
        tok = self.server.access_token
        if tok is None or self.route == "/healthz":
            return
        given = (
            (self.query.get("access") or [None])[0] or self._cookie(ACCESS_COOKIE) or _bearer(self.headers)
        )
        if not given or not hmac.compare_digest(given.encode(), tok.encode()):
            raise HTTPError(401, "access token required: open the URL with ?access=TOKEN once")
        if self._cookie(ACCESS_COOKIE) != tok:
            self._set_cookie(ACCESS_COOKIE, tok)

    def _check_admin(self) -> None:
        tok = self.server.admin_token
        if tok is None:
            return
        given = (
            (self.query.get("key") or [None])[0]
            or self.headers.get("X-Admin-Key")
            or self._cookie(ADMIN_COOKIE)
        )
        if not given or not hmac.compare_digest(given.encode(), tok.encode()):
            raise HTTPError(403, "admin key required: open /admin?key=TOKEN once")
        if self._cookie(ADMIN_COOKIE) != tok:
            self._set_cookie(ADMIN_COOKIE, tok)

    def _read_json(self) -> dict[str, Any]:
        if self.headers.get("Transfer-Encoding"):
            raise HTTPError(411, "send the body with a Content-Length (no chunked encoding)")
        n = self.headers.get("Content-Length")
        if n is None:
            raise HTTPError(411, "Content-Length required")
        try:
            length = int(n)
        except ValueError:
            raise HTTPError(400, "Content-Length must be an integer") from None
        if length < 0:
            raise HTTPError(400, "Content-Length must be >= 0")
        if length > self.server.max_body:
            raise HTTPError(413, f"request body of {length} bytes; at most {self.server.max_body}")
        raw = self.rfile.read(length)
        self._body_read = True
        if len(raw) != length:
            raise HTTPError(400, "request body shorter than its Content-Length")
        try:
            data = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError) as e:
            raise HTTPError(400, f"request body is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise HTTPError(400, "request body must be a JSON object")
        return data

    def _session(self, create: bool = False) -> Any:
        tok = self._cookie(SESSION_COOKIE)
        s = self.server.store.session(tok) if tok else None
        if s is None and create:
            s = self.server.store.create_session()
            self._set_cookie(SESSION_COOKIE, s.token)
        return s

    def _check_post(self) -> Any:
        """The CSRF gate of every state-changing request; returns the session."""
        origin = self.headers.get("Origin")
        host = self.headers.get("Host")
        if origin is not None and (host is None or urlsplit(origin).netloc != host):
            raise HTTPError(403, f"cross-origin request refused (Origin {origin!r})")
        if self.headers.get("Sec-Fetch-Site") not in (None, "same-origin", "none"):
            raise HTTPError(403, "cross-site request refused (Sec-Fetch-Site)")
        s = self._session()
        if s is None:
            raise HTTPError(403, "no session: load the page first (CSRF protection)")
        given = self.headers.get("X-CSRF-Token", "")
        if not given or not hmac.compare_digest(given.encode(), s.csrf.encode()):
            raise HTTPError(403, "missing or wrong CSRF token (X-CSRF-Token header)")
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise HTTPError(415, "Content-Type must be application/json")
        return s

    # -- routes ---------------------------------------------------------------------------------------

    def _route(self, method: str) -> tuple[int, str, bytes, dict[str, str]]:
        r = self.route
        html = "text/html; charset=utf-8"
        if method == "GET":
            if r in self.server.pages:
                if r == "/admin":
                    self._check_admin()
                return 200, html, self.server.pages[r], {}
            if r.startswith("/static/"):
                name = r[len("/static/") :]
                if name not in STATIC_FILES:
                    raise HTTPError(404, f"no static file {name!r}")
                return 200, STATIC_FILES[name], self.server.static[name], {}
            if r == "/healthz":
                return 200, "application/json", _json({"status": "ok", **self.server.store.progress()}), {}
            if r == "/export.csv":
                self._check_admin()
                return (
                    200,
                    "text/csv; charset=utf-8",
                    export_csv(self.server.store).encode(),
                    _attach("labels.csv"),
                )
            if r == "/export.jsonl":
                self._check_admin()
                return (
                    200,
                    "application/x-ndjson; charset=utf-8",
                    export_jsonl(self.server.store).encode(),
                    _attach("labels.jsonl"),
                )
            if r == "/api/session":
                s = self._session(create=True)
                return 200, "application/json", _json({"csrf": s.csrf, "rater": s.rater}), {}
            if r == "/api/next":  # it leases a query: a state change, so it needs the token too
                return 200, "application/json", _json(self._next()), {}
            if r == "/api/progress":
                s = self._rater_session()
                return 200, "application/json", _json(self.server.store.progress(s.rater_id)), {}
            if r == "/api/admin/stats":
                self._check_admin()
                return 200, "application/json", _json(admin_stats(self.server.store)), {}
            if r.startswith("/api/") and r in ("/api/login", "/api/logout", "/api/submit"):
                raise HTTPError(405, f"{r} takes POST")
            raise HTTPError(404, f"no page {r!r}")
        if method == "POST":
            if r not in ("/api/login", "/api/logout", "/api/submit"):
                raise HTTPError(404 if not r.startswith("/api/") else 405, f"cannot POST to {r!r}")
            s = self._check_post()
            body = self._read_json()
            if r == "/api/login":
                _only(body, {"name"})
                s = self.server.store.login(s.token, body.get("name"))
                return 200, "application/json", _json({"rater": s.rater, "csrf": s.csrf}), {}
            if r == "/api/logout":
                _only(body, set())
                self.server.store.logout(s.token)
                return 200, "application/json", _json({"rater": None}), {}
            if s.rater_id is None:
                raise HTTPError(401, "enter your rater name first (POST /api/login)")
            return 200, "application/json", _json(self._submit(s, body)), {}
        raise HTTPError(405, f"method {method} not allowed")

    def _rater_session(self) -> Any:
        s = self._session()
        if s is None or s.rater_id is None:
            raise HTTPError(401, "enter your rater name first (POST /api/login)")
        return s

    def _next(self) -> dict[str, Any]:
        s = self._rater_session()
        given = self.headers.get("X-CSRF-Token", "")
        if not given or not hmac.compare_digest(given.encode(), s.csrf.encode()):
            raise HTTPError(403, "missing or wrong CSRF token (X-CSRF-Token header)")
        ex_raw = ",".join(self.query.get("exclude", []))
        try:
            exclude = [int(x) for x in ex_raw.split(",") if x.strip()]
        except ValueError:
            raise HTTPError(400, "exclude must be comma-separated query ids") from None
        if len(exclude) > 50:
            raise HTTPError(400, "exclude takes at most 50 ids")
        exp = (self.query.get("experiment") or [self.server.experiment])[0] or None
        lease = self.server.store.next_for(s.rater_id, exclude, self.server.lease_seconds, exp)
        return {
            "query": None if lease is None else lease_json(lease),
            "progress": self.server.store.progress(s.rater_id),
        }

    def _submit(self, s: Any, body: dict[str, Any]) -> dict[str, Any]:
        _only(body, SUBMIT_KEYS)
        qid = body.get("query_id")
        if isinstance(qid, bool) or not isinstance(qid, int):
            raise HTTPError(400, "query_id must be an integer")
        choice = body.get("choice")
        canon = None
        if choice is not None:
            if choice in ("left", "right"):
                swapped = self.server.store.swapped_for(s.rater_id, qid)
                canon = ("B" if swapped else "A") if choice == "left" else ("A" if swapped else "B")
            elif choice in CHOICE_MAP:
                canon = CHOICE_MAP[choice]
            else:
                raise HTTPError(400, f"choice must be left, right, tie or skip, got {choice!r}")
        marks = body.get("marks")
        if marks is not None:
            marks = _marks(marks)
        lid, dup = self.server.store.submit(
            s.rater_id, qid, choice=canon, rating=body.get("rating"), marks=marks, seconds=body.get("seconds")
        )
        return {
            "ok": True,
            "label_id": lid,
            "duplicate": dup,
            "progress": self.server.store.progress(s.rater_id),
        }


# ---------------------------------------------------------------------------------------------------
# Helpers shared with the admin page and the command line
# ---------------------------------------------------------------------------------------------------


def _json(x: Any) -> bytes:
    return json.dumps(x, ensure_ascii=False, allow_nan=False, default=_not_json).encode("utf-8")


def _not_json(x: Any) -> Any:
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def _clean(x: Any) -> Any:
    """NaN/inf -> None, recursively (JSON has no NaN)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return x


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _bearer(headers: Any) -> str | None:
    a = headers.get("Authorization", "")
    return a[7:].strip() if a.startswith("Bearer ") else None


def _attach(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"'}


def _only(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise HTTPError(
            400,
            f"unknown field(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(allowed)) or '(none)'}",
        )


def _marks(m: Any) -> dict[int, int]:
    """``{"3": 1}`` or ``[[3, 1], ...]`` -> ``{3: 1}`` (values are checked by the store)."""
    if isinstance(m, list):
        out = {}
        for x in m:
            if not (isinstance(x, list) and len(x) == 2):
                raise HTTPError(400, "marks as a list must hold [token_index, mark] pairs")
            out[x[0]] = x[1]
        m = out
    if not isinstance(m, dict):
        raise HTTPError(400, "marks must map token indices to +1 (good) or -1 (bad)")
    if len(m) > 20_000:
        raise HTTPError(400, "too many marks")
    res = {}
    for k, v in m.items():
        try:
            i = int(k)
        except (TypeError, ValueError):
            raise HTTPError(400, f"mark index {k!r} is not an integer") from None
        res[i] = v
    return res


def _completion_json(c: Completion) -> dict[str, Any]:
    return {
        "text": c.text,
        "tokens": None if c.tokens is None else list(c.tokens),
        "terminated": c.terminated,
        "n_tokens": c.n_tokens,
    }


def lease_json(lease: Lease) -> dict[str, Any]:
    """What the page gets for a query: completions already in display order, no swap, no key."""
    return {
        "id": lease.query_id,
        "kind": lease.kind,
        "prompt": lease.prompt,
        "experiment": lease.experiment,
        "guidelines": lease.guidelines,
        "completions": [_completion_json(c) for c in lease.shown()],
        "expires": lease.expires,
    }


EXPORT_FIELDS = (
    "label_id experiment query_id query_key kind prompt completion_a completion_b terminated_a terminated_b "
    "n_tokens_a n_tokens_b rater choice rating swapped seconds lease_seconds created marks"
).split()


#: first characters that make a spreadsheet read a cell as a formula (or as a DDE call)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _spreadsheet_safe(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula (generated text can start with ``=``,
    ``+``, ``-`` or ``@``), prefixed with an apostrophe so it is shown as text; numbers unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def export_csv(store: LabelStore) -> str:
    """Every label as CSV (``marks`` as a JSON list of ``[token_index, mark]``).

    The CSV is for spreadsheets: a text cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a
    carriage return gets a leading apostrophe, so opening the file never evaluates a formula that
    a model or a prompt wrote. :func:`export_jsonl` keeps every text exactly as stored.
    """
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=EXPORT_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in store.export_rows():
        w.writerow({k: _spreadsheet_safe(v) for k, v in {**r, "marks": json.dumps(r["marks"])}.items()})
    return buf.getvalue()


def export_jsonl(store: LabelStore) -> str:
    """Every label as one JSON object per line."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in store.export_rows())


def admin_stats(store: LabelStore) -> dict[str, Any]:
    """The admin page's data: experiments, per-rater counts and times, agreement, position bias."""
    answers = store.answers()
    kinds = store.query_kinds()
    return _clean(
        {
            "experiments": store.experiments(),
            "raters": store.rater_stats(),
            "agreement": agreement_report(answers, kinds),
            "totals": store.progress(),
        }
    )


# ---------------------------------------------------------------------------------------------------
# Running it
# ---------------------------------------------------------------------------------------------------


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``serve`` (shared by ``python -m agents.human.server`` and ``rlhf-envs human serve``)."""
    p.add_argument("--db", required=True, help="SQLite label database (created if missing)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (0 picks a free one; default 8765)")
    p.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host (needs --token)")
    p.add_argument(
        "--token", default=os.environ.get("RLHF_HUMAN_TOKEN"), help="access token (env RLHF_HUMAN_TOKEN)"
    )
    p.add_argument(
        "--admin-token",
        default=os.environ.get("RLHF_HUMAN_ADMIN_TOKEN"),
        help="protect /admin and exports (generated and printed when --allow-remote is given without one)",
    )
    p.add_argument(
        "--lease-seconds", type=float, default=DEFAULT_LEASE_SECONDS, help="how long a query is reserved"
    )
    p.add_argument("--experiment", default=None, help="serve only this experiment's queries")
    p.add_argument("--guidelines", default=None, help="guidelines file for --experiment (read at start)")
    p.add_argument("--raters", type=int, default=None, help="raters per query for --experiment")
    p.add_argument(
        "--synchronous",
        choices=("FULL", "NORMAL"),
        default="FULL",
        help="SQLite sync per answer: FULL (default; on disk before the acknowledgement, even across a power "
        "loss) or NORMAL (survives a killed server, may lose the last answers on a power loss)",
    )
    p.add_argument("--verbose", action="store_true", help="log every request")


def serve(args: argparse.Namespace) -> int:
    """Start the server from parsed :func:`add_serve_arguments` options; runs until SIGINT/SIGTERM."""
    store = LabelStore(args.db, synchronous=getattr(args, "synchronous", "FULL"))
    if args.guidelines is not None or args.raters is not None:
        if args.experiment is None:
            raise ConfigError("--guidelines and --raters need --experiment NAME")
        store.ensure_experiment(
            args.experiment, guidelines_file=args.guidelines, raters_per_query=args.raters
        )
    admin = args.admin_token
    generated = args.allow_remote and not admin and not is_loopback(args.host)
    if generated:
        admin = secrets.token_urlsafe(16)
    srv = RatingServer(
        store,
        host=args.host,
        port=args.port,
        allow_remote=args.allow_remote,
        access_token=args.token,
        admin_token=admin,
        lease_seconds=args.lease_seconds,
        experiment=args.experiment,
        verbose=args.verbose,
    )

    def stop(*_: Any) -> None:
        threading.Thread(target=srv.shutdown, daemon=True).start()

    # installed before the URL is printed: a caller may send SIGTERM as soon as it reads the URL
    # (shutdown() before serve_forever() starts makes serve_forever() return at once)
    signal.signal(signal.SIGTERM, stop)
    print(f"rating page: {srv.url}", flush=True)
    print(f"admin page:  {srv.url}admin{'?key=' + admin if generated else ''}", flush=True)
    print(f"database:    {args.db} (WAL, synchronous={store.synchronous})", flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
        store.close()
    return 0


def spawn(
    db: str | Path,
    port: int = 0,
    args: Sequence[str] = (),
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen, str]:
    """Start ``python -m agents.human.server`` in a child process; return it and its base URL.

    Used by tests and the load benchmark (a separate process can be SIGKILLed). The child's stdout
    is read until the ``rating page:`` line; stderr goes to the parent's.
    """
    cmd = [sys.executable, "-m", "agents.human.server", "--db", str(db), "--port", str(port), *args]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env, start_new_session=True
    )
    t0 = time.monotonic()
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        if line.startswith("rating page: "):
            url = line.split(": ", 1)[1].strip()
            threading.Thread(target=_drain, args=(proc.stdout,), daemon=True).start()
            return proc, url
        if not line or time.monotonic() - t0 > timeout:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"the rating server did not start: {' '.join(cmd)} (exit {proc.returncode})")


def _drain(f: Any) -> None:
    for _ in f:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agents.human.server", description="the local rating web page")
    add_serve_arguments(p)
    args = p.parse_args(argv)
    try:
        return serve(args)
    except (ConfigError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
