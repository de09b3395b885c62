"""A scripted rater over HTTP: the rating page's JSON calls without a browser.

Used by the tests (concurrency, crash), the load benchmark and anyone who wants a simulated rater to
go through the same server path as a person (session cookie, CSRF token, leases, commit before the
acknowledgement). One :class:`RaterClient` is one browser session on one keep-alive connection; it
is not thread-safe (use one per thread).
"""

from __future__ import annotations

import http.client
import json
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlsplit


class HTTPStatusError(Exception):
    """The server answered with a status >= 400; ``status`` and the server's ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message = status, message


class RaterClient:
    """One rater's session against a running rating server at ``url`` (``http://host:port/``)."""

    def __init__(self, url: str, name: str | None = None, timeout: float = 30.0) -> None:
        u = urlsplit(url)
        if u.scheme != "http" or not u.hostname:
            raise ValueError(f"url must be http://host:port/, got {url!r}")
        self.host, self.port, self.timeout = u.hostname, u.port or 80, timeout
        self.cookies: dict[str, str] = {}
        self.csrf: str | None = None
        self._conn: http.client.HTTPConnection | None = None
        if name is not None:
            self.login(name)

    # -- transport ------------------------------------------------------------------------------------

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        """Send one request; return ``(status, parsed JSON or text, headers)``. Reconnects once if the
        kept-alive connection was closed by the server (never for a POST that may have arrived)."""
        h = {"Host": f"{self.host}:{self.port}"}
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        if self.csrf and "X-CSRF-Token" not in (headers or {}):
            h["X-CSRF-Token"] = self.csrf
        h.update(headers or {})
        for attempt in range(2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self._conn.request(method, path, body=data, headers=h)
                r = self._conn.getresponse()
                payload = r.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt == 1 or method == "POST":
                    raise
            except http.client.IncompleteRead as exc:
                # the server died while sending the response: a dropped connection like the ones
                # above (an identical resubmission of an answer is accepted, so callers may retry)
                self.close()
                if attempt == 1 or method == "POST":
                    raise ConnectionResetError(
                        f"the server closed the connection mid-response: {exc!r}"
                    ) from exc
            except Exception:
                self.close()
                raise
        rh = {k.lower(): v for k, v in r.getheaders()}
        for v in r.headers.get_all("Set-Cookie") or []:
            c: SimpleCookie = SimpleCookie()
            c.load(v)
            for k, m in c.items():
                self.cookies[k] = m.value
        if rh.get("connection", "").lower() == "close":
            self.close()
        ctype = rh.get("content-type", "")
        parsed: Any = payload.decode("utf-8", "replace")
        if ctype.startswith("application/json"):
            parsed = json.loads(payload) if payload else None
        return r.status, parsed, rh

    def _ok(self, method: str, path: str, body: Any = None) -> Any:
        status, data, _ = self.request(method, path, body)
        if status >= 400:
            msg = data.get("error", "") if isinstance(data, dict) else str(data)
            raise HTTPStatusError(status, msg)
        return data

    # -- the page's calls -----------------------------------------------------------------------------

    def session(self) -> dict[str, Any]:
        """``GET /api/session`` (creates the session cookie); keeps the CSRF token."""
        d = self._ok("GET", "/api/session")
        self.csrf = d["csrf"]
        return d

    def login(self, name: str) -> dict[str, Any]:
        if self.csrf is None:
            self.session()
        return self._ok("POST", "/api/login", {"name": name})

    def next(
        self, exclude: list[int] | tuple[int, ...] = (), experiment: str | None = None
    ) -> dict[str, Any]:
        """``GET /api/next``: ``{"query": {...} or None, "progress": {...}}``."""
        path = "/api/next?exclude=" + ",".join(str(int(q)) for q in exclude)
        if experiment:
            path += f"&experiment={experiment}"
        return self._ok("GET", path)

    def submit(self, query_id: int, **answer: Any) -> dict[str, Any]:
        """``POST /api/submit`` with ``choice=``, ``rating=`` or ``marks=`` (and optional ``seconds=``)."""
        return self._ok("POST", "/api/submit", {"query_id": query_id, **answer})
