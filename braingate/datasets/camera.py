"""Camera-motion video over sklearn's sample image ``china.jpg`` (DESIGN §5).

A virtual camera looks at the photograph (427×640 RGB, shipped with scikit-learn) through a
``size``×``size`` window and moves: a slow pan, a slow zoom and a small hand-held jitter, each
sampled with sub-pixel bilinear interpolation. Consecutive frames differ a little almost
everywhere (textured regions) and hardly at all in flat regions (sky, walls): the regime of
delta / event convolutions (DeltaCNN, Parger et al., CVPR 2022, evaluate on such video).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["camera_motion"]


def camera_motion(
    steps: int = 64,
    *,
    size: int = 128,
    pan: float = 0.25,
    zoom: float = 0.002,
    jitter: float = 0.15,
    grayscale: bool = False,
    seed: int = 0,
) -> Tensor:
    r"""A pan / zoom / jitter video over ``china.jpg``.

    Frame ``t`` shows the window centred at ``c_t`` with magnification ``m_t``:

    .. math::
        c_t = c_0 + t·\text{pan}·(1, 0.5) + j_t,\qquad m_t = (1 + \text{zoom})^t,\qquad
        j_t = 0.8 j_{t-1} + \mathcal N(0, \text{jitter}^2)

    Args:
        steps: frames ``T``. size: side of the square frame in pixels (≥ 16).
        pan: pixels the window moves per frame (right and, at half speed, down).
        zoom: relative magnification per frame. jitter: std of the hand-held shake in pixels.
        grayscale: one luminance channel instead of RGB.
        seed: jitter seed.

    Returns:
        ``(T, 1, C, size, size)`` float32 in [0, 1] (time first, batch 1).
    """
    from sklearn.datasets import load_sample_image

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r} must be a positive int")
    if isinstance(size, bool) or not isinstance(size, int) or not 16 <= size <= 400:
        raise ValueError(f"size={size!r} must be an int in [16, 400] (the image is 427x640)")
    for name, v in (("pan", pan), ("zoom", zoom), ("jitter", jitter)):
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"{name}={v!r} must be finite and >= 0")
    img = torch.tensor(load_sample_image("china.jpg"), dtype=torch.float32).permute(2, 0, 1) / 255
    if grayscale:
        img = (img * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True)
    C, H, W = img.shape
    rng = np.random.default_rng(seed)
    j = np.zeros(2)
    centre0 = np.array([H / 2 - 0.25 * steps * pan, W / 2 - 0.5 * steps * pan])
    grids = []
    base = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    for t in range(steps):
        j = 0.8 * j + rng.normal(0, jitter, 2)
        cy, cx = centre0 + t * pan * np.array([0.5, 1.0]) + j
        m = (1 + zoom) ** t
        ys = (cy + base / m + 0.5) / H * 2 - 1  # pixel centres -> grid_sample's [-1, 1]
        xs = (cx + base / m + 0.5) / W * 2 - 1
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        grids.append(torch.stack([gx, gy], -1))
    grid = torch.stack(grids).float()
    frames = torch.nn.functional.grid_sample(img.expand(steps, C, H, W), grid, mode="bilinear",
                                             padding_mode="border", align_corners=False)  # fmt: skip
    return frames.clamp(0, 1).unsqueeze(1).contiguous()
