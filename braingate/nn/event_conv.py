"""EventConv2d / EventConv1d: gated low-rank convolutions with dense and event-driven execution."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from braingate.functional.conv_events import (
    ConvEventState,
    ConvGeometry,
    conv_event_step,
    conv_lowrank,
    conv_out_shape,
    conv_reach,
)
from braingate.functional.events import refuse_nonfinite
from braingate.functional.gating import block_importance, blocks_to_units, first_k_blocks
from braingate.functional.lowrank import orthonormal_, svd_factorize
from braingate.nn import _validate as check
from braingate.nn._conv_runner import KERNEL_DTYPES, ConvRunner
from braingate.nn.base import Counts, EventModule, register_event_layer, threshold_property
from braingate.runtime import conv as _conv_ops
from braingate.runtime.ops import OPS, RUNTIME_LOCK, register_fuser
from braingate.runtime.ptr import AVAILABLE

__all__ = ["EventConv1d", "EventConv2d"]

GRANULARITIES = ("element", "pixel")
_CACHED = frozenset({"U", "s", "V", "bias", "threshold_raw", "latent_threshold_raw"})
_WITNESS = {np.float32: (np.zeros(1, np.float32), np.zeros(1, np.bool_)),
            np.float64: (np.zeros(1, np.float64), np.zeros(1, np.bool_))}  # fmt: skip


def _tuple(name: str, value, dims: int, minimum: int) -> tuple[int, ...]:
    vals = tuple(value) if isinstance(value, (tuple, list)) else (value,) * dims
    if len(vals) != dims or any(isinstance(v, bool) or not isinstance(v, int) for v in vals):
        raise TypeError(f"{name}={value!r} must be an int or {dims} ints")
    if any(v < minimum for v in vals):
        raise ValueError(f"{name}={value!r} must be >= {minimum} in every dim")
    return vals


class _EventConvNd(EventModule):
    r"""Gated low-rank convolution (DESIGN §2b); see :class:`EventConv2d`."""

    dims = 2

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple,
        rank: int,
        *,
        stride: int | tuple = 1,
        padding: int | tuple | str = 0,
        dilation: int | tuple = 1,
        groups: int = 1,
        padding_mode: str = "zeros",
        blocks: int = 1,
        threshold: float | Tensor = 0.0,
        latent_threshold: float | Tensor = 0.0,
        bias: bool = True,
        granularity: str = "element",
        resync_every: int = 1000,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        d = self.dims
        C = check.positive_int("in_channels", in_channels)
        Co = check.positive_int("out_channels", out_channels)
        k = _tuple("kernel_size", kernel_size, d, 1)
        st = _tuple("stride", stride, d, 1)
        dil = _tuple("dilation", dilation, d, 1)
        pad = self._padding(padding, k, st, dil)
        if groups != 1:
            raise ValueError(
                f"groups={groups} is not supported: the factored weight mixes all input channels; "
                "use groups=1, or keep grouped/depthwise convs dense (bg.convert leaves them)"
            )
        if padding_mode != "zeros":
            raise ValueError(
                f"padding_mode={padding_mode!r} is not supported (events of padded borders are "
                "not defined); use padding_mode='zeros'"
            )
        check.positive_int("rank", rank)
        check.positive_int("blocks", blocks)
        full = min(Co, C * math.prod(k))
        if rank > full:
            raise ValueError(
                f"rank={rank} exceeds min(out_channels, in_channels·∏kernel_size)={full}; "
                f"pass rank<={full}"
            )
        if rank % blocks:
            raise ValueError(
                f"rank={rank} is not divisible by blocks={blocks}; pass a rank that is a "
                f"multiple of blocks (e.g. rank={max(blocks, rank // blocks * blocks)})"
            )
        if isinstance(resync_every, bool) or not isinstance(resync_every, int) or resync_every < 0:
            raise ValueError(f"resync_every={resync_every!r} must be an int >= 0 (0 disables)")
        self.in_channels, self.out_channels, self.rank, self.blocks = C, Co, rank, blocks
        self.kernel_size, self.stride, self.padding, self.dilation = k, st, pad, dil
        self.granularity = granularity
        self.resync_every = resync_every
        kw = {"device": device, "dtype": dtype}
        n = C * math.prod(k)
        self.U = nn.Parameter(torch.empty(Co, rank, **kw))
        self.s = nn.Parameter(torch.empty(rank, **kw))
        self.V = nn.Parameter(torch.empty(n, rank, **kw))
        if bias:
            self.bias = nn.Parameter(torch.empty(Co, **kw))
        else:
            self.register_parameter("bias", None)
        self._threshold = check.threshold("threshold", threshold, C)
        self._latent_threshold = check.threshold("latent_threshold", latent_threshold, rank)
        self._gate: Tensor | None = None
        self.register_buffer("_all_on", torch.ones(rank, dtype=torch.bool, device=device), False)
        self._runner = ConvRunner(C, Co, rank)
        self._in_spatial: tuple | None = None  # of the last input (describe, hwmaps)
        self._epoch = 0
        self.reset_parameters()

    def _padding(self, padding, k, st, dil) -> tuple[int, ...]:
        if padding == "valid":
            return (0,) * self.dims
        if padding == "same":
            if any(s != 1 for s in st) or any(d * (kk - 1) % 2 for kk, d in zip(k, dil)):
                raise ValueError(
                    f"padding='same' needs stride 1 and an even d·(k−1) (got stride={st}, "
                    f"kernel_size={k}, dilation={dil}); pass explicit padding"
                )
            return tuple(d * (kk - 1) // 2 for kk, d in zip(k, dil))
        if isinstance(padding, str):
            raise ValueError(
                f"padding={padding!r} is unknown; pass an int, a tuple, 'valid' or 'same'"
            )
        return _tuple("padding", padding, self.dims, 0)

    @property
    def granularity(self) -> str:
        """``"element"`` (send each channel of a pixel on its own) or ``"pixel"`` (send all
        channels of a pixel when any crosses its threshold, as DeltaCNN)."""
        return self.__dict__["_granularity"]

    @granularity.setter
    def granularity(self, value: str) -> None:
        if value not in GRANULARITIES:
            raise ValueError(f"granularity={value!r} is unknown; pass one of {GRANULARITIES}")
        self.__dict__["_granularity"] = value
        if "_epoch" in self.__dict__:
            self._epoch += 1

    # -- parameters -----------------------------------------------------------------------------
    def reset_parameters(self) -> None:
        """Orthonormal ``U``, ``V`` and equal ``s`` with the scale of ``nn.Conv2d``'s init."""
        with torch.no_grad():
            for p in (self.U, self.V):
                orthonormal_(p)
            self.s.fill_(math.sqrt(self.out_channels / (3.0 * self.rank)))
            if self.bias is not None:
                bound = 1.0 / math.sqrt(self.V.shape[0])
                self.bias.uniform_(-bound, bound)
        self.reset()

    @classmethod
    def from_conv(cls, conv: nn.Module, rank: int, **kw) -> _EventConvNd:
        """Factor a torch conv by truncated SVD of ``W.reshape(C_out, -1)``; full rank
        (``min(C_out, C_in·∏k)``) reproduces it. ``approx_error`` holds the relative Frobenius
        error."""
        torch_type = nn.Conv2d if cls.dims == 2 else nn.Conv1d
        if not isinstance(conv, torch_type):
            raise TypeError(f"conv must be an {torch_type.__name__}, got {type(conv).__name__}")
        w = conv.weight
        kw.setdefault("device", w.device)
        kw.setdefault("dtype", w.dtype)
        layer = cls(conv.in_channels, conv.out_channels, conv.kernel_size, rank,
                    stride=conv.stride, padding=conv.padding, dilation=conv.dilation,
                    groups=conv.groups, padding_mode=conv.padding_mode,
                    bias=conv.bias is not None, **kw)  # fmt: skip
        U, s, V, err = svd_factorize(w.reshape(conv.out_channels, -1), rank)
        with torch.no_grad():
            layer.U.copy_(U)
            layer.s.copy_(s)
            layer.V.copy_(V)
            if conv.bias is not None:
                layer.bias.copy_(conv.bias)
        layer.approx_error = err
        return layer

    def geometry(self) -> ConvGeometry:
        return ConvGeometry(self.kernel_size, self.stride, self.padding, self.dilation)

    def kernel_geometry(self) -> dict:
        """The geometry as the 2-D compiled op sees it (1-D convs have height 1)."""
        rows = list(zip(self.kernel_size, self.stride, self.padding, self.dilation))
        (kh, sh, ph, dh), (kw, sw, pw, dw) = [(1, 1, 0, 1), *rows] if self.dims == 1 else rows
        return dict(kh=kh, kw=kw, sh=sh, sw=sw, ph=ph, pw=pw, dh=dh, dw=dw)

    def out_spatial(self, in_spatial: tuple[int, ...]) -> tuple[int, ...]:
        return conv_out_shape(tuple(in_spatial), self.geometry())

    def weight(self) -> Tensor:
        """The conv weight ``(C_out, C_in, *k)`` of ``U·diag(s⊙g)·Vᵀ`` (``(B, ...)`` under a
        per-sample gate)."""
        scale = self.s * self.gate_units()
        W = (self.U * scale.unsqueeze(-2)) @ self.V.t()
        return W.reshape(*W.shape[:-1], self.in_channels, *self.kernel_size)

    # -- thresholds -----------------------------------------------------------------------------
    threshold = threshold_property(
        "threshold",
        "Input θ ≥ 0 (scalar or per input channel); ``softplus(threshold_raw)`` if learned.",
    )
    latent_threshold = threshold_property(
        "latent_threshold",
        "Latent θ_z ≥ 0 (scalar or per latent channel); learnable like ``threshold``.",
    )

    def threshold_sizes(self) -> dict[str, int]:
        return {"threshold": self.in_channels, "latent_threshold": self.rank}

    # -- gates ----------------------------------------------------------------------------------
    def set_active_blocks(self, k_or_mask: int | Tensor | None) -> None:
        """Switch latent-channel blocks: ``k`` most important (by ``Σ s²``), a bool mask
        ``(blocks,)`` / ``(B, blocks)``, or None for all. Takes effect at the next step."""
        if k_or_mask is None:
            self._gate = None
        elif isinstance(k_or_mask, Tensor):
            if k_or_mask.dtype != torch.bool:
                raise TypeError(f"gate mask must be a bool tensor, got dtype {k_or_mask.dtype}")
            if k_or_mask.dim() not in (1, 2) or k_or_mask.shape[-1] != self.blocks:
                raise ValueError(
                    f"gate mask has shape {tuple(k_or_mask.shape)}; pass ({self.blocks},) or "
                    f"(B, {self.blocks}) for blocks={self.blocks}"
                )
            self._gate = blocks_to_units(k_or_mask.to(self.U.device), self.rank).clone()
        elif isinstance(k_or_mask, int) and not isinstance(k_or_mask, bool):
            if not 0 <= k_or_mask <= self.blocks:
                raise ValueError(
                    f"k={k_or_mask} active blocks is out of range; pass 0 <= k <= {self.blocks}"
                )
            mask = first_k_blocks(block_importance(self.s, self.blocks), k_or_mask)
            self._gate = blocks_to_units(mask, self.rank)
        else:
            raise TypeError(
                "set_active_blocks takes an int, a bool tensor or None, got "
                f"{type(k_or_mask).__name__}"
            )
        self._epoch += 1

    def gate_units(self) -> Tensor:
        """The latent-channel gate: bool ``(R,)`` or ``(B, R)``."""
        return self._all_on if self._gate is None else self._gate

    @property
    def active_rank(self) -> Tensor:
        return self.gate_units().sum(-1)

    # -- change tracking ------------------------------------------------------------------------
    def __setattr__(self, name: str, value) -> None:
        super().__setattr__(name, value)
        if name in _CACHED and "_epoch" in self.__dict__:
            self.__dict__["_epoch"] += 1

    def register_parameter(self, name: str, param) -> None:
        super().register_parameter(name, param)
        if name in _CACHED and "_epoch" in self.__dict__:
            self.__dict__["_epoch"] += 1

    def refresh(self) -> None:
        """Re-read factors, bias and thresholds at the next step and re-sync the stream to them
        (needed only after edits that bypass version counters, e.g. ``p.data = ...``)."""
        self._epoch += 1
        self._runner.basis = ("refresh",)

    def _apply(self, fn, recurse: bool = True):
        out = super()._apply(fn, recurse)
        if self._gate is not None:
            self._gate = fn(self._gate)
        self._epoch += 1
        self._runner.reset(None, drop=True)
        return out

    def reset(self) -> None:
        """Clear the event state and its counters (parameters, thresholds and gates kept)."""
        with RUNTIME_LOCK:
            self._runner.reset(self._gate)

    # -- forward --------------------------------------------------------------------------------
    def _check_input(self, x, event: bool) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"input must be a torch.Tensor, got {type(x).__name__}")
        if x.layout != torch.strided:
            raise TypeError(f"input has layout {x.layout}; pass a dense tensor: x.to_dense()")
        d, C = self.dims, self.in_channels
        want = "(B, C, L)" if d == 1 else "(B, C, H, W)"
        if event and x.dim() != d + 2:
            raise ValueError(
                f"execution={self._execution!r} takes one time step {want} with C={C}, got "
                f"{tuple(x.shape)}; for a (T, B, ...) stream use bg.simulate(model, xs) or "
                "execution='dense'"
            )
        if x.dim() < d + 1 or x.shape[-d - 1] != C:
            raise ValueError(
                f"input has shape {tuple(x.shape)} but in_channels={C}; pass (..., {C}, "
                f"{'L' if d == 1 else 'H, W'})"
            )
        if x.numel() == 0:
            raise ValueError(f"input has shape {tuple(x.shape)}: no samples; pass at least one")
        out = self.out_spatial(tuple(x.shape[-d:]))
        if min(out) < 1:
            raise ValueError(
                f"input spatial size {tuple(x.shape[-d:])} is smaller than the dilated kernel "
                f"{self.kernel_size} (padding {self.padding}); pass a larger input or more padding"
            )
        if x.dtype != self.U.dtype:
            raise TypeError(f"input dtype {x.dtype} differs from the layer's {self.U.dtype}; "
                            f"use x.to({self.U.dtype})")  # fmt: skip
        if x.device != self.U.device:
            raise ValueError(f"input is on {x.device} but the layer is on {self.U.device}; "
                             f"move one with .to({self.U.device!s})")  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        if self._execution == "dense":
            self._check_input(x, event=False)
            refuse_nonfinite(x.detach())
            return self._dense(x)
        self._check_input(x, event=True)
        with RUNTIME_LOCK:
            self._in_spatial = tuple(x.shape[2:])
            if self._kernel_ok(x):
                return self._kernel_step(x)
            return self._torch_step(x)

    def _dense(self, x: Tensor) -> Tensor:
        d = self.dims
        lead = x.shape[: -d - 1]
        self._in_spatial = tuple(x.shape[-d:])
        flat = x.reshape(-1, *x.shape[-d - 1 :])
        gate = self._gate
        if gate is not None and gate.dim() == 2:
            if not lead or lead[-1] != gate.shape[0]:
                raise ValueError(
                    f"per-sample gate for B={gate.shape[0]} does not match input shape "
                    f"{tuple(x.shape)}; pass (..., {gate.shape[0]}, C, ...)"
                )
            gate = gate.expand(*lead, -1).reshape(-1, self.rank)
        y = conv_lowrank(flat, self.U, self.s, self.V, self.bias, gate, self.geometry())
        return y.reshape(*lead, *y.shape[1:])

    def _kernel_ok(self, x: Tensor) -> bool:
        return (
            AVAILABLE
            and x.is_cpu
            and x.dtype in KERNEL_DTYPES
            and type(x) is Tensor
            and not (torch.is_grad_enabled()
                     and (x.requires_grad or any(p.requires_grad for p in self._parameters.values()
                                                 if p is not None)))
        )  # fmt: skip

    def _kernel_step(self, x: Tensor) -> Tensor:
        r = self._runner
        B = x.shape[0]
        r.prepare(self, tuple(x.shape), x.dtype)
        values, keep = r.row_values(self)
        row = np.array(values, np.int64)
        xn = x.detach().contiguous().numpy().reshape(B, -1)
        f, g = _WITNESS[KERNEL_DTYPES[x.dtype]]
        out = OPS.get("event_conv").step(xn, row, f, g)
        del keep  # the arrays lived through the call (held by the runner as well)
        r.fresh, r.last = False, "kernel"
        r.advance(self, 1)
        return torch.from_numpy(out).reshape(B, self.out_channels, *r.spatial[1])

    def _torch_step(self, x: Tensor) -> Tensor:
        refuse_nonfinite(x.detach())
        r = self._runner
        sp = tuple(x.shape[2:])
        out_sp = self.out_spatial(sp)
        r.check_stream(tuple(x.shape), out_sp)
        st = r.to_torch() if r.bufs is not None else r.tstate
        r.bufs = None
        gate = self.gate_units().expand(x.shape[0], -1)
        if st is None or st.y.dtype != x.dtype or st.y.device != x.device:
            st = self.init_state(x.shape[0], x)
        y, st, c, (ie, le) = conv_event_step(x, st, self.U, self.s, self.V, gate, self.threshold,
                                             self.latent_threshold, self.geometry(),
                                             self.granularity)  # fmt: skip
        r.tstate, r.spatial, r.fresh, r.last = st, (sp, out_sp), False, "torch"
        r.torch_counts = self._counts(c, sp)
        r.in_units += ie.detach().sum((0, *range(2, ie.dim()))).cpu().numpy().astype(np.int64)
        r.lat_units += le.detach().sum((0, *range(2, le.dim()))).cpu().numpy().astype(np.int64)
        r.advance(self, 1)
        return y if self.bias is None else y + self.bias.reshape(-1, *([1] * self.dims))

    # -- the event-module protocol (DESIGN §2d) --------------------------------------------------
    def _sizes(self, in_spatial: tuple) -> tuple[int, int]:
        """``(C_in·∏k, ∏out)``: latent MACs per output position and per-map output positions."""
        return self.V.shape[0], math.prod(self.out_spatial(in_spatial))

    def _counts(self, c, in_spatial: tuple) -> Counts:
        """Counts of a step from the per-sample StepCounts ``c`` (numpy, ``(B,)`` each)."""
        taps_in, P = self._sizes(in_spatial)
        active = np.asarray(c.active_rank.detach().cpu() if isinstance(c.active_rank, Tensor)
                            else c.active_rank, np.float64)  # fmt: skip
        conv = lambda v: np.asarray(v.detach().cpu() if isinstance(v, Tensor) else v, np.float64)  # noqa: E731
        zeros = np.zeros_like(active)
        return Counts(
            synops=conv(c.synops), dense_synops=zeros + self.out_channels * P * taps_in,
            lowrank_ops=active * (taps_in + self.out_channels) * P,
            input_events=conv(c.input_events), latent_events=conv(c.latent_events),
            gate_ops=conv(c.gate_ops), resync_ops=zeros, neuron_ops=zeros,
        )  # fmt: skip

    @property
    def last_counts(self) -> Counts | None:
        """:class:`~braingate.nn.base.Counts` of the last event step, ``(B,)`` arrays."""
        r = self._runner
        if r.last == "torch":
            return r.torch_counts
        if r.last != "kernel" or r.bufs is None:
            return None
        k = r.bufs.counts
        from braingate.state import StepCounts

        c = StepCounts(k[:, 0], k[:, 1], k[:, 2], k[:, 3], k[:, 4])
        return self._counts(c, r.spatial[0])

    def dense_counts(self, sample_shape: tuple[int, ...]) -> Counts:
        """One dense step of one sample with input ``(C_in, *spatial)``: every input element
        and every active latent element sent."""
        sp = tuple(sample_shape)[1:]
        taps_in, P = self._sizes(sp)
        active = float(self.active_rank.double().mean())
        reach = float(conv_reach(sp, self.geometry()).sum())
        ops = active * (taps_in + self.out_channels) * P
        return Counts(
            synops=self.in_channels * reach * active + active * P * self.out_channels,
            dense_synops=float(self.out_channels * P * taps_in), lowrank_ops=ops,
            input_events=float(self.in_channels * math.prod(sp)), latent_events=active * P,
        )  # fmt: skip

    def unit_events(self) -> tuple[np.ndarray, np.ndarray]:
        """Events per input channel ``(C_in,)`` and per latent channel ``(R,)`` (over positions,
        samples and steps since the reset)."""
        return self._runner.in_units.copy(), self._runner.lat_units.copy()

    def describe(self) -> dict:
        sp = self._in_spatial
        d = {
            "in_features": self.V.shape[0], "out_features": self.out_channels,
            "rank": self.rank, "blocks": self.blocks, "in_channels": self.in_channels,
            "out_channels": self.out_channels, "kernel_size": list(self.kernel_size),
            "stride": list(self.stride), "padding": list(self.padding),
            "dilation": list(self.dilation), "granularity": self.granularity,
            "in_spatial": None if sp is None else list(sp),
            "out_spatial": None if sp is None else list(self.out_spatial(sp)),
        }  # fmt: skip
        return d

    def report_entry(self, batch: int, dense_steps: int = 0) -> dict:
        """Report fields; a dense step sends every element: ``∏in`` events per input channel and
        ``∏out`` per active latent channel."""
        d = super().report_entry(batch, 0)
        if dense_steps and self._in_spatial is not None:
            n_in = math.prod(self._in_spatial)
            n_out = math.prod(self.out_spatial(self._in_spatial))
            gate = self.gate_units().expand(batch, -1).double().mean(0).cpu().numpy()
            d["input_unit_events"] = (
                np.asarray(d["input_unit_events"]) + dense_steps * n_in
            ).tolist()
            d["latent_unit_events"] = (np.asarray(d["latent_unit_events"])
                                       + dense_steps * n_out * gate).tolist()  # fmt: skip
        d["resync_ops"] = self._runner.resync_ops / batch
        return d

    def init_state(self, batch: int, like: Tensor) -> ConvEventState | None:
        """Zero state for inputs shaped like ``like`` ``(B, C, *spatial)``; None when ``like``
        has no spatial shape (the first :meth:`reference_step` then builds it)."""
        d = self.dims
        if like.dim() != d + 2:
            return None
        sp = tuple(like.shape[2:])
        gate = self.gate_units().expand(batch, -1)
        return ConvEventState.zeros((batch, self.in_channels, *sp), self.out_channels,
                                    self.out_spatial(sp), gate, like.dtype, like.device)  # fmt: skip

    def reference_step(self, x: Tensor, state) -> tuple[Tensor, ConvEventState, Counts]:
        """The torch event step (:func:`~braingate.functional.conv_events.conv_event_step`),
        differentiable; ``state`` None starts from zeros."""
        self._check_input(x, event=True)
        refuse_nonfinite(x.detach())
        if state is None:
            state = self.init_state(x.shape[0], x)
        gate = self.gate_units().expand(x.shape[0], -1)
        y, state, c, _ = conv_event_step(x, state, self.U, self.s, self.V, gate, self.threshold,
                                         self.latent_threshold, self.geometry(),
                                         self.granularity)  # fmt: skip
        taps_in, P = self._sizes(tuple(x.shape[2:]))
        counts = Counts(
            synops=c.synops, dense_synops=float(self.out_channels * P * taps_in),
            lowrank_ops=(taps_in + self.out_channels) * P * c.active_rank,
            input_events=c.input_events, latent_events=c.latent_events, gate_ops=c.gate_ops,
        )  # fmt: skip
        bias = 0 if self.bias is None else self.bias.reshape(-1, *([1] * self.dims))
        return y + bias, state, counts

    # -- introspection and state dict --------------------------------------------------------------
    def extra_repr(self) -> str:
        th = self._threshold if isinstance(self._threshold, float) else "per-channel"
        lth = self._latent_threshold if isinstance(self._latent_threshold, float) else "per-channel"
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"rank={self.rank}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, blocks={self.blocks}, threshold={th}, "
                f"latent_threshold={lth}, execution={self._execution!r}")  # fmt: skip

    def get_extra_state(self) -> dict:
        return {"threshold": self._threshold, "latent_threshold": self._latent_threshold,
                "execution": self._execution, "resync_every": self.resync_every,
                "granularity": self.granularity,
                "gate": None if self._gate is None else self._gate.detach().cpu().clone()}  # fmt: skip

    def set_extra_state(self, state: dict) -> None:
        if not isinstance(state, dict) or "threshold" not in state:
            raise ValueError(
                f"{type(self).__name__} extra state must be the dict saved by get_extra_state, "
                f"got {type(state).__name__}"
            )
        for name in ("threshold", "latent_threshold"):
            size = self.in_channels if name == "threshold" else self.rank
            if name + "_raw" in self._parameters:
                self.__dict__["_" + name] = check.threshold(name, state[name], size)
            else:
                setattr(self, name, state[name])
        self.execution = state["execution"]
        self.resync_every = state["resync_every"]
        self.granularity = state.get("granularity", "element")
        gate = state.get("gate")
        if gate is not None and (gate.dtype != torch.bool or gate.shape[-1] != self.rank):
            raise ValueError(f"saved gate has dtype {gate.dtype}, shape {tuple(gate.shape)}; "
                             f"expected a bool (..., {self.rank}) mask")  # fmt: skip
        self._gate = None if gate is None else gate.to(self.U.device).clone()
        self._epoch += 1
        self.reset()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing,
                              unexpected, errors):  # fmt: skip
        for name, size in (("threshold", self.in_channels), ("latent_threshold", self.rank)):
            key = prefix + name + "_raw"
            if key in state_dict and name + "_raw" not in self._parameters:
                raw = state_dict[key]
                if not isinstance(raw, Tensor) or raw.shape not in ((), (size,)):
                    errors.append(f"{key} has shape {getattr(raw, 'shape', None)}; expected () "
                                  f"or ({size},)")  # fmt: skip
                    continue
                self.register_parameter(name + "_raw", nn.Parameter(
                    torch.zeros(raw.shape, dtype=self.U.dtype, device=self.U.device)))  # fmt: skip
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing,
                                      unexpected, errors)  # fmt: skip


