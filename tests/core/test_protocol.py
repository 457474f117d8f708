"""The event-module protocol (DESIGN §2d): a layer type defined here, in the test, runs through
simulate, Report, calibrate_thresholds, compile_events and hwmaps.extract with no change to any of
those files — only registrations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import braingate as bg
import hwmaps
from braingate.nn.base import EVENT_LAYERS, Counts, EventModule, register_event_layer
from braingate.runtime import OPS, Layout, Op, Row, register_fuser
from braingate.runtime.ptr import AVAILABLE, view


@register_event_layer("test_diag")
class EventDiag(EventModule):
    """``y = d ⊙ x̂``: an event-driven elementwise scale (input sigma-delta, residual carried)."""

    def __init__(self, n: int, threshold: float = 0.0) -> None:
        super().__init__()
        self.n = n
        self.d = nn.Parameter(torch.linspace(0.5, 1.5, n))
        self.threshold = threshold
        self.blocks = 1
        self.reset()

    def reset(self) -> None:
        self.x_hat = None
        self._counts = None
        self.in_units = np.zeros(self.n)

    def forward(self, x):
        if self.execution == "dense":
            return x * self.d
        if self.x_hat is None or self.x_hat.shape != x.shape:
            self.x_hat = torch.zeros_like(x)
        self.in_units += ((x - self.x_hat).abs() > self.threshold).double().sum(0).numpy()
        y, self.x_hat, c = self.reference_step(x, self.x_hat)
        self._counts = Counts(*(np.asarray(v, np.float64) * np.ones(x.shape[0]) for v in c))
        return y

    @property
    def last_counts(self):
        return self._counts

    def dense_counts(self, sample_shape=()):
        return Counts(synops=float(self.n), dense_synops=float(self.n),
                      lowrank_ops=float(self.n), input_events=float(self.n),
                      latent_events=float(self.n))  # fmt: skip

    def unit_events(self):
        return self.in_units, self.in_units

    def describe(self):
        return {"in_features": self.n, "out_features": self.n, "rank": self.n, "blocks": 1}

    def init_state(self, batch, like):
        return torch.zeros(batch, self.n, dtype=like.dtype)

    def reference_step(self, x, x_hat):
        events = (x - x_hat).abs() > self.threshold
        x_hat = torch.where(events, x, x_hat)
        e = events.sum(-1).double()
        return x_hat * self.d, x_hat, Counts(synops=e, dense_synops=float(self.n),
                                             lowrank_ops=float(self.n), input_events=e,
                                             latent_events=e)  # fmt: skip

    def learn_thresholds(self, per_unit=True):
        raise NotImplementedError

    def set_active_blocks(self, k_or_mask):
        raise NotImplementedError


def _stream(T=30, B=3, n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (0.3 * torch.randn(T, B, n, generator=g)).cumsum(0)


def _net():
    return nn.Sequential(EventDiag(6, threshold=0.05), nn.ReLU(), bg.EventLinear(6, 4, 2))


def test_registered_once_by_kind():
    assert EVENT_LAYERS.get("test_diag") is EventDiag and EventDiag.kind == "test_diag"
    with pytest.raises(ValueError, match="already registered"):
        register_event_layer("test_diag")(EventDiag)


def test_simulate_report_and_dense_mode():
    net, xs = _net(), _stream()
    ys, rep = bg.simulate(net, xs, mode="event")
    dense, drep = bg.simulate(net, xs, mode="dense")
    assert set(rep.layers) == {"0", "2"} and rep.layers["0"]["kind"] == "test_diag"
    assert 0 < rep.layers["0"]["synops"] < drep.layers["0"]["synops"] == 30 * 6
    assert rep.total["synops"] == pytest.approx(sum(d["synops"] for d in rep.layers.values()))
    assert ys.shape == dense.shape == (30, 3, 4)
    bound = 0.05 * 1.5 * net[2].dense_weight().abs().sum(1).max()  # |Δ input| <= θ·max d
    assert float((ys - dense).abs().max()) <= float(bound) + 1e-5


def test_compile_events_steps_unregistered_and_registered_layers():
    net, xs = _net(), _stream()
    bg.execution(net, "event")
    ref = torch.stack([net(x) for x in xs])
    bg.reset(net)
    step = bg.sim.compile_events(net)  # the diag layer has no compiled op: module calls
    with torch.no_grad():
        out = torch.stack([step(x) for x in xs])
    assert torch.allclose(out, ref, atol=1e-6) and step.compiled_segments == 1


@pytest.mark.skipif(not AVAILABLE, reason="numba not available")
def test_a_compiled_op_registered_from_here_joins_the_chain():
    from numba import njit

    layout = Layout("test_diag_op", "x_hat d th")
    C = layout.at

    @njit(nogil=True)
    def step(h, row, f, g):
        B, n = h.shape
        x_hat, d, th = (
            view(row[C.x_hat], f, (B, n)),
            view(row[C.d], f, (n,)),
            view(row[C.th], f, (1,)),
        )
        out = np.empty_like(h)
        for b in range(B):
            for i in range(n):
                if abs(h[b, i] - x_hat[b, i]) > th[0]:
                    x_hat[b, i] = h[b, i]
                out[b, i] = x_hat[b, i] * d[i]
        return out

    OPS.add("test_diag_op", Op("test_diag_op", layout, step))

    class CompiledDiag(EventDiag):
        pass

    @register_fuser(CompiledDiag)
    def fuse(m, B, dtype, in_shape):
        state = np.zeros((B, m.n), np.float32)
        d = np.array(m.d.detach().numpy(), np.float32)
        th = np.array([m.threshold], np.float32)
        row = layout.pack(in_size=m.n, out_size=m.n, x_hat=state.ctypes.data, d=d.ctypes.data,
                          th=th.ctypes.data)  # fmt: skip
        return Row("test_diag_op", row, (state, d, th), (m.n,), (m.n,), tracked=(m.d,))

    net = nn.Sequential(CompiledDiag(6, 0.05), nn.ReLU(), bg.EventLinear(6, 4, 2))
    twin = nn.Sequential(EventDiag(6, 0.05), nn.ReLU(), bg.EventLinear(6, 4, 2))
    twin.load_state_dict(net.state_dict())
    bg.execution(net, "event")
    bg.execution(twin, "event")
    step = bg.sim.compile_events(net, strict=True)
    with torch.no_grad():
        for x in _stream():
            assert torch.allclose(step(x), twin(x), atol=1e-6)
    assert step.compiled_segments == 1  # diag, ReLU and the linear layer: one call per step


def test_calibrate_thresholds_and_hwmaps_extract():
    net, xs = _net(), _stream(T=40, B=4)
    res = bg.calibrate_thresholds(net, xs, tolerance=0.05)
    assert res is not None
    _, rep = bg.simulate(net, xs, mode="event")
    network = hwmaps.extract(net, rep)
    owners = {b.layer for b in network.blocks}
    assert owners == {"0", "2"}
    placement = hwmaps.map_network(network, hwmaps.chips.get("generic"), method="sequential")
    assert hwmaps.estimate(placement).total_j > 0


def test_training_through_events_uses_reference_step():
    from braingate.train.events_in_loop import rollout

    net = _net()
    ys, tape = rollout(net, _stream(T=10))
    assert set(tape.layers) == {"0", "2"} and ys.shape == (10, 3, 4)
    ys.sum().backward()
    assert net[0].d.grad is not None and net[2].U.grad is not None
