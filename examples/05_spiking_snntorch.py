"""A spiking network (snntorch Leaky and Synaptic neurons) with event-driven low-rank layers.

Trained on BasicMotions: first densely through time (snntorch's spike surrogate), then with events
in the loop (braingate's threshold surrogate, learned thresholds, activity penalty). Spikes are
0/1, so a layer fed by spikes sends an event exactly when a neuron starts or stops firing.
Writes summary.json and the event run's Report (report.json, for ``python -m hwmaps map``) into
results/05_spiking_snntorch/ (quick/ with --quick).

    python examples/05_spiking_snntorch.py [--quick] [--out DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import snntorch as snn
import torch
import torch.nn.functional as F
from snntorch import surrogate
from torch import nn
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _data
import _outputs

import braingate as bg
from braingate.train.events_in_loop import rollout


def build(hidden: int) -> nn.Sequential:
    spike = surrogate.fast_sigmoid(slope=25)
    return nn.Sequential(
        bg.EventLinear(6, hidden, rank=6),
        snn.Leaky(beta=0.9, spike_grad=spike, init_hidden=True),
        bg.EventLinear(hidden, hidden, rank=16),
        snn.Synaptic(alpha=0.8, beta=0.9, spike_grad=spike, init_hidden=True),
        bg.EventLinear(hidden, 4, rank=4),
    )


def stepped(model: nn.Module, xs: torch.Tensor) -> torch.Tensor:
    """Dense execution stepped in time (the neurons keep state between steps)."""
    bg.reset(model)
    return torch.stack([model(x) for x in xs])


def main(argv: list[str] | None = None) -> dict:
    args = _outputs.parser(__doc__, "short training on part of the data (a smoke run)").parse_args(
        argv
    )
    out_dir = _outputs.output_dir("05_spiking_snntorch", args.quick, args.out)
    torch.manual_seed(0)
    torch.set_num_threads(1)  # small layers: threads only add overhead on a shared CPU
    d = _data.aeon_stream("BasicMotions")
    epochs, event_epochs, hidden = (30, 3, 32) if args.quick else (40, 15, 128)
    if args.quick:  # 40 steps of half the streams
        d.x_train, d.y_train, d.x_test, d.y_test = (
            d.x_train[:40, ::2],
            d.y_train[::2],
            d.x_test[:40, ::2],
            d.y_test[::2],
        )
    model = build(hidden)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in tqdm(range(epochs), desc="dense, through time", leave=False):
        loss = F.cross_entropy(stepped(model, d.x_train).mean(0), d.y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()
    acc = lambda out: float((out.mean(0).argmax(-1) == d.y_test).double().mean())  # noqa: E731
    dense_out, dense_rep = bg.simulate(model, d.x_test, mode="dense")

    for layer in model:
        if isinstance(layer, bg.EventLinear):
            layer.threshold, layer.latent_threshold = 0.05, 0.05
            layer.learn_thresholds()
    opt = torch.optim.Adam([
        {"params": [p for n, p in model.named_parameters() if "threshold" not in n], "lr": 1e-3},
        {"params": [p for n, p in model.named_parameters() if "threshold" in n], "lr": 0.05},
    ])  # fmt: skip
    for _ in tqdm(range(event_epochs), desc="events in the loop", leave=False):
        out, tape = rollout(model, d.x_train)
        loss = F.cross_entropy(out.mean(0), d.y_train) + tape.penalty()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for layer in model:
        if isinstance(layer, bg.EventLinear):
            layer.freeze_thresholds()
    event_out, report = bg.simulate(model, d.x_test, mode="event")
    print(report.summary())
    res = {"dense_accuracy": acc(dense_out), "event_accuracy": acc(event_out),
           "ratio": report.ratio(), "dense_ratio": dense_rep.ratio()}  # fmt: skip
    print(f"dense (stepped) accuracy {100 * res['dense_accuracy']:.1f} %, event-driven "
          f"{100 * res['event_accuracy']:.1f} % with {res['ratio']:.1f}x fewer synops than "
          f"dense")  # fmt: skip
    paths = [_outputs.write_json(out_dir / "summary.json", {"quick": args.quick, **res}),
             _outputs.write_json(out_dir / "report.json", report.to_dict())]  # fmt: skip
    _outputs.announce(out_dir, paths)
    return res


if __name__ == "__main__":
    main()
