"""LoRAven on digits: the same small classifier in the three modes, trained and inspected.

Each model is ``LoRAven(64, 128, mode) -> ReLU -> LoRAven(128, 10, mode)``. A LoRAven layer picks
a rank per sample (learned complexity scorer -> rank scheduler), capped by its energy budget
(mJ per sample, priced by ``PerfEstimator``: H100 FP32 by default). Training minimises
cross-entropy plus the ADLRNS energy penalty ``lam * (FLOPs(r)/FLOPs_full + 0.1 Mem(r)/Mem_full)``,
which reaches the scorer through the layer's straight-through rank mask. Per mode it prints
test accuracy and, per layer, the mean rank, the per-sample rank spread, budget usage,
energy and latency estimates and the compression ratio. Writes summary.json into
results/04_loraven_classifier/ (quick/ with --quick).

    python examples/04_loraven_classifier.py [--quick] [--lam 0.05] [--out DIR]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _outputs

from braingate import LoRAven
from braingate.train import model_energy_penalty

MODES = ("high_performance", "balanced", "low_power")


def data() -> tuple[torch.Tensor, ...]:
    """Digits, 64 pixels, stratified 70/30 split, standardised with training statistics."""
    d = load_digits()
    xtr, xte, ytr, yte = train_test_split(
        d.data, d.target, test_size=0.3, random_state=0, stratify=d.target
    )
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    f = lambda a: torch.tensor((a - mu) / sd, dtype=torch.float32)  # noqa: E731
    return f(xtr), torch.as_tensor(ytr), f(xte), torch.as_tensor(yte)


def build(mode: str) -> nn.Sequential:
    return nn.Sequential(LoRAven(64, 128, mode=mode), nn.ReLU(), LoRAven(128, 10, mode=mode))


def train(model: nn.Module, x, y, epochs: int, lam: float, seed: int = 0) -> None:
    """Adam, batches of 64: cross-entropy + ``lam`` times the energy penalty."""
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(64):
            loss = F.cross_entropy(model(x[idx]), y[idx]) + lam * model_energy_penalty(model)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()


def main(argv: list[str] | None = None) -> dict:
    ap = _outputs.parser(__doc__, "3 epochs per mode (a smoke run)")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--lam", type=float, default=0.05, help="energy penalty weight")
    args = ap.parse_args(argv)
    out = _outputs.output_dir("04_loraven_classifier", args.quick, args.out)
    torch.set_num_threads(1)
    xtr, ytr, xte, yte = data()
    epochs = 3 if args.quick else args.epochs
    summary = {}
    for mode in MODES:
        torch.manual_seed(0)
        model = build(mode)
        t0 = time.perf_counter()
        train(model, xtr, ytr, epochs, args.lam)
        with torch.no_grad():
            acc = float((model(xte).argmax(1) == yte).float().mean())
        print(f"\n== mode={mode}: test accuracy {acc:.4f} "
              f"({epochs} epochs, {time.perf_counter() - t0:.1f} s)")  # fmt: skip
        layers = []
        for i, layer in enumerate(m for m in model if isinstance(m, LoRAven)):
            stats = layer.get_performance_stats()
            ranks = layer.get_rank_per_sample().float()
            print(f"  layer {i} {layer.in_features}->{layer.out_features}: ranks "
                  f"[{layer.min_rank}, {layer.max_rank}], budget {layer.energy_budget * 1e6:.1f} nJ")  # fmt: skip
            print(f"    current rank {layer.get_current_rank():.2f} "
                  f"(per sample {int(ranks.min())}..{int(ranks.max())}, std {float(ranks.std()):.2f}), "
                  f"budget usage {layer.get_budget_usage():.1%}, "
                  f"compression {layer.get_compression_ratio():.1%}")  # fmt: skip
            print(f"    energy {stats['energy_consumption'] * 1e6:.2f} nJ/sample, "
                  f"latency {stats['latency_ms'] * 1e3:.3f} us/batch (roofline estimate)")  # fmt: skip
            layers.append(stats)
        summary[mode] = {"accuracy": acc, "epochs": epochs, "layers": layers}
    path = _outputs.write_json(out / "summary.json", {"quick": args.quick, "lam": args.lam,
                                                     "modes": summary})  # fmt: skip
    _outputs.announce(out, [path])
    return summary


if __name__ == "__main__":
    main()
