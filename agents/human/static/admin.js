// The admin page: numbers from /api/admin/stats, rendered with textContent only; refreshes every 10 s.
"use strict";

(() => {
  const fmt = (x, digits) => (x === null || x === undefined ? "–" : typeof x === "number" ? x.toFixed(digits) : String(x));
  const pct = (x) => (x === null || x === undefined ? "–" : (100 * x).toFixed(1) + " %");
  const when = (t) => (t ? new Date(t * 1000).toLocaleString() : "–");

  function fill(tableId, rows) {
    const body = document.querySelector(`#${tableId} tbody`);
    body.replaceChildren();
    for (const cells of rows) {
      const tr = document.createElement("tr");
      for (const c of cells) {
        const td = document.createElement("td");
        td.textContent = c;
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
  }

  async function load() {
    const r = await fetch("/api/admin/stats" + location.search, { credentials: "same-origin", cache: "no-store" });
    const status = document.getElementById("status");
    if (!r.ok) {
      status.textContent = `cannot load statistics: ${r.status}`;
      return;
    }
    status.textContent = "";
    const s = await r.json();
    document.getElementById("totals").textContent = `${s.totals.labels} answers · ${s.totals.open} queries open`;
    fill("experiments", s.experiments.map((e) => [e.name, e.raters_per_query, e.queries, e.open, e.guidelines_file || "–"]));
    fill("raters", s.raters.map((r) => [r.rater, r.answers, r.skips, fmt(r.median_seconds, 1), fmt(r.mean_seconds, 1), when(r.last)]));
    const a = s.agreement;
    fill("agreement", [
      ["pairwise (A / B / tie)", a.pairwise.queries_with_2plus, pct(a.pairwise.percent_agreement), fmt(a.pairwise.fleiss_kappa, 3), fmt(a.pairwise.krippendorff_alpha_nominal, 3) + " (nominal)"],
      ["rating (1-5)", a.rating.queries_with_2plus, pct(a.rating.percent_agreement), "–", fmt(a.rating.krippendorff_alpha_interval, 3) + " (interval)"],
      ["per-token marks", a.per_token.tokens_with_2plus, pct(a.per_token.percent_agreement), "–", fmt(a.per_token.krippendorff_alpha_nominal, 3) + " (nominal)"],
    ]);
    const b = a.position_bias;
    fill("bias", [[b.n, pct(b.left_share), fmt(b.se, 3)]]);
  }

  load();
  setInterval(load, 10000);
})();
