"""The rating page in a real browser: headless Chromium from Debian's packages, driven by Selenium.

Needs ``chromium`` and ``chromium-driver`` (``apt-get install chromium chromium-driver``; ``.ci/run``
installs them) and ``selenium`` (test extras). Without them these tests skip locally, and fail with
the same message when the ``CI`` environment variable is set. Nothing is downloaded at run time: the
driver and the browser binary are given by path.

Set ``UPDATE_DOCS_SCREENSHOT=1`` to write the pairwise page's screenshot to ``docs/rating_page.png``.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agents.human.server import RatingServer
from agents.human.store import Completion, LabelStore

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
NASTY = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2"> it\'s "quoted" & <b>bold</b>'
DOCS_PNG = Path(__file__).resolve().parent.parent / "docs" / "rating_page.png"


def _require_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (os.path.isfile(p) and os.access(p, os.X_OK))]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install -e '.[test]')")
    if missing:
        msg = (
            f"browser test needs {', '.join(missing)}; install with "
            "`apt-get install -y chromium chromium-driver` (Debian) — .ci/run does this"
        )
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {msg}", pytrace=False)
        pytest.skip(msg)


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1100,600",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        opts.add_argument(arg)
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    d.set_page_load_timeout(30)
    yield d
    d.quit()


@pytest.fixture
def served(tmp_path):
    store = LabelStore(tmp_path / "labels.sqlite")
    srv = RatingServer(store).start_background()
    yield store, srv.url
    srv.stop()
    store.close()


def body_attr(d, name: str) -> str:
    return d.find_element("tag name", "body").get_attribute(f"data-{name}") or ""


def wait_for(cond, timeout: float = 20.0, what: str = "condition"):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def wait_new_query(d, prev: str, kind: str | None = None) -> str:
    def ok():
        q = body_attr(d, "query-id")
        return q if q and q != prev and (kind is None or body_attr(d, "kind") == kind) else None

    return wait_for(ok, what=f"a new {kind or ''} query after {prev!r}")


def press(d, keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(d).send_keys(keys).perform()


def login(d, url: str, name: str) -> None:
    from selenium.webdriver.common.keys import Keys

    d.get(url)
    box = wait_for(lambda: (e := d.find_element("id", "name")).is_displayed() and e, what="the login form")
    box.send_keys(name + Keys.ENTER)


def text_of(d, css: str) -> str:
    return d.find_element("css selector", css).get_property("textContent")


def save_screenshot(d, out: Path) -> None:
    """A small PNG (palette of 64 colours) of the current page."""
    raw = out.with_suffix(".raw.png")
    d.save_screenshot(str(raw))
    try:
        from PIL import Image

        Image.open(raw).convert("RGB").quantize(colors=64).save(out, optimize=True)
        raw.unlink()
    except ImportError:
        raw.replace(out)


def test_rate_by_keyboard_and_click_text_stays_text(driver, served, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains

    store, url = served
    store.ensure_experiment(
        "demo", guidelines="Prefer the completion that is more positive and stays on topic.\nTies are fine."
    )
    pairs = [
        ("The hotel was", " clean and the staff were friendly.", " dirty and loud at night, we left early."),
        (NASTY, NASTY, "plain text"),
        ("The movie", " was fine.", " was fine!"),
        ("My phone", " broke.", " works."),
    ]
    store.enqueue_many(
        "demo",
        [
            (
                "pairwise",
                f"p{i}",
                p,
                [
                    Completion(a, None, list(range(len(a.split()))), True),
                    Completion(b, None, [1] * 12, False),
                ],
                None,
            )
            for i, (p, a, b) in enumerate(pairs)
        ],
    )
    store.enqueue(
        "demo", "rating", "r0", "The food", [Completion(" was <i>great</i>.", None, [1, 2, 3], True)]
    )
    toks = [" The", " <b>", " service", " was", " slow"]
    store.enqueue(
        "demo", "per_token", "t0", "Review:", [Completion("".join(toks), toks, [1, 2, 3, 4, 5], False)]
    )

    login(driver, url, "ann")
    q0 = wait_new_query(driver, "", "pairwise")
    assert text_of(driver, "#rater-name") == "ann"
    assert text_of(driver, "#prompt") == "The hotel was"
    sides = [text_of(driver, "#left .text"), text_of(driver, "#right .text")]
    assert sorted(sides) == sorted([pairs[0][1], pairs[0][2]])  # side by side, in the stored order
    ends = [text_of(driver, "#left .end"), text_of(driver, "#right .end")]
    assert sorted(ends) == ["■ end of sequence", "✂ cut off at the token budget"]
    assert "tokens" in text_of(driver, "#left .meta")
    assert "Prefer the completion" in text_of(driver, "#guidelines")
    driver.find_element("css selector", "#guidelines-box summary").click()  # open the guidelines
    shot = tmp_path / "rating_page.png"
    save_screenshot(driver, shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("UPDATE_DOCS_SCREENSHOT"):
        shutil.copyfile(shot, DOCS_PNG)

    press(driver, "1")  # keyboard: the left one
    q1 = wait_new_query(driver, q0, "pairwise")
    # Markup in prompts and completions renders as text: no element was created from it.
    assert text_of(driver, "#prompt") == NASTY
    assert NASTY in (text_of(driver, "#left .text"), text_of(driver, "#right .text"))
    assert driver.find_elements("css selector", "#prompt *, #left .text *, #right .text *, #task img") == []
    assert driver.execute_script("return window.pwned === undefined")
    driver.find_element("css selector", "button[data-choice=right]").click()  # click: the right one
    q2 = wait_new_query(driver, q1, "pairwise")
    press(driver, "t")
    q3 = wait_new_query(driver, q2, "pairwise")
    driver.find_element("css selector", "button[data-choice=skip]").click()
    q4 = wait_new_query(driver, q3, "rating")
    assert text_of(driver, "#rating-completion .text") == " was <i>great</i>."
    press(driver, "4")
    wait_new_query(driver, q4, "per_token")
    spans = driver.find_elements("css selector", "#tokens .tok")
    assert [s.get_property("textContent") for s in spans] == toks
    spans[0].click()  # the default brush is "good"
    press(driver, "b")
    ActionChains(driver).click_and_hold(spans[3]).move_to_element(spans[4]).release().perform()  # drag a span
    assert [s.get_attribute("class") for s in spans] == ["tok good", "tok", "tok", "tok bad", "tok bad"]
    press(driver, "\ue007")  # Enter submits
    wait_for(lambda: driver.find_element("id", "empty").is_displayed(), what="the empty-queue state")
    wait_for(lambda: body_attr(driver, "saved") == "6", what="six acknowledged answers")
    assert "your answers: 6" in text_of(driver, "#progress")

    ans = {a.query_key: a for a in store.answers()}
    assert set(ans) == {"p0", "p1", "p2", "p3", "r0", "t0"} and {a.rater for a in ans.values()} == {"ann"}
    assert ans["p0"].choice == ("B" if ans["p0"].swapped else "A")  # "1" = left, through the stored swap
    assert ans["p1"].choice == ("A" if ans["p1"].swapped else "B")  # clicked right
    assert ans["p2"].choice == "tie" and ans["p3"].choice == "skip"
    assert ans["r0"].rating == 4
    assert ans["t0"].marks == {0: 1, 3: -1, 4: -1}
    assert all(a.seconds is not None and a.seconds > 0 for a in ans.values())

    # The empty page polls: a query enqueued now appears without a reload.
    store.enqueue("demo", "rating", "r1", "Late", [Completion(" arrival", None, [1], True)])
    wait_new_query(driver, "", "rating")
    assert text_of(driver, "#prompt") == "Late"


class _AttackPage(BaseHTTPRequestHandler):
    """Another origin (another port) whose page posts to the rating server without the CSRF token."""

    target = ""

    def do_GET(self):  # noqa: N802
        body = f"""<!doctype html><html><body>
