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

Writers of one target take turns: each write holds an exclusive lock (``fcntl.flock`` on a lock
file ``.<name>.lock`` next to the target, removed again when the write ends). A crash can leave a
stray temporary file or directory (``.<name>.<8 chars>.tmp`` / ``<name>.tmp-<8 chars>``) and the
lock file; nothing reads those names, and the next write of the same target (or the next
:func:`completed_directory` lookup) removes them under the lock, since no other writer can be using
them then. So killed writes leave at most one temporary of a target behind, never an
accumulation (without ``fcntl``, e.g. on Windows, writes are not serialised and strays are not
removed). This module imports only the standard library, so every layer of the project (``lm``
included) may use it.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Literal

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; writes are not serialised, strays not removed
    fcntl = None  # type: ignore[assignment]

#: suffix of the previous version of a directory while :func:`write_directory` swaps it out
BACKUP_SUFFIX = ".bak"
#: characters and length of the random part of temporary names (those of :mod:`tempfile`)
_RANDOM_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"
_RANDOM_LEN = 8

PathLike = str | os.PathLike


def _lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


def _is_stray(name: str, target: str) -> bool:
    """Whether ``name`` is a temporary file or directory of a write of ``target`` (see module doc)."""
    t, r = re.escape(target), f"[{re.escape(_RANDOM_CHARS)}]{{{_RANDOM_LEN}}}"
    return re.fullmatch(rf"\.{t}\.{r}\.tmp|{t}\.tmp-{r}", name) is not None


def stray_temporaries(path: PathLike) -> list[Path]:
    """Temporary files and directories that interrupted writes of ``path`` left next to it."""
    path = Path(path).absolute()
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    return sorted(path.parent / n for n in names if _is_stray(n, path.name))


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)


@contextlib.contextmanager
def _target_lock(path: Path, blocking: bool = True) -> Iterator[bool]:
    """Hold the exclusive lock of target ``path``; yields ``False`` if not taken (``blocking=False``).

    The lock file is removed on release (while still held); a waiter that then locks the removed
    file notices that the name now points elsewhere (or nowhere) and tries again.
    """
    if fcntl is None:
        yield True
        return
    lock = _lock_path(path)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            yield False
            return
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        os.close(fd)


def _remove_strays(path: Path) -> None:
    """Remove what interrupted writes of ``path`` left (call with the target's lock held)."""
    if fcntl is None:
        return
    for p in stray_temporaries(path):
        _remove(p)


def clean_stray_temporaries(path: PathLike) -> int:
    """Remove the temporaries interrupted writes of ``path`` left, unless a write is running now.

    Returns how many were removed. Nothing happens where the directory cannot be written (a
    read-only install) or where advisory locks are unavailable.
    """
    path = Path(path).absolute()
    strays = stray_temporaries(path)
    if not strays or fcntl is None:
        return 0
    try:
        with _target_lock(path, blocking=False) as locked:
            if not locked:
                return 0
            strays = stray_temporaries(path)
            for p in strays:
                _remove(p)
            return len(strays)
    except OSError:
        return 0


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
    path = Path(path).absolute()
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    with _target_lock(path):
        _remove_strays(path)
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
    with _target_lock(path):
        _remove_strays(path)
        if if_exists == "keep" and path.exists():
            return False
        backup = path.with_name(path.name + BACKUP_SUFFIX)
        if path.exists() and backup.exists():  # a stale backup: remove it before building anew,
            _discard(backup)  # so that a crash never leaves it and the new build as two strays
        return _swap_in(path, build, if_exists)


def _swap_in(path: Path, build: Callable[[Path], Any], if_exists: str) -> bool:
    """The body of :func:`write_directory`, run with the target's lock held."""
    parent = path.parent
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
                _discard(backup)
            os.rename(path, backup)
        os.rename(tmp, path)
        fsync_directory(parent)
        if backup.exists():
            _discard(backup)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return True


def _discard(directory: Path) -> None:
    """Remove ``directory`` without ever leaving a part of it under its own name: it is renamed to
    a temporary name first (a crash during the removal leaves a stray the next write removes)."""
    suffix = "".join(random.SystemRandom().choice(_RANDOM_CHARS) for _ in range(_RANDOM_LEN))
    doomed = directory.with_name(f"{directory.name.removesuffix(BACKUP_SUFFIX)}.tmp-{suffix}")
    os.rename(directory, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def completed_directory(path: PathLike, marker: str | None = None) -> Path | None:
    """The complete directory :func:`write_directory` left for ``path``, or ``None``.

    That is ``path`` itself, or ``<path>.bak`` after a crash between the two renames of a replace.
    With ``marker`` (a file name), a candidate counts only if it holds that file.
    """
    path = Path(path)
    clean_stray_temporaries(path)
    for candidate in (path, path.with_name(path.name + BACKUP_SUFFIX)):
        if candidate.is_dir() and (marker is None or (candidate / marker).is_file()):
            return candidate
    return None
