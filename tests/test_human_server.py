"""The rating server's HTTP surface: 4xx for bad input, CSRF, escaping, access and admin tokens, exports."""

from __future__ import annotations

import csv
import io
import json
import re
from importlib import resources

import pytest

from agents.human.client import HTTPStatusError, RaterClient
from agents.human.server import RatingServer
from agents.human.store import Completion, LabelStore
from rlhf_envs.errors import ConfigError

NASTY = (
    '<script>window.pwned=1</script> <img src=x onerror="window.pwned=2"> \'single\' "double" &amp; </div>'
)


@pytest.fixture
def store(tmp_path):
    s = LabelStore(tmp_path / "labels.sqlite")
    s.ensure_experiment("e", guidelines="<b>bold?</b> Prefer the kinder answer.", raters_per_query=2)
    s.enqueue_many(
        "e",
        [
            (
                "pairwise",
                "p0",
                NASTY,
                [Completion(NASTY, None, [1, 2], True), Completion("plain", None, [3], False)],
                None,
            ),
            ("rating", "r0", "rate me", [Completion("a completion")], None),
            ("per_token", "t0", "mark me", [Completion("a b c", ["a", " b", " c"], [4, 5, 6], True)], None),
        ],
    )
    yield s
    s.close()


@pytest.fixture
def server(store):
    srv = RatingServer(store).start_background()
    yield srv
    srv.stop()


def test_api_round_trip_and_exports(server, store):
    ann = RaterClient(server.url, "ann")
    seen = {}
    while (q := ann.next()["query"]) is not None:
        seen[q["kind"]] = q
        if q["kind"] == "pairwise":
            ann.submit(q["id"], choice="left", seconds=1.5)
        elif q["kind"] == "rating":
            ann.submit(q["id"], rating=4)
        else:
            ann.submit(q["id"], marks={"0": 1, "2": -1})
    assert set(seen) == {"pairwise", "rating", "per_token"}
    pw = seen["pairwise"]
    # The page gets the text verbatim (it is escaped by the page's textContent, not mangled here),
    # the completions in display order, and no hint of which one is A.
    assert pw["prompt"] == NASTY and NASTY in [c["text"] for c in pw["completions"]]
    assert "swapped" not in pw and "key" not in pw
    ans = {a.query_id: a for a in store.answers()}
    swapped = ans[pw["id"]].swapped
    assert ans[pw["id"]].choice == ("B" if swapped else "A")  # "left" mapped through the stored swap
    assert ans[seen["per_token"]["id"]].marks == {0: 1, 2: -1}

    status, text, headers = ann.request("GET", "/export.csv")
    assert status == 200 and headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 3 and {r["rater"] for r in rows} == {"ann"}
    assert any(r["prompt"] == NASTY for r in rows)
    status, text, _ = ann.request("GET", "/export.jsonl")
    lines = [json.loads(x) for x in text.splitlines()]
    assert status == 200 and len(lines) == 3 and any(x["marks"] == [[0, 1], [2, -1]] for x in lines)
    status, health, _ = ann.request("GET", "/healthz")
    assert status == 200 and health["status"] == "ok" and health["labels"] == 3
    status, stats, _ = ann.request("GET", "/api/admin/stats")
    assert (
        status == 200 and stats["raters"][0]["answers"] == 3 and stats["raters"][0]["median_seconds"] == 1.5
    )
    for path in ("/", "/admin", "/static/app.js", "/static/style.css", "/static/admin.js"):
        assert ann.request("GET", path)[0] == 200
    ann.close()


def test_raters_cannot_see_each_others_answers(server):
    ann, bob = RaterClient(server.url, "ann"), RaterClient(server.url, "bob")
    q = ann.next()["query"]
    ann.submit(q["id"], choice="tie")
    qb = bob.next()["query"]
    assert qb["id"] == q["id"]  # 2 raters per query: bob gets the same query...
    assert set(qb) == {
        "id",
        "kind",
        "prompt",
        "experiment",
        "guidelines",
        "completions",
        "expires",
    }  # ...no answers
    assert bob.next(exclude=[q["id"]])["progress"]["answered"] == 0
    with pytest.raises(HTTPStatusError) as e:
        bob.submit(ann.next(exclude=[q["id"]])["query"]["id"] + 100, choice="tie")
    assert e.value.status == 404


