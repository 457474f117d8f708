"""One layer, event vs dense: per-step wall clock and synops over input activity.

Stream: at every step a fraction ``activity`` of the input coordinates jumps by ±1 (θ = 0.5, so
each jump is one input event). The latent threshold θ_z is tuned on a pilot run so that about
``--latent-target`` of the active rank units fire per step (it is reported, with the output error
it costs). Methods, all called the same way (one module call per step, batch B, no autograd):
``event`` (EventLinear, event mode), ``lowrank`` (EventLinear, dense mode: two GEMMs), ``auto``
(EventLinear, auto mode, calibrated cost model) and ``linear`` (full nn.Linear).

    python benchmarks/event_vs_dense.py [--quick] [--out results/event_vs_dense.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, per_call_seconds, table, write_json

import braingate as bg

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
    """Smallest θ_z (bisection) whose pilot latent activity is ≤ target."""
    lo, hi = 0.0, 1.0
    for _ in range(14):
        mid = (lo + hi) / 2
        layer.latent_threshold = mid
        layer.reset()
        fired = 0.0
        for t in range(xs.shape[0]):
            layer(xs[t])
            if t >= 2:
                fired += float(layer._runner.last_counts[:, 1].mean())
        rate = fired / ((xs.shape[0] - 2) * layer.rank)
        lo, hi = (lo, mid) if rate <= target else (mid, hi)
    return hi


def run_case(n: int, R: int, B: int, activity: float, T: int, latent_target: float) -> dict:
    gen = torch.Generator().manual_seed(n + R + B)
    lin = torch.nn.Linear(n, n)
    layer = bg.EventLinear.from_linear(lin, R, threshold=THETA)
    xs = stream(T, B, n, activity, gen)
    layer.execution = "event"
    thz = tune_latent_threshold(layer, xs[: min(T, 40)], latent_target)
    layer.latent_threshold = thz

    def stepper(mode):
        def f(i):
            if i == 0:
                layer.reset()
            layer(xs[i % T])

        layer.execution = mode
        return f

    row = {"n": n, "R": R, "batch": B, "activity": activity, "latent_threshold": thz}
    t_event = per_call_seconds(stepper("event"), T)
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
    t_low = per_call_seconds(stepper("dense"), T)
    t_auto = per_call_seconds(stepper("auto"), T)
    t_lin = per_call_seconds(lambda i: lin(xs[i % T]), T)
    row.update(
        input_activity=ie / (T * n),
        latent_activity=le / (T * R),
        rel_output_error=err,
        us_event=t_event * 1e6,
        us_lowrank=t_low * 1e6,
        us_auto=t_auto * 1e6,
        us_linear=t_lin * 1e6,
        synops_event=syn / T,
        synops_lowrank=2 * n * R,
        synops_linear=n * n,
    )
    row["speedup_vs_linear"] = t_lin / t_event
    row["speedup_vs_lowrank"] = t_low / t_event
    row["auto_over_lowrank"] = t_auto / t_low
    return row


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small grid, few steps (smoke test)")
    p.add_argument("--out", default="results/event_vs_dense.json")
    p.add_argument("--latent-target", type=float, default=0.10)
    a = p.parse_args(argv)
    torch.set_grad_enabled(False)
    bg.calibrate()
    if a.quick:
        grid = [(256, 32, 1, act) for act in (0.05, 1.0)]
        T = 30
    else:
        acts = (0.005, 0.01, 0.02, 0.05, 0.10, 0.25, 0.50, 1.0)
        grid = [(n, R, B, act) for n in (256, 1024, 4096) for R in (32, 128) for B in (1, 16)
                for act in acts]  # fmt: skip
        T = 150
    rows = []
    for n, R, B, act in grid:
        steps = T if n < 4096 else max(20, T // 3)
        rows.append(run_case(n, R, B, act, steps, a.latent_target))
        r = rows[-1]
        print(f"n={n} R={R} B={B} act={act:.3f}: event {r['us_event']:.1f}us "
              f"lowrank {r['us_lowrank']:.1f}us linear {r['us_linear']:.1f}us "
              f"auto {r['us_auto']:.1f}us", flush=True)  # fmt: skip
    cols = ["n", "R", "batch", "activity", "latent_activity", "us_event", "us_lowrank",
            "us_auto", "us_linear", "speedup_vs_linear", "speedup_vs_lowrank",
            "auto_over_lowrank", "rel_output_error"]  # fmt: skip
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
