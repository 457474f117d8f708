"""A snntorch network against the braingate event network converted from its weights.

snntorch: ``Linear(64,1024) → Leaky → Linear(1024,1024) → Leaky → Linear(1024,10) → Leaky``,
``init_hidden=True``. braingate: the same weights factored by truncated SVD (rank 128, capped at
min(n, m)) into :class:`EventLinear` layers in event mode, with :class:`braingate.nn.LIF` neurons
that follow ``Leaky``'s update exactly. Input: Bernoulli spikes at ``--rate`` (5 %), batch 1.
Reported: per-step wall clock (no autograd) of snntorch, of the braingate network called module by
module, and of the same network through ``bg.sim.compile_events`` (one compiled call per step;
checked to give identical outputs), the speedups, synops,
and the agreement of output (and hidden) spikes. Two weight sets: snntorch's random init (full
rank: truncation to 128 loses most of its energy) and a trained-like spectrum (weights whose
singular values decay, as trained layers' do; rank-128 error ≈ a few %).

    python benchmarks/snn_vs_snntorch.py [--quick] [--out results/snn_vs_snntorch.json]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import snntorch as snn
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, table, write_json

import braingate as bg
from braingate.nn import LIF

SIZES = (64, 1024, 1024, 10)


def snntorch_net(seed: int, spectrum: str) -> nn.Sequential:
    torch.manual_seed(seed)
    layers = []
    for n, m in itertools.pairwise(SIZES):
        lin = nn.Linear(n, m)
        if spectrum == "decaying":
            with torch.no_grad():  # singular values decaying like 1/(1 + i/16), same Frobenius norm
                u, _, vh = torch.linalg.svd(lin.weight, full_matrices=False)
                sv = 1.0 / (1.0 + torch.arange(u.shape[1]) / 16.0)
                w = (u * sv) @ vh
                lin.weight.copy_(w * lin.weight.norm() / w.norm() * 3.0)
        layers += [lin, snn.Leaky(beta=0.9, threshold=1.0, init_hidden=True)]
    return nn.Sequential(*layers)


def braingate_net(ref: nn.Sequential, rank: int, latent_threshold: float) -> nn.Sequential:
    mods = []
    for mod in ref:
        if isinstance(mod, nn.Linear):
            r = min(rank, mod.in_features, mod.out_features)
            mods.append(bg.EventLinear.from_linear(mod, r, latent_threshold=latent_threshold))
            size = mod.out_features
        else:
            mods.append(LIF.from_snntorch(mod, size))
    net = nn.Sequential(*mods)
    bg.execution(net, "event")
    return net


def run(
    net: nn.Sequential, step, xs: torch.Tensor, probe: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs and the hidden spikes of the module at index ``probe`` over the stream."""
    hidden = []
    hook = net[probe].register_forward_hook(lambda m, i, o: hidden.append(o))
    bg.reset(net)
    outs = [step(xs[t]) for t in range(xs.shape[0])]
    hook.remove()
    if not hidden:  # a fused chain does not call the modules: compare outputs only
        return torch.stack(outs), torch.stack(outs)
    return torch.stack(outs), torch.stack(hidden)


def timed(steppers: dict, xs: torch.Tensor, rounds: int = 3) -> dict:
    """Seconds per step of each (net, step) pair, alternating in rounds (best round counts)."""
    best = dict.fromkeys(steppers, float("inf"))
    for _ in range(rounds):
        for name, (net, step) in steppers.items():
            bg.reset(net)
            t0 = time.perf_counter()
            for t in range(xs.shape[0]):
                step(xs[t])
            best[name] = min(best[name], (time.perf_counter() - t0) / xs.shape[0])
    return best


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--rate", type=float, default=0.05)
    p.add_argument("--rank", type=int, default=128)
    p.add_argument("--out", default="results/snn_vs_snntorch.json")
    a = p.parse_args(argv)
    torch.set_grad_enabled(False)
    T = 40 if a.quick else 300
    gen = torch.Generator().manual_seed(0)
    xs = (torch.rand(T, 1, SIZES[0], generator=gen) < a.rate).float()
    rows = []
    for spectrum in ("random_init", "decaying"):
        ref = snntorch_net(0, spectrum)
        y_ref, h_ref = run(ref, ref, xs, probe=3)
        for thz in (0.0, 0.05):
            net = braingate_net(ref, a.rank, thz)
            y, h = run(net, net, xs, probe=3)
            chain = bg.sim.compile_events(net)
            y_chain, _ = run(net, chain, xs, probe=3)
            if not torch.equal(y_chain, y):
                raise RuntimeError("the fused chain and module stepping disagree")
            t = timed({"snntorch": (ref, ref), "modules": (net, net), "chain": (net, chain)}, xs)
            _, rep = bg.simulate(net, xs, mode="event")
            rows.append({
                "weights": spectrum,
                "latent_threshold": thz,
                "us_snntorch": t["snntorch"] * 1e6,
                "us_braingate_modules": t["modules"] * 1e6,
                "us_braingate": t["chain"] * 1e6,
                "speedup_modules": t["snntorch"] / t["modules"],
                "speedup": t["snntorch"] / t["chain"],
                "out_spike_agreement": float((y == y_ref).float().mean()),
                "hidden_spike_agreement": float((h == h_ref).float().mean()),
                "out_spikes_ref": float(y_ref.sum()),
                "out_spikes": float(y.sum()),
                "hidden_spikes_ref": float(h_ref.sum()),
                "synops_per_step": rep.total["synops"] / T,
                "dense_synops_per_step": rep.total["dense_synops"] / T,
                "svd_error_l2": net[2].approx_error,
            })  # fmt: skip
            r = rows[-1]
            print(f"{spectrum} θz={thz}: snntorch {r['us_snntorch']:.0f}us braingate "
                  f"{r['us_braingate']:.0f}us ({r['speedup']:.1f}x, modules "
                  f"{r['speedup_modules']:.1f}x), out agreement "
                  f"{r['out_spike_agreement']:.3f}", flush=True)  # fmt: skip
    cols = ["weights", "latent_threshold", "us_snntorch", "us_braingate_modules",
            "us_braingate", "speedup_modules", "speedup", "out_spike_agreement",
            "hidden_spike_agreement", "out_spikes_ref", "hidden_spikes_ref", "synops_per_step",
            "dense_synops_per_step", "svd_error_l2"]  # fmt: skip
    fmt = {c: "{:.2f}" for c in cols}
    fmt.update(weights="{}", out_spike_agreement="{:.3f}", hidden_spike_agreement="{:.3f}",
               synops_per_step="{:.0f}", dense_synops_per_step="{:.0f}", svd_error_l2="{:.3f}",
               out_spikes_ref="{:.0f}", hidden_spikes_ref="{:.0f}")  # fmt: skip
    print(table(rows, cols, fmt))
    payload = {"machine": machine(), "rate": a.rate, "rank": a.rank, "steps": T, "rows": rows}
    write_json(a.out, payload)
    print(f"wrote {a.out}")
    return payload


if __name__ == "__main__":
    main()