def test_bad_requests_get_4xx_with_a_message_never_500(server):
    c = RaterClient(server.url, "ann")
    q = c.next()["query"]
    pid = q["id"]
    cases = [
        ("POST", "/api/submit", None, b"{not json", 400, "not valid JSON"),
        ("POST", "/api/submit", None, b"[1, 2]", 400, "JSON object"),
        ("POST", "/api/submit", None, b'{"query_id": NaN, "choice": "left"}', 400, "NaN"),
        ("POST", "/api/submit", None, b"\xff\xfe", 400, "not valid JSON"),
        ("POST", "/api/submit", {"query_id": "1", "choice": "left"}, None, 400, "query_id"),
        ("POST", "/api/submit", {"query_id": True, "choice": "left"}, None, 400, "query_id"),
        ("POST", "/api/submit", {"choice": "left"}, None, 400, "query_id"),
        ("POST", "/api/submit", {"query_id": pid, "choice": "left", "evil": 1}, None, 400, "unknown field"),
        ("POST", "/api/submit", {"query_id": 99999, "choice": "left"}, None, 404, "no query"),
        ("POST", "/api/submit", {"query_id": pid, "choice": "up"}, None, 400, "choice"),
        ("POST", "/api/submit", {"query_id": pid, "rating": 3}, None, 422, "choice"),
        ("POST", "/api/submit", {"query_id": pid, "choice": "left", "seconds": "x"}, None, 422, "seconds"),
        ("POST", "/api/submit", {"query_id": pid, "marks": "all good"}, None, 400, "marks"),
        ("POST", "/api/login", {"name": ""}, None, 422, "rater name"),
        ("POST", "/api/login", {"name": "x" * 100}, None, 422, "rater name"),
        ("POST", "/api/nope", {}, None, 405, "cannot POST"),
        ("GET", "/api/submit", None, None, 405, "POST"),
        ("GET", "/api/next?exclude=1,abc", None, None, 400, "exclude"),
        ("GET", "/nope", None, None, 404, "no page"),
        ("GET", "/static/../store.py", None, None, 404, "static"),
        ("DELETE", "/api/submit", None, None, 405, "not allowed"),
    ]
    for method, path, body, raw, want, msg in cases:
        status, data, _ = c.request(
            method, path, body=body, raw=raw, headers={"Content-Type": "application/json"}
        )
        assert status == want, (path, body, raw, status, data)
        assert msg in data["error"], (path, data)
    # not leased to this rater: the rating query exists but ann was never given it
    other = [i for i in (1, 2, 3) if i != pid][0]
    status, data, _ = c.request("POST", "/api/submit", {"query_id": other, "rating": 3})
    assert status == 409 and "fetch it first" in data["error"]
    # size limit, missing length, wrong type
    big = json.dumps({"query_id": pid, "choice": "left", "seconds": 1, "pad": "x" * 70_000}).encode()
    status, data, _ = c.request("POST", "/api/submit", raw=big, headers={"Content-Type": "application/json"})
    assert status == 413 and "at most" in data["error"]
    status, data, _ = c.request(
        "POST", "/api/submit", raw=b"choice=left", headers={"Content-Type": "text/plain"}
    )
    assert status == 415
    # after all that the server still works and nothing was stored
    assert c.request("GET", "/healthz")[1]["labels"] == 0
    status, data, _ = c.request("GET", "/api/next")
    assert status == 200
    anon = RaterClient(server.url)
    anon.session()
    status, data, _ = anon.request("GET", "/api/next")
    assert status == 401 and "rater name" in data["error"]


def test_csrf_a_post_without_the_sessions_token_is_refused(server, store):
    c = RaterClient(server.url, "ann")
    q = c.next()["query"]
    body = {"query_id": q["id"], "choice": "left"}
    for headers, msg in [
        ({"X-CSRF-Token": ""}, "CSRF"),
        ({"X-CSRF-Token": "forged-token-value"}, "CSRF"),
        ({"Origin": "http://evil.example"}, "cross-origin"),
        ({"Sec-Fetch-Site": "cross-site"}, "cross-site"),
        ({"Sec-Fetch-Site": "same-site"}, "cross-site"),
    ]:
        status, data, _ = c.request("POST", "/api/submit", body, headers=headers)
        assert status == 403 and msg in data["error"], (headers, data)
    # a client with no session cookie at all (a form posted from elsewhere)
    stranger = RaterClient(server.url)
    status, data, _ = stranger.request("POST", "/api/submit", body, headers={"X-CSRF-Token": c.csrf})
    assert status == 403 and "session" in data["error"]
    # another session's token does not work either
    other = RaterClient(server.url, "bob")
    status, data, _ = c.request("POST", "/api/submit", body, headers={"X-CSRF-Token": other.csrf})
    assert status == 403
    assert store.answers() == []
    # Fetching the next query leases it (a state change): a cross-site <img src=/api/next> has no token.
    status, data, _ = c.request("GET", "/api/next", headers={"X-CSRF-Token": ""})
    assert status == 403 and "CSRF" in data["error"]
    assert c.submit(q["id"], choice="left")["ok"]  # the right token, same origin: accepted
    status, _, _ = c.request("POST", "/api/submit", body, headers={"Origin": server.url.rstrip("/")})
    assert status == 200


