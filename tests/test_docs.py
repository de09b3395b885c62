"""Every command in README.md and docs/*.md runs as written (or as its declared quick variant).

The test extracts the fenced code blocks tagged ``python`` or ``sh``/``bash``/``shell`` from each
document. Blocks tagged otherwise (``text``, or untagged) are not commands and are not run.

* The ``python`` blocks of one document form one session: they are concatenated in document order
  and run as one script (a later block may use what an earlier one defined, as in the tutorial).
* Each shell block runs with ``bash -e -o pipefail`` in document order; the shell blocks of a
  document run before its Python session.
* Both run in a fresh process with the test interpreter's ``bin`` first on ``PATH`` (so ``python``
  and ``rlhf-envs`` are the venv's) and one torch thread, from a temporary copy of the repository
  root (:func:`scratch_root`: symlinks to its entries, with its own empty ``runs/``), so whatever a
  command writes under ``runs/`` lands in the test's temporary directory, never in the repository;
  ``$RLHF_ENVS_CACHE`` is the session's temporary cache (``tests/conftest.py``).
* A block made only of ``make <target>`` lines (``make demo``, ``make test``: what CI itself runs)
  is not executed; its targets must exist in the Makefile.

A block too long for CI is preceded by a marker that declares its quick variant::

    <!-- docs-test
    replace: agent.learn(100_000) => agent.learn(2_000)
    exit: 0 1
    -->

``replace: OLD => NEW`` edits the block before it runs (repeatable; ``OLD`` must occur in the block,
or the test fails, so a marker cannot silently stop matching the text it shortens). ``exit:`` lists
the accepted exit statuses (default ``0``), for commands whose outcome depends on the user's answer
(the exercise checker); a traceback is a failure whatever the status.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
PYTHON_TAGS = {"python", "py"}
SHELL_TAGS = {"sh", "bash", "shell"}
TIMEOUT = 900


@dataclass
class Block:
    """One fenced code block and the quick variant its marker declares."""

    path: Path
    line: int
    tag: str
    code: str
    replaces: list[tuple[str, str]] = field(default_factory=list)
    exits: tuple[int, ...] = (0,)
    marked: bool = False

    @property
    def where(self) -> str:
        name = self.path.relative_to(REPO) if self.path.is_relative_to(REPO) else self.path.name
        return f"{name}:{self.line}"

    def runnable_code(self) -> str:
        """The code with the marker's replacements applied (each must match)."""
        code = self.code
        for old, new in self.replaces:
            if old not in code:
                raise AssertionError(
                    f"{self.where}: docs-test replacement {old!r} does not occur in the block"
                )
            code = code.replace(old, new)
        return code

    def make_targets(self) -> list[str] | None:
        """The targets if every command line is ``make <target>``, else None."""
        lines = [ln.split("#", 1)[0].strip() for ln in self.code.splitlines()]
        lines = [ln for ln in lines if ln]
        if not lines or not all(re.fullmatch(r"make [\w.-]+", ln) for ln in lines):
            return None
        return [ln.split()[1] for ln in lines]


def parse_marker(body: str, where: str) -> tuple[list[tuple[str, str]], tuple[int, ...]]:
    """Parse the directives of a ``<!-- docs-test ... -->`` marker."""
    replaces: list[tuple[str, str]] = []
    exits: tuple[int, ...] = (0,)
    for raw in body.splitlines():
        line = raw.strip()
        if not line:
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"{where}: docs-test line {line!r} is not 'key: value'")
        key, value = key.strip(), value.strip()
        if key == "replace":
            old, arrow, new = value.partition(" => ")
            if not arrow or not old:
                raise ValueError(f"{where}: replace needs 'OLD => NEW', got {value!r}")
            replaces.append((old, new))
        elif key == "exit":
            exits = tuple(int(x) for x in value.split())
        else:
            raise ValueError(f"{where}: unknown docs-test directive {key!r}; allowed: replace, exit")
    if not replaces and exits == (0,):
        raise ValueError(f"{where}: a docs-test marker must declare a replacement or exit statuses")
    return replaces, exits


