"""Load on the rating server: requests per second and p50/p99 latency of fetch-next and submit.

The server runs as its own process (``python -m agents.human.server``, as a user starts it) on
127.0.0.1 with a fresh SQLite database; N simulated raters, each a thread with its own session and
keep-alive connection (:class:`agents.human.client.RaterClient`), loop ``GET /api/next`` then
``POST /api/submit`` as fast as they can. Every request is timed on the client. Each configuration
is bounded in answers per rater and in seconds; the load generator shares the machine's cores with
the server, so the figures are a floor for what one machine serves, not a ceiling.

Configurations: 8 and 32 raters with ``synchronous=FULL`` (the default: every answer synced to disk
before it is acknowledged), and 8 raters with ``synchronous=NORMAL`` to show what the sync costs.

Run: ``python -m benchmarks.human_server_load`` (``--quick`` for a smoke run); figures are printed
and saved to ``benchmarks/results/human_server_load.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from agents.human.client import RaterClient
from agents.human.server import spawn
from agents.human.store import Completion, LabelStore

RESULTS = Path(__file__).parent / "results"


def _percentiles(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs, dtype=np.float64) * 1000.0
    return {
        "p50_ms": float(np.percentile(a, 50)),
        "p99_ms": float(np.percentile(a, 99)),
        "max_ms": float(a.max()),
    }


def run_load(
    raters: int, answers_per_rater: int, max_seconds: float, synchronous: str = "FULL"
) -> dict[str, Any]:
    """One configuration: a fresh server and database, ``raters`` threads; returns the figures."""
    with tempfile.TemporaryDirectory(prefix="rating-load-") as tmp:
        db = Path(tmp) / "labels.sqlite"
        store = LabelStore(db)
        n_queries = raters * answers_per_rater // 2 + 4 * raters
        store.enqueue_many(
            "load",
            [
                (
                    "pairwise",
                    f"q{i}",
                    f"Prompt number {i}: the hotel was",
                    [
                        Completion(" clean and quiet." * 3, None, list(range(12)), True),
                        Completion(" loud.", None, [1, 2], False),
                    ],
                    None,
                )
                for i in range(n_queries)
            ],
            raters=2,
        )
        store.close()
        proc, url = spawn(db, args=["--synchronous", synchronous])
        try:
            clients = [RaterClient(url, f"rater{k}") for k in range(raters)]  # sessions: not timed
            lat: dict[str, list[list[float]]] = {
                "next": [[] for _ in clients],
                "submit": [[] for _ in clients],
            }
            errors: list[BaseException] = []
            start = threading.Barrier(raters + 1)
            deadline = [0.0]

            def work(k: int) -> None:
                c = clients[k]
                rng = np.random.default_rng(k)
                try:
                    start.wait()
                    for _ in range(answers_per_rater):
                        if time.perf_counter() > deadline[0]:
                            break
                        t0 = time.perf_counter()
                        q = c.next()["query"]
                        t1 = time.perf_counter()
                        lat["next"][k].append(t1 - t0)
                        if q is None:
                            break
                        c.submit(q["id"], choice=str(rng.choice(["left", "right", "tie"])), seconds=1.0)
                        lat["submit"][k].append(time.perf_counter() - t1)
                except BaseException as e:
                    errors.append(e)

            threads = [threading.Thread(target=work, args=(k,)) for k in range(raters)]
            for t in threads:
                t.start()
            deadline[0] = time.perf_counter() + max_seconds
            t0 = time.perf_counter()
            start.wait()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
            for c in clients:
                c.close()
            if errors:
                raise errors[0]
            check = LabelStore(db)
            stored = len(check.answers())
            check.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    out: dict[str, Any] = {"raters": raters, "synchronous": synchronous, "seconds": wall}
    for kind in ("next", "submit"):
        xs = [x for per in lat[kind] for x in per]
        out[kind] = {"requests": len(xs), "per_second": len(xs) / wall, **_percentiles(xs)}
    out["answers_stored"] = stored
    out["answers_acknowledged"] = out["submit"]["requests"]
    out["requests_per_second"] = (out["next"]["requests"] + out["submit"]["requests"]) / wall
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.human_server_load", description=__doc__.split("\n")[0]
    )
    p.add_argument("--quick", action="store_true", help="a short smoke run")
    p.add_argument("--answers", type=int, default=150, help="answers per rater (bound)")
    p.add_argument("--max-seconds", type=float, default=60.0, help="time bound per configuration")
    p.add_argument("--out", default=str(RESULTS / "human_server_load.json"))
    args = p.parse_args(argv)
    answers, secs = (20, 10.0) if args.quick else (args.answers, args.max_seconds)
    configs = [(8, "FULL"), (32, "FULL"), (8, "NORMAL")]
    rows = []
    print(
        f"{'raters':>6} {'sync':>6} | {'next/s':>7} {'p50':>6} {'p99':>6} | {'submit/s':>8} {'p50':>6} {'p99':>6} | stored"
    )
    for raters, sync in configs:
        r = run_load(raters, answers, secs, sync)
        rows.append(r)
        n, s = r["next"], r["submit"]
        print(
            f"{raters:>6} {sync:>6} | {n['per_second']:7.0f} {n['p50_ms']:5.1f}ms {n['p99_ms']:5.1f}ms | "
            f"{s['per_second']:8.0f} {s['p50_ms']:5.1f}ms {s['p99_ms']:5.1f}ms | "
            f"{r['answers_stored']}/{r['answers_acknowledged']}",
            flush=True,
        )
        assert r["answers_stored"] == r["answers_acknowledged"], "an acknowledged answer is missing"
    result = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1min_after": os.getloadavg()[0],
        },
        "answers_per_rater": answers,
        "max_seconds": secs,
        "runs": rows,
    }
    if not args.quick:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
