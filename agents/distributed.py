"""Data-parallel training on ``torch.distributed`` (launched with ``torchrun``; gloo on CPU, NCCL on GPU).

No launcher and no communication layer of our own: ``torchrun`` starts the processes and sets
``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` / ``MASTER_ADDR`` / ``MASTER_PORT``; :func:`init_from_env`
turns them into a process group (``torch.distributed.init_process_group``), and :class:`World` wraps
the few collectives the agents need (all-reduce, all-gather, broadcast, barrier) so that a rank that
died or hangs ends the others with :class:`RankLostError` instead of a silent hang.

How the agents use it (``agents.base.OnPolicyAgent`` picks up :meth:`World.current` when a process
group with more than one rank is initialised; nothing to pass):

* **Rollouts.** Every rank steps its own vector env of ``n_envs`` sub-envs, reset with seed
  ``s + rank * n_envs``, so the union over ranks is exactly the single-process vector env of
  ``world_size * n_envs`` sub-envs reset with ``s``. Sampling draws the uniforms (or normals) of the
  whole global batch from the shared generator and keeps this rank's rows (:meth:`World.uniforms`),
  so the ranks together draw exactly what one process would.
* **The batch.** After each rollout the ranks all-gather it (:meth:`World.gather`), so every rank
  holds the global batch: advantage normalisation, the adaptive KL controller's measurement, the
  explained variance and every logged mean are computed over all ranks, identically on each.
* **The update.** Every rank walks the same shuffled minibatches of the global batch and runs the
  forward/backward pass on its share of each (:meth:`World.rows`), with every mean divided by the
  whole minibatch's count; :meth:`World.all_reduce_gradients` then sums the gradients in flat
  buckets, so each rank applies the gradient one process would have computed on the whole
  minibatch, and the parameters stay identical on every rank without ever being broadcast again.
* **Files.** Rank 0 writes checkpoints and logs; every rank can resume from them (``PPO.load``).

Timeouts: :func:`init_from_env` passes ``timeout`` (default :data:`DEFAULT_TIMEOUT_S`, or the
``RLHF_DIST_TIMEOUT`` environment variable, in seconds) to the process group, so a collective that
waits longer than that for a hung peer fails; a peer that died usually fails it at once (its sockets
close). Under ``torchrun`` the elastic agent also stops the remaining workers when one exits with an
error and prints which rank failed.
"""

from __future__ import annotations

import datetime
import os
import pickle
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from rlhf_envs.errors import ConfigError, RLHFEnvsError

#: seconds a collective waits for the other ranks before it fails (override: RLHF_DIST_TIMEOUT)
DEFAULT_TIMEOUT_S = 300.0
#: gradient bytes per all-reduce call (DDP's default bucket size)
BUCKET_BYTES = 25 * 1024 * 1024


#: the timeout the process group was created with by :func:`init_from_env` (for error messages)
_TIMEOUT_S: float | None = None


class RankLostError(RLHFEnvsError, RuntimeError):
    """A collective failed: another rank died, or did not answer within the process group's timeout."""


def _timeout_s(timeout_s: float | None) -> float:
    if timeout_s is not None:
        value = timeout_s
    else:
        raw = os.environ.get("RLHF_DIST_TIMEOUT")
        try:
            value = float(raw) if raw is not None else DEFAULT_TIMEOUT_S
        except ValueError:
            raise ConfigError(f"RLHF_DIST_TIMEOUT must be a number of seconds, got {raw!r}") from None
    if not value > 0:
        raise ConfigError(f"the distributed timeout must be a positive number of seconds, got {value!r}")
    return float(value)


