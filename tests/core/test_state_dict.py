"""State that lasts: everything that changes a layer's function survives state_dict / torch.save,
and bad or unsteppable inputs get one clear policy."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

import braingate as bg


def _stream(T=25, B=2, n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (0.3 * torch.randn(T, B, n, generator=g)).cumsum(0)


def _configured():
    torch.manual_seed(0)
    net = nn.Sequential(bg.EventLinear(12, 16, 8, blocks=4, threshold=0.05), nn.ReLU(),
                        bg.EventLinear(16, 5, 4, blocks=2, latent_threshold=0.02))  # fmt: skip
    net[0].set_active_blocks(torch.tensor([True, False, True, True]))
    net[2].learn_thresholds()
    with torch.no_grad():
        net[2].threshold_raw.add_(1.3)  # learned values far from the constructor's
        net[2].latent_threshold_raw.sub_(0.4)
    net[0].threshold = torch.linspace(0.01, 0.2, 12)  # per-unit fixed
    net[0].resync_every = 7
    bg.execution(net, "event")
    return net


def _events(net, xs):
    bg.reset(net)
    with torch.no_grad():
        return torch.stack([net(x) for x in xs])


def _skeleton():
    torch.manual_seed(1)
    return nn.Sequential(bg.EventLinear(12, 16, 8, blocks=4), nn.ReLU(),
                         bg.EventLinear(16, 5, 4, blocks=2))  # fmt: skip


def test_state_dict_round_trip_is_bit_identical_into_a_fresh_skeleton():
    net, xs = _configured(), _stream()
    want = _events(net, xs)
    sk = _skeleton()
    sk.load_state_dict(net.state_dict())  # learned thresholds create their parameters
    assert sk[0].execution == "event" and sk[0].resync_every == 7
    assert torch.equal(sk[0].gate_units(), net[0].gate_units())
    assert torch.equal(sk[2].threshold, net[2].threshold)  # the loaded learned value wins
    assert torch.equal(sk[0].threshold, net[0].threshold)
    assert torch.equal(_events(sk, xs), want)


def test_torch_save_of_the_module_is_bit_identical():
    net, xs = _configured(), _stream()
    want = _events(net, xs)
    buf = io.BytesIO()
    torch.save(net, buf)
    buf.seek(0)
    back = torch.load(buf, weights_only=False)
    assert torch.equal(_events(back, xs), want)
    assert torch.equal(_events(copy.deepcopy(net), xs), want)


def test_learned_value_wins_over_the_stale_fixed_one():
    net = _configured()
    learned = net[2].threshold.detach().clone()
    sk = _skeleton()
    sk[2].learn_thresholds()  # already learnable, with other values
    sk.load_state_dict(net.state_dict())
    assert torch.equal(sk[2].threshold.detach(), learned)


def test_a_bad_threshold_shape_is_a_clear_load_error():
    net = _configured()
    sd = net.state_dict()
    sd["2.threshold_raw"] = torch.zeros(3)
    with pytest.raises(RuntimeError, match=r"threshold_raw has shape"):
        _skeleton().load_state_dict(sd)


def test_dynamic_layer_gate_is_a_step_input_not_a_context_rebuild():
    layer = bg.DynamicLowRankLayer(32, 16, r_max=16, r_min=4, num_gate_blocks=4)
    layer.eval()
    layer.execution = "event"
    xs = _stream(T=30, B=3, n=32)
    r = layer.base._runner
    keys, factors = set(), set()
    with torch.no_grad():
        for x in xs:
            layer(x)
            keys.add(id(r._ctx.key))
            factors.add(id(r._ctx.kernel_args[1]))  # the V copy
    assert len(keys) == 1 and len(factors) == 1  # gates changed, factors never re-copied
    assert r._ctx.gate_version == layer.base._gate_version > 1


def test_simulate_steps_braingate_lif_in_dense_mode():
    net = nn.Sequential(bg.EventLinear(6, 8, 4), bg.LIF(8, beta=0.9), bg.EventLinear(8, 3, 2))
    xs = _stream(T=10, B=5, n=6)
    dense, rep = bg.simulate(net, xs, mode="dense")
    ev, _ = bg.simulate(net, xs, mode="event")
    assert dense.shape == (10, 5, 3) and rep.meta["mode"] == "dense"
    assert torch.allclose(dense, ev, atol=1e-5)


def test_simulate_refuses_to_step_torch_recurrent_layers():
    class GRUNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru, self.head = nn.GRU(6, 8), nn.Linear(8, 2)

        def forward(self, x):
            return self.head(self.gru(x)[0])

    with pytest.raises(ValueError, match=r"'gru' \(GRU\) keeps hidden state.*bg.convert"):
        bg.simulate(GRUNet(), _stream(T=5, n=6), mode="event")
    ys, _ = bg.simulate(GRUNet(), _stream(T=5, n=6), mode="dense")  # whole sequence: fine
    assert ys.shape == (5, 2, 2)


def test_simulate_dense_folds_time_for_convolutions():
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    xs = torch.randn(4, 2, 2, 8, 8)
    ys, _ = bg.simulate(net, xs, mode="dense")
    ref = torch.stack([net(x) for x in xs])
    assert torch.allclose(ys, ref, atol=1e-6)


def test_bfloat16_event_mode_runs_on_the_torch_path():
    layer = bg.EventLinear(8, 6, 4).to(torch.bfloat16)
    layer.execution = "event"
    x = torch.randn(2, 8).to(torch.bfloat16)
    with torch.no_grad():
        y = layer(x)
        layer.execution = "dense"
        ref = layer(x)
    assert y.dtype == torch.bfloat16 and torch.allclose(y.float(), ref.float(), atol=0.05)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_event_layers_build_in_half_precisions_and_convert_them(dtype):
    layer = bg.EventLinear(8, 6, 4, dtype=dtype)  # no CPU QR in these dtypes: init in float32
    assert layer.U.dtype == dtype
    gram = layer.U.float().T @ layer.U.float()
    assert torch.allclose(gram, torch.eye(4), atol=1e-2)
    net = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.Conv2d(1, 4, 3)).to(dtype)
    bg.convert(net, rank=1.0)
    assert isinstance(net[0], bg.EventLinear) and net[0].V.dtype == dtype
    assert isinstance(net[1], bg.EventConv2d) and net[1].V.dtype == dtype
    conv = bg.EventConv2d(2, 4, 3, rank=3, dtype=dtype)  # the conv builds there too
    assert conv.U.dtype == dtype


def test_a_cnn_saved_mid_stream_and_loaded_compiles_into_one_call_again():
    import io
    import warnings

    import numpy as np
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bg.convert(net, rank=0.5, execution="event")
    chain = bg.sim.compile_events(net)
    with torch.no_grad():
        for _ in range(3):
            chain(torch.rand(1, 1, 28, 28))
    buf = io.BytesIO()
    torch.save(net, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    arrays = [v for v in loaded[3]._runner.__dict__.values() if isinstance(v, np.ndarray)]
    assert arrays and all(a.flags.owndata for a in arrays)
    chain2 = bg.sim.compile_events(loaded)
    with torch.no_grad():
        chain2(torch.rand(1, 1, 28, 28))
    assert chain2.compiled_segments == 1  # the head lowered too (not a module call)
