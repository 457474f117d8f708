"""The seed guide's four monitoring panels, from a training history."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["plot_history"]


def plot_history(history: dict[str, list[float]], path: str | Path) -> Path:
    """Save energy (J per sample), average rank, accuracy-vs-energy and loss panels to a PNG.

    Args:
        history: ``Trainer.train`` output (keys ``energy_mJ``, ``avg_rank``, ``val_acc``,
            ``train_loss``, ``val_loss``, ``epoch``).
        path: PNG file to write.
    Returns: the path written.
    """
    missing = {"energy_mJ", "avg_rank", "val_acc", "train_loss"} - set(history)
    if missing:
        raise ValueError(f"history lacks {sorted(missing)}; pass the dict Trainer.train returns")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    ep: Any = history.get("epoch") or list(range(len(history["energy_mJ"])))
    energy_j = [1e-3 * e for e in history["energy_mJ"]]  # the trainer logs mJ (seed API)
    fig, ax = plt.subplots(2, 2, figsize=(10, 7), layout="constrained")
    ax[0, 0].plot(ep, energy_j, marker="o")
    ax[0, 0].set(title="Estimated energy", xlabel="epoch", ylabel="energy per sample (J)")
    ax[0, 1].plot(ep, history["avg_rank"], marker="o")
    ax[0, 1].set(title="Average rank", xlabel="epoch", ylabel="rank (mean over samples)")
    ax[1, 0].plot(energy_j, history["val_acc"], "o-", color="0.5", markerfacecolor="C0")
    for e, x, y in zip(ep, energy_j, history["val_acc"]):
        ax[1, 0].annotate(str(e), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax[1, 0].set(title="Accuracy vs energy (labels: epoch)", xlabel="energy per sample (J)",
                 ylabel="validation accuracy")  # fmt: skip
    ax[1, 1].plot(ep, history["train_loss"], marker="o", label="train")
    if history.get("val_loss"):
        ax[1, 1].plot(ep, history["val_loss"], marker="o", label="validation")
    ax[1, 1].set(title="Loss", xlabel="epoch", ylabel="cross-entropy (task loss)")
    ax[1, 1].legend(loc="best")
    for a in (ax[0, 0], ax[0, 1], ax[1, 1]):
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    for a in ax.ravel():
        a.grid(alpha=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, path)  # atomic: a reader never sees half a PNG
    finally:
        Path(tmp).unlink(missing_ok=True)
        plt.close(fig)
    return path