def launched_distributed() -> bool:
    """Whether this process was started by ``torchrun`` (or similar) as one of several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(backend: str | None = None, timeout_s: float | None = None) -> World:
    """Initialise the default process group from torchrun's environment variables; return the world.

    A no-op returning the single-process world when ``WORLD_SIZE`` is unset or 1, and returns the
    current world when a group already exists. ``backend`` defaults to ``"nccl"`` when CUDA is
    available and ``"gloo"`` otherwise; with NCCL each process takes GPU ``LOCAL_RANK``
    (``torch.cuda.set_device``), so ``device="cuda"`` means this rank's own GPU.
    """
    if dist.is_available() and dist.is_initialized():
        return World.current()
    if not launched_distributed():
        return World()
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this torch build has no torch.distributed support")
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend not in ("gloo", "nccl"):
        raise ConfigError(f"backend must be 'gloo' (CPU) or 'nccl' (GPU), got {backend!r}")
    timeout = _timeout_s(timeout_s)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
    global _TIMEOUT_S
    _TIMEOUT_S = timeout
    return World.current()


def shutdown() -> None:
    """Destroy the default process group if one exists (the end of a torchrun'd command)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@dataclass(frozen=True)
class World:
    """This process's place among the data-parallel ranks (``World()``: one process, no-op collectives)."""

    rank: int = 0
    world_size: int = 1
    timeout_s: float | None = None

    @classmethod
    def current(cls) -> World:
        """The world of the initialised default process group (a single process if there is none)."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size(), _TIMEOUT_S)
        return cls()

    @property
    def active(self) -> bool:
        """More than one rank: collectives are needed."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes checkpoints and logs."""
        return self.rank == 0

    # -- sharding ---------------------------------------------------------------------------------

    def rows(self, n: int) -> slice:
        """This rank's contiguous share of ``n`` rows (shares differ in size by at most one)."""
        return slice(n * self.rank // self.world_size, n * (self.rank + 1) // self.world_size)

    def env_seed(self, seed: int, n_local: int) -> int:
        """The reset seed of this rank's first sub-env (the global vector env's sub-env ``rank * n_local``)."""
        return int(seed) + self.rank * int(n_local)

    def uniforms(self, n_local: int, generator: torch.Generator, device: Any) -> torch.Tensor:
        """``(n_local, 1)`` uniforms in [0, 1): this rank's rows of one draw for the whole global batch."""
        u = torch.rand(n_local * self.world_size, 1, generator=generator, device=device)
        return u[self.rank * n_local : (self.rank + 1) * n_local]

    def normals(self, shape: Sequence[int], generator: torch.Generator, device: Any) -> torch.Tensor:
        """Standard normals of ``shape`` (rows first): this rank's rows of one global draw."""
        n_local = int(shape[0])
        z = torch.randn((n_local * self.world_size, *shape[1:]), generator=generator, device=device)
        return z[self.rank * n_local : (self.rank + 1) * n_local]

    # -- collectives ------------------------------------------------------------------------------

    @contextmanager
    def _collective(self, what: str) -> Iterator[None]:
        try:
            yield
        except RuntimeError as exc:  # gloo/NCCL errors (DistBackendError is a RuntimeError)
            if isinstance(exc, RankLostError):
                raise
            timeout = f"{self.timeout_s:.0f} s" if self.timeout_s else "the process group's"
            detail = " ".join(str(exc).split())[:300]
            raise RankLostError(
                f"rank {self.rank} of {self.world_size}: {what} failed: another rank died or did not "
                f"answer within {timeout} timeout; stopping this rank (resume every rank from rank 0's "
                f"last checkpoint). Backend said: {detail}"
            ) from exc

    def _wire(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` as the backend can send it (gloo: CPU; bool as uint8)."""
        if t.dtype == torch.bool:
            t = t.to(torch.uint8)
        if dist.get_backend() == "gloo" and t.device.type != "cpu":
            t = t.cpu()
        return t.contiguous()

    def all_reduce_sum_(self, tensors: Sequence[torch.Tensor], what: str = "all-reduce") -> None:
        """Sum ``tensors`` over the ranks in place, in flat buckets of at most :data:`BUCKET_BYTES`."""
        if not self.active or not tensors:
            return
        bucket: list[torch.Tensor] = []
        size = 0
        for t in tensors:
            bucket.append(t)
            size += t.numel() * t.element_size()
            if size >= BUCKET_BYTES:
                self._reduce_bucket(bucket, what)
                bucket, size = [], 0
        if bucket:
            self._reduce_bucket(bucket, what)

    def _reduce_bucket(self, bucket: list[torch.Tensor], what: str) -> None:
        dtype = bucket[0].dtype
        if any(t.dtype != dtype for t in bucket):  # mixed dtypes: one call per tensor
            for t in bucket:
                self._reduce_bucket([t], what)
            return
        flat = self._wire(torch.cat([t.reshape(-1) for t in bucket]))
        with self._collective(what):
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat = flat.to(bucket[0].device)
        pos = 0
        for t in bucket:
            t.copy_(flat[pos : pos + t.numel()].view_as(t))
            pos += t.numel()

    def all_reduce_gradients(
        self, params: Sequence[torch.nn.Parameter], extra: torch.Tensor | None = None
    ) -> None:
        """Sum the gradients of ``params`` (and ``extra``, e.g. the loss) over the ranks, in place.

        A parameter without a gradient on this rank (unused by its share) counts as zeros, so every
        rank sends the same buckets.
        """
        if not self.active:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        tensors = [p.grad for p in params]
        if extra is not None:
            tensors.append(extra)
        self.all_reduce_sum_(tensors, "gradient all-reduce")

    def max_int(self, value: int, what: str = "max") -> int:
        """The largest ``value`` over the ranks."""
        if not self.active:
            return int(value)
        t = torch.tensor([int(value)], dtype=torch.int64)
        with self._collective(what):
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

    def gather(self, t: torch.Tensor, dim: int = 0, what: str = "batch all-gather") -> torch.Tensor:
        """Concatenate every rank's ``t`` (same shape on every rank) along ``dim``, in rank order."""
        if not self.active:
            return t
        wire = self._wire(t)
        parts = [torch.empty_like(wire) for _ in range(self.world_size)]
        with self._collective(what):
            dist.all_gather(parts, wire)
        return torch.cat(parts, dim).to(device=t.device, dtype=t.dtype)

    def gather_objects(self, obj: Any, what: str = "object all-gather") -> list[Any]:
        """Every rank's picklable ``obj``, in rank order."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world_size
        with self._collective(what):
            dist.all_gather_object(out, obj)
        return out

    def broadcast_parameters(self, module: torch.nn.Module) -> None:
        """Copy rank 0's parameters and buffers to every rank (DDP does this at construction)."""
        if not self.active:
            return
        for t in [*module.parameters(), *module.buffers()]:
            wire = self._wire(t.data)
            with self._collective("parameter broadcast"):
                dist.broadcast(wire, src=0)
            if wire is not t.data:
                t.data.copy_(wire)

    def same_on_every_rank(self, obj: Any, name: str) -> None:
        """Raise :class:`ConfigError` unless ``obj`` pickles to the same bytes on every rank."""
        if not self.active:
            return
        mine = pickle.dumps(obj)
        for r, other in enumerate(self.gather_objects(mine, f"{name} check")):
            if other != mine:
                raise ConfigError(
                    f"rank {self.rank}: {name} differs from rank {r}'s; every rank must be started "
                    "with the same command line and settings"
                )

    def barrier(self, what: str = "barrier") -> None:
        """Wait for every rank."""
        if not self.active:
            return
        with self._collective(what):
            dist.barrier()
