"""What every benchmark script shares: threads and seeds, timing, machine facts, result files that
record the preset and the resolved config, plotting, and the statistics of the summary tables.

Run the scripts from the repository root as modules (``python -m benchmarks.<name>``). Every result
they write names the preset of :mod:`agents.presets` a run started from (``preset``) beside the full
resolved config of the run (``resolved_config``: every field, JSON), so a row can be reproduced
without reading the script that wrote it.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: the committed results (CSV, JSON, PNG) that the README quotes
RESULTS = Path(__file__).resolve().parent / "results"
#: evaluation episodes are seeded ``EVAL_SEED_OFFSET + seed``: disjoint from training's seeds
EVAL_SEED_OFFSET = 10_000


# -- threads, seeds, time, machine ---------------------------------------------------------------------


def init_torch(threads: int = 1) -> int:
    """Set torch's intra-op threads (1 by default: on a shared 2-core machine more threads than free
    cores make small matrix products slower) and return the count torch reports."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    import torch

    from agents.threads import set_training_threads

    set_training_threads(threads)  # the agents follow this choice (their default threads=None)
    return torch.get_num_threads()


def eval_seed(seed: int, offset: int = EVAL_SEED_OFFSET) -> int:
    """The seed of a run's evaluation episodes (``offset + seed``), disjoint from training's."""
    return offset + int(seed)


class Timer:
    """Wall-clock seconds (``time.perf_counter``) since it was made or entered.

    ``t = Timer(); ...; t.seconds`` reads the time so far; ``with Timer() as t: ...`` stops the
    clock when the block ends.
    """

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self._end: float | None = None

    def __enter__(self) -> Timer:
        self.start, self._end = time.perf_counter(), None
        return self

    def __exit__(self, *exc: object) -> None:
        self._end = time.perf_counter()

    @property
    def seconds(self) -> float:
        return (time.perf_counter() if self._end is None else self._end) - self.start


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded to 0.01 (the machine may be shared)."""
    return [round(x, 2) for x in os.getloadavg()]


def machine_info() -> dict[str, Any]:
    """What the figures were measured on: platform, CPUs, Python and torch versions, load now
    (torch's version from the package metadata: reading it does not import torch)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        torch_version = None
    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch_version,
        "load_average": load_average(),
    }


# -- result files ---------------------------------------------------------------------------------------


def config_json(config: Mapping[str, Any]) -> str:
    """A resolved config as one line of JSON (sorted keys; objects by their ``str``)."""
    return json.dumps(dict(config), sort_keys=True, default=str)


def config_columns(preset: str | None, config: Mapping[str, Any]) -> dict[str, str]:
    """The two columns every result row carries: the preset's name and the full resolved config."""
    return {"preset": preset or "", "resolved_config": config_json(config)}


def settings_text(settings: Mapping[str, Any]) -> str:
    """``key=value key=value`` (the human-readable settings column of the CSVs)."""
    return " ".join(f"{k}={v}" for k, v in settings.items())


def write_csv(
    path: str | os.PathLike, rows: Sequence[Mapping[str, Any]], fields: Sequence[str] | None = None
) -> None:
    """Write ``rows`` with a header (``fields``, default the first row's keys; missing cells blank),
    creating the folder."""
    fields = list(fields) if fields is not None else list(rows[0]) if rows else []
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, restval="")
        w.writeheader()
        w.writerows(rows)


def append_csv_row(path: str | os.PathLike, row: Mapping[str, Any]) -> None:
    """Append ``row`` to a CSV (created with a header if missing). If the row has columns the file
    lacks, the file is rewritten with them added at the end (blank in the earlier rows)."""
    if os.path.exists(path):
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            old = list(reader.fieldnames or [])
            if set(row) <= set(old):  # the usual case: a plain append
                with open(path, "a", newline="") as out:
                    csv.DictWriter(out, fieldnames=old, restval="").writerow(row)
                return
            rows = list(reader)
        write_csv(path, [*rows, row], old + [k for k in row if k not in old])
    else:
        write_csv(path, [row])


def write_json(path: str | os.PathLike, data: Any, indent: int = 2) -> None:
    """Write ``data`` as indented JSON (objects JSON cannot hold by their ``str``), creating the folder."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f, indent=indent, default=str)
        f.write("\n")


# -- plotting ------------------------------------------------------------------------------------------


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (the scripts only write PNGs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 110) -> None:
    """Lay out, save and close a figure."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)


# -- statistics ----------------------------------------------------------------------------------------

#: two-sided 97.5% quantiles of Student's t by degrees of freedom (1.96 beyond the table)
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def mean_ci(values: Iterable[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t confidence interval over the finite values (nan
    half-width for one value, nan for both when there are none)."""
    x = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    if x.size == 0:
        return math.nan, math.nan
    if x.size == 1:
        return float(x[0]), math.nan
    t = T975.get(x.size - 1, 1.96)
    return float(x.mean()), float(t * x.std(ddof=1) / math.sqrt(x.size))


def sem(values: Sequence[float]) -> float | None:
    """Standard error of the mean (sample standard deviation / sqrt(n)); ``None`` below two values."""
    x = np.asarray(values, dtype=np.float64)
    return float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else None


def ratio_of_means(pairs: Sequence[Mapping[str, Any]], numerator: str, denominator: str) -> float | None:
    """``mean(p[numerator]) / mean(p[denominator])`` over ``pairs`` (``None`` when there are none).

    The paired benchmarks pass only the seeds where both sides reached a level: a side that never
    reached it has no count to average, and imputing one would invent data.
    """
    if not pairs:
        return None
    return float(np.mean([p[numerator] for p in pairs]) / np.mean([p[denominator] for p in pairs]))


def grid_curve(points: Sequence[tuple[int, float]], budget: int, n: int = 25) -> list[tuple[int, float]]:
    """Resample a curve onto ``n`` evenly spaced steps up to ``budget`` (last value at or before each)."""
    grid = np.linspace(budget / n, budget, n).round().astype(int)
    steps = np.array([p[0] for p in points], dtype=np.int64)
    vals = np.array([p[1] for p in points], dtype=np.float64)
    out = []
    for g in grid:
        idx = np.searchsorted(steps, g, side="right") - 1
        out.append((int(g), float(vals[idx]) if idx >= 0 else math.nan))
    return out


def steps_to_threshold(points: Iterable[tuple[int, float]], threshold: float) -> int | None:
    """First recorded step whose curve value reaches ``threshold`` (``None`` if never)."""
    for step, value in points:
        if value >= threshold:
            return step
    return None
