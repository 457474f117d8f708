"""Saccade digits: sklearn's 8×8 digits moved along the N-MNIST saccade path (DESIGN §5).

N-MNIST (Orchard, Jayawant, Cohen and Thakor, Front. Neurosci. 9:437, 2015) records static MNIST
digits with an ATIS camera on a pan-tilt unit making three saccades along an isosceles
triangle. The same motion protocol applied to sklearn's digits (which ship with scikit-learn)
gives a stream for each digit: the digit, upsampled, moves along the three sides of the
triangle in ``steps_per_saccade`` frames each (sub-pixel positions by bilinear sampling).

Two encodings:

- *intensity*: the frames themselves, ``(T, N, 1, H, W)`` in [0, 1];
- *polarity*: DVS-style ON/OFF event counts (ESIM, Rebecq et al., CoRL 2018; v2e, Hu et al.,
  CVPRW 2021): a pixel emits one event each time its log intensity moves by the contrast
  threshold ``C`` from the level at its last event (a reference per pixel), ``(T, N, 2, H, W)``
  with channel 0 the ON and channel 1 the OFF counts.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["SACCADE_PATH", "SaccadeDigits", "polarity_events", "saccade_digits"]

#: Vertices of the saccade triangle in pixels (dy, dx), visited in order and back to the start:
#: an isosceles triangle as in N-MNIST (its sides are the three saccades). The size is ours,
#: scaled to our sensor (N-MNIST moves a 28-px digit a few pixels on a 34-px sensor).
SACCADE_PATH = ((0.0, 0.0), (3.0, 1.5), (0.0, 3.0))


class SaccadeDigits(NamedTuple):
    """A train / test split of saccade streams.

    Attributes:
        x_train, x_test: ``(T, N, C, H, W)`` float32 streams (time first).
        y_train, y_test: ``(N,)`` int64 labels 0–9.
    """

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor


def _positions(steps_per_saccade: int) -> np.ndarray:
    """``(3·steps, 2)`` offsets along the triangle, ending where it started."""
    pts = np.array(SACCADE_PATH + SACCADE_PATH[:1])
    out = []
    for a, b in itertools.pairwise(pts):
        for k in range(1, steps_per_saccade + 1):
            out.append(a + (b - a) * k / steps_per_saccade)
    return np.array(out)


def _frames(images: Tensor, offsets: np.ndarray, size: int) -> Tensor:
    """Each image (N, 1, h, w) placed at the top-left margin plus every offset: (T, N, 1, S, S)."""
    N, _, h, w = images.shape
    span = np.abs(np.array(SACCADE_PATH)).max(0)
    top, left = (size - h - span[0]) / 2, (size - w - span[1]) / 2
    if min(top, left) < 0:
        raise ValueError(f"size={size} cannot hold the {h}x{w} digit and its saccades; pass "
                         f"size>={int(max(h + span[0], w + span[1])) + 1}")  # fmt: skip
    frames = []
    for dy, dx in offsets:
        # canvas pixel (i, j) samples the image at (i - top - dy, j - left - dx)
        ys = (torch.arange(size, dtype=torch.float64) - top - dy + 0.5) / h * 2 - 1
        xs = (torch.arange(size, dtype=torch.float64) - left - dx + 0.5) / w * 2 - 1
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        grid = torch.stack([gx, gy], -1).float().expand(N, size, size, 2)
        frames.append(torch.nn.functional.grid_sample(images, grid, mode="bilinear",
                                                      padding_mode="zeros", align_corners=False))  # fmt: skip
    return torch.stack(frames)


def polarity_events(frames: Tensor, contrast: float = 0.2, eps: float = 0.05) -> Tensor:
    r"""DVS ON/OFF event counts of an intensity stream (ESIM's rule, a reference per pixel).

    .. math::
        L_t = \log(I_t + ε),\quad n_t = \lfloor |L_t − L^{ref}| / C \rfloor,\quad
        L^{ref} \mathrel{+}= \mathrm{sign}(L_t − L^{ref})\, n_t C

    The reference starts at the first frame's level (a camera that has adapted to it).

    Args:
        frames: ``(T, ..., 1, H, W)`` intensities ≥ 0.
        contrast: ``C > 0``. eps: offset of the log (dark pixels).

    Returns:
        ``(T, ..., 2, H, W)``: ON counts in channel 0, OFF counts in channel 1.
    """
    if not contrast > 0:
        raise ValueError(f"contrast={contrast} must be > 0; pass e.g. contrast=0.2")
    L = torch.log(frames.double() + eps)
    ref = L[0].clone()
    out = []
    for t in range(frames.shape[0]):
        d = L[t] - ref
        n = torch.floor(d.abs() / contrast)
        ref = ref + torch.sign(d) * n * contrast
        out.append(torch.cat([n * (d > 0), n * (d < 0)], dim=-3))
    return torch.stack(out).float()


def saccade_digits(
    *,
    encoding: str = "intensity",
    size: int = 28,
    scale: int = 3,
    steps_per_saccade: int = 6,
    contrast: float = 0.2,
    test_fraction: float = 0.25,
    n: int | None = None,
    seed: int = 0,
) -> SaccadeDigits:
    """Build the saccade-digits streams from ``sklearn.datasets.load_digits`` (1,797 digits).

    Args:
        encoding: ``"intensity"`` (1 channel) or ``"polarity"`` (ON/OFF, 2 channels).
        size: sensor side in pixels. scale: upsampling of the 8×8 digits (bilinear).
        steps_per_saccade: frames per side of the triangle (``T = 3·steps_per_saccade``).
        contrast: DVS contrast threshold of the polarity encoding.
        test_fraction: share of the digits held out (the first ones of a seeded permutation).
        n: use only the first ``n`` digits of the permutation (None: all).
        seed: permutation seed.

    Returns:
        :class:`SaccadeDigits` (time-first streams, float32).
    """
    from sklearn.datasets import load_digits

    if encoding not in ("intensity", "polarity"):
        raise ValueError(f"encoding={encoding!r} is unknown; pass 'intensity' or 'polarity'")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction={test_fraction} must be in (0, 1)")
    for name, v in (("size", size), ("scale", scale), ("steps_per_saccade", steps_per_saccade)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}={v!r} must be a positive int")
    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))
    if n is not None:
        order = order[:n]
    img = torch.tensor(digits.images[order] / 16.0, dtype=torch.float32).unsqueeze(1)
    img = torch.nn.functional.interpolate(img, scale_factor=scale, mode="bilinear",
                                          align_corners=False).clamp(0, 1)  # fmt: skip
    xs = _frames(img, _positions(steps_per_saccade), size)
    if encoding == "polarity":
        first = _frames(img, np.zeros((1, 2)), size)
        xs = polarity_events(torch.cat([first, xs]), contrast)[1:]
    y = torch.tensor(digits.target[order], dtype=torch.int64)
    n_test = max(1, round(len(order) * test_fraction))
    return SaccadeDigits(xs[:, n_test:].contiguous(), y[n_test:], xs[:, :n_test].contiguous(),
                         y[:n_test])  # fmt: skip
