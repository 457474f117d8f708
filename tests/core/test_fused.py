"""EventChain: one call per step for a Sequential of event layers, identical to module stepping."""

import pytest
import torch
from torch import nn

import braingate as bg
from braingate.nn import LIF
from braingate.sim import EventChain, compile_events


def make(with_lif: bool) -> nn.Sequential:
    torch.manual_seed(0)
    act = LIF(16, beta=0.8, threshold=0.5) if with_lif else nn.ReLU()
    net = nn.Sequential(bg.EventLinear(10, 16, 8, blocks=2, threshold=0.1, latent_threshold=0.05),
                        act, bg.EventLinear(16, 4, 4, threshold=0.05))  # fmt: skip
    bg.execution(net, "event")
    return net


@pytest.mark.parametrize("with_lif", [False, True])
def test_chain_equals_module_stepping_and_counts(with_lif):
    xs = torch.randn(30, 3, 10).cumsum(0) * 0.3
    net = make(with_lif)
    net[0].set_active_blocks(torch.tensor([[True, False], [True, True], [False, True]]))
    chain = compile_events(net)
    with torch.no_grad():
        bg.reset(net)
        ref, ref_counts = [], []
        for x in xs:
            ref.append(net(x))
            ref_counts.append(net[2]._runner.last_counts.copy())
        bg.reset(net)
        for t, x in enumerate(xs):
            assert torch.equal(chain(x), ref[t])
            assert (net[2]._runner.last_counts == ref_counts[t]).all()
    y_fused, rep_f = bg.simulate(net, xs)
    y_plain, rep_p = bg.simulate(net, xs, fuse=False)
    assert torch.equal(y_fused, y_plain) and rep_f == rep_p


def test_chain_refuses_what_it_cannot_run():
    net = make(False)
    net[2].execution = "auto"
    with pytest.raises(TypeError, match=r"layer 2 has execution='auto', not 'event'"):
        EventChain(net)
    bad = nn.Sequential(bg.EventLinear(4, 6, 2), nn.Tanh())
    bg.execution(bad, "event")
    with pytest.raises(TypeError, match=r"module 1 \(Tanh\) has no compiled op"):
        EventChain(bad)
    mismatch = nn.Sequential(bg.EventLinear(4, 6, 2), nn.ReLU(), bg.EventLinear(5, 2, 2))
    bg.execution(mismatch, "event")
    with pytest.raises(TypeError, match=r"layer 2 takes 5 features but receives 6"):
        EventChain(mismatch)


def test_chain_passes_bad_input_to_the_module_path_for_its_error():
    chain = EventChain(make(False))
    with pytest.raises(ValueError, match=r"in_features=10"):
        chain(torch.randn(2, 7))


def lockstep(T: int, edit, with_lif: bool = False, prepare=None, dtype=torch.float32, B: int = 2):
    """One stream through a compiled chain and, module by module, through an identical copy;
    ``edit(model, t)`` runs on both before step ``t``. Outputs must be identical."""
    xs = torch.randn(T, B, 10, dtype=dtype).cumsum(0) * 0.3
    fused, plain = make(with_lif).to(dtype), make(with_lif).to(dtype)
    for m in (fused, plain):
        if prepare is not None:
            prepare(m)
    chain = compile_events(fused)
    with torch.no_grad():
        for t in range(T):
            for m in (fused, plain):
                edit(m, t)
            out = chain(xs[t])
            assert out.dtype == dtype and torch.equal(out, plain(xs[t])), t
    return fused, plain


def _no_edit(m, t):
    pass


def test_chain_sees_parameter_threshold_gate_and_reset_changes():
    """Changes made between steps reach the fused chain exactly as they reach module stepping."""

    def edit(m, t):
        if t == 3:
            m[0].threshold = 0.3
        if t == 5:
            m[2].U.mul_(0.5)
        if t == 7:
            m[0].set_active_blocks(1)
        if t == 9:
            bg.reset(m)

    lockstep(12, edit, with_lif=True)


def test_chain_resyncs_on_the_same_steps_as_module_stepping():
    def prepare(m):
        m[0].resync_every, m[2].resync_every = 5, 7

    fused, plain = lockstep(23, _no_edit, prepare=prepare)
    assert fused[0]._runner.resync_ops == plain[0]._runner.resync_ops > 0
    assert fused[2]._runner.resync_ops == plain[2]._runner.resync_ops > 0


def test_chain_sees_in_place_edits_of_per_unit_thresholds():
    def prepare(m):
        m[0].threshold = torch.full((10,), 0.1)

    def edit(m, t):
        if t == 4:
            m[0].threshold.mul_(5.0)  # in place: no setter runs

    lockstep(10, edit, prepare=prepare)


def test_chain_sees_a_replaced_factor():
    def edit(m, t):
        if t == 3:
            m[2].U = nn.Parameter(m[2].U.detach() * 2.0)

    lockstep(6, edit)


def test_chain_sees_lif_buffer_edits_and_replacements():
    def edit(m, t):
        if t == 3:
            m[1].beta.mul_(0.5)  # in place
        if t == 6:
            m[1].threshold = torch.full((16,), 0.3)  # a new buffer

    lockstep(10, edit, with_lif=True)


@pytest.mark.parametrize("batch", [1, 4])
def test_chain_runs_float64_at_any_batch(batch):
    lockstep(8, _no_edit, dtype=torch.float64, B=batch)


@pytest.mark.parametrize("with_lif", [False, True])
def test_chain_reset_is_a_model_reset(with_lif):
    """chain.reset() leaves the layers exactly as bg.reset(model) does, stream after stream."""
    xs = torch.randn(3, 6, 2, 10).cumsum(1) * 0.3
    fused, plain = make(with_lif), make(with_lif)
    for m in (fused, plain):
        m[0].set_active_blocks(torch.tensor([[True, False], [True, True]]))
    chain = compile_events(fused)
    chain.reset()  # before any step: the general path
    with torch.no_grad():
        for stream in xs:
            for x in stream:
                assert torch.equal(chain(x), plain(x))
            chain.reset()
            bg.reset(plain)
            for f, p in zip(fused.modules(), plain.modules()):
                if isinstance(f, bg.EventLinear):
                    rf, rp = f._runner, p._runner
                    assert rf.steps == rp.steps == 0 and rf.resync_ops == rp.resync_ops == 0
                    assert (rf.latent_unit_events == rp.latent_unit_events).all()
                    assert (rf.input_unit_events == 0).all()
                    assert all(torch.equal(a, b) for a, b in zip(rf.state, rp.state))
                elif isinstance(f, LIF):
                    assert torch.equal(f.mem, torch.zeros_like(f.mem))
        assert fused[0]._runner.state.gate[0].tolist() == [True] * 4 + [False] * 4


def test_chain_reset_tells_other_chains_and_falls_back_when_stale():
    xs = torch.randn(8, 2, 10).cumsum(0) * 0.3
    net, plain = make(False), make(False)
    a, b = compile_events(net), compile_events(net)
    with torch.no_grad():
        for x in xs[:4]:
            assert torch.equal(a(x), plain(x))
        b.reset()  # b never stepped: bg.reset(model), which a hears about
        bg.reset(plain)
        for x in xs[4:6]:
            assert torch.equal(a(x), plain(x))
        net[2].threshold = 0.2  # a's arrays are stale now: its reset takes the general path
        plain[2].threshold = 0.2
        a.reset()
        bg.reset(plain)
        for x in xs[6:]:
            assert torch.equal(b(x), plain(x))
