"""Command line of the rating web app: ``rlhf-envs human serve|enqueue|guidelines|status|export``.

The ``rlhf-envs`` entry point adds these with :func:`add_human_parser`; the RLHF command gets its
``--human web`` options from :func:`add_web_human_arguments` and builds the human with
:func:`web_human_from_args`. Every command function takes the parsed namespace and returns an exit
code (2 and one line on stderr for a bad command line or file).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from agents.human.web_human import TIMEOUT_POLICIES


def add_human_parser(subparsers: Any) -> None:
    """Add ``human`` and its sub-commands to an ``argparse`` sub-parser collection."""
    from agents.human.server import add_serve_arguments

    p = subparsers.add_parser("human", help="the local rating web page for people, and its label database")
    sub = p.add_subparsers(dest="human_command", required=True)

    s = sub.add_parser(
        "serve", help="serve the rating page (/), admin page (/admin) and exports on 127.0.0.1"
    )
    add_serve_arguments(s)
    s.set_defaults(func=cmd_human)

    e = sub.add_parser("enqueue", help="add queries from a JSONL file (one query per line)")
    e.add_argument("--db", required=True)
    e.add_argument("--experiment", default="default")
    e.add_argument("--raters", type=int, default=None, help="distinct raters per query")
    e.add_argument(
        "file",
        help='JSONL; each line {"prompt": ..., "completions": [{"text": ..., "tokens": [...], "terminated": true}], '
        '"kind": "pairwise"|"rating"|"per_token", "key": optional}',
    )
    e.set_defaults(func=cmd_human)

    g = sub.add_parser("guidelines", help="set an experiment's rating guidelines from a file")
    g.add_argument("--db", required=True)
    g.add_argument("--experiment", required=True)
    g.add_argument("--raters", type=int, default=None, help="distinct raters per query (for new queries)")
    g.add_argument("file")
    g.set_defaults(func=cmd_human)

    st = sub.add_parser("status", help="experiments, open queries and answers per rater")
    st.add_argument("--db", required=True)
    st.set_defaults(func=cmd_human)

    x = sub.add_parser("export", help="every label as CSV or JSONL")
    x.add_argument("--db", required=True)
    x.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    x.add_argument("--out", default="-", help="file to write (default: standard output)")
    x.set_defaults(func=cmd_human)


def add_web_human_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``rlhf-envs rlhf --human web`` (to add to the rlhf parser)."""
    g = p.add_argument_group("web human (--human web)")
    g.add_argument(
        "--db", default="runs/labels.sqlite", help="label database served by `rlhf-envs human serve`"
    )
    g.add_argument("--experiment", default="rlhf", help="experiment name for the queries")
    g.add_argument("--raters", type=int, default=1, help="distinct raters per query")
    g.add_argument("--timeout", type=float, default=None, help="seconds to wait per round (default: forever)")
    g.add_argument("--on-timeout", choices=TIMEOUT_POLICIES, default="partial", help="what a time-out does")
    g.add_argument("--guidelines", default=None, help="rating guidelines file shown on the page")
    g.add_argument("--url", default=None, help="the rating page's URL, printed while waiting")
    g.add_argument(
        "--port",
        type=int,
        default=None,
        help="also serve the rating page from this process, on 127.0.0.1:PORT (0 picks a free port; the URL "
        "is printed as 'rating page: URL'); default: none, run `rlhf-envs human serve --db ...` yourself",
    )


def web_human_from_args(args: argparse.Namespace, max_queries: int | None = None) -> Any:
    """A :class:`~agents.human.web_human.WebHuman` from :func:`add_web_human_arguments` options."""
    from agents.human.web_human import WebHuman

    return WebHuman(
        args.db,
        experiment=args.experiment,
        raters_per_query=args.raters,
        timeout=args.timeout,
        on_timeout=args.on_timeout,
        guidelines_file=args.guidelines,
        max_queries=max_queries,
        url=args.url,
    )