def parse_blocks(path: Path, text: str | None = None) -> list[Block]:
    """The fenced blocks of a markdown document, with the marker that precedes each (if any)."""
    lines = (path.read_text() if text is None else text).splitlines()
    blocks: list[Block] = []
    pending: tuple[list[tuple[str, str]], tuple[int, ...], int] | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip().startswith("<!-- docs-test"):
            start = i
            body = [line.strip()[len("<!-- docs-test") :]]
            while "-->" not in lines[i]:
                i += 1
                if i == len(lines):
                    raise ValueError(f"{path.name}:{start + 1}: unterminated docs-test marker")
                body.append(lines[i])
            body[-1] = body[-1].split("-->")[0]
            replaces, exits = parse_marker("\n".join(body), f"{path.name}:{start + 1}")
            pending = (replaces, exits, start + 1)
            i += 1
            continue
        m = re.match(r"^```(\S*)\s*$", line)
        if m:
            tag = m.group(1).lower()
            start = i
            i += 1
            code: list[str] = []
            while i < len(lines) and lines[i].rstrip() != "```":
                code.append(lines[i])
                i += 1
            block = Block(path, start + 1, tag, "\n".join(code) + "\n")
            if pending is not None:
                block.replaces, block.exits, block.marked = pending[0], pending[1], True
                pending = None
            blocks.append(block)
            i += 1
            continue
        if pending is not None and line.strip():
            raise ValueError(
                f"{path.name}:{pending[2]}: a docs-test marker must come right before a code block"
            )
        i += 1
    if pending is not None:
        raise ValueError(
            f"{path.name}:{pending[2]}: a docs-test marker at the end of the file marks no block"
        )
    return blocks


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["OMP_NUM_THREADS"] = "1"
    env["MKL_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("MPLBACKEND", "Agg")
    return env


def scratch_root(tmp_path: Path) -> Path:
    """A directory that looks like the repository root: a symlink to each of its entries except
    ``runs`` (output), so relative paths in the docs resolve and ``runs/`` is new and temporary."""
    root = tmp_path / "repo"
    root.mkdir()
    for entry in REPO.iterdir():
        if entry.name not in ("runs",):
            (root / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    (root / "runs").mkdir()
    return root


def _run(cmd: list[str], block_desc: str, exits: tuple[int, ...], cwd: Path = REPO) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=TIMEOUT)
    out = proc.stdout[-4000:] + "\n--- stderr ---\n" + proc.stderr[-4000:]
    assert proc.returncode in exits, f"{block_desc} exited {proc.returncode} (allowed {exits}):\n{out}"
    assert "Traceback (most recent call last)" not in proc.stderr, f"{block_desc} raised:\n{out}"


# -- the marker machinery itself ----------------------------------------------------------------


def test_marker_parsing_and_replacement(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    text = (
        "intro\n<!-- docs-test\nreplace: learn(100) => learn(2)\nexit: 0 1\n-->\n```python\nagent.learn(100)\n```\n"
        "```text\nnot a command\n```\n```sh\nmake demo\nmake test  # comment\n```\n"
    )
    blocks = parse_blocks(doc, text)
    assert [b.tag for b in blocks] == ["python", "text", "sh"]
    assert blocks[0].runnable_code() == "agent.learn(2)\n" and blocks[0].exits == (0, 1)
    assert blocks[2].make_targets() == ["demo", "test"]
    stale = Block(doc, 1, "python", "agent.learn(5)\n", [("learn(100)", "learn(2)")])
    with pytest.raises(AssertionError, match="does not occur"):
        stale.runnable_code()
    with pytest.raises(ValueError, match="unknown docs-test directive"):
        parse_blocks(doc, "<!-- docs-test\nskip: too long\n-->\n```sh\nx\n```\n")
    with pytest.raises(ValueError, match="right before a code block"):
        parse_blocks(doc, "<!-- docs-test\nreplace: a => b\n-->\ntext between\n```sh\na\n```\n")


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_markers_match_their_blocks(path: Path) -> None:
    """Every marker is on a runnable block and every replacement still matches its text."""
    for b in parse_blocks(path):
        if b.marked:
            assert b.tag in PYTHON_TAGS | SHELL_TAGS, f"{b.where}: docs-test marker on a {b.tag!r} block"
            b.runnable_code()


def test_docs_exist_and_hold_commands() -> None:
    names = {p.name for p in DOCS}
    assert {"README.md", "tutorial.md", "exercises.md"} <= names
    for p in DOCS:
        assert any(b.tag in PYTHON_TAGS | SHELL_TAGS for b in parse_blocks(p)), f"{p.name} has no commands"


def test_make_blocks_name_existing_targets() -> None:
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([\w.-]+):", makefile, flags=re.M))
    seen = []
    for path in DOCS:
        for b in parse_blocks(path):
            names = b.make_targets() if b.tag in SHELL_TAGS else None
            if names:
                missing = [t for t in names if t not in targets]
                assert not missing, f"{b.where}: make target(s) {missing} not in the Makefile"
                seen += names
    assert {"demo", "test"} <= set(seen), "the README quick start must show make demo and make test"
    readme = (REPO / "README.md").read_text()
    assert "```sh\nmake demo " in readme and "\nmake test " in readme


# -- running them ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_doc_commands_run(path: Path, tmp_path: Path) -> None:
    """Run the document's shell blocks in order, then its Python blocks as one session."""
    blocks = parse_blocks(path)
    cwd = scratch_root(tmp_path)
    for b in blocks:
        if b.tag in SHELL_TAGS and b.make_targets() is None:
            code = b.runnable_code()
            _run(["bash", "-e", "-o", "pipefail", "-c", code], f"shell block {b.where}", b.exits, cwd)
    py = [b for b in blocks if b.tag in PYTHON_TAGS]
    if py:
        script = tmp_path / f"{path.stem}_session.py"
        script.write_text("".join(f"# --- {b.where}\n{b.runnable_code()}\n" for b in py))
        _run([sys.executable, str(script)], f"python session of {path.name}", (0,), cwd)


def test_scratch_root_keeps_runs_out_of_the_repository(tmp_path: Path) -> None:
    """What a doc command writes under runs/ lands in the temporary root, and the repository's
    files are still reachable through it."""
    root = scratch_root(tmp_path)
    assert (root / "README.md").read_text() == (REPO / "README.md").read_text()
    _run(["bash", "-c", "mkdir -p runs/x && echo hi > runs/x/out.txt"], "scratch", (0,), root)
    assert (root / "runs" / "x" / "out.txt").read_text() == "hi\n"
    assert not (root / "runs").is_symlink()
    assert not (REPO / "runs" / "x" / "out.txt").exists()


# -- the exercise checker: passes the reference solution, fails the skeleton and wrong answers ----

WRONG_LOSSES = {
    "sum_not_mean": (
        "def reinforce_loss(log_probs, rewards, gamma):\n"
        "    g = torch.zeros_like(rewards); run = 0.0\n"
        "    for t in range(len(rewards) - 1, -1, -1):\n"
        "        run = rewards[t] + gamma * run; g[t] = run\n"
        "    adv = (g - g.mean()) / (g.std(unbiased=False) + 1e-8)\n"
        "    return -(adv * log_probs).sum()\n"
    ),
    "sample_std": (
        "def reinforce_loss(log_probs, rewards, gamma):\n"
        "    g = torch.zeros_like(rewards); run = 0.0\n"
        "    for t in range(len(rewards) - 1, -1, -1):\n"
        "        run = rewards[t] + gamma * run; g[t] = run\n"
        "    adv = (g - g.mean()) / (g.std() + 1e-8)\n"
        "    return -(adv * log_probs).mean()\n"
    ),
    "no_baseline": (
        "def reinforce_loss(log_probs, rewards, gamma):\n"
        "    g = torch.zeros_like(rewards); run = 0.0\n"
        "    for t in range(len(rewards) - 1, -1, -1):\n"
        "        run = rewards[t] + gamma * run; g[t] = run\n"
        "    return -(g * log_probs).mean()\n"
    ),
    "undiscounted": (
        "def reinforce_loss(log_probs, rewards, gamma):\n"
        "    g = torch.flip(torch.cumsum(torch.flip(rewards, [0]), 0), [0])\n"
        "    adv = (g - g.mean()) / (g.std(unbiased=False) + 1e-8)\n"
        "    return -(adv * log_probs).mean()\n"
    ),
}


def test_reinforce_checker_passes_solution_and_fails_skeleton(capsys: pytest.CaptureFixture[str]) -> None:
    from docs.exercises import check

    assert check.main(["reinforce", "--solution"]) == 0
    out = capsys.readouterr().out
    assert "PASS  training on CartPole-v1" in out and "FAIL" not in out
    assert check.main(["reinforce"]) == 1  # the unfilled skeleton
    out = capsys.readouterr().out
    assert "not implemented yet" in out and "training check is skipped" in out


@pytest.mark.parametrize("name", sorted(WRONG_LOSSES))
def test_reinforce_checker_rejects_wrong_losses(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from docs.exercises import check

    (tmp_path / f"wrong_{name}.py").write_text("import torch\n\n" + WRONG_LOSSES[name])
    monkeypatch.syspath_prepend(str(tmp_path))
    assert check.check_reinforce(f"wrong_{name}") is False
    assert "FAIL" in capsys.readouterr().out


def _write_csv(path: Path, header: str, rows: list[str]) -> str:
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return str(path)


def test_kl_checker_reads_the_students_numbers(tmp_path: Path) -> None:
    from docs.exercises import check

    trade = _write_csv(
        tmp_path / "kl.csv",
        "kl_coef,timesteps,reward,kl,seconds",
        ["0.5,10000,0.48,0.5,80", "0.01,10000,0.83,17.7,90", "0.1,10000,0.77,1.9,85"],  # unsorted on purpose
    )
    assert check.main(["kl", "--csv", trade, "--kl", "decreases", "--reward", "decreases"]) == 0
    assert check.main(["kl", "--csv", trade, "--kl", "increases", "--reward", "decreases"]) == 1
    assert check.main(["kl", "--csv", trade, "--kl", "decreases", "--reward", "increases"]) == 1
    flat = _write_csv(
        tmp_path / "flat.csv",
        "kl_coef,timesteps,reward,kl,seconds",
        ["0.01,300,0.1,0.2,1", "0.5,300,0.1,0.2,1"],
    )
    assert check.main(["kl", "--csv", flat, "--kl", "decreases", "--reward", "decreases"]) == 1  # untrained
    one = _write_csv(tmp_path / "one.csv", "kl_coef,timesteps,reward,kl,seconds", ["0.1,300,0.1,0.2,1"])
    assert check.main(["kl", "--csv", one, "--kl", "decreases", "--reward", "decreases"]) == 1
    assert (
        check.main(
            ["kl", "--csv", str(tmp_path / "missing.csv"), "--kl", "decreases", "--reward", "decreases"]
        )
        == 1
    )


def test_overopt_checker_reads_the_students_numbers(tmp_path: Path) -> None:
    from docs.exercises import check

    rows = ["1000,0.1,0.2,0.0", "2000,0.5,0.6,2.0", "3000,0.9,0.4,8.0"]
    path = _write_csv(tmp_path / "oo.csv", "timesteps,proxy,gold,kl", rows)
    assert check.main(["overopt", "--csv", path, "--gold-peak", "2000", "--larger-gain", "proxy"]) == 0
    assert check.main(["overopt", "--csv", path, "--gold-peak", "3000", "--larger-gain", "proxy"]) == 1
    assert check.main(["overopt", "--csv", path, "--gold-peak", "2000", "--larger-gain", "gold"]) == 1
    bad = _write_csv(tmp_path / "bad.csv", "timesteps,proxy", ["1000,0.1"])
    assert check.main(["overopt", "--csv", bad, "--gold-peak", "1000", "--larger-gain", "proxy"]) == 1
