"""Training logs: a progress bar, TensorBoard scalars and a CSV file, fed the same metric dicts.

Every iteration the agent hands :class:`TrainingLogger` one flat ``{name: float}`` dict (losses,
approx KL k1/k3, clip fraction, explained variance, entropy, KL to the reference, KL coefficient,
episode returns and each reward component). The CSV header grows when a new metric appears (the
file is rewritten once with the wider header, atomically), so late-appearing components are not
lost and a crash never leaves a half-written file behind. TensorBoard is optional: without the
``tensorboard`` package a ``log_dir`` still gets its CSV file, and a warning says how to install it.
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from typing import Any

from tqdm.auto import tqdm

from rlhf_envs import atomic_io

#: metrics shown on the progress bar, in this order, when present
BAR_KEYS = ("mean_return", "success_rate", "reward_task", "kl_ref", "approx_kl_k3", "fps")


#: how to get TensorBoard (an optional dependency) when it is missing
TENSORBOARD_HINT = (
    "pip install tensorboard (or the project's 'baselines' extra: pip install -e '.[baselines]')"
)


def summary_writer_class() -> Any:
    """``torch.utils.tensorboard.SummaryWriter``, or ``None`` when the optional ``tensorboard``
    package is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter


def warn_no_tensorboard(log_dir: str) -> None:
    """Say once per call site that only CSV is logged, and how to get TensorBoard events."""
    warnings.warn(
        f"tensorboard is not installed: {log_dir!r} gets CSV logs only (progress.csv / monitor.csv); "
        f"for TensorBoard events: {TENSORBOARD_HINT}",
        UserWarning,
        stacklevel=3,
    )


class TrainingLogger:
    """Progress bar + optional TensorBoard writer + optional CSV (``<log_dir>/<filename>``,
    ``progress.csv`` for training, ``evaluations.csv`` for :meth:`~agents.base.OnPolicyAgent.evaluate`)."""

    def __init__(
        self,
        log_dir: str | None,
        total: int,
        start: int = 0,
        progress_bar: bool = True,
        tensorboard: bool = True,
        filename: str = "progress.csv",
    ) -> None:
        self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True) if progress_bar else None
        self.writer = None
        self.csv_path = None
        self.columns: list[str] = []
        if log_dir is not None:
            os.makedirs(log_dir, exist_ok=True)
            self.csv_path = os.path.join(log_dir, filename)
            if tensorboard:
                writer_class = summary_writer_class()
                if writer_class is None:
                    warn_no_tensorboard(log_dir)
                else:
                    self.writer = writer_class(log_dir)
            if os.path.exists(self.csv_path):
                # a resumed run keeps its rows up to the resume point; a fresh run (start 0) in the
                # same directory replaces them instead of appending a second curve to the file
                with open(self.csv_path, newline="") as f:
                    reader = csv.DictReader(f)
                    header = list(reader.fieldnames or [])
                    rows = [r for r in reader if float(r.get("timesteps") or 0) <= start]
                self.columns = header if rows else []
                with atomic_io.open_atomic(self.csv_path, newline="") as f:
                    if rows:
                        w = csv.DictWriter(f, fieldnames=header)
                        w.writeheader()
                        w.writerows(rows)

    def log(self, step: int, metrics: dict[str, Any], advance: int) -> None:
        """Record ``metrics`` at env step ``step`` and move the bar by ``advance``."""
        row = {
            k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)
        }
        row["timesteps"] = float(step)
        if self.writer is not None:
            for k, v in row.items():
                if k != "timesteps" and math.isfinite(v):
                    self.writer.add_scalar(_tb_name(k), v, step)
        if self.csv_path is not None:
            self._write_csv(row)
        if self.bar is not None:
            shown = {k: f"{row[k]:.3g}" for k in BAR_KEYS if k in row}
            self.bar.set_postfix(shown, refresh=False)
            self.bar.update(advance)

    def _write_csv(self, row: dict[str, float]) -> None:
        new = [k for k in row if k not in self.columns]
        if new:
            old_rows = []
            if self.columns and os.path.exists(self.csv_path):
                with open(self.csv_path, newline="") as f:
                    old_rows = list(csv.DictReader(f))
            self.columns = ["timesteps", *sorted(c for c in set(self.columns) | set(new) if c != "timesteps")]
            with atomic_io.open_atomic(self.csv_path, newline="") as f:
                w = csv.DictWriter(f, fieldnames=self.columns)
                w.writeheader()
                w.writerows(old_rows)
        with open(self.csv_path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.columns).writerow(row)

    def close(self) -> None:
        """Flush and close the bar and the TensorBoard writer."""
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()


def _tb_name(key: str) -> str:
    if key.startswith(("reward_", "mean_", "std_", "success", "n_episodes", "score")):
        return f"rollout/{key}"
    if key in ("fps", "iteration", "learning_rate", "clip_range"):
        return f"time/{key}"
    return f"train/{key}"
