"""One table over every registered event layer type × backend × dtype, against the torch reference.

Backends: ``reference`` (the layer's ``reference_step``: the torch functions of
``braingate.functional``), ``module`` (the layer's own event path: compiled CPU kernel),
``chain`` (``compile_events``: one compiled call per step). At θ = 0 every backend equals the
reference and the dense path; at θ > 0 every backend equals the reference (same events, same
rounding up to float tolerance), and for linear layers the output stays inside the §2 bound.
A registered type without a row here fails ``test_every_registered_type_has_a_row``.
"""

from __future__ import annotations

import importlib

import pytest
import torch

import braingate as bg
from braingate.nn.base import EVENT_LAYERS

for _mod in ("braingate.nn.event_conv", "braingate.nn.event_rnn"):  # register their types
    try:
        importlib.import_module(_mod)
    except ImportError:  # pragma: no cover - only while a layer family is absent
        pass


def _stream(shape, T=12, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (0.3 * torch.randn(T, *shape, generator=g, dtype=torch.float64)).cumsum(0).to(dtype)


def _linear(th):
    return bg.EventLinear(10, 7, 4, blocks=2, threshold=th, latent_threshold=th / 2), (2, 10)


def _conv2d(th):
    m = bg.nn.event_conv.EventConv2d(2, 4, 3, 3, padding=1, stride=2, threshold=th,
                                     latent_threshold=th / 2)  # fmt: skip
    return m, (2, 2, 7, 7)


def _conv1d(th):
    m = bg.nn.event_conv.EventConv1d(3, 5, 3, 2, dilation=2, threshold=th,
                                     latent_threshold=th / 2)  # fmt: skip
    return m, (2, 3, 11)


def _rnn(cls_name, **kw):
    def make(th):
        cls = getattr(bg.nn.event_rnn, cls_name)
        m = cls(5, 6, 3, threshold=th, hidden_threshold=th, latent_threshold=th / 2, **kw)
        return m, (2, 5)

    return make


ROWS = {
    "event_linear": _linear,
    "event_conv2d": _conv2d,
    "event_conv1d": _conv1d,
    "event_gru": _rnn("EventGRU"),
    "event_lstm": _rnn("EventLSTM"),
    "event_gru_cell": _rnn("EventGRUCell"),
    "event_lstm_cell": _rnn("EventLSTMCell"),
}
BUILTIN = [
    k for k in EVENT_LAYERS.names() if EVENT_LAYERS.get(k).__module__.startswith("braingate")
]


def test_every_registered_type_has_a_row():
    assert set(BUILTIN) <= set(ROWS), sorted(set(BUILTIN) - set(ROWS))


def _out(y):
    return y[0] if isinstance(y, tuple) else y


def _reference(layer, xs):
    state, out = layer.init_state(xs.shape[1], xs), []
    with torch.no_grad():
        for x in xs:
            y, state, _ = layer.reference_step(x, state)
            out.append(_out(y))
    return torch.stack(out)


def _module(layer, xs):
    bg.reset(layer)
    layer.execution = "event"
    with torch.no_grad():
        out = torch.stack([_out(layer(x)) for x in xs])
    layer.execution = "dense"
    return out


def _chain(layer, xs):
    bg.reset(layer)
    layer.execution = "event"
    step = bg.sim.compile_events(layer)
    with torch.no_grad():
        out = torch.stack([_out(step(x)) for x in xs])
    layer.execution = "dense"
    return out


BACKENDS = {"module": _module, "chain": _chain}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("kind", sorted(ROWS))
@pytest.mark.parametrize("th", [0.0, 0.05], ids=["theta0", "theta"])
def test_backend_matches_the_reference(kind, backend, dtype, th):
    if kind not in EVENT_LAYERS:
        pytest.skip(f"{kind} is not registered in this build")
    torch.manual_seed(0)
    layer, shape = ROWS[kind](th)
    layer = layer.to(dtype)
    xs = _stream(shape, dtype=dtype)
    ref = _reference(layer, xs)
    got = BACKENDS[backend](layer, xs)
    tol = 1e-4 if dtype == torch.float32 else 1e-9
    torch.testing.assert_close(got, ref, rtol=tol, atol=tol)
    if th == 0.0 and not kind.endswith("_cell"):  # and the dense path (a cell's is one step)
        with torch.no_grad():
            dense = _out(layer(xs)) if layer.recurrent else layer(xs.flatten(0, 1))
        torch.testing.assert_close(got.reshape(dense.shape), dense, rtol=tol, atol=tol)
    elif kind == "event_linear":  # DESIGN §2 bound, every step
        W = layer.dense_weight()
        with torch.no_grad():
            exact = torch.stack([x @ W.t() + layer.bias for x in xs])
            Us = layer.U * layer.s
        bound = th * W.abs().sum(1).max() + th / 2 * Us.abs().sum(1).max()
        assert float((got - exact).abs().max()) <= float(bound) + 1e-5