@register_event_layer("event_conv2d")
class EventConv2d(_EventConvNd):
    r"""2-D convolution with weight ``W_mat ≈ U·diag(s⊙g)·Vᵀ`` that can recompute only what changed.

    .. math::
        z = V ∗ x,\qquad y = U\,\mathrm{diag}(s ⊙ g)\,z + b

    ``V`` holds ``R`` filters of ``C_in×k_h×k_w`` (rows of ``W.reshape(C_out, -1)``'s factor),
    ``U`` mixes the ``R`` latent channels (a 1×1 conv); blocks and gates act on the latent
    channels (:meth:`set_active_blocks`).

    Execution (``execution``):

    - ``"dense"``: stateless; ``(..., C_in, H, W)``, a whole ``(T, B, C, H, W)`` sequence folded
      into one conv call.
    - ``"event"`` (and ``"auto"``, which takes the event path for convs): one frame
      ``(B, C_in, H, W)`` per call. Input elements whose change since last sent exceeds θ scatter
      into the latent map, latent elements whose change exceeds θ_z update the output; gate
      changes withdraw / add latent channels. Per output element
      ``|y − W_g ∗ x| ≤ θ‖W_g‖_∞ + θ_z‖U diag(s⊙g)‖_∞`` (row sums over each output channel's
      taps), no growth over time; ``θ = θ_z = 0`` equals the dense path up to rounding, and a
      re-sync every ``resync_every`` steps removes rounding drift.

    Args:
        in_channels, out_channels, kernel_size: as ``nn.Conv2d``.
        rank: ``R ≤ min(C_out, C_in·k_h·k_w)``, divisible by ``blocks``.
        stride, padding (int, pair, ``"valid"`` or ``"same"``), dilation: as ``nn.Conv2d``;
            ``groups`` must be 1 and ``padding_mode`` ``"zeros"``.
        blocks: gate blocks over the latent channels.
        threshold: θ ≥ 0, scalar or per input channel. latent_threshold: θ_z, scalar or ``(R,)``.
        bias: learn an additive bias.
        granularity: ``"element"`` or ``"pixel"`` (all channels of a pixel sent together).
        resync_every: steps between exact re-syncs (0 disables).

    Shape:
        dense ``(..., C_in, H, W) -> (..., C_out, H', W')``; event ``(B, C_in, H, W) -> (B,
        C_out, H', W')``.

    Example:
        >>> import torch, braingate as bg
        >>> from braingate.nn.event_conv import EventConv2d
        >>> conv = EventConv2d(2, 8, 3, rank=4, padding=1)
        >>> x = torch.randn(1, 2, 6, 6)
        >>> y_dense = conv(x)
        >>> conv.execution = "event"
        >>> torch.allclose(conv(x), y_dense, atol=1e-5)
        True
    """

    dims = 2

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, rank: int, **kw) -> EventConv2d:
        """Factor an ``nn.Conv2d`` (see :meth:`_EventConvNd.from_conv`)."""
        return super().from_conv(conv, rank, **kw)


