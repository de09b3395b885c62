"""Atomic writes of files and directories: a reader sees the old content or the new, never a part.

Every file or directory the project writes for later (checkpoints, reward models, the RLHF loop's
rounds, run logs, the proxy cache) goes through this module, so "crash-safe" means one thing:

* **Files** (:func:`write_bytes`, :func:`write_text`, :func:`write_json`, :func:`open_atomic`) are
  written to a temporary file in the same directory, flushed and ``fsync``-ed, then renamed over
  the target with ``os.replace`` (atomic on POSIX and Windows), and the directory is ``fsync``-ed so
  the rename itself survives a power cut. Killed at any moment, the target holds the complete old
  content (or does not exist, if it did not before) or the complete new content.
* **Directories** (:func:`write_directory`) are built under a temporary name next to the target
  by a caller's function, every file in them is ``fsync``-ed, and they are swapped in with two
  renames: the old directory moves to ``<path>.bak`` first and is removed only after the new one
  is in place. A crash therefore leaves a complete directory at ``<path>`` or at ``<path>.bak``;
  :func:`completed_directory` finds it. With ``if_exists="keep"`` an existing directory wins
  instead (a cache that several processes may fill at once: the first rename wins, the others'
  work is discarded).

A crash can leave a stray temporary file or directory (``.<name>.*.tmp`` / ``<name>.tmp-*``) next
to the target; nothing reads those names. This module imports only the standard library, so every
layer of the project (``lm`` included) may use it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Literal

#: suffix of the previous version of a directory while :func:`write_directory` swaps it out
BACKUP_SUFFIX = ".bak"

PathLike = str | os.PathLike


def fsync_directory(path: PathLike) -> None:
    """``fsync`` a directory so renames and new entries in it are durable (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def open_atomic(path: PathLike, mode: str = "w", **open_kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file for writing; on a clean exit it replaces ``path`` atomically.

    ``mode`` is ``"w"`` (text; ``open_kwargs`` such as ``newline=""`` or ``encoding`` pass through)
    or ``"wb"``. If the block raises, the temporary file is removed and ``path`` is untouched::

        with open_atomic("progress.csv", newline="") as f:
            csv.writer(f).writerows(rows)
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"open_atomic: mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_directory(parent)


def write_bytes(path: PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (see the module docstring)."""
    with open_atomic(path, "wb") as f:
        f.write(data)


def write_text(path: PathLike, text: str, encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``text`` atomically."""
    with open_atomic(path, "w", encoding=encoding) as f:
        f.write(text)


def write_json(
    path: PathLike,
    obj: Any,
    *,
    indent: int | None = 1,
    sort_keys: bool = False,
    default: Callable[[Any], Any] | None = None,
) -> None:
    """Replace ``path`` with ``obj`` as JSON atomically.

    The text is built in memory first, so an object that cannot be serialised raises before any
    file is touched.
    """
    write_text(path, json.dumps(obj, indent=indent, sort_keys=sort_keys, default=default))


def _fsync_tree(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_directory(dirpath)


def write_directory(
    path: PathLike,
    build: Callable[[Path], Any],
    *,
    if_exists: Literal["replace", "keep"] = "replace",
) -> bool:
    """Create directory ``path`` atomically with ``build(tmp)``, which fills an empty directory.

    ``tmp`` is a fresh directory next to ``path`` (same file system, so the final rename is atomic).
    After ``build`` returns, every file in ``tmp`` is ``fsync``-ed and ``tmp`` is renamed to
    ``path``. ``if_exists="replace"`` swaps out an existing ``path`` through ``<path>.bak`` (see the
    module docstring); ``"keep"`` leaves an existing ``path`` alone and discards the new build.
    If ``build`` raises, ``tmp`` is removed and ``path`` is untouched.

    Returns ``True`` when the new directory is now at ``path``, ``False`` when an existing one was
    kept.
    """
    if if_exists not in ("replace", "keep"):
        raise ValueError(f"write_directory: if_exists must be 'replace' or 'keep', got {if_exists!r}")
    path = Path(path).absolute()
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    if if_exists == "keep" and path.exists():
        return False
    tmp = Path(tempfile.mkdtemp(prefix=path.name + ".tmp-", dir=parent))
    try:
        build(tmp)
        _fsync_tree(tmp)
        if if_exists == "keep":
            try:
                os.rename(tmp, path)  # fails if another writer got there first (non-empty target)
            except OSError:
                if not path.exists():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
                return False
            fsync_directory(parent)
            return True
        backup = path.with_name(path.name + BACKUP_SUFFIX)
        if path.exists():
            if backup.exists():
                shutil.rmtree(backup)
            os.rename(path, backup)
        os.rename(tmp, path)
        fsync_directory(parent)
        if backup.exists():
            shutil.rmtree(backup)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return True


def completed_directory(path: PathLike, marker: str | None = None) -> Path | None:
    """The complete directory :func:`write_directory` left for ``path``, or ``None``.

    That is ``path`` itself, or ``<path>.bak`` after a crash between the two renames of a replace.
    With ``marker`` (a file name), a candidate counts only if it holds that file.
    """
    path = Path(path)
    for candidate in (path, path.with_name(path.name + BACKUP_SUFFIX)):
        if candidate.is_dir() and (marker is None or (candidate / marker).is_file()):
            return candidate
    return None
