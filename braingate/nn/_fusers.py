"""How braingate's own modules lower to compiled chain ops (:mod:`braingate.runtime`).

EventLinear lowers to the ``event_linear`` op on its runner's state (which the runner owns), LIF to
the ``lif`` op on a membrane array this fuser allocates. Each row lists what makes it stale.
"""

from __future__ import annotations

import numpy as np
import torch

from braingate.nn.event_linear import EventLinear
from braingate.nn.lif import LIF
from braingate.runtime import Row, register_fuser
from braingate.runtime.elementwise import LIF_LAYOUT
from braingate.runtime.ops import RunnerStepper

__all__: list[str] = []


class _LinearStepper(RunnerStepper):
    """Step bookkeeping of an EventLinear stepped by a compiled chain."""

    __slots__ = ("layer",)

    def __init__(self, layer: EventLinear) -> None:
        self.layer, self.runner = layer, layer._runner

    def started(self) -> None:
        self.runner._fresh = False

    def advance(self, p: int) -> int:
        r, k = self.runner, self.layer.resync_every
        r.steps += p
        if not k:
            return 1 << 62
        if (r.steps - p) // k != r.steps // k and r.state is not None:
            r._resync(self.layer)  # in place: the chain's addresses stay valid
        return k - r.steps % k

    def restarted(self) -> None:
        self.runner.restarted(fresh=True)


@register_fuser(EventLinear)
def _fuse_linear(layer: EventLinear, B: int, dtype, in_shape) -> Row | str:
    r = layer._runner
    U = layer._parameters["U"]
    if layer.execution != "event":
        return f"execution={layer.execution!r}, not 'event'"
    if U.dtype is not dtype or U.device.type != "cpu":
        return f"its factors are {U.dtype} on {U.device}; the stream is {dtype} on cpu"
    if tuple(in_shape) != (layer.in_features,):
        return f"it takes ({layer.in_features},) per sample, receives {tuple(in_shape)}"
    gate = layer.gate_units()
    if gate.dim() == 2 and gate.shape[0] != B:
        return "its per-sample gate does not match the batch"
    if r.state is not None and r.state.x_hat.shape[0] != B and r._fresh:
        r.state, r._views, r._hot = None, None, None  # reset, then a new batch size
    if r._mark is not None or (r.state is not None and r.state.x_hat.shape[0] != B):
        return "its stream has another batch size (reset it first)"
    ctx = r.context(layer, gate, B)
    r.ensure_state(layer, ctx)
    if r._views is None:
        r._adopt()
    r.last_counts = np.zeros((B, 5), np.int64)
    made = r.kernel_row(layer, ctx, r.last_counts)
    if made is None:
        return "an array without the kernel's dtype or layout"
    row, keep = made
    watch = (
        (r.__dict__, "state", r.state),  # replaced together with the arrays it views
        (r.__dict__, "last_counts", r.last_counts),  # the module path replaces it
    )  # execution, resync_every, thresholds, gates: layer._changes (see EventLinear._WATCHED)
    return Row("event_linear", row, keep, (layer.in_features,), (layer.out_features,), watch,
               ctx.tracked, ((layer.__dict__, "_changes"),), (),
               _LinearStepper(layer))  # fmt: skip


@register_fuser(LIF)
def _fuse_lif(lif: LIF, B: int, dtype, in_shape) -> Row | str:
    if dtype is not torch.float32:
        return f"LIF neurons step in float32; the stream is {dtype}"
    if tuple(in_shape) != (lif.size,):
        return f"LIF has size {lif.size} but receives {tuple(in_shape)}"
    mem = lif.mem
    buf = np.zeros((B, lif.size), np.float32)
    if mem is not None and tuple(mem.shape) == (B, lif.size) and not mem.requires_grad:
        buf[:] = mem.detach().cpu().numpy()
    lif.mem = torch.from_numpy(buf)  # the module's membrane is a view of the runtime's array
    beta = np.array(lif.beta.detach().cpu().numpy(), np.float32, copy=True)
    thr = np.array(lif.threshold.detach().cpu().numpy(), np.float32, copy=True)
    row = LIF_LAYOUT.pack(in_size=lif.size, out_size=lif.size, mem=buf.ctypes.data,
                          beta=beta.ctypes.data, thr=thr.ctypes.data,
                          zero_reset=int(lif.reset_mode == "zero"))  # fmt: skip
    watch = (
        (lif.__dict__, "mem", lif.mem),
        (lif._buffers, "beta", lif.beta),
        (lif._buffers, "threshold", lif.threshold),
    )
    return Row("lif", row, (buf, beta, thr), (lif.size,), (lif.size,), watch,
               (lif.beta, lif.threshold), (), ((lif.mem, lif.mem.data_ptr()),), None)  # fmt: skip
