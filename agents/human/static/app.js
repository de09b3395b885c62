// The rating page. Every piece of prompt or model text is put into the page with textContent
// (never as HTML), so generated markup shows as text. State-changing requests carry the
// session's CSRF token. The next query is prefetched, so answering never waits for the network;
// answers are sent in order and retried until the server acknowledges them (it commits first).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const experiment = new URLSearchParams(location.search).get("experiment");

  let csrf = null;
  let current = null;       // the query on screen
  let nextPromise = null;   // the prefetched query (a promise of a query or null)
  let shownAt = 0;
  let advancing = false;
  const pending = [];       // answers not yet acknowledged, oldest first
  let flushing = false;
  let saved = 0;
  let lastProgress = null;
  let pollTimer = null;
  // per-token mode
  let brush = 1;
  let marks = new Map();
  let drag = null;          // {anchor, before}

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(method, path, body) {
    const opt = { method, headers: {}, credentials: "same-origin", cache: "no-store" };
    if (csrf) opt.headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) {
      opt.headers["Content-Type"] = "application/json";
      opt.body = JSON.stringify(body);
    }
    let r;
    try {
      r = await fetch(path, opt);
    } catch (e) {
      throw new ApiError(0, "the server is not reachable");
    }
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    if (!r.ok) throw new ApiError(r.status, (data && data.error) || r.statusText);
    return data;
  }

  function status(msg, isError) {
    const el = $("status");
    el.textContent = msg || "";
    el.className = isError ? "error" : "";
  }

  function show(id, on) { $(id).hidden = !on; }

  function renderProgress(p) {
    if (p) lastProgress = p;
    p = lastProgress;
    if (!p) return;
    const saving = pending.length ? ` · saving ${pending.length}` : "";
    $("progress").textContent = `your answers: ${p.answered} · waiting for you: ${p.waiting}${saving}`;
    document.body.dataset.saved = String(saved);
  }

  // -- fetching queries -----------------------------------------------------------------------------

  function excludeIds(extra) {
    const ids = pending.map((a) => a.query_id);
    if (extra !== undefined && extra !== null) ids.push(extra);
    return ids;
  }

  async function fetchNext(exclude) {
    let path = "/api/next?exclude=" + encodeURIComponent(exclude.join(","));
    if (experiment) path += "&experiment=" + encodeURIComponent(experiment);
    const r = await api("GET", path);
    renderProgress(r.progress);
    return r.query;
  }

  function prefetch() {
    nextPromise = current ? fetchNext(excludeIds(current.id)).catch(() => null) : null;
  }

  async function advance() {
    advancing = true;
    try {
      let q = nextPromise ? await nextPromise : null;
      nextPromise = null;
      if (!q) q = await fetchNext(excludeIds()).catch(() => null);
      setCurrent(q);
    } finally {
      advancing = false;
    }
  }

  function setCurrent(q) {
    current = q;
    clearTimeout(pollTimer);
    if (!q) {
      show("task", false);
      show("empty", true);
      document.body.dataset.queryId = "";
      document.body.dataset.kind = "";
      pollTimer = setTimeout(pollEmpty, 3000);
      return;
    }
    render(q);
    prefetch();
  }

  async function pollEmpty() {
    if (current) return;
    try {
      const q = await fetchNext(excludeIds());
      if (q && !current) { setCurrent(q); return; }
    } catch (e) {
      status(e.message, true);
    }
    if (!current) pollTimer = setTimeout(pollEmpty, 3000);
  }

  // -- showing a query ------------------------------------------------------------------------------

  function fillCompletion(el, c) {
    const meta = el.querySelector(".meta");
    meta.textContent = `${c.n_tokens} tokens`;
    const text = el.querySelector(".text");
    if (text) text.textContent = c.text;
    const end = el.querySelector(".end");
    end.textContent = c.terminated ? "■ end of sequence" : "✂ cut off at the token budget";
    end.className = "end " + (c.terminated ? "eos" : "cut");
  }

  function render(q) {
    show("empty", false);
    show("task", true);
    $("prompt").textContent = q.prompt;
    const g = q.guidelines || "";
    $("guidelines").textContent = g;
    $("experiment").textContent = q.experiment;
    show("guidelines-box", g.length > 0);
    show("pairwise", q.kind === "pairwise");
    show("rating", q.kind === "rating");
    show("per-token", q.kind === "per_token");
    if (q.kind === "pairwise") {
      fillCompletion($("left"), q.completions[0]);
      fillCompletion($("right"), q.completions[1]);
    } else if (q.kind === "rating") {
      fillCompletion($("rating-completion"), q.completions[0]);
    } else {
      renderTokens(q.completions[0]);
    }
    document.body.dataset.queryId = String(q.id);
    document.body.dataset.kind = q.kind;
    shownAt = performance.now();
  }

  function renderTokens(c) {
    fillCompletion($("token-completion"), c);
    marks = new Map();
    const box = $("tokens");
    box.replaceChildren();
    (c.tokens || []).forEach((t, i) => {
      const span = document.createElement("span");
      span.className = "tok";
      span.dataset.i = String(i);
      span.textContent = t;
      box.appendChild(span);
    });
    setBrush(1);
  }

  function paintTokens() {
    for (const span of $("tokens").children) {
      const m = marks.get(Number(span.dataset.i));
      span.classList.toggle("good", m === 1);
      span.classList.toggle("bad", m === -1);
    }
  }

  function setBrush(b) {
    brush = b;
    document.querySelectorAll(".brush").forEach((el) => {
      el.classList.toggle("active", Number(el.dataset.brush) === b);
    });
  }

  function applyDrag(to) {
    marks = new Map(drag.before);
    const [lo, hi] = drag.anchor <= to ? [drag.anchor, to] : [to, drag.anchor];
    for (let i = lo; i <= hi; i++) {
      if (brush === 0) marks.delete(i); else marks.set(i, brush);
    }
    paintTokens();
  }

  // -- answering ------------------------------------------------------------------------------------

  function answer(payload) {
    if (!current || advancing) return;
    const q = current;
    const a = Object.assign({ query_id: q.id, seconds: (performance.now() - shownAt) / 1000 }, payload);
    pending.push(a);
    renderProgress();
    flush();
    advance();
  }

  async function flush() {
    if (flushing) return;
    flushing = true;
    let delay = 500;
    try {
      while (pending.length) {
        try {
          const r = await api("POST", "/api/submit", pending[0]);
          pending.shift();
          saved += 1;
          delay = 500;
          status(`saved (${saved} this visit)`);
          renderProgress(r.progress);
        } catch (e) {
          if (e.status >= 400 && e.status < 500 && e.status !== 408 && e.status !== 429) {
            pending.shift();  // refused for good: say why, do not retry
            status(`answer not saved: ${e.message}`, true);
            renderProgress();
          } else {
            status(`not saved yet (${e.message}); retrying…`, true);
            await new Promise((res) => setTimeout(res, delay));
            delay = Math.min(delay * 2, 8000);
          }
        }
      }
      if (!current && !advancing) pollEmpty();
    } finally {
      flushing = false;
    }
  }

  function submitMarks() {
    const m = {};
    for (const [i, v] of marks) m[String(i)] = v;
    answer({ marks: m });
  }

  // -- events ---------------------------------------------------------------------------------------

  document.addEventListener("click", (ev) => {
    const b = ev.target.closest("button");
    if (!b || !current) return;
    if (b.dataset.choice) answer({ choice: b.dataset.choice });
    else if (b.dataset.rating) answer(b.dataset.rating === "skip" ? { choice: "skip" } : { rating: Number(b.dataset.rating) });
    else if (b.dataset.brush !== undefined) setBrush(Number(b.dataset.brush));
    else if (b.id === "submit-marks") submitMarks();
    else if (b.dataset.tokenSkip) answer({ choice: "skip" });
  });

  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.repeat) return;
    const t = ev.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA")) return;
    if (!current) return;
    const k = ev.key.toLowerCase();
    let handled = true;
    if (current.kind === "pairwise") {
      if (k === "1") answer({ choice: "left" });
      else if (k === "2") answer({ choice: "right" });
      else if (k === "t") answer({ choice: "tie" });
      else if (k === "s") answer({ choice: "skip" });
      else handled = false;
    } else if (current.kind === "rating") {
      if (["1", "2", "3", "4", "5"].includes(k)) answer({ rating: Number(k) });
      else if (k === "s") answer({ choice: "skip" });
      else handled = false;
    } else {
      if (k === "g") setBrush(1);
      else if (k === "b") setBrush(-1);
      else if (k === "c") setBrush(0);
      else if (k === "enter") submitMarks();
      else if (k === "s") answer({ choice: "skip" });
      else handled = false;
    }
    if (handled) ev.preventDefault();
  });

  $("tokens").addEventListener("mousedown", (ev) => {
    const span = ev.target.closest(".tok");
    if (!span) return;
    ev.preventDefault();
    drag = { anchor: Number(span.dataset.i), before: new Map(marks) };
    applyDrag(drag.anchor);
  });
  $("tokens").addEventListener("mouseover", (ev) => {
    const span = ev.target.closest(".tok");
    if (drag && span) applyDrag(Number(span.dataset.i));
  });
  document.addEventListener("mouseup", () => { drag = null; });

  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const r = await api("POST", "/api/login", { name: $("name").value });
      showRater(r.rater);
      status("");
      await loadFirst();
    } catch (e) {
      status(e.message, true);
    }
  });

  $("logout").addEventListener("click", async () => {
    await api("POST", "/api/logout", {});
    current = null;
    nextPromise = null;
    clearTimeout(pollTimer);
    show("task", false);
    show("empty", false);
    show("guidelines-box", false);
    show("who", false);
    show("login", true);
    $("progress").textContent = "";
  });

  function showRater(name) {
    $("rater-name").textContent = name;
    show("who", true);
    show("login", false);
  }

  async function loadFirst() {
    const q = await fetchNext(excludeIds());
    setCurrent(q);
  }

  async function start() {
    try {
      const s = await api("GET", "/api/session");
      csrf = s.csrf;
      if (s.rater) {
        showRater(s.rater);
        await loadFirst();
      } else {
        show("login", true);
        $("name").focus();
      }
    } catch (e) {
      status(`cannot reach the server: ${e.message}`, true);
    }
  }

  start();
})();
