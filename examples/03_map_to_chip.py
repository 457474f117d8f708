"""Map an event-driven network onto a neuromorphic chip and compare mapping methods.

1. Train a small MLP on sklearn digits (images revealed one row per step), convert it to
   EventLinear layers (truncated SVD, 4 gate blocks, thresholds) and run it in event mode.
2. ``hwmaps.extract`` turns the model and the measured trace into U/V factor blocks.
3. Map it on TrueNorth with every method, estimate energy (pJ per step, J per sample) and
   latency, write a report, the run's Report and Network JSON, and plots (energy, core
   utilisation and link traffic of the ``traffic`` and ``sequential`` placements).

    python examples/03_map_to_chip.py [--quick] [--chip truenorth] [--out DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _outputs
from _data import digits, row_frames

import braingate as bg
import hwmaps
from hwmaps import plot, report


def train(x: torch.Tensor, y: torch.Tensor, hidden: int = 256, epochs: int = 10) -> nn.Module:
    """A two-hidden-layer ReLU MLP trained with Adam on full frames."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(x.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                          nn.ReLU(), nn.Linear(hidden, 10))  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model


def main(argv: list[str] | None = None) -> dict:
    ap = _outputs.parser(__doc__, "smaller network, 3 epochs (a smoke run)")
    ap.add_argument("--chip", default="truenorth", choices=hwmaps.chips.names())
    args = ap.parse_args(argv)
    out = _outputs.output_dir("03_map_to_chip", args.quick, args.out)
    torch.set_num_threads(1)  # small MLP: threads only add contention on a shared CPU

    d = digits()
    frames_tr, frames_te = row_frames(d.x_train), row_frames(d.x_test)
    hidden, epochs = (128, 3) if args.quick else (256, 10)
    model = train(frames_tr[-1], d.y_train, hidden, epochs)  # the last frame: the whole image
    ev = bg.convert(model, rank=32, blocks=4, threshold=0.1, latent_threshold=0.1)
    ys, rep = bg.simulate(ev, frames_te, mode="event")
    acc = (ys[-1].argmax(-1) == d.y_test).float().mean().item()
    print(f"event-mode test accuracy {acc:.3f}; synops {rep.total['synops']:.0f} per sample "
          f"vs dense {rep.total['dense_synops']:.0f}")  # fmt: skip

    net = hwmaps.extract(ev, rep, name="digits-mlp")
    chip = hwmaps.chips.get(args.chip)
    print(f"{net.name}: {len(net.blocks)} factor blocks, {net.synapses} synapses, "
          f"{net.neurons} neurons -> {chip.name} ({chip.cores} cores)")  # fmt: skip
    placements, energies = {}, {}
    for method in hwmaps.methods.names():
        placements[method] = hwmaps.map_network(net, chip, method=method, seed=0)
        energies[method] = hwmaps.estimate(placements[method])
    print(report.markdown(energies, f"{net.name} on {chip.name}"))
    noc = {m: e.breakdown["noc"] for m, e in energies.items()}
    if noc["sequential"] > 0:
        print(f"traffic / sequential NoC energy: {noc['traffic'] / noc['sequential']:.2f}")

    paths = report.write(out, placements, energies, f"{net.name} on {chip.name}")
    paths += [_outputs.write_json(out / "run_report.json", rep.to_dict()),
              _outputs.write_json(out / "network.json", net.to_dict()),
              plot.breakdown(energies, out / "energy_breakdown.png"),
              plot.utilisation(placements["traffic"], out / "utilisation_traffic.png"),
              plot.links(placements["traffic"], out / "links_traffic.png"),
              plot.links(placements["sequential"], out / "links_sequential.png")]  # fmt: skip
    _outputs.announce(out, paths)
    print(f"map the run again: python -m hwmaps compare {out / 'run_report.json'} --chip loihi")
    return {"accuracy": acc, "ratio": rep.ratio(), "noc_pj_per_step": {
        m: e.breakdown["noc"] * 1e12 for m, e in energies.items()}}  # fmt: skip


if __name__ == "__main__":
    main()
