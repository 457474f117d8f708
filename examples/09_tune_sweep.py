"""Accuracy–energy Pareto front of a sweep over rank budget, gate blocks and thresholds.

BasicMotions (aeon, 6 channels x 100 steps): train a dense per-step MLP once, then for every
``(rank, blocks, threshold)`` of the grid convert it to EventLinear layers, run it in event mode
over the test streams and record accuracy, synops and estimated dynamic energy in joules per
sample (Loihi, from the chip table hwmaps uses, via ``braingate.energy.report_energy``). Trials
run as Ray Tune trials on a local Ray instance (``pip install 'braingate[tune]'``), or serially
with ``--serial``. Writes ``pareto.json`` (every trial + the front) and ``pareto.png`` into
results/09_tune_sweep/ (quick/ with --quick).

    python examples/09_tune_sweep.py [--quick] [--serial] [--out DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _data
import _outputs

from braingate.integrations.tune import CompressionEvaluator, sweep


def main(argv: list[str] | None = None) -> dict:
    ap = _outputs.parser(__doc__, "8 trials on 8 test streams (a smoke run)")
    ap.add_argument("--serial", action="store_true", help="run trials without Ray")
    args = ap.parse_args(argv)
    out = _outputs.output_dir("09_tune_sweep", args.quick, args.out)
    torch.manual_seed(0)
    torch.set_num_threads(1)

    s = _data.aeon_stream("BasicMotions")
    x, y = (s.x_test[:, :8], s.y_test[:8]) if args.quick else (s.x_test, s.y_test)
    model = _data.train_mean_readout_mlp(s, 40 if args.quick else 150)
    # rank budget per layer, 2 gate blocks of which 1 or 2 stay on, input threshold (θ_z = θ/2)
    space = {"rank": [2, 4], "blocks": [2], "active_blocks": [1, 2], "threshold": [0.1, 0.4]}
    if not args.quick:
        space = {"rank": [2, 4, 6], "blocks": [2], "active_blocks": [1, 2],
                 "threshold": [0.0, 0.1, 0.3, 0.6]}  # fmt: skip
    evaluate = CompressionEvaluator(model, x, y, energy_model="loihi")
    res = sweep(evaluate, space, out, backend="serial" if args.serial else "ray")

    print(
        f"{len(res['trials'])} trials ({res['backend']}), BasicMotions test streams: {x.shape[1]}"
    )
    head = f"{'rank':>5}{'on':>4}{'R_act':>6}{'thresh':>7}{'acc':>6}{'synops':>10}{'J/sample':>12}  front"
    print(head + "\n" + "-" * len(head))
    front = {id(t) for t in res["pareto"]}
    for t in sorted(res["trials"], key=lambda t: t["energy_J_per_sample"]):
        print(f"{t['rank']:>5}{t['active_blocks']:>4}{t['active_rank']:>6.0f}{t['threshold']:>7.2f}"
              f"{t['accuracy']:>6.2f}"
              f"{t['synops']:>10,.0f}{t['energy_J_per_sample']:>12.3e}  "
              f"{'*' if id(t) in front else ''}")  # fmt: skip
    _outputs.announce(out, [out / "pareto.json", out / "pareto.png"])
    return res


if __name__ == "__main__":
    main()
