"""Event-driven vs dense execution on real streams (run by `make demo`; < 3 min on 2 CPU cores).

For BasicMotions (aeon, 6 sensor channels x 100 steps) and digits (sklearn, revealed one row
per step): train a dense ReLU MLP, convert it to low-rank EventLinear layers (SVD), calibrate
thresholds, fine-tune with events in the loop (surrogate gradients, learned per-unit thresholds,
activity penalty), then compare dense full-rank, dense low-rank and event-driven execution:
accuracy, synops, per-step wall clock at batch 1, and estimated energy (hwmaps on Loihi and
TrueNorth; PerfEstimator / per-op costs on CPU and GPU; joules per sample). Writes
comparison.{md,json}, three PNGs and each event run's Report (report_<dataset>.json, which hwmaps
maps onto a chip) into results/02_compare_event_vs_dense/ (quick/ with --quick).

    python examples/02_compare_event_vs_dense.py [--quick] [--out DIR]
    python -m hwmaps map results/02_compare_event_vs_dense/report_digits.json --chip loihi
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _data
import _energy
import _outputs
import _pipeline as P
import _report

import braingate as bg

# hidden width, ranks per layer, readout, epochs (dense, events), batch; fine-tuning aims at a
# synops budget (target_ratio) above the acceptance ratios (20x, 10x) and then trains for
# accuracy only (EventTape.penalty(budget)); benchmarks/e2e_seeds.py shows the spread over seeds
SETUPS = {
    "BasicMotions": P.Setup(256, {"0": 6, "2": 16, "4": 4}, "mean", 60, 30, 40, lam=1.0,
                            start_scale=0.5, target_ratio=25.0),
    "digits": P.Setup(256, {"0": 32, "2": 16, "4": 10}, "last", 200, 12, 256, lam=1.0,
                      target_ratio=20.0),
}  # fmt: skip
# a smoke run (seconds) that still learns: small network, short training, subsets of the data
QUICK = {"hidden": 64, "dense_epochs": 40, "event_epochs": 1, "calib_evals": 8, "batch": 128}
QUICK_SAMPLES = {"train": 400, "test": 100}


def load(name: str, quick: bool) -> _data.Streams:
    d = _data.aeon_stream(name) if name != "digits" else _data.digits()
    if name == "digits":  # the network sees the rows revealed so far (a frame per step)
        d.x_train, d.x_test = _data.row_frames(d.x_train), _data.row_frames(d.x_test)
    if quick:
        n, m = QUICK_SAMPLES["train"], QUICK_SAMPLES["test"]
        d.x_train, d.y_train = d.x_train[:, :n], d.y_train[:n]
        d.x_test, d.y_test = d.x_test[:, :m], d.y_test[:m]
    return d


def run(name: str, quick: bool, seed: int = 0) -> dict:
    torch.manual_seed(seed)  # training seed (the data splits are fixed)
    setup = copy.deepcopy(SETUPS[name])
    if quick:
        for k, v in QUICK.items():
            setattr(setup, k, v)
        setup.ranks = {k: min(r, 8) for k, r in setup.ranks.items()}
    d, t0 = load(name, quick), time.perf_counter()
    dense = P.mlp(d.features, setup.hidden, d.classes)
    P.train_dense(dense, d.x_train, d.y_train, setup, name)
    rows = {}
    ys, rep = bg.simulate(dense, d.x_test, mode="dense")
    rows["dense full-rank"] = {"accuracy": P.accuracy(ys, d.y_test, setup.readout),
                               "ops": rep.total["dense_synops"]}  # fmt: skip
    dense_ops = rep.total["dense_synops"]
    net, cal = P.convert_and_calibrate(dense, d.x_train, d.y_train, setup)
    ys, rep = bg.simulate(net, d.x_test, mode="dense")
    rows["dense low-rank"] = {"accuracy": P.accuracy(ys, d.y_test, setup.readout),
                              "ops": rep.total["lowrank_ops"]}  # fmt: skip
    ys, rep = bg.simulate(net, d.x_test, mode="event")
    rows["event, calibrated only"] = {"accuracy": P.accuracy(ys, d.y_test, setup.readout),
                                      "ops": rep.total["synops"]}  # fmt: skip
    history = P.finetune_events(net, d.x_train, d.y_train, setup, name)
    ys, report = bg.simulate(net, d.x_test, mode="event")
    rows["event-driven (fine-tuned)"] = {"accuracy": P.accuracy(ys, d.y_test, setup.readout),
                                         "ops": report.total["synops"]}  # fmt: skip
    for r in rows.values():  # None: a silent network did no work at all (no finite ratio)
        r["ratio"] = dense_ops / r["ops"] if r["ops"] > 0 else None
    lowrank = copy.deepcopy(net)
    bg.execution(lowrank, "dense")
    steppers = {
        "dense full-rank (PyTorch)": P.dense_stepper(dense),
        "dense low-rank": P.dense_stepper(lowrank),
        "event-driven": P.event_stepper(net),
    }
    wall, resets = P.per_step_seconds(steppers, d.x_test, 3 if quick else 15)
    T, full, event = d.x_test.shape[0], "dense full-rank (PyTorch)", "event-driven"
    energy = _energy.estimate_all(net, report, dense)
    return {
        "dataset": name, "seed": seed, "steps": d.x_test.shape[0], "test_samples": d.x_test.shape[1],
        "setup": vars(setup), "rows": rows, "wall_s_per_step": wall, "wall_s_reset": resets,
        "speedup_event_vs_dense": wall[full] / wall[event],
        "speedup_per_stream_with_reset": (T * wall[full] + resets[full])
                                         / (T * wall[event] + resets[event]),
        "calibration": {"ratio_train": cal.ratio, "score": cal.score,
                        "reference_score": cal.reference_score, "evaluations": cal.evaluations},
        "history": history, "energy": energy, "report": report.to_dict(),
        "seconds": time.perf_counter() - t0,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    ap = _outputs.parser(__doc__, "small network, short training, data subsets (a smoke run)")
    ap.add_argument("--datasets", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # per-step timing at batch 1 on one core, for both paths
    out = _outputs.output_dir("02_compare_event_vs_dense", args.quick, args.out)
    t0 = time.perf_counter()
    results = {name: run(name, args.quick) for name in args.datasets}
    meta = {"quick": args.quick, "seconds": time.perf_counter() - t0,
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "command": "python examples/02_compare_event_vs_dense.py" + " --quick" * args.quick}  # fmt: skip
    doc = {"meta": meta, "results": results}
    md = _report.markdown(doc)
    paths = [_outputs.write_json(out / "comparison.json", doc),
             _outputs.write_text(out / "comparison.md", md)]  # fmt: skip
    for name, r in results.items():  # the event run's Report: what `python -m hwmaps map` reads
        paths.append(_outputs.write_json(out / f"report_{name}.json", r["report"]))
    paths += _report.plots(doc, out)
    print(md)
    _outputs.announce(out, paths)
    print(
        f"map an event run onto a chip: python -m hwmaps map {out}/report_{name}.json "
        "--chip loihi   (or: python -m hwmaps compare ...)"
    )
    return doc


if __name__ == "__main__":
    main()
