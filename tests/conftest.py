"""Shared pytest fixtures."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Two cores: keep torch from oversubscribing when pytest-xdist runs two workers.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def rlhf_envs_cache(tmp_path_factory: pytest.TempPathFactory):
    """Point ``$RLHF_ENVS_CACHE`` at a temporary directory for the whole session.

    Tests never read a proxy fitted by other code from the user's cache, nor write into it. The
    directory is shared by the pytest-xdist workers of one run (it sits next to their own temp
    dirs), so a proxy one worker fits is found by the other; the fitting code holds a lock, so they
    never fit the same proxy twice. The user's already-fetched *data sets* (checksum-pinned files,
    verified on every load) are copied in, so a run does not download them again; fitted proxies
    are never copied.
    """
    user_cache = Path(os.environ.get("RLHF_ENVS_CACHE", Path.home() / ".cache" / "rlhf_envs"))
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "rlhf_envs_cache"
    root.mkdir(parents=True, exist_ok=True)
    datasets = user_cache / "datasets"
    if datasets.is_dir() and not (root / "datasets").exists():
        tmp = root / f"datasets.copying-{os.getpid()}"
        try:
            shutil.copytree(datasets, tmp)
            os.rename(tmp, root / "datasets")
        except OSError:  # another worker finished first, or the copy failed: tests fetch instead
            shutil.rmtree(tmp, ignore_errors=True)
    old = os.environ.get("RLHF_ENVS_CACHE")
    os.environ["RLHF_ENVS_CACHE"] = str(root)
    yield root
    if old is None:
        os.environ.pop("RLHF_ENVS_CACHE", None)
    else:
        os.environ["RLHF_ENVS_CACHE"] = old


@pytest.fixture
def one_torch_thread():
    """Run a test on one torch thread: small networks run fastest so, and two test workers share
    two cores. Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
