"""rlhf_envs.atomic_io: a file or directory holds its complete old or complete new content, never a part.

Crashes are real: a child process writes through the helper and kills itself with ``os._exit`` in
the middle (no ``finally`` blocks, no clean-up), then the parent looks at what is on disk.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rlhf_envs import atomic_io


def _crash(code: str) -> None:
    """Run ``code`` in a fresh interpreter; it must die with exit status 3 (its simulated crash)."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr


def _strays(d: Path, name: str) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name != name)


def test_files_are_written_completely_and_leave_nothing_else(tmp_path):
    atomic_io.write_text(tmp_path / "a.txt", "héllo")
    atomic_io.write_bytes(tmp_path / "b.bin", b"\x00\x01")
    atomic_io.write_json(tmp_path / "c.json", {"x": [1, 2.5, None]}, sort_keys=True)
    with atomic_io.open_atomic(tmp_path / "d.csv", newline="") as f:
        f.write("a,b\r\n1,2\r\n")
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert json.loads((tmp_path / "c.json").read_text()) == {"x": [1, 2.5, None]}
    assert (tmp_path / "d.csv").read_bytes() == b"a,b\r\n1,2\r\n"
    atomic_io.write_text(tmp_path / "a.txt", "replaced")
    assert (tmp_path / "a.txt").read_text() == "replaced"
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "b.bin", "c.json", "d.csv"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    target = tmp_path / "state.json"
    atomic_io.write_json(target, {"round": 1})
    with pytest.raises(TypeError):
        atomic_io.write_json(target, {"round": object()})  # not serialisable
    with pytest.raises(RuntimeError), atomic_io.open_atomic(target) as f:
        f.write('{"round": 2, "hist')
        raise RuntimeError("interrupted")
    assert json.loads(target.read_text()) == {"round": 1}
    assert _strays(tmp_path, "state.json") == []


def test_a_crash_mid_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "state.json"
    atomic_io.write_json(target, {"round": 1})
    _crash(f"""
        import os
        from rlhf_envs import atomic_io
        with atomic_io.open_atomic({str(target)!r}) as f:
            f.write('{{"round": 2, "history": [')
            f.flush()
            os._exit(3)
    """)
    assert json.loads(target.read_text()) == {"round": 1}
    # the crash leaves its temporary file, under a name nothing reads; the next write still works
    assert all(name.startswith(".state.json.") for name in _strays(tmp_path, "state.json"))
    atomic_io.write_json(target, {"round": 2})
    assert json.loads(target.read_text()) == {"round": 2}


def test_a_crash_before_the_first_write_completes_leaves_no_file(tmp_path):
    target = tmp_path / "new.json"
    _crash(f"""
        import os
        from rlhf_envs import atomic_io
        with atomic_io.open_atomic({str(target)!r}) as f:
            f.write("{{")
            os._exit(3)
    """)
    assert not target.exists()


def _fill(files: dict[str, str]):
    def build(d: Path) -> None:
        for name, text in files.items():
            (d / name).write_text(text)

    return build


def test_directory_replace_swaps_whole_directories(tmp_path):
    target = tmp_path / "model"
    assert atomic_io.write_directory(target, _fill({"a": "1", "b": "1"}))
    assert atomic_io.write_directory(target, _fill({"a": "2"}))
    assert sorted(os.listdir(target)) == ["a"] and (target / "a").read_text() == "2"
    assert os.listdir(tmp_path) == ["model"]  # no temporary or backup directory left
    assert atomic_io.completed_directory(target) == target


def test_directory_build_failure_keeps_the_old_directory(tmp_path):
    target = tmp_path / "model"
    atomic_io.write_directory(target, _fill({"a": "1"}))

    def broken(d: Path) -> None:
        (d / "a").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_io.write_directory(target, broken)
    assert (target / "a").read_text() == "1"
    assert os.listdir(tmp_path) == ["model"]


def test_a_crash_while_building_a_directory_leaves_the_old_one(tmp_path):
    target = tmp_path / "model"
    atomic_io.write_directory(target, _fill({"a": "1"}))
    _crash(f"""
        import os
        from rlhf_envs import atomic_io
        def build(d):
            (d / "a").write_text("2")
            os._exit(3)
        atomic_io.write_directory({str(target)!r}, build)
    """)
    assert sorted(os.listdir(target)) == ["a"] and (target / "a").read_text() == "1"


def test_a_crash_between_the_two_renames_leaves_a_complete_backup(tmp_path):
    target = tmp_path / "model"
    atomic_io.write_directory(target, _fill({"a": "1"}))
    _crash(f"""
        import os
        from rlhf_envs import atomic_io
        real_rename, calls = os.rename, []
        def rename(src, dst):
            calls.append(dst)
            if len(calls) == 2:  # the old directory is at <path>.bak, the new one not yet in place
                os._exit(3)
            real_rename(src, dst)
        os.rename = rename
        atomic_io.write_directory({str(target)!r}, lambda d: (d / "a").write_text("2"))
    """)
    assert not target.exists()
    found = atomic_io.completed_directory(target, marker="a")
    assert found == tmp_path / "model.bak" and (found / "a").read_text() == "1"
    assert atomic_io.completed_directory(tmp_path / "other") is None
    atomic_io.write_directory(target, _fill({"a": "3"}))  # the next write recovers and cleans up
    assert (target / "a").read_text() == "3" and not (tmp_path / "model.bak").exists()


def test_keep_mode_leaves_an_existing_directory_alone(tmp_path):
    target = tmp_path / "cache"
    assert atomic_io.write_directory(target, _fill({"a": "first"}), if_exists="keep")
    assert not atomic_io.write_directory(target, _fill({"a": "second"}), if_exists="keep")
    assert (target / "a").read_text() == "first"

    # another process finishes first while this one builds: its directory wins, ours is discarded
    other = tmp_path / "raced"

    def slow_build(d: Path) -> None:
        (d / "a").write_text("ours")
        other.mkdir()
        (other / "a").write_text("theirs")

    assert not atomic_io.write_directory(other, slow_build, if_exists="keep")
    assert (other / "a").read_text() == "theirs"
    assert sorted(os.listdir(tmp_path)) == ["cache", "raced"]
    with pytest.raises(ValueError, match="if_exists"):
        atomic_io.write_directory(target, _fill({}), if_exists="overwrite")
