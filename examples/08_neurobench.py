"""NeuroBench's harness on a braingate event model and on its dense comparison model.

BasicMotions (aeon, 6 channels x 100 steps): train a dense per-step ReLU MLP (logits averaged over
time), convert it to EventLinear layers with thresholds > 0, then run NeuroBench 2.3's Benchmark
(Footprint, ParameterCount, ClassificationAccuracy, ActivationSparsity, SynapticOperations) on

- the dense model (NeuroBench hooks its nn.Linear layers directly),
- the event model through ``NeuroBenchModel(view="event")`` (sparse deltas replayed as hooked
  nn.Linear calls: NeuroBench's synops should equal braingate's ``synops``; Dense = lowrank_ops),
- the event model through ``view="dense"`` (Dense = braingate's ``dense_synops``),

and print NeuroBench's figures next to braingate's own ``simulate`` report. Writes
summary.json into results/08_neurobench/ (quick/ with --quick).

    python examples/08_neurobench.py [--quick] [--out DIR]
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _data
import _outputs

import braingate as bg
from braingate.integrations.neurobench import NeuroBenchModel


def run_neurobench(model, view: str, x, y) -> dict:
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.static import Footprint, ParameterCount
    from neurobench.metrics.workload import (
        ActivationSparsity,
        ClassificationAccuracy,
        SynapticOperations,
    )

    loader = DataLoader(TensorDataset(x.transpose(0, 1), y), batch_size=20)  # batch-first
    post = [lambda p: p.mean(1).argmax(-1)]  # logits averaged over time, as in training
    metrics = [[Footprint, ParameterCount],
               [ClassificationAccuracy, ActivationSparsity, SynapticOperations]]  # fmt: skip
    return Benchmark(NeuroBenchModel(model, view=view), loader, [], post, metrics).run(quiet=True)


def main(argv: list[str] | None = None) -> dict:
    args = _outputs.parser(__doc__, "8 test streams, short training (a smoke run)").parse_args(argv)
    out = _outputs.output_dir("08_neurobench", args.quick, args.out)
    torch.manual_seed(0)
    torch.set_num_threads(1)  # small layers: threads only add contention on a shared CPU

    s = _data.aeon_stream("BasicMotions")
    x, y = (s.x_test[:, :8], s.y_test[:8]) if args.quick else (s.x_test, s.y_test)
    dense = _data.train_mean_readout_mlp(s, 40 if args.quick else 150)
    event = bg.convert(copy.deepcopy(dense), rank=4, blocks=2, threshold=0.1,
                       latent_threshold=0.05)  # fmt: skip

    rows = {}
    for name, model, view in (("dense MLP", dense, "event"), ("event, view=event", event, "event"),
                              ("event, view=dense", event, "dense")):  # fmt: skip
        nb = run_neurobench(model, view, x, y)
        ys, rep = bg.simulate(model, x, mode="event")
        ops = nb["SynapticOperations"]
        rows[name] = {
            "accuracy": nb["ClassificationAccuracy"],
            "braingate_accuracy": float((ys.mean(0).argmax(-1) == y).double().mean()),
            "neurobench_synops": ops["Effective_MACs"] + ops["Effective_ACs"],
            "neurobench_dense": ops["Dense"],
            "activation_sparsity": nb["ActivationSparsity"],
            "parameters": nb["ParameterCount"],
            "braingate_synops": rep.total["synops"],
            "braingate_lowrank_ops": rep.total["lowrank_ops"],
            "braingate_dense_synops": rep.total["dense_synops"],
        }

    head = f"{'model':<20}{'acc':>6}{'NB synops':>12}{'bg synops':>12}{'NB Dense':>11}" \
           f"{'bg lowrank':>11}{'bg dense':>10}{'act.sp.':>8}"  # fmt: skip
    print(f"BasicMotions test streams: {x.shape[1]}, steps {x.shape[0]} (per-sample counts)")
    print(head + "\n" + "-" * len(head))
    for name, r in rows.items():
        print(f"{name:<20}{r['accuracy']:>6.2f}{r['neurobench_synops']:>12,.0f}"
              f"{r['braingate_synops']:>12,.0f}{r['neurobench_dense']:>11,.0f}"
              f"{r['braingate_lowrank_ops']:>11,.0f}{r['braingate_dense_synops']:>10,.0f}"
              f"{r['activation_sparsity']:>8.2f}")  # fmt: skip
    ev = rows["event, view=event"]
    gap = abs(ev["neurobench_synops"] - ev["braingate_synops"]) / ev["braingate_synops"]
    print(f"NeuroBench vs braingate synops (event model): relative gap {gap:.2e}")
    path = _outputs.write_json(out / "summary.json", {"quick": args.quick, "streams":
                                                     int(x.shape[1]), "rows": rows,
                                                     "synops_gap": gap})  # fmt: skip
    _outputs.announce(out, [path])
    return rows


if __name__ == "__main__":
    main()
