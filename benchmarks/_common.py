"""Shared helpers of the benchmark scripts: timing, JSON output, tables."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch


def per_call_seconds(fn, reps: int, repeats: int = 3) -> float:
    """Best-of-``repeats`` mean seconds per call of ``fn(i)`` for ``i`` in ``range(reps)``."""
    fn(0)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(reps):
            fn(i)
        best = min(best, (time.perf_counter() - t0) / reps)
    return best


def interleaved_seconds(fns: dict, reps: int, rounds: int = 5) -> dict:
    """Per-call seconds of each ``fn(i)``, timed in alternating rounds; the best round counts.

    Alternating the methods inside each round means a burst of load from other processes hits
    all of them alike, so the ratios within one run stay meaningful on a shared machine.
    """
    best = dict.fromkeys(fns, float("inf"))
    for fn in fns.values():
        fn(0)
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for i in range(reps):
                fn(i)
            best[name] = min(best[name], (time.perf_counter() - t0) / reps)
    return best


def machine() -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
    }


def write_json(path: str | Path, payload: dict) -> Path:
    """Write ``payload`` as JSON atomically (a temporary file in the same folder, then rename):
    an interrupted run never leaves a half-written result."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(payload, indent=1))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def table(rows: list[dict], cols: list[str], fmt: dict | None = None) -> str:
    fmt = fmt or {}
    cells = [[fmt.get(c, "{}").format(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    line = lambda xs: "  ".join(x.rjust(w) for x, w in zip(xs, widths))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(x) for x in cells])
