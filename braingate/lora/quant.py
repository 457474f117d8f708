"""NF4 4-bit quantisation in pure torch (QLoRA's frozen base), CPU friendly.

NormalFloat4 (Dettmers et al., QLoRA, arXiv 2305.14314, §3) stores a weight as a 4-bit index into
a 16-value codebook whose values are quantiles of a standard normal rescaled to [-1, 1], one
absmax constant per block of ``blocksize`` weights:

.. math::
    q_i = \\arg\\min_k |w_i / a_b - c_k|, \\qquad \\hat w_i = a_b\\, c_{q_i},\\qquad
    a_b = \\max_{i \\in b} |w_i|

Two indices share a byte (the first in the high nibble), as in bitsandbytes. *Double
quantisation* quantises the fp32 absmax constants themselves: their mean is subtracted and the
residuals are stored as int8 in blocks of 256 with one fp32 scale per block, so the constants cost
``8/64 + 32/(64·256)`` bits per weight instead of ``32/64`` (4.127 instead of 4.5 bits in all).
bitsandbytes stores the second level with its dynamic 8-bit tree code; here it is a symmetric
linear int8 code (an implementation choice: same memory, error well below the NF4 error).
The codebook values are those of REFERENCES.md §F (bitsandbytes ``functional.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["NF4_CODE", "Linear4bit", "NF4Tensor", "dequantize_nf4", "quantize_nf4"]

# REFERENCES.md §F: NF4 codebook, index 0..15 (bitsandbytes, QLoRA paper appendix E).
NF4_CODE = torch.tensor(
    [
        -1.0,
        -0.6961928009986877,
        -0.5250730514526367,
        -0.39491748809814453,
        -0.28444138169288635,
        -0.18477343022823334,
        -0.09105003625154495,
        0.0,
        0.07958029955625534,
        0.16093020141124725,
        0.24611230194568634,
        0.33791524171829224,
        0.44070982933044434,
        0.5626170039176941,
        0.7229568362236023,
        1.0,
    ],
    dtype=torch.float32,
)
_MIDPOINTS = (NF4_CODE[1:] + NF4_CODE[:-1]) / 2
_ABSMAX_BLOCK = 256  # REFERENCES.md §F: double quant blocks of 256 absmax values


@dataclass(frozen=True)
class NF4Tensor:
    """A tensor stored as packed NF4 codes plus per-block constants.

    Attributes:
        packed: uint8, two codes per byte (first code in the high nibble).
        absmax: fp32 per-block absmax (None when double quantised).
        q_absmax: int8 residual absmax codes (double quant only).
        absmax_scale: fp32 scale per 256 absmax values (double quant only).
        absmax_offset: the mean absmax subtracted before the second quantisation.
        shape, dtype, blocksize: of the original tensor.
    """

    packed: Tensor
    absmax: Tensor | None
    q_absmax: Tensor | None
    absmax_scale: Tensor | None
    absmax_offset: float
    shape: tuple[int, ...]
    dtype: torch.dtype
    blocksize: int

    @property
    def double_quant(self) -> bool:
        """Whether the absmax constants are themselves quantised."""
        return self.q_absmax is not None

    @property
    def nbytes(self) -> int:
        """Bytes of storage: packed codes plus constants (4 bytes for the offset)."""
        parts = [self.packed, self.absmax, self.q_absmax, self.absmax_scale]
        return sum(p.numel() * p.element_size() for p in parts if p is not None) + (
            4 if self.double_quant else 0
        )

    @property
    def bits_per_weight(self) -> float:
        """Storage bits per original weight (≈4.5, or ≈4.127 with double quantisation)."""
        numel = 1
        for d in self.shape:
            numel *= d
        return 8.0 * self.nbytes / numel

    def block_absmax(self) -> Tensor:
        """The per-block absmax constants (dequantised when double quantised)."""
        if self.absmax is not None:
            return self.absmax
        n = self.q_absmax.numel()
        q = F.pad(self.q_absmax.float(), (0, (-n) % _ABSMAX_BLOCK))
        scaled = q.view(-1, _ABSMAX_BLOCK) * self.absmax_scale[:, None]
        return scaled.flatten()[:n] + self.absmax_offset

    def dequantize(self) -> Tensor:
        """Rebuild the tensor: ``code[q] * absmax`` per block, in the original shape and dtype."""
        hi = (self.packed >> 4).long()
        lo = (self.packed & 0x0F).long()
        idx = torch.stack([hi, lo], dim=-1).flatten()
        values = NF4_CODE.to(self.packed.device)[idx].view(-1, self.blocksize)
        values = values * self.block_absmax()[:, None]
        numel = 1
        for d in self.shape:
            numel *= d
        return values.flatten()[:numel].view(self.shape).to(self.dtype)


def quantize_nf4(w: Tensor, blocksize: int = 64, double_quant: bool = False) -> NF4Tensor:
    """Quantise ``w`` to NF4 with blockwise absmax scaling.

    Args:
        w: any floating tensor; flattened row-major, padded with zeros to whole blocks.
        blocksize: weights per absmax constant (even, ≥ 2; QLoRA uses 64).
        double_quant: also quantise the absmax constants (int8, blocks of 256).

    Returns:
        An :class:`NF4Tensor`; ``.dequantize()`` gives the approximation back.
    """
    if not isinstance(w, Tensor) or not w.is_floating_point():
        raise TypeError(
            f"w must be a floating-point tensor, got {type(w).__name__}; pass w.float()"
        )
    if not isinstance(blocksize, int) or blocksize < 2 or blocksize % 2:
        raise ValueError(f"blocksize={blocksize!r} must be an even int >= 2; pass e.g. 64")
    flat = w.detach().float().flatten()
    pad = (-flat.numel()) % blocksize
    blocks = F.pad(flat, (0, pad)).view(-1, blocksize)
    absmax = blocks.abs().amax(dim=1)
    normed = blocks / absmax.clamp_min(torch.finfo(torch.float32).tiny)[:, None]
    idx = torch.bucketize(normed, _MIDPOINTS.to(flat.device)).to(torch.uint8).flatten()
    packed = (idx[0::2] << 4) | idx[1::2]
    if not double_quant:
        return NF4Tensor(packed, absmax, None, None, 0.0, tuple(w.shape), w.dtype, blocksize)
    offset = float(absmax.mean())
    resid = absmax - offset
    rpad = (-resid.numel()) % _ABSMAX_BLOCK
    rblocks = F.pad(resid, (0, rpad)).view(-1, _ABSMAX_BLOCK)
    scale = rblocks.abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny) / 127.0
    q = torch.round(rblocks / scale[:, None]).clamp(-127, 127).to(torch.int8).flatten()
    q = q[: resid.numel()]
    return NF4Tensor(packed, None, q, scale, offset, tuple(w.shape), w.dtype, blocksize)


def dequantize_nf4(q: NF4Tensor) -> Tensor:
    """Functional form of :meth:`NF4Tensor.dequantize`."""
    return q.dequantize()


class Linear4bit(nn.Module):
    """A frozen linear layer whose weight is stored in NF4 (QLoRA's base layer).

    ``y = x · dequant(W_q)ᵀ + b``; the weight is dequantised on every call (CPU, pure torch).

    Args:
        linear: the ``nn.Linear`` to quantise (its weight is not kept).
        blocksize, double_quant: see :func:`quantize_nf4`.
    """

    def __init__(self, linear: nn.Linear, blocksize: int = 64, double_quant: bool = True):
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be nn.Linear, got {type(linear).__name__}")
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.blocksize = blocksize
        self.double_quant = double_quant
        self.quantized = quantize_nf4(linear.weight, blocksize, double_quant)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())
        if self.bias is not None:
            self.bias.requires_grad_(False)

    @property
    def weight(self) -> Tensor:
        """The dequantised weight ``(out, in)`` (a fresh tensor, not a parameter)."""
        return self.quantized.dequantize()

    def requantize(self, w: Tensor) -> None:
        """Store ``w`` (e.g. a merged weight) in NF4, replacing the current weight."""
        self.quantized = quantize_nf4(w, self.blocksize, self.double_quant)

    def forward(self, x: Tensor) -> Tensor:
        """``F.linear(x, dequant(W), b)``."""
        return F.linear(x, self.weight.to(x.dtype), self.bias)

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination[prefix + "weight"] = self.weight

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        w = state_dict.pop(prefix + "weight", None)
        if w is not None:
            self.requantize(w)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"nf4 blocksize={self.blocksize}, double_quant={self.double_quant}"
        )
