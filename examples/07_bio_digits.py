"""Plain vs bio-converted training on sklearn's 8×8 digits, accuracy over epochs (PNG + JSON).

Both runs of a seed start from the same weights and see the same batches. The bio run converts
the model with ``braingate.bio.BioConverter`` and, as in the Bio Transformations README loop,
calls ``fuzzy_learning_rates()`` every batch, ``crystallize()`` every 10 batches and
``rejuvenate_weights()`` after every epoch (between ``loss.backward()`` and ``optimizer.step()``
for the gradient methods).

What the paper claims vs what this example shows
------------------------------------------------
The Bio Transformations package presents its methods (diverse per-synapse learning rates,
crystallization, spine turnover, multi-synaptic connections) as making networks learn faster,
reach higher accuracy and be more resilient. None of the methods is a learning rule: each only
rescales gradients or resets weights, so the effect one can expect is that of a per-weight
learning-rate jitter plus occasional re-initialisation of small weights. On this small, easy
task the example measures the difference directly: the printed table and the PNG give the test
accuracy of both runs per epoch (mean ± std over seeds). Measured here (CPU, default settings):
after 30 epochs plain 96.9 ± 0.4 % vs bio 95.4 ± 0.9 % (3 seeds), 97.1 ± 0.5 % vs 96.0 ± 0.6 %
(5 seeds); the curves rise at the same speed. So on digits the claimed gains are not
reproduced: the bio run is about one point lower and noisier. This example does not test
resilience, larger models or other data, where the claims may differ.

Run: ``python examples/07_bio_digits.py [--epochs 30] [--seeds 3] [--quick] [--out DIR]``;
``--quick`` is a few-second smoke run used by the tests. Writes accuracy.png and summary.json
into results/07_bio_digits/ (quick/ with --quick).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _outputs

from braingate.bio import BioConverter


def make_data(seed: int) -> tuple[torch.Tensor, ...]:
    """Stratified 80/20 split of the digits, pixels scaled to [0, 1]."""
    x, y = load_digits(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x / 16.0, y, test_size=0.2, stratify=y, random_state=seed)
    f = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return f(xtr), torch.tensor(ytr), f(xte), torch.tensor(yte)


def make_model() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)
    )


def train(model, data, epochs: int, seed: int, bio: bool, lr: float) -> list[float]:
    """Train with SGD; returns the test accuracy after every epoch."""
    xtr, ytr, xte, yte = data
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    order = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # same draws for the bio methods across runs of a seed
    curve = []
    for _ in range(epochs):
        model.train()
        for step, idx in enumerate(torch.randperm(len(xtr), generator=order).split(64)):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
            if bio:
                model.fuzzy_learning_rates()
                if step % 10 == 0:
                    model.crystallize()
            opt.step()
        if bio:
            model.rejuvenate_weights()
        model.eval()
        with torch.no_grad():
            curve.append(float((model(xte).argmax(1) == yte).float().mean()))
    return curve


def run(epochs: int, seeds: int, lr: float) -> dict[str, np.ndarray]:
    curves: dict[str, list[list[float]]] = {"plain": [], "bio": []}
    for seed in range(seeds):
        data = make_data(seed)
        torch.manual_seed(seed)
        plain = make_model()
        bio = BioConverter()(copy.deepcopy(plain))  # same initial weights
        curves["plain"].append(train(plain, data, epochs, seed, False, lr))
        curves["bio"].append(train(bio, data, epochs, seed, True, lr))
    return {k: np.array(v) for k, v in curves.items()}


def plot(curves: dict[str, np.ndarray], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, c in curves.items():
        epochs = np.arange(1, c.shape[1] + 1)
        mean, std = c.mean(0), c.std(0)
        ax.plot(epochs, 100 * mean, marker="." if len(epochs) <= 10 else None,
                label=f"{name} (final {100 * mean[-1]:.1f} %)")  # fmt: skip
        ax.fill_between(epochs, 100 * (mean - std), 100 * (mean + std), alpha=0.2)
    seeds = next(iter(curves.values())).shape[0]
    ax.set(xlabel="epoch", ylabel="test accuracy (%)",
           title=f"digits: plain vs bio-converted MLP (mean ± std, {seeds} seed(s))")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    _outputs.save_figure(fig, out, dpi=120)


def main(argv: list[str] | None = None) -> dict:
    ap = _outputs.parser(__doc__, "3 epochs, 1 seed (a smoke run)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--lr", type=float, default=0.05)
    args = ap.parse_args(argv)
    if args.quick:
        args.epochs, args.seeds = 3, 1
    legacy = _outputs.legacy_file(args.out, ".png")  # --out FILE.png: the old interface
    out = legacy.parent if legacy else _outputs.output_dir("07_bio_digits", args.quick, args.out)
    png = legacy or out / "accuracy.png"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 64-wide MLP: threads cost more than they save
    try:
        curves = run(args.epochs, args.seeds, args.lr)
    finally:
        torch.set_num_threads(threads)
    plot(curves, png)
    summary = {
        name: {"final_mean": float(c[:, -1].mean()), "final_std": float(c[:, -1].std()),
               "best_mean": float(c.max(1).mean()), "curve_mean": c.mean(0).tolist()}
        for name, c in curves.items()
    }  # fmt: skip
    _outputs.write_json(png.with_name(png.stem + ".json") if legacy else out / "summary.json",
                        {"epochs": args.epochs, "seeds": args.seeds, **summary})  # fmt: skip
    print(
        f"{'run':6} {'final acc':>14} {'best acc':>9}   ({args.seeds} seeds, {args.epochs} epochs)"
    )
    for name, s in summary.items():
        print(f"{name:6} {100 * s['final_mean']:7.2f} ± {100 * s['final_std']:4.2f} "
              f"{100 * s['best_mean']:8.2f}")  # fmt: skip
    _outputs.announce(out, [png, png.with_suffix(".json") if legacy else out / "summary.json"])
    return summary


if __name__ == "__main__":
    main()
