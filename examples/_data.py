"""Real data for the examples, as time-first streams ``(T, B, F)`` (no downloads).

- digits (scikit-learn ``load_digits``): one 8-pixel image row per step, 8 steps.
- BasicMotions / GunPoint (aeon, shipped inside the wheel): sensor channels per step.

Every stream is standardised per feature with statistics of the training split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn


@dataclass
class Streams:
    """Train/test streams ``(T, B, F)`` float32 and labels ``(B,)`` int64."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    classes: int

    @property
    def features(self) -> int:
        return self.x_train.shape[-1]


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[Tensor, Tensor]:
    """(B, T, F) arrays -> standardised time-first float32 tensors (T, B, F)."""
    mu = train.mean(axis=(0, 1), keepdims=True)
    sd = train.std(axis=(0, 1), keepdims=True) + 1e-8
    conv = lambda a: torch.from_numpy(((a - mu) / sd).astype(np.float32)).transpose(0, 1)  # noqa: E731
    return conv(train).contiguous(), conv(test).contiguous()


def digits(test_size: float = 0.3, seed: int = 0) -> Streams:
    """sklearn digits as a row-by-row stream: ``T = 8`` steps of ``F = 8`` pixels, 10 classes."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.images.astype(np.float64)  # (N, 8 rows, 8 pixels): rows are the time axis
    xtr, xte, ytr, yte = train_test_split(
        x, d.target, test_size=test_size, random_state=seed, stratify=d.target
    )
    a, b = _standardise(xtr, xte)
    return Streams("digits", a, torch.as_tensor(ytr), b, torch.as_tensor(yte), 10)


def aeon_stream(name: str = "BasicMotions") -> Streams:
    """An aeon UCR/UEA dataset as ``(T, B, channels)`` streams with its own train/test split."""
    from aeon.datasets import load_classification

    xtr, ytr = load_classification(name, split="train")
    xte, yte = load_classification(name, split="test")
    classes = sorted(set(ytr.tolist()))
    lab = lambda y: torch.as_tensor([classes.index(v) for v in y])  # noqa: E731
    a, b = _standardise(xtr.transpose(0, 2, 1), xte.transpose(0, 2, 1))
    return Streams(name, a, lab(ytr), b, lab(yte), len(classes))


def row_frames(rows: Tensor) -> Tensor:
    """Rows revealed one per step: frame ``t`` holds rows ``0..t`` and zeros below.

    ``(T, B, F) -> (T, B, T·F)``; the last frame is the whole image. A frame changes only in the
    newly revealed row, which is what an event layer exploits.
    """
    T, B, F = rows.shape
    frames = rows.new_zeros(T, B, T * F)
    for t in range(T):
        frames[t:, :, t * F : (t + 1) * F] = rows[t]
    return frames


def train_mean_readout_mlp(s: Streams, epochs: int, hidden: int = 32) -> nn.Sequential:
    """Per-step MLP trained on the time-averaged logits (full batch, Adam): the small dense
    baseline the NeuroBench and sweep examples convert."""
    model = nn.Sequential(nn.Linear(s.features, hidden), nn.ReLU(), nn.Linear(hidden, s.classes))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(epochs):
        opt.zero_grad()
        nn.functional.cross_entropy(model(s.x_train).mean(0), s.y_train).backward()
        opt.step()
    return model.eval()
