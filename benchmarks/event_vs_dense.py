"""One layer, event vs dense: per-step wall clock and synops over input activity.

Stream: at every step a fraction ``activity`` of the input coordinates jumps by ±1 (θ = 0.5, so
each jump is one input event). The latent threshold θ_z is tuned on a pilot run so that about
``--latent-target`` of the active rank units fire per step (it is reported, with the output error
it costs). Methods (batch B, no autograd), each timed through its module call and through its fastest
public per-step interface: ``event`` (EventLinear in event mode; fast: ``bg.sim.compile_events``),
``lowrank`` (EventLinear in dense mode, two GEMMs; fast: ``functional.lowrank_linear``), ``auto``
(EventLinear in auto mode, calibrated cost model) and ``linear`` (full nn.Linear; fast:
``F.linear``). Methods are timed in alternating rounds (best round), so load from other processes
hits all of them alike.

    python benchmarks/event_vs_dense.py [--quick] [--out results/event_vs_dense.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved_seconds, machine, table, write_json

import braingate as bg
from braingate.functional import lowrank_linear

THETA = 0.5


def stream(T: int, B: int, n: int, activity: float, gen: torch.Generator) -> torch.Tensor:
    k = max(1, round(activity * n))
    xs = torch.zeros(T, B, n)
    x = torch.randn(B, n, generator=gen)
    for t in range(T):
        idx = torch.rand(B, n, generator=gen).argsort(-1)[:, :k]
        sign = torch.where(torch.rand(B, k, generator=gen) < 0.5, -1.0, 1.0)
        x = x.scatter_add(1, idx, sign)
        xs[t] = x
    return xs


def tune_latent_threshold(layer: bg.EventLinear, xs: torch.Tensor, target: float) -> float:
    """Smallest θ_z (bisection, bracket grown as needed) whose pilot latent activity ≤ target."""

    def rate(th: float) -> float:
        layer.latent_threshold = th
        layer.reset()
        fired = 0.0
        for t in range(xs.shape[0]):
            layer(xs[t])
            if t >= 2:
                fired += float(layer._runner.last_counts[:, 1].mean())
        return fired / ((xs.shape[0] - 2) * layer.rank)

    lo, hi = 0.0, 1.0
    while rate(hi) > target and hi < 1e4:
        lo, hi = hi, hi * 4
    for _ in range(10):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if rate(mid) <= target else (mid, hi)
    return hi


def run_case(n: int, R: int, B: int, activity: float, T: int, latent_target: float) -> dict:
    gen = torch.Generator().manual_seed(n + R + B)
    lin = torch.nn.Linear(n, n)
    layer = bg.EventLinear.from_linear(lin, R, threshold=THETA)
    xs = stream(T, B, n, activity, gen)
    layer.execution = "event"
    thz = tune_latent_threshold(layer, xs[: min(T, 40)], latent_target)
    layer.latent_threshold = thz

    chain = bg.sim.compile_events(layer)
    steps = list(xs.unbind(0))  # pre-split: the harness's indexing is not part of any method

    def stepper(mode, call=layer):
        def f(i):
            if i == 0:
                layer.execution = mode
                layer.reset()
            call(steps[i % T])

        return f

    W, b = lin.weight.detach(), lin.bias.detach()
    times = interleaved_seconds(
        {
            "event": stepper("event"),
            "event_fast": stepper("event", chain),
            "lowrank": stepper("dense"),
            "lowrank_fast": lambda i: lowrank_linear(steps[i % T], layer.U, layer.s, layer.V,
                                                     layer.bias),
            "auto": stepper("auto"),
            "linear": lambda i: lin(steps[i % T]),
            "linear_fast": lambda i: torch.nn.functional.linear(steps[i % T], W, b),
        },
        T,
        rounds=5 if n < 4096 else 3,
    )  # fmt: skip
    row = {"n": n, "R": R, "batch": B, "activity": activity, "latent_threshold": thz}
    # event counts and error of one full pass
    layer.execution = "event"
    layer.reset()
    ie = le = syn = 0.0
    err = 0.0
    for t in range(T):
        y = layer(xs[t])
        c = layer._runner.last_counts.mean(0)
        ie, le, syn = ie + c[0], le + c[1], syn + c[2]
        if t % 10 == 0:
            layer.execution = "dense"
            ref = layer(xs[t])
            layer.execution = "event"
            err = max(err, float((y - ref).abs().max() / ref.abs().max()))
    row.update(
        input_activity=ie / (T * n),
        latent_activity=le / (T * R),
        rel_output_error=err,
        synops_event=syn / T,
        synops_lowrank=2 * n * R,
        synops_linear=n * n,
    )
    row.update({f"us_{k}": v * 1e6 for k, v in times.items()})
    row["speedup_vs_linear"] = times["linear"] / times["event"]
    row["speedup_vs_lowrank"] = times["lowrank"] / times["event"]
    row["fast_speedup_vs_linear"] = times["linear_fast"] / times["event_fast"]
    row["fast_speedup_vs_lowrank"] = times["lowrank_fast"] / times["event_fast"]
    row["auto_over_lowrank"] = times["auto"] / times["lowrank"]
    return row


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small grid, few steps (smoke test)")
    p.add_argument("--out", default="results/event_vs_dense.json")
    p.add_argument("--latent-target", type=float, default=0.10)
    p.add_argument("--activities", type=float, nargs="*", help="only these input activities")
    a = p.parse_args(argv)
    torch.set_grad_enabled(False)
    bg.calibrate()
    if a.quick:
        grid = [(256, 32, 1, act) for act in (0.05, 1.0)]
        T = 30
    else:
        acts = a.activities or (0.005, 0.01, 0.02, 0.05, 0.10, 0.25, 0.50, 1.0)
        grid = [(n, R, B, act) for n in (256, 1024, 4096) for R in (32, 128) for B in (1, 16)
                for act in acts]  # fmt: skip
        T = 150
    rows = []
    for n, R, B, act in grid:
        steps = T if n < 4096 else max(20, T // 6)
        rows.append(run_case(n, R, B, act, steps, a.latent_target))
        r = rows[-1]
        print(f"n={n} R={R} B={B} act={act:.3f}: event {r['us_event']:.1f}us "
              f"(fast {r['us_event_fast']:.1f}) lowrank {r['us_lowrank']:.1f}us linear "
              f"{r['us_linear']:.1f}us auto {r['us_auto']:.1f}us", flush=True)  # fmt: skip
    cols = ["n", "R", "batch", "activity", "latent_activity", "us_event", "us_event_fast",
            "us_lowrank", "us_auto", "us_linear", "speedup_vs_linear", "speedup_vs_lowrank",
            "fast_speedup_vs_linear", "fast_speedup_vs_lowrank", "auto_over_lowrank",
            "rel_output_error"]  # fmt: skip
    fmt = {c: "{:.2f}" for c in cols}
    fmt.update(n="{}", R="{}", batch="{}", activity="{:.3f}", latent_activity="{:.3f}",
               rel_output_error="{:.4f}")  # fmt: skip
    print(table(rows, cols, fmt))
    payload = {"machine": machine(), "theta": THETA, "latent_target": a.latent_target, "rows": rows}
    write_json(a.out, payload)
    print(f"wrote {a.out}")
    return payload


if __name__ == "__main__":
    main()
