"""Small ResNets for the experiments runner: ``AdlrnsResNet`` (dynamic low-rank convs) and its
dense twin of the same shape (``nn.Conv2d``), the ADLRNS seed's ``model.type: adlrns_resnet``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from braingate.nn.dynamic_conv import DynamicLowRankConv2d

__all__ = ["NORMS", "AdlrnsResNet", "BasicBlock", "ConvRanks", "conv_ranks", "make_norm"]


@dataclass(frozen=True)
class ConvRanks:
    """The rank range one conv of the network gets from the config's ``r_min`` / ``r_max``."""

    r_min: int
    r_max: int
    num_gate_blocks: int
    full: int  # min(C_out, C_in·k·k): the conv's full rank


def conv_ranks(in_channels: int, out_channels: int, kernel: int, r_min: int, r_max: int,
               blocks: int) -> ConvRanks:  # fmt: skip
    """Clip the config's range to a conv's full rank: ``r_max' = min(r_max, full)``,
    ``r_min' = min(r_min, r_max')``, gate blocks at most ``r_max'`` (the config's values are
    ceilings shared by every conv; narrow early convs cannot hold ``r_max = 64``)."""
    full = min(out_channels, in_channels * kernel * kernel)
    hi = min(r_max, full)
    lo = min(r_min, hi)
    return ConvRanks(lo, hi, max(1, min(blocks, hi)), full)


NORMS = ("group", "batch")


def make_norm(kind: str, channels: int) -> nn.Module:
    """``"group"``: GroupNorm with 8 groups (fewer for narrow layers; Wu and He, ECCV 2018);
    ``"batch"``: BatchNorm2d."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.GroupNorm(max(1, min(8, channels // 2)), channels)


class BasicBlock(nn.Module):
    """``relu(n2(conv2(relu(n1(conv1(x))))) + shortcut(x))`` (He et al., CVPR 2016), with 3×3
    convs that are :class:`DynamicLowRankConv2d` (``ranks`` given: ``(r_min, r_max,
    num_gate_blocks)``, clipped by :func:`conv_ranks`) or ``nn.Conv2d`` (``ranks=None``); the
    shortcut is the identity, or a 1×1 strided ``nn.Conv2d`` + norm when the shape changes.
    ``dynamic_kw`` goes to every dynamic conv (``scorer_hidden``, ``planned``, ``nested``)."""

    def __init__(self, cin: int, cout: int, stride: int, ranks: tuple[int, int, int] | None,
                 norm: str = "group", **dynamic_kw) -> None:  # fmt: skip
        super().__init__()

        def conv(a: int, b: int, s: int) -> nn.Module:
            if ranks is None:
                return nn.Conv2d(a, b, 3, stride=s, padding=1, bias=False)
            c = conv_ranks(a, b, 3, *ranks)
            return DynamicLowRankConv2d(a, b, 3, c.r_max, c.r_min,
                                        num_gate_blocks=c.num_gate_blocks, stride=s, padding=1,
                                        bias=False, **dynamic_kw)  # fmt: skip

        self.conv1, self.n1 = conv(cin, cout, stride), make_norm(norm, cout)
        self.conv2, self.n2 = conv(cout, cout, 1), make_norm(norm, cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), make_norm(norm, cout)
            )

    @staticmethod
    def _conv(conv: nn.Module, x: Tensor) -> Tensor:
        out = conv(x)
        return out[0] if isinstance(out, tuple) else out

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.n1(self._conv(self.conv1, x)))
        h = self.n2(self._conv(self.conv2, h))
        return torch.relu(h + self.shortcut(x))


class AdlrnsResNet(nn.Module):
    """A small ResNet for small images: a 3×3 stem, three stages of :class:`BasicBlock` at
    widths ``(w, 2w, 4w)`` (stages 2 and 3 halve the resolution), global average pooling and a
    linear head; returns logits.

    With ``dynamic=True`` every 3×3 conv of the blocks is a :class:`DynamicLowRankConv2d` that
    picks its rank per image (range from :func:`conv_ranks`); ``dynamic=False`` builds the
    same network with ``nn.Conv2d`` (the dense baseline). The stem stays an ``nn.Conv2d``
    either way: its full rank is at most ``C_in·9`` (9 for grayscale), too small to schedule.

    Normalisation is GroupNorm by default: it normalises each image by its own statistics, so
    an image run at a low rank at inference is not normalised by running statistics gathered
    at other ranks in training (BatchNorm's mismatch; compare with ``model.norm: batch`` in
    the experiments runner).

    Args:
        in_channels: image channels. classes: outputs.
        r_min, r_max, num_gate_blocks, scorer_hidden: the dynamic convs' settings (ceilings,
            clipped per conv).
        planned, nested: fractions of training images at their planned rank / at a random
            block end (:class:`DynamicLowRankConv2d`).
        width: ``w``, channels of the first stage.
        blocks_per_stage: basic blocks per stage.
        norm: ``"group"`` or ``"batch"``.
        dynamic: dynamic low-rank convs (True) or ``nn.Conv2d`` (False).

    Shape: ``(B, C_in, H, W) -> (B, classes)``.
    """

    def __init__(self, in_channels: int, classes: int, *, r_min: int = 4, r_max: int = 64,
                 num_gate_blocks: int = 8, scorer_hidden: int = 32, planned: float = 0.5,
                 nested: float = 0.0, width: int = 16, blocks_per_stage: int = 1,
                 norm: str = "group", dynamic: bool = True) -> None:  # fmt: skip
        super().__init__()
        for key, val in (("in_channels", in_channels), ("classes", classes), ("width", width),
                         ("blocks_per_stage", blocks_per_stage)):  # fmt: skip
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{key}={val!r} must be a positive int")
        if norm not in NORMS:
            raise ValueError(f"norm={norm!r} is unknown; pass one of {NORMS}")
        ranks = (r_min, r_max, num_gate_blocks) if dynamic else None
        kw = (
            {"scorer_hidden": scorer_hidden, "planned": planned, "nested": nested}
            if dynamic
            else {}
        )
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            make_norm(norm, width),
            nn.ReLU(),
        )
        layers: list[nn.Module] = []
        cin = width
        for i, cout in enumerate((width, 2 * width, 4 * width)):
            for j in range(blocks_per_stage):
                stride = 2 if i > 0 and j == 0 else 1
                layers.append(BasicBlock(cin, cout, stride, ranks, norm, **kw))
                cin = cout
        self.stages = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(cin, classes)

    def dynamic_convs(self) -> dict[str, DynamicLowRankConv2d]:
        """The dynamic convs by module name."""
        return {n: m for n, m in self.named_modules() if isinstance(m, DynamicLowRankConv2d)}

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x has shape {shape}; AdlrnsResNet takes images (B, C, H, W)")
        return self.head(self.pool(self.stages(self.stem(x))).flatten(1))
