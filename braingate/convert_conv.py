"""Converting torch convolutions to event convolutions, with BatchNorm folded in.

Registers ``nn.Conv1d`` -> :class:`~braingate.nn.event_conv.EventConv1d` and ``nn.Conv2d`` ->
:class:`~braingate.nn.event_conv.EventConv2d` in :data:`braingate.convert.CONVERTERS`
(truncated SVD of ``W.reshape(C_out, -1)``). A BatchNorm that directly follows a conv is folded
into its weight and bias first (:func:`fold_batchnorm`, running statistics, i.e. the eval-mode
function; ``bg.convert`` does it through the converter's ``absorbs`` / ``fold``). Grouped /
depthwise convs, non-zero padding modes and ``padding='same'`` with uneven padding (an odd
``dilation·(kernel_size−1)``) are not convertible: the factored weight mixes every input
channel, events of padded borders are not defined, and the event conv pads evenly; they stay
dense, with the reason in ``model.conversion_report`` (:func:`refusal`).
"""

from __future__ import annotations

import copy
import itertools
import math

import torch
from torch import nn

from braingate.convert import CONVERTERS, Converter
from braingate.nn.event_conv import EventConv1d, EventConv2d

__all__ = ["fold_batchnorm", "fold_batchnorms", "refusal"]

_PAIRS = {nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d}


def refusal(conv: nn.Module) -> str:
    """Why ``conv`` cannot become an event conv ("" if it can)."""
    if conv.groups != 1:
        return f"groups={conv.groups} (grouped / depthwise convs stay dense)"
    if conv.padding_mode != "zeros":
        return f"padding_mode={conv.padding_mode!r} (only 'zeros' converts)"
    if conv.padding == "same" and any(
        d * (k - 1) % 2 for k, d in zip(conv.kernel_size, conv.dilation, strict=True)
    ):  # torch pads such a conv unevenly (one more on the right); the event conv pads evenly
        return (
            f"padding='same' with kernel_size={conv.kernel_size}, dilation={conv.dilation} pads "
            "unevenly (only an even dilation·(kernel_size−1) converts; pad the input instead)"
        )
    return ""


def absorbs(conv: nn.Module, nxt: nn.Module | None) -> bool:
    """Whether ``nxt`` is a BatchNorm that folds into ``conv`` (matching type and channels,
    running statistics kept)."""
    bn_type = next((b for c, b in _PAIRS.items() if isinstance(conv, c)), None)
    return (
        bn_type is not None
        and type(nxt) is bn_type
        and nxt.num_features == conv.out_channels
        and nxt.track_running_stats
        and nxt.running_mean is not None
    )


def fold_batchnorm(conv: nn.Module, bn: nn.Module) -> nn.Module:
    r"""A copy of ``conv`` computing ``bn(conv(x))`` with BatchNorm's running statistics.

    .. math::
        a = γ / \sqrt{σ^2 + ε},\qquad W' = a ⊙ W,\qquad b' = a (b − μ) + β

    Raises:
        ValueError: ``bn`` does not fold into ``conv`` (see :func:`absorbs`).
    """
    if not absorbs(conv, bn):
        raise ValueError(
            f"{type(bn).__name__} does not fold into {type(conv).__name__}: it needs the "
            f"matching BatchNorm with num_features={conv.out_channels} and running statistics"
        )
    out = copy.deepcopy(conv)
    with torch.no_grad():
        a = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            a = a * bn.weight
        out.weight.mul_(a.reshape(-1, *([1] * (conv.weight.dim() - 1))))
        b = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        beta = bn.bias if bn.bias is not None else torch.zeros_like(b)
        new_bias = (b - bn.running_mean) * a + beta
        if out.bias is None:
            out.bias = nn.Parameter(new_bias.to(conv.weight.dtype))
        else:
            out.bias.copy_(new_bias)
    return out


def fold_batchnorms(model: nn.Module) -> list[str]:
    """Fold every BatchNorm that directly follows a conv inside an ``nn.Sequential`` of
    ``model`` (in place: the conv gets the folded weights, the BatchNorm becomes Identity).

    Returns:
        the names of the BatchNorms folded.
    """
    folded = []
    for name, seq in model.named_modules():
        if not isinstance(seq, nn.Sequential):
            continue
        keys = list(seq._modules)
        for k, nk in itertools.pairwise(keys):
            conv, bn = seq._modules[k], seq._modules[nk]
            if isinstance(conv, tuple(_PAIRS)) and absorbs(conv, bn):
                seq._modules[k] = fold_batchnorm(conv, bn)
                seq._modules[nk] = nn.Identity()
                folded.append(f"{name}.{nk}" if name else nk)
    return folded


def _full_rank(conv: nn.Module) -> int:
    return min(conv.out_channels, conv.in_channels // conv.groups * math.prod(conv.kernel_size))


def _builder(cls):
    def build(conv, rank, blocks, threshold, latent_threshold):
        why = refusal(conv)
        if why:
            raise ValueError(f"{type(conv).__name__} cannot convert: {why}")
        return cls.from_conv(conv, rank, blocks=blocks, threshold=threshold,
                             latent_threshold=latent_threshold)  # fmt: skip

    return build


CONVERTERS.add(
    nn.Conv1d, Converter(_full_rank, _builder(EventConv1d), absorbs, fold_batchnorm, refusal)
)
CONVERTERS.add(
    nn.Conv2d, Converter(_full_rank, _builder(EventConv2d), absorbs, fold_batchnorm, refusal)
)
