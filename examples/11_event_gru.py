"""A delta GRU on a real sensor stream: train, convert, calibrate, run event-driven, map to a chip.

1. Train a torch ``nn.GRU`` + ``nn.Linear`` classifier on aeon's BasicMotions (smart-watch
   accelerometer and gyroscope, 6 channels, 100 steps, 4 activities).
2. Convert it: ``EventGRU.from_gru`` (the hidden factor at rank 16) and ``EventLinear.from_linear``
   in an ``nn.Sequential`` (``return_state=False``: the GRU passes its output on).
3. ``bg.calibrate_thresholds`` picks θ, θ_h, θ_z per layer on the training split (decision at the
   last step); ``bg.simulate`` runs the test split densely and event-driven and counts synops.
4. ``compile_events`` steps the whole network as one compiled call per step; its per-step time at
   batch 1 against torch stepping ``nn.GRUCell`` + ``nn.Linear``.
5. ``hwmaps`` maps the measured traffic onto Loihi (the hidden factor reads the layer's own
   hidden units: recurrent self-traffic).

    python examples/11_event_gru.py [--quick] [--out DIR]
"""

from __future__ import annotations

import time
import warnings

import _outputs
import torch
from torch import nn

import braingate as bg
import hwmaps
from braingate.datasets.sensors import basic_motions
from braingate.nn.event_rnn import EventGRU
from braingate.sim.fused import compile_events


def train(d, hidden: int, epochs: int) -> tuple[nn.GRU, nn.Linear]:
    torch.manual_seed(0)
    gru, head = nn.GRU(d.features, hidden), nn.Linear(hidden, d.classes)
    opt = torch.optim.Adam([*gru.parameters(), *head.parameters()], lr=1e-2)
    for _ in range(epochs):
        for idx in torch.randperm(d.x_train.shape[1]).split(25):
            out, _ = gru(d.x_train[:, idx])
            loss = nn.functional.cross_entropy(head(out[-1]), d.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return gru, head


def per_step_us(step, xs: torch.Tensor, reset) -> float:
    """Best of three passes over the streams ``xs`` (T, N, n), one sample at a time."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for b in range(xs.shape[1]):
            reset()
            for x in xs[:, b : b + 1]:
                step(x)
        best = min(best, (time.perf_counter() - t0) / (xs.shape[0] * xs.shape[1]))
    return best * 1e6


def main(argv: list[str] | None = None) -> dict:
    args = _outputs.parser(__doc__, "fewer epochs and timing streams").parse_args(argv)
    out_dir = _outputs.output_dir("11_event_gru", args.quick, args.out)
    torch.set_num_threads(1)
    d = basic_motions()
    H = 32
    gru, head = train(d, H, 30 if args.quick else 100)
    with torch.no_grad():
        out, _ = gru(d.x_test)
        acc_torch = float((head(out[-1]).argmax(-1) == d.y_test).double().mean())

    net = nn.Sequential(
        EventGRU.from_gru(gru, (d.features, 16), return_state=False),
        bg.EventLinear.from_linear(head, d.classes),
    )
    with warnings.catch_warnings():  # 40 recordings cannot resolve a 1-point tolerance: strict
        warnings.simplefilter("ignore")
        cal = bg.calibrate_thresholds(net, d.x_train, d.y_train, readout="last", tolerance=0.01,
                                      max_evals=40 if args.quick else 120)  # fmt: skip
    with torch.no_grad():
        ys_dense, _ = bg.simulate(net, d.x_test, mode="dense")
        ys_event, rep = bg.simulate(net, d.x_test, mode="event")
    acc = {m: float((y[-1].argmax(-1) == d.y_test).double().mean())
           for m, y in (("dense", ys_dense), ("event", ys_event))}  # fmt: skip
    T = d.x_test.shape[0]
    dense_ops = (3 * H * (d.features + H) + H * d.classes) * T  # the torch GRU + head
    print(f"BasicMotions test accuracy: torch GRU {acc_torch:.3f}, converted dense "
          f"{acc['dense']:.3f}, event {acc['event']:.3f}")  # fmt: skip
    print(f"thresholds {cal.thresholds}")
    print(f"synops per sample: event {rep.total['synops']:.0f}, dense GRU + head {dense_ops} "
          f"({dense_ops / rep.total['synops']:.1f}x fewer); gate nonlinearity work "
          f"(neuron_ops) {rep.total['neuron_ops']:.0f}")  # fmt: skip

    xs = d.x_test[:, : 4 if args.quick else 16]
    cell = nn.GRUCell(d.features, H)
    with torch.no_grad():
        for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, k).copy_(getattr(gru, k + "_l0"))
        h = {"h": torch.zeros(1, H)}

        def torch_step(x):
            h["h"] = cell(x, h["h"])
            return head(h["h"])

        def torch_reset():
            h["h"] = torch.zeros(1, H)

        with bg.execution(net, "event"):
            chain = compile_events(net)
            us_event = per_step_us(chain, xs, chain.reset)
        us_torch = per_step_us(torch_step, xs, torch_reset)
    print(f"per step at batch 1: compiled event network {us_event:.1f} us "
          f"({chain.compiled_segments} compiled call), torch GRUCell + Linear {us_torch:.1f} us "
          f"({us_torch / us_event:.1f}x)")  # fmt: skip

    network = hwmaps.extract(net, rep, name="basicmotions-gru")
    placement = hwmaps.map_network(network, hwmaps.chips.get("loihi"), method="traffic", seed=0)
    energy = hwmaps.estimate(placement)
    per_sample = energy.per_sample_j()["total"]
    print(f"Loihi: {len(network.blocks)} blocks, {network.synapses} synapses, "
          f"{energy.total_j * 1e12:.0f} pJ per step, {per_sample * 1e9:.1f} nJ per sample "
          f"(static included)")  # fmt: skip
    res = {"acc_torch": acc_torch, **{f"acc_{k}": v for k, v in acc.items()},
           "ratio": dense_ops / rep.total["synops"], "us_event": us_event,
           "us_torch": us_torch, "energy_j_per_sample": per_sample}  # fmt: skip
    paths = [_outputs.write_json(out_dir / "report.json", rep.to_dict()),
             _outputs.write_json(out_dir / "summary.json", res)]  # fmt: skip
    _outputs.announce(out_dir, paths)
    return res


if __name__ == "__main__":
    main()
