"""``rlhf-envs human ...`` commands (agents.human.cli) and ``python -m agents.human.server``."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from agents.human.cli import add_human_parser, add_web_human_arguments, main, web_human_from_args
from agents.human.store import LabelStore


def test_enqueue_guidelines_status_export(tmp_path, capsys):
    db = tmp_path / "labels.sqlite"
    qf = tmp_path / "queries.jsonl"
    qf.write_text(
        "\n".join(
            json.dumps(d)
            for d in [
                {"prompt": "p", "completions": [{"text": "a"}, {"text": "b", "terminated": False}]},
                {"kind": "rating", "prompt": "q", "completions": [{"text": "c"}], "key": "r1"},
                {"kind": "per_token", "prompt": "t", "completions": [{"text": "xy", "tokens": ["x", "y"]}]},
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    assert main(["human", "enqueue", "--db", str(db), "--experiment", "demo", "--raters", "2", str(qf)]) == 0
    assert main(["human", "enqueue", "--db", str(db), "--experiment", "demo", str(qf)]) == 0  # idempotent
    g = tmp_path / "guidelines.md"
    g.write_text("Be kind.", encoding="utf-8")
    assert main(["human", "guidelines", "--db", str(db), "--experiment", "demo", str(g)]) == 0
    s = LabelStore(db)
    assert [e["queries"] for e in s.experiments()] == [3]
    r = s.rater_id("ann")
    lease = s.next_for(r)
    assert lease.guidelines == "Be kind." and lease.kind == "pairwise"
    s.submit(r, lease.query_id, choice="tie")
    s.close()
    capsys.readouterr()
    assert main(["human", "status", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "experiment demo: 3 queries" in out and "rater ann: 1 answers" in out
    assert main(["human", "export", "--db", str(db), "--format", "jsonl"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(rows) == 1 and rows[0]["choice"] == "tie" and rows[0]["rater"] == "ann"
    out_csv = tmp_path / "labels.csv"
    assert main(["human", "export", "--db", str(db), "--out", str(out_csv)]) == 0
    assert out_csv.read_text().startswith("label_id,experiment,query_id")


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    db = str(tmp_path / "labels.sqlite")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "completions": [{"text": "a"}, {"text": "b"}]}\n{oops\n')
    assert main(["human", "enqueue", "--db", db, str(bad)]) == 2
    assert "bad.jsonl:2: not valid JSON" in capsys.readouterr().err
    bad.write_text('{"prompt": "p", "completions": [{"text": "a"}], "kind": "pairwise"}\n')
    assert main(["human", "enqueue", "--db", db, str(bad)]) == 2
    assert "2 completion" in capsys.readouterr().err
    bad.write_text('{"prompt": "p", "completion": []}\n')
    assert main(["human", "enqueue", "--db", db, str(bad)]) == 2
    assert "completions" in capsys.readouterr().err
    assert main(["human", "enqueue", "--db", db, str(tmp_path / "missing.jsonl")]) == 2
    assert main(["human", "guidelines", "--db", db, "--experiment", "e", str(tmp_path / "nope.md")]) == 2
    assert main(["human", "serve", "--db", db, "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 3 and "allow_remote" in err and "Traceback" not in err


def test_server_module_prints_its_url_for_port_0(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "agents.human.server", "--db", str(tmp_path / "l.sqlite"), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("rating page: http://127.0.0.1:") and not line.strip().endswith(":0/")
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0  # SIGTERM stops it cleanly


def test_parsers_for_the_lead_to_wire(tmp_path):
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    add_human_parser(sub)
    args = p.parse_args(["human", "serve", "--db", "x.sqlite", "--port", "0"])
    assert (
        args.human_command == "serve" and args.port == 0 and args.host == "127.0.0.1" and callable(args.func)
    )
    rl = argparse.ArgumentParser()
    add_web_human_arguments(rl)
    a = rl.parse_args(
        ["--db", str(tmp_path / "w.sqlite"), "--raters", "2", "--timeout", "5", "--on-timeout", "drop"]
    )
    h = web_human_from_args(a, max_queries=10)
    assert (h.raters_per_query, h.timeout, h.on_timeout, h.max_queries) == (2, 5.0, "drop", 10)


def test_rlhf_port_and_query_kind_options(tmp_path, capsys):
    from rlhf_envs.cli import main

    out = str(tmp_path / "run")
    assert main(["rlhf", "--human", "terminal", "--port", "0", "--out", out]) == 2
    assert "--port serves the rating page for --human web" in capsys.readouterr().err
    db = str(tmp_path / "w.sqlite")
    assert main(["rlhf", "--human", "web", "--db", db, "--port", "70000", "--out", out]) == 2
    assert "--port must be an integer in 0..65535" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # argparse: not a choice
        main(["rlhf", "--query-kind", "likert", "--out", out])
    assert exc.value.code == 2 and "invalid choice: 'likert'" in capsys.readouterr().err
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["rlhf", "--human", "web", "--db", db, "--port", str(port), "--out", out]) == 2
    assert f"--port {port}: cannot serve the rating page" in capsys.readouterr().err
    assert not (tmp_path / "run" / "state.json").exists()
