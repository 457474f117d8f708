"""An event-driven CNN on saccade digits: convert, calibrate, run compiled, map onto Speck.

Saccade digits are sklearn's digits moved along the N-MNIST saccade path (three saccades over
a static digit, ``braingate.datasets.saccade``). A small dense CNN is trained on single frames;
``bg.convert`` factors its convolutions and its head (truncated SVD, BatchNorm folded if any),
``bg.calibrate_thresholds`` picks the thresholds for at most a 1-point accuracy drop, and the
event CNN runs over the test streams: ``bg.simulate`` counts every layer's synops, and
``compile_events`` steps the whole CNN (convs, ReLUs, pools, flatten, head) as one compiled call
per frame. Its Report then goes to hwmaps: channel-space blocks for a mesh chip, and Speck's
conv cores (sinabs' memory rules).

    python examples/10_event_cnn.py [--quick] [--out DIR]
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _outputs

import braingate as bg
import braingate.conv_dense  # dense convs counted as NeuroBench does
import braingate.convert_conv  # Conv1d / Conv2d converters
import hwmaps
import hwmaps.extract_conv as hwconv
from braingate.datasets.saccade import saccade_digits
from braingate.sim.fused import compile_events


def main(argv: list[str] | None = None) -> dict:
    args = _outputs.parser(__doc__, "400 digits, short training").parse_args(argv)
    out = _outputs.output_dir("10_event_cnn", args.quick, args.out)
    torch.manual_seed(0)
    torch.set_num_threads(1)

    # 1. Streams (T, B, 1, 28, 28), time first; a separate test split.
    data = saccade_digits(n=400 if args.quick else None, steps_per_saccade=10)
    xs, ys, xt, yt = data
    print(f"train {tuple(xs.shape)}, test {tuple(xt.shape)} (frames, streams, C, H, W)")

    # 2. A dense CNN trained on single frames (the dense path folds time into the batch).
    dense = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 10),
    )  # fmt: skip
    opt = torch.optim.Adam(dense.parameters(), 2e-3)
    for _ in range(6):
        for idx in torch.randperm(xs.shape[1]).split(32):
            f = torch.randint(0, xs.shape[0], (8,))
            loss = F.cross_entropy(dense(xs[f][:, idx].flatten(0, 1)), ys[idx].repeat(8))
            opt.zero_grad()
            loss.backward()
            opt.step()
    dense.eval()

    # 3. Convert (low-rank convs + head) and calibrate the thresholds on training streams.
    net = bg.convert(copy.deepcopy(dense), rank={"0": 8, "3": 16, "7": 10})
    print("converted:", {k: (v["type"], v["rank"]) for k, v in net.conversion_report.items()})
    cal = bg.calibrate_thresholds(net, xs[:, :256], ys[:256], tolerance=0.01, readout="mean",
                                  max_evals=20 if args.quick else 60)  # fmt: skip

    # 4. Accuracy and synops, every layer counted (simulate), dense CNN beside it.
    acc = lambda o: float((o.mean(0).argmax(-1) == yt).double().mean())  # noqa: E731
    ys_dense, rep_dense = bg.simulate(dense, xt, mode="event")
    ys_event, rep = bg.simulate(net, xt, mode="event")
    print(rep.summary())
    res = {
        "acc_dense": acc(ys_dense), "acc_event": acc(ys_event),
        "ratio_vs_dense_macs": rep.total["dense_synops"] / rep.total["synops"],
        "ratio_vs_dense_neurobench": rep_dense.total["synops"] / rep.total["synops"],
        "thresholds": cal.thresholds,
    }  # fmt: skip
    print(f"accuracy dense {res['acc_dense']:.3f}, event {res['acc_event']:.3f}; synops "
          f"{res['ratio_vs_dense_macs']:.1f}x fewer than the dense CNN's MACs")  # fmt: skip

    # 5. The whole CNN as one compiled call per frame (batch 1), against the dense torch CNN.
    bg.execution(net, "event")
    step = compile_events(net, strict=True)
    frames = xt[:, :3].transpose(0, 1).reshape(-1, 1, 1, 28, 28)
    with torch.no_grad():
        t = {}
        for name, fn in (("event", step), ("dense", dense)):
            t0 = time.perf_counter()
            for i, x in enumerate(frames):
                if name == "event" and i % xt.shape[0] == 0:
                    step.reset()
                fn(x)
            t[name] = (time.perf_counter() - t0) / len(frames)
    res.update(us_event=1e6 * t["event"], us_dense=1e6 * t["dense"],
               compiled_calls_per_frame=step.compiled_segments)  # fmt: skip
    print(f"per frame: event {res['us_event']:.0f} us ({step.compiled_segments} compiled call), "
          f"dense torch {res['us_dense']:.0f} us (one run; benchmarks/conv_event_vs_dense.py "
          "times them in alternating rounds)")  # fmt: skip

    # 6. hwmaps: channel-space blocks on a mesh chip, and Speck's conv cores.
    graph = hwmaps.extract(net, rep)
    energy = hwmaps.estimate(hwmaps.map_network(graph, hwmaps.chips.get("loihi"), method="traffic"))
    fit = hwconv.speck_fit(hwconv.speck_layers(rep))
    res.update(loihi_j_per_step=energy.total_j / rep.meta["steps"], speck_fits=fit["fits"],
               speck_cores=fit["assignment"])  # fmt: skip
    print(f"loihi: {res['loihi_j_per_step']:.2e} J per frame; speck: fits={fit['fits']} "
          f"{fit['assignment']}")  # fmt: skip
    paths = [_outputs.write_json(out / "report.json", rep.to_dict()),
             _outputs.write_json(out / "summary.json", res)]  # fmt: skip
    _outputs.announce(out, paths)
    return res


if __name__ == "__main__":
    main()
