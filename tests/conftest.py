"""Shared pytest fixtures."""

from __future__ import annotations

import os

# Two cores: keep torch from oversubscribing when pytest-xdist runs two workers.
os.environ.setdefault("OMP_NUM_THREADS", "1")