<form id="f" method="POST" action="{self.target}api/submit" enctype="text/plain">
<input name='{{"query_id": 1, "choice": "left", "x": "' value='"}}'></form>
<p id="fetch">pending</p>
<script>
fetch("{self.target}api/submit", {{method: "POST", mode: "no-cors", credentials: "include",
  headers: {{"Content-Type": "text/plain"}}, body: JSON.stringify({{query_id: 1, choice: "left"}})}})
  .then(() => {{ document.getElementById("fetch").textContent = "sent"; }},
        () => {{ document.getElementById("fetch").textContent = "blocked"; }});
</script></body></html>""".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def test_a_cross_site_post_without_the_token_is_refused(driver, served):
    store, url = served
    store.enqueue("x", "pairwise", "p", "prompt", [Completion("a"), Completion("b")])
    login(driver, url, "<i>victim</i>")
    wait_new_query(driver, "", "pairwise")  # the victim has a session and holds a lease on query 1
    assert text_of(driver, "#rater-name") == "<i>victim</i>"  # the rater's own name is text too
    _AttackPage.target = url
    evil = ThreadingHTTPServer(("127.0.0.1", 0), _AttackPage)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        driver.get(f"http://127.0.0.1:{evil.server_address[1]}/")
        wait_for(lambda: text_of(driver, "#fetch") != "pending", what="the attack page's fetch")
        driver.execute_script("document.getElementById('f').submit()")
        wait_for(lambda: "api/submit" in driver.current_url, what="the form post")
        page = driver.find_element("tag name", "body").get_property("textContent")
        assert "cross-origin request refused" in page, page
    finally:
        evil.shutdown()
        evil.server_close()
    assert store.answers() == []


def test_end_to_end_the_rlhf_cli_with_a_browser_rater(driver, tmp_path):
    """The issue's end-to-end must-show, with the real command: ``rlhf-envs rlhf --human web --db DB
    --port 0`` runs as a child process and serves the page; this browser session is the rater for the
    one round that asks (by keyboard and by click); then the answers are in the database, the loop's
    received labels equal them, its reward model was fitted on exactly them (a refit here from the
    saved labels gives the same scores), and PPO went on in the next round (budget spent, so no
    more questions) before the command exited 0."""
    import json

    import numpy as np
    import torch

    from agents.rlhf.config import RLHFConfig
    from agents.rlhf.persistence import episode_from_json
    from agents.rlhf.reward_fitting import fit_reward_model
    from agents.rlhf.streams import Stream, stream_seed
    from rlhf_envs.feedback.learned import RewardModel
    from tests.rlhf_web_run import TINY, LoopProcess, run_files

    db, run = tmp_path / "labels.sqlite", tmp_path / "run"
    child = LoopProcess(
        db, run, "--rounds", "2", "--budget", "3", "--set", 'on_budget_exhausted="continue"', *TINY
    )
    try:
        login(driver, child.url, "browser-rater")
        prev = ""
        for how in ("key 1", "click right", "key t"):
            prev = wait_new_query(driver, prev, "pairwise")
            if how == "click right":
                driver.find_element("css selector", "button[data-choice=right]").click()
            else:
                press(driver, how[-1])
        wait_for(lambda: body_attr(driver, "saved") == "3", what="three acknowledged answers")
        rc = child.wait(timeout=300)
    finally:
        child.kill()
    assert rc == 0, child.output
    assert f"waiting for 3 answers to 3 comparisons at {child.url}" in child.output
    assert re.search(r"human comparisons: +100%.* 3/3 ", child.output), child.output  # the progress bar
    assert "reward model fitted on 3 labels" in child.output  # round 0's log line

    store = LabelStore(db)
    answers = store.answers(experiment="e2e")
    assert len(answers) == 3 and {a.rater for a in answers} == {"browser-rater"}
    by_order = sorted(answers, key=lambda a: a.label_id)
    assert by_order[0].choice == ("B" if by_order[0].swapped else "A")  # "1" = the left one
    assert by_order[1].choice == ("A" if by_order[1].swapped else "B")  # clicked the right one
    assert by_order[2].choice == "tie"
    stored = {}
    for a in answers:
        q = store.query(a.query_id)
        stored[(q["prompt"], q["completions"][0].text, q["completions"][1].text)] = a.prob_a
    store.close()

    saved = run_files(run)
    state, feedback = saved["state"], saved["feedback"]
    assert len(feedback) == 1  # one round asked; the second found the budget spent
    rec = feedback[0]
    received = {
        (x["prompt"], x["completion"], y["completion"]): p
        for x, y, p in zip(rec["a"], rec["b"], rec["labels"], strict=True)
    }
    assert received == stored  # the loop got exactly the browser's answers, query by query
    h0, h1 = state["history"]
    assert h0["queries"] == 3 and h0["ties"] == 1 and h0["rm_pairs"] == 3  # fitted on all 3 labels
    assert h1["queries"] == 0 and "budget exhausted" in state["stop_reason"]
    assert 0 < h0["ppo_tokens_total"] < h1["ppo_tokens_total"]  # PPO continued after the round
    assert state["reward_model_dir"] == "rounds/round_000/reward_model"

    # The saved reward model is the fit on those labels: refitting them here gives the same scores.
    cfg = RLHFConfig(**state["config"])
    a = [episode_from_json(x) for x in rec["a"]]
    b = [episode_from_json(x) for x in rec["b"]]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        refit, info = fit_reward_model(
            cfg, a, b, rec["labels"], stream_seed(cfg.seed, 0, Stream.REWARD_MODEL_FIT)
        )
        saved_rm = RewardModel.load(run / state["reward_model_dir"])
        assert info["rm_pairs"] == 3
        assert np.allclose(refit.score([*a, *b]), saved_rm.score([*a, *b]), atol=1e-5)
        flipped, _ = fit_reward_model(
            cfg, a, b, [1.0 - p for p in rec["labels"]], stream_seed(cfg.seed, 0, Stream.REWARD_MODEL_FIT)
        )
        assert not np.allclose(flipped.score([*a, *b]), saved_rm.score([*a, *b]), atol=1e-5)
    finally:
        torch.set_num_threads(threads)
    assert json.loads((run / "state.json").read_text())["rounds_done"] == 2
