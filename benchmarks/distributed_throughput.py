"""PPO-LM tokens/s on 1 vs 2 data-parallel ranks, through the CLI under torchrun.

``python -m benchmarks.distributed_throughput [--repeats 2] [--steps 1024]``

Each run is ``torchrun --standalone --nproc_per_node=W -m rlhf_envs.cli train --algo ppo --env
RLHF/Sentiment-v0`` on the embedded model with the same global batch (``--n-envs`` = global /
W), one torch thread per rank; runs alternate 1, 2, 1, 2, ... so both see the same machine load.
Reported: training tokens (generated, over all ranks) per second of ``learn`` (start-up and
evaluation excluded) and the wall time of the whole command. Writes
``benchmarks/results/distributed_throughput.json``.

On a 2-core machine shared with other work this measures correctness overhead more than speed-up:
two ranks have at most two cores between them, and each rank pays the all-gather of the batch and
one gradient all-reduce per minibatch.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "distributed_throughput.json"


def run_once(world: int, steps: int, global_envs: int, timeout: float) -> dict[str, float]:
    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    cmd = [
        torchrun,
        "--standalone",
        f"--nproc_per_node={world}",
        "-m",
        "rlhf_envs.cli",
        "train",
        "--algo",
        "ppo",
        "--env",
        "RLHF/Sentiment-v0",
        "--steps",
        str(steps),
        "--n-envs",
        str(global_envs // world),
        "--eval-episodes",
        "0",
        "--threads",
        "1",
        "--seed",
        "0",
    ]
    t0 = time.perf_counter()
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    result = json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][-1])
    return {
        "world_size": world,
        "tokens": result["timesteps"],
        "train_seconds": result["train_seconds"],
        "tokens_per_second": result["timesteps"] / result["train_seconds"],
        "wall_seconds": wall,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--steps", type=int, default=1024, help="generated tokens per run (all ranks)")
    p.add_argument("--global-envs", type=int, default=16, help="episodes per PPO batch, all ranks")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args()
    runs = []
    for r in range(args.repeats):
        for world in (1, 2):
            row = run_once(world, args.steps, args.global_envs, args.timeout)
            row["repeat"] = r
            runs.append(row)
            print(json.dumps(row))
    summary = {}
    for world in (1, 2):
        rows = [x for x in runs if x["world_size"] == world]
        summary[str(world)] = {
            "tokens_per_second": sum(x["tokens_per_second"] for x in rows) / len(rows),
            "wall_seconds": sum(x["wall_seconds"] for x in rows) / len(rows),
        }
    summary["ratio_2_over_1"] = summary["2"]["tokens_per_second"] / summary["1"]["tokens_per_second"]
    report = {
        "command": "python -m benchmarks.distributed_throughput " + " ".join(sys.argv[1:]),
        "setup": {
            "env": "RLHF/Sentiment-v0",
            "policy": "lm (embedded model)",
            "global_envs": args.global_envs,
            "steps": args.steps,
            "threads_per_rank": 1,
            "backend": "gloo (CPU)",
            "machine_cores": os.cpu_count(),
        },
        "runs": runs,
        "summary": summary,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
