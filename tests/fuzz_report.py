"""Run the fuzz suite and print its table of outcomes: ``python -m tests.fuzz_report [--examples N]``.

It runs ``tests/test_fuzz.py`` (marker ``fuzz``) in a subprocess with ``RLHF_FUZZ_EXAMPLES=N`` and
``RLHF_FUZZ_REPORT`` pointing at a temporary file, where each test module writes its counts, then
prints one row per target (every env id, single, vector and constructor, the prompt files, and
damaged model directories through each loader that takes one) and a total. The exit status is
pytest's: non-zero when any input was an unclear error, silently accepted, a hang, or a legal input
that broke.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.test_fuzz import OUTCOMES

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ("inputs", *OUTCOMES)


def read_counts(path: Path) -> dict[str, collections.Counter]:
    """Sum the per-module rows written to ``path`` into ``{target: Counter(outcome -> n)}``."""
    table: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in path.read_text().splitlines():
        for row in json.loads(line):
            table[row["target"]][row["outcome"]] += row["count"]
    return table


def format_table(table: dict[str, collections.Counter]) -> str:
    """A fixed-width table: one row per target, then the total."""
    total: collections.Counter = collections.Counter()
    rows = []
    for target in sorted(table):
        counts = table[target]
        total.update(counts)
        rows.append((target, sum(counts.values()), *(counts[o] for o in OUTCOMES)))
    rows.append(("total", sum(total.values()), *(total[o] for o in OUTCOMES)))
    width = max(len(r[0]) for r in rows)
    head = f"{'target':<{width}}  " + "  ".join(f"{c:>17}" for c in COLUMNS)
    lines = [head, "-" * len(head)]
    for r in rows:
        if r[0] == "total":
            lines.append("-" * len(head))
        lines.append(f"{r[0]:<{width}}  " + "  ".join(f"{v:>17}" for v in r[1:]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz_report", description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=25, help="hypothesis examples per test")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (e.g. -k Copy)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rlhf_fuzz_") as tmp:
        report = Path(tmp) / "counts.jsonl"
        report.touch()
        env = {**os.environ, "RLHF_FUZZ_EXAMPLES": str(args.examples), "RLHF_FUZZ_REPORT": str(report)}
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-m", "fuzz", "tests/test_fuzz.py"]
        status = subprocess.run([*cmd, *args.pytest_args], cwd=REPO, env=env).returncode
        print(f"\nfuzz outcomes ({args.examples} examples per test):\n")
        print(format_table(read_counts(report)))
    return status


if __name__ == "__main__":
    sys.exit(main())
