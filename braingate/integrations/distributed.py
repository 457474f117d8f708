"""Data-parallel training of braingate models with ``torch.nn.parallel.DistributedDataParallel``.

EventLinear trains on its dense path (``U``, ``s``, ``V``, ``bias`` are ordinary parameters), so
DDP's gradient all-reduce applies unchanged. What DDP does not see is the layer configuration that
lives outside parameters and buffers — thresholds, block gates, execution mode — so replicas that
were configured differently would silently compute different functions. :func:`wrap_ddp` checks
that configuration is identical on every rank before wrapping. :func:`run_ddp` starts local
worker processes (CPU ``gloo`` by default) for tests and single-machine runs.
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn

from braingate.nn.base import event_modules

__all__ = ["config_fingerprint", "run_ddp", "wrap_ddp"]


def config_fingerprint(model: nn.Module) -> str:
    """A hash of every event layer's non-parameter configuration (thresholds, gate, execution)."""
    h = hashlib.sha256()
    for name, m in event_modules(model).items():
        h.update(name.encode())
        h.update(m.execution.encode())
        gate = m.gate_units() if callable(getattr(m, "gate_units", None)) else None
        values = [getattr(m, t) for t in m.threshold_names] + ([] if gate is None else [gate])
        for t in values:
            t = torch.as_tensor(t).detach().to("cpu", torch.float64).contiguous()
            h.update(t.numpy().tobytes())
    return h.hexdigest()


def wrap_ddp(model: nn.Module, **ddp_kwargs) -> nn.parallel.DistributedDataParallel:
    """Wrap ``model`` in DDP after checking that its braingate configuration agrees on all ranks.

    Args:
        model: the replica on this rank (same initial parameters everywhere: DDP broadcasts rank
            0's parameters and buffers at construction).
        **ddp_kwargs: passed to ``DistributedDataParallel`` (e.g. ``device_ids``).

    Returns:
        the wrapped model.

    Raises:
        RuntimeError: no process group is initialised.
        ValueError: an event layer is not in ``"dense"`` execution (the event path keeps
            per-stream state and is not a training path), or configurations differ across ranks.
    """
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("wrap_ddp needs torch.distributed.init_process_group(...) first")
    for name, m in event_modules(model).items():
        if m.execution != "dense":
            raise ValueError(f"layer {name!r} has execution={m.execution!r}; train with "
                             "execution='dense' (bg.execution(model, 'dense'))")  # fmt: skip
    mine = config_fingerprint(model)
    every = [None] * dist.get_world_size()
    dist.all_gather_object(every, mine)
    if len(set(every)) > 1:
        bad = [r for r, f in enumerate(every) if f != every[0]]
        raise ValueError(f"braingate configuration (thresholds / gates / execution) differs from "
                         f"rank 0 on ranks {bad}; configure every replica the same way")  # fmt: skip
    return nn.parallel.DistributedDataParallel(model, **ddp_kwargs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(
    rank: int, world: int, port: int, backend: str, fn: Callable, args: tuple, queue
) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group(backend, rank=rank, world_size=world)
    try:
        buf = io.BytesIO()  # serialised: shared-memory tensors die with the worker
        torch.save(fn(rank, world, *args), buf)
        queue.put((rank, buf.getvalue()))
    finally:
        dist.destroy_process_group()


def run_ddp(fn: Callable, world_size: int = 2, *, backend: str = "gloo", args: tuple = ()) -> list:
    """Run ``fn(rank, world_size, *args)`` in ``world_size`` local processes with a process group.

    ``fn`` must be importable by the workers (a module-level function; processes are spawned).

    Returns:
        the return values of ``fn``, ordered by rank (they must be picklable).
    """
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size={world_size!r} must be an int >= 1")
    import queue as _queue

    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    results_q = ctx.Queue()
    port = _free_port()
    procs = mp.start_processes(_entry, args=(world_size, port, backend, fn, args, results_q),
                               nprocs=world_size, join=False, start_method="spawn")  # fmt: skip
    # Read results while the workers live (a full pipe would block their exit); join() re-raises
    # a worker's exception.
    results: dict = {}
    done = False
    while len(results) < world_size:
        try:
            rank, blob = results_q.get(timeout=0.5)
            results[rank] = torch.load(io.BytesIO(blob), weights_only=False)
        except _queue.Empty:
            if done:
                raise RuntimeError(f"workers exited without results for ranks "
                                   f"{sorted(set(range(world_size)) - set(results))}") from None  # fmt: skip
            done = procs.join(timeout=0)
    while not procs.join():
        pass
    return [results[r] for r in range(world_size)]