def serve_for_web_human(human: Any, port: int) -> Any:
    """Serve ``human``'s experiment from its store on ``127.0.0.1:port`` on a background thread.

    ``rlhf-envs rlhf --human web --port N`` uses it so one command is enough for a local session.
    Prints ``rating page: URL`` (the line ``rlhf-envs human serve`` prints) and sets ``human.url``
    so the waiting message names the page; returns the :class:`~agents.human.server.RatingServer`
    (call ``stop()`` when done; the database keeps every acknowledged answer either way).
    """
    from agents.human.server import RatingServer
    from rlhf_envs.errors import ConfigError

    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ConfigError(f"--port must be an integer in 0..65535 (0 picks a free port), got {port!r}")
    try:
        srv = RatingServer(human.store, port=port, experiment=human.experiment).start_background()
    except OSError as e:
        raise ConfigError(
            f"--port {port}: cannot serve the rating page on 127.0.0.1:{port} ({e.strerror or e}); "
            "choose another port, or 0 for a free one"
        ) from None
    human.url = srv.url
    print(f"rating page: {srv.url}", flush=True)
    print(f"admin page:  {srv.url}admin", flush=True)
    return srv


def cmd_human(args: argparse.Namespace) -> int:
    """Run a ``human`` sub-command; a bad option or file prints one line and returns 2."""
    from rlhf_envs.errors import ConfigError, FeedbackError

    try:
        return _run(args)
    except (ConfigError, FeedbackError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from agents.human.store import Completion, LabelStore, content_key
    from rlhf_envs.errors import ConfigError

    cmd = args.human_command
    if cmd == "serve":
        from agents.human.server import serve

        return serve(args)
    store = LabelStore(args.db)
    try:
        if cmd == "enqueue":
            items = []
            path = Path(args.file)
            if not path.is_file():
                raise ConfigError(f"queries file {str(path)!r} does not exist or is not a file")
            for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    d = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ConfigError(f"{path}:{n}: not valid JSON ({e})") from None
                if not isinstance(d, dict) or not isinstance(d.get("completions"), list):
                    raise ConfigError(
                        f"{path}:{n}: expected an object with 'prompt' and a 'completions' list"
                    )
                unknown = sorted(set(d) - {"prompt", "completions", "kind", "key"})
                if unknown:
                    raise ConfigError(
                        f"{path}:{n}: unknown field(s) {unknown}; allowed: prompt, completions, kind, key"
                    )
                kind = d.get("kind", "pairwise")
                comps = []
                for c in d["completions"]:
                    if not isinstance(c, dict) or not isinstance(c.get("text"), str):
                        raise ConfigError(f"{path}:{n}: each completion needs a 'text' string")
                    comps.append(
                        Completion(
                            c["text"], c.get("tokens"), c.get("token_ids"), bool(c.get("terminated", True))
                        )
                    )
                key = d.get("key") or content_key(kind, d.get("prompt"), [c.text for c in comps])
                items.append((kind, str(key), d.get("prompt", ""), comps, None))
            ids = store.enqueue_many(args.experiment, items, raters=args.raters)
            print(f"{len(ids)} queries in experiment {args.experiment!r} ({len(set(ids))} distinct)")
        elif cmd == "guidelines":
            store.ensure_experiment(args.experiment, guidelines_file=args.file, raters_per_query=args.raters)
            print(f"guidelines of {args.experiment!r} set from {args.file}")
        elif cmd == "status":
            for e in store.experiments():
                print(
                    f"experiment {e['name']}: {e['queries']} queries, {e['open']} open, {e['raters_per_query']} raters each"
                )
            for r in store.rater_stats():
                med = "-" if r["median_seconds"] is None else f"{r['median_seconds']:.1f} s"
                print(f"  rater {r['rater']}: {r['answers']} answers ({r['skips']} skips), median {med}")
            p = store.progress()
            print(f"{p['labels']} answers; {p['open']} queries open")
        elif cmd == "export":
            from agents.human.server import export_csv, export_jsonl

            text = export_csv(store) if args.format == "csv" else export_jsonl(store)
            if args.out == "-":
                sys.stdout.write(text)
            else:
                Path(args.out).write_text(text, encoding="utf-8")
                print(f"wrote {args.out}", file=sys.stderr)
    finally:
        store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m agents.human.cli ...``: the ``human`` commands without the rest of the CLI."""
    parser = argparse.ArgumentParser(prog="python -m agents.human.cli")
    add_human_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
