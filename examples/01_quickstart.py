"""Quickstart: build an event-driven low-rank network, run it over a real stream, read the report.

The stream is BasicMotions (aeon; 6 accelerometer/gyroscope channels, 100 steps). The network is
untrained: this example is about execution and counting, not accuracy (see 02 for training).
It saves the run's Report, which hwmaps maps onto a chip:

    python examples/01_quickstart.py [--quick] [--out DIR]
    python -m hwmaps map results/01_quickstart/report.json --chip loihi
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _data
import _outputs

import braingate as bg


def main(argv: list[str] | None = None) -> dict:
    args = _outputs.parser(__doc__, "4 streams only").parse_args(argv)
    out = _outputs.output_dir("01_quickstart", args.quick, args.out)
    torch.manual_seed(0)
    torch.set_num_threads(1)  # small layers: threads only add overhead on a shared CPU

    # 1. A stream, time first: (T, B, F).
    xs = _data.aeon_stream("BasicMotions").x_test
    xs = xs[:, :4] if args.quick else xs
    print(f"stream: {tuple(xs.shape)} (steps, streams, channels)")

    # 2. Layers whose weight is U·diag(s)·Vᵀ; θ: input threshold, θ_z: rank-space threshold.
    model = nn.Sequential(
        bg.EventLinear(6, 64, rank=6, threshold=0.1, latent_threshold=0.1),
        nn.ReLU(),
        bg.EventLinear(64, 64, rank=16, blocks=4, threshold=0.05, latent_threshold=0.05),
        nn.ReLU(),
        bg.EventLinear(64, 4, rank=4, threshold=0.05, latent_threshold=0.05),
    )

    # 3. Dense execution (one batched GEMM per layer) and event execution (only what changed).
    ys_dense, _ = bg.simulate(model, xs, mode="dense")
    ys_event, report = bg.simulate(model, xs, mode="event")
    err = float((ys_event - ys_dense).abs().max())
    print(f"max |event - dense| over the run: {err:.4f} (bounded by the thresholds)")

    # 4. The report: totals per sample (summed over steps), per layer, and per-step traces.
    print(report.summary())
    t = report.total
    print(f"synops {t['synops']:,.0f} vs dense {t['dense_synops']:,.0f}: "
          f"{report.ratio():.1f}x fewer; input events {t['input_events']:,.0f}, "
          f"latent events {t['latent_events']:,.0f}")  # fmt: skip
    first = report.trace["0"]["input_events"][:5]
    print("layer 0 input events per step (first 5):", [round(v, 2) for v in first])

    # 5. Gates: switch half the rank blocks of the middle layer off, and run again.
    model[2].set_active_blocks(2)
    _, gated = bg.simulate(model, xs, mode="event")
    print(f"with 2 of 4 blocks on: {gated.ratio():.1f}x fewer synops than dense")

    # 6. Save the report (the all-blocks run): hwmaps maps it onto a chip.
    res = {"max_error": err, "ratio": report.ratio(), "gated_ratio": gated.ratio(),
           "streams": xs.shape[1], "steps": xs.shape[0]}  # fmt: skip
    paths = [_outputs.write_json(out / "report.json", report.to_dict()),
             _outputs.write_json(out / "summary.json", res)]  # fmt: skip
    _outputs.announce(out, paths)
    print(f"next: python -m hwmaps map {out / 'report.json'} --chip loihi")
    return res


if __name__ == "__main__":
    main()