@register_event_layer("event_conv1d")
class EventConv1d(_EventConvNd):
    r"""1-D convolution with a gated low-rank factored weight (see :class:`EventConv2d`).

    Shape:
        dense ``(..., C_in, L) -> (..., C_out, L')``; event ``(B, C_in, L) -> (B, C_out, L')``.
    """

    dims = 1

    @classmethod
    def from_conv(cls, conv: nn.Conv1d, rank: int, **kw) -> EventConv1d:
        """Factor an ``nn.Conv1d`` (see :meth:`_EventConvNd.from_conv`)."""
        return super().from_conv(conv, rank, **kw)


@register_fuser(_EventConvNd)
def _fuse_event_conv(module: _EventConvNd, B: int, dtype, in_shape: tuple):
    """Lower an event conv for a compiled chain, on the layer's own state arrays."""
    if not AVAILABLE:
        return "the compiled kernels (numba) are not available"
    if module.execution == "dense":
        return "execution='dense' (set 'event')"
    if module.U.device.type != "cpu" or module.U.dtype not in KERNEL_DTYPES:
        return f"{module.U.dtype} on {module.U.device}; needs float32/64 on CPU"
    if dtype != module.U.dtype:
        return f"the chain's dtype {dtype} differs from the layer's {module.U.dtype}"
    d = module.dims
    if len(in_shape) != d + 1 or in_shape[0] != module.in_channels:
        return f"it receives per-sample shape {tuple(in_shape)}, not ({module.in_channels}, ...)"
    if min(module.out_spatial(tuple(in_shape[1:]))) < 1:
        return f"its output is empty on input {tuple(in_shape)}"
    if module.gate_units().dim() == 2 and module.gate_units().shape[0] != B:
        return f"its per-sample gate is for B={module.gate_units().shape[0]}, not {B}"
    module._in_spatial = tuple(in_shape[1:])
    try:
        return module._runner.chain_row(module, B, tuple(in_shape), dtype)
    except ValueError as e:  # a batch / size change mid-stream: the module path says so
        return str(e)


_ = _conv_ops  # registers the conv and pooling ops