def test_responses_carry_a_strict_content_security_policy(server):
    status, html, headers = RaterClient(server.url).request("GET", "/")
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert status == 200 and "set-cookie" not in headers  # a session starts with /api/session


def test_page_assets_are_local_and_never_put_data_into_html():
    static = resources.files("agents.human").joinpath("static")
    names = [p.name for p in static.iterdir()]
    assert {"index.html", "admin.html", "app.js", "admin.js", "style.css"} <= set(names)
    for name in names:
        text = static.joinpath(name).read_text(encoding="utf-8")
        assert not re.search(r"https?://", text), f"{name} refers to an external resource"
        assert "@import" not in text and "url(" not in text
        if name.endswith(".js"):
            for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
                assert sink not in text, f"{name} uses {sink}"
            assert "textContent" in text
        if name.endswith(".html"):
            assert "<script>" not in text and "onclick" not in text  # no inline script (the CSP forbids it)


def test_binding_beyond_loopback_needs_a_flag_and_a_token(store):
    with pytest.raises(ConfigError, match="allow_remote"):
        RatingServer(store, host="0.0.0.0")
    with pytest.raises(ConfigError, match="access token"):
        RatingServer(store, host="0.0.0.0", allow_remote=True)
    with pytest.raises(ConfigError, match="at least 8"):
        RatingServer(store, access_token="short")


def test_access_token_and_admin_key(store):
    srv = RatingServer(store, access_token="s3cret-token", admin_token="adm1n-token").start_background()
    try:
        c = RaterClient(srv.url)
        status, data, _ = c.request("GET", "/")
        assert status == 401 and "access token" in data["error"]
        assert c.request("GET", "/healthz")[0] == 200  # health checks need no token
        status, _, headers = c.request("GET", "/?access=s3cret-token")
        assert status == 200 and "rh_access=s3cret-token" in headers["set-cookie"]
        assert c.request("GET", "/")[0] == 200  # the cookie carries it from now on
        c.login("ann")
        assert c.next()["query"] is not None
        for path in ("/admin", "/export.csv", "/export.jsonl", "/api/admin/stats"):
            status, data, _ = c.request("GET", path)
            assert status == 403 and "admin key" in data["error"], path
        assert c.request("GET", "/admin?key=wrong-key-123")[0] == 403
        assert c.request("GET", "/admin?key=adm1n-token")[0] == 200
        assert c.request("GET", "/export.csv")[0] == 200  # the admin cookie now
        b = RaterClient(srv.url)
        assert b.request("GET", "/export.csv", headers={"Authorization": "Bearer s3cret-token"})[0] == 403
        assert (
            b.request(
                "GET",
                "/export.csv",
                headers={"Authorization": "Bearer s3cret-token", "X-Admin-Key": "adm1n-token"},
            )[0]
            == 200
        )
    finally:
        srv.stop()


def test_csv_export_never_hands_a_spreadsheet_a_formula(tmp_path):
    """Generated text can start with "=", "+", "-" or "@": the CSV shows it as text (a leading
    apostrophe), numbers stay numbers, and the JSONL export keeps the exact text."""
    from agents.human.server import export_csv, export_jsonl

    formulas = ['=HYPERLINK("http://x.invalid","click")', "+1+1", "-2+3", "@SUM(A1:A2)", "\tx"]
    with LabelStore(tmp_path / "f.sqlite") as s:
        s.ensure_experiment("e", raters_per_query=1)
        ids = s.enqueue_many(
            "e",
            [
                ("pairwise", f"q{i}", f, [Completion(f), Completion("fine")], None)
                for i, f in enumerate(formulas)
            ],
        )
        rater = s.rater_id("=cmd|' /C calc'!A0")
        for qid in ids:
            s.submit(rater, qid, choice="A", seconds=1.0, shown=False)
        rows = list(csv.DictReader(io.StringIO(export_csv(s))))
        exact = [json.loads(x) for x in export_jsonl(s).splitlines()]
    assert len(rows) == len(formulas)
    for r in rows:
        for key in ("prompt", "completion_a", "rater"):
            assert r[key].startswith("'") and r[key][1:2] in "=+-@\t", (key, r[key])
        assert r["completion_b"] == "fine"
    assert sorted(r["prompt"][1:] for r in rows) == sorted(formulas)
    assert sorted(x["prompt"] for x in exact) == sorted(formulas)
