"""The seed guide's four monitoring panels, from a training history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_history"]


def plot_history(history: dict[str, list[float]], path: str | Path) -> Path:
    """Save energy, average rank, accuracy-vs-energy and loss panels to a PNG.

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

    ep: Any = history.get("epoch") or list(range(len(history["energy_mJ"])))
    fig, ax = plt.subplots(2, 2, figsize=(10, 7))
    ax[0, 0].plot(ep, history["energy_mJ"], marker="o")
    ax[0, 0].set(title="Energy consumption", xlabel="epoch", ylabel="energy (mJ / sample)")
    ax[0, 1].plot(ep, history["avg_rank"], marker="o")
    ax[0, 1].set(title="Average rank", xlabel="epoch", ylabel="rank")
    ax[1, 0].scatter(history["energy_mJ"], history["val_acc"])
    ax[1, 0].set(title="Accuracy vs energy", xlabel="energy (mJ / sample)", ylabel="val accuracy")
    ax[1, 1].plot(ep, history["train_loss"], label="train")
    if history.get("val_loss"):
        ax[1, 1].plot(ep, history["val_loss"], label="val")
    ax[1, 1].set(title="Loss", xlabel="epoch")
    ax[1, 1].legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
