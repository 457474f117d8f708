"""The descriptor kernel reads and writes raw addresses: scenarios where an address, a dtype or a
shape written into a descriptor no longer matches what the Python objects use.

Scenarios that can corrupt memory or crash run in a subprocess, so the suite survives them.
"""

import copy
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import braingate as bg
from braingate.nn import LIF
from braingate.sim import compile_events

from ._helpers import dense_out


def _run(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (it prints OK when the library behaved)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=240)  # fmt: skip


def _net(lif: bool = False, dtype=None, **kw) -> nn.Sequential:
    torch.manual_seed(0)
    act = LIF(6, beta=0.9, threshold=0.3) if lif else nn.ReLU()
    net = nn.Sequential(bg.EventLinear(8, 6, 4, dtype=dtype, **kw), act,
                        bg.EventLinear(6, 3, 2, dtype=dtype, **kw))  # fmt: skip
    bg.execution(net, "event")
    return net


# -- 1. chain dtype fixed at construction, layers converted afterwards -------------------------


def test_chain_after_float64_to_float32_conversion_does_not_overrun():
    r = _run("""
        import torch, braingate as bg
        from torch import nn
        from braingate.sim import compile_events
        torch.manual_seed(0)
        net = nn.Sequential(bg.EventLinear(64, 32, 8, dtype=torch.float64), nn.ReLU(),
                            bg.EventLinear(32, 4, 4, dtype=torch.float64))
        bg.execution(net, "event")
        chain = compile_events(net)
        with torch.no_grad():
            chain(torch.randn(2, 64, dtype=torch.float64))
            net.float()
            try:
                chain(torch.randn(2, 64, dtype=torch.float64))
            except TypeError:
                print("OK")  # what the module path raises: input dtype differs from the layer's
    """)
    assert r.returncode == 0 and "OK" in r.stdout, (r.returncode, r.stderr[-500:])


def test_chain_after_float32_to_float64_conversion_refuses_float32_input():
    net = _net()
    chain = compile_events(net)
    with torch.no_grad():
        chain(torch.randn(2, 8))
        net.double()
        with pytest.raises(TypeError, match="dtype"):
            net(torch.randn(2, 8))  # the module path
        with pytest.raises(TypeError, match="dtype"):
            chain(torch.randn(2, 8))


# -- 2. chain.reset() when the flush inside it re-syncs -----------------------------------------


@pytest.mark.parametrize("how", ["resync_every_changed", "module_step_between"])
def test_chain_reset_when_a_resync_falls_due_in_its_flush(how):
    net = _net(threshold=0.2, resync_every=4)
    chain = compile_events(net)
    xs = torch.randn(5, 1, 8)
    with torch.no_grad():
        for t in range(3):
            chain(xs[t])
        if how == "resync_every_changed":
            net[0].resync_every = 2
        else:
            net(xs[3])  # one module step: the chain's pending steps now cross a multiple of 4
        chain.reset()
        for layer in (net[0], net[2]):  # zeroed in place, or dropped (rebuilt at the next step)
            st = layer._runner.state
            assert st is None or all(float(t.abs().sum()) == 0 for t in st[:4])
            assert layer._runner.steps == 0


# -- 3. parameter changes that bypass version counters and __setattr__ ---------------------------


def _edit(net, how):
    if how == "fused_adam":  # CPU fused optimizers do not bump _version
        for p in net.parameters():
            p.grad = torch.randn_like(p)
        torch.optim.Adam(net.parameters(), lr=0.5, fused=True).step()
    elif how == "data_assign":
        net[0].V.data = torch.randn_like(net[0].V)
    elif how == "data_inplace":
        net[0].s.data.mul_(3)
    elif how == "register_parameter":
        net[0].register_parameter("s", nn.Parameter(net[0].s.detach() * 1.7))


_UNSEEN = pytest.mark.xfail(
    strict=True,
    reason="known limitation: a .data edit moves neither "
    "version counter nor epoch; layer.refresh() is the documented remedy",
)


@pytest.mark.parametrize("how", ["fused_adam", "register_parameter",
                                 pytest.param("data_assign", marks=_UNSEEN),
                                 pytest.param("data_inplace", marks=_UNSEEN)])  # fmt: skip
@pytest.mark.parametrize("fused", [False, True], ids=["module", "chain"])
def test_parameter_changes_without_version_bump_reach_the_kernel(how, fused):
    _check_step_after_edit(how, fused, refresh=False)


def _check_step_after_edit(how: str, fused: bool, refresh: bool) -> None:
    """Three steps, an edit of the parameters, a step: it must use the edited parameters."""
    net = _net()  # thresholds 0: the event path equals the dense one up to rounding
    step = compile_events(net) if fused else net
    xs = torch.randn(4, 2, 8)
    with torch.no_grad():
        for t in range(3):
            step(xs[t])
        _edit(net, how)
        if refresh:
            net[0].refresh()
        torch.testing.assert_close(step(xs[3]), dense_out(net, xs[3]), rtol=1e-5, atol=1e-5)


@pytest.mark.xfail(strict=True, reason="known limitation: functional_call swaps parameters "
                   "without __setattr__ or a version bump (see EventLinear.refresh)")  # fmt: skip
def test_functional_call_in_event_mode_uses_the_given_parameters():
    from torch.func import functional_call

    net = _net()
    xs = torch.randn(4, 2, 8)
    new = {k: v.detach() * 1.7 for k, v in net.named_parameters()}
    with torch.no_grad():
        for t in range(3):
            net(xs[t])
        y = functional_call(net, new, (xs[3],))
        with bg.execution(net, "dense"):
            ref = functional_call(net, new, (xs[3],))
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)


# -- 4. LIF buffers -------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["data", "set_"])
def test_chain_follows_a_swapped_lif_membrane_storage(how):
    xs = torch.randn(8, 2, 8)
    res = {}
    for fused in (False, True):
        net = _net(lif=True)
        step = compile_events(net) if fused else net
        with torch.no_grad():
            for t in range(3):
                step(xs[t])
            if how == "data":
                net[1].mem.data = torch.zeros(2, 6)
            else:
                net[1].mem.set_(torch.zeros(2, 6))
            res[fused] = (torch.stack([step(xs[t]) for t in range(3, 8)]), net[1].mem.clone())
    assert torch.equal(res[True][0], res[False][0])
    assert torch.equal(res[True][1], res[False][1])


def test_chain_with_a_scalar_lif_buffer_does_not_read_past_it():
    r = _run("""
        import torch, braingate as bg
        from torch import nn
        from braingate.nn import LIF
        from braingate.sim import compile_events
        torch.manual_seed(0)
        net = nn.Sequential(bg.EventLinear(8, 64, 4), LIF(64, beta=0.9, threshold=0.3),
                            bg.EventLinear(64, 3, 2))
        bg.execution(net, "event")
        ref = __import__("copy").deepcopy(net)
        chain = compile_events(net)
        xs = torch.randn(8, 2, 8)
        with torch.no_grad():
            for t in range(3):
                chain(xs[t]); ref(xs[t])
        net[1].beta = torch.tensor(0.5); ref[1].beta = torch.tensor(0.5)
        try:
            with torch.no_grad():
                out = torch.stack([chain(xs[t]) for t in range(3, 8)])
        except (TypeError, ValueError):
            print("OK"); raise SystemExit
        with torch.enable_grad():  # torch reference path: the scalar broadcasts
            r = torch.stack([ref(xs[t].clone().requires_grad_()) for t in range(3, 8)]).detach()
        print("OK" if torch.allclose(out, r, atol=1e-5) else f"differs {(out - r).abs().max()}")
    """)
    assert r.returncode == 0 and "OK" in r.stdout, (r.returncode, r.stdout, r.stderr[-500:])


# -- 5. factor shapes and inputs the kernel cannot check ----------------------------------------


def test_a_wrong_rank_factor_raises_instead_of_being_read_past_its_end():
    r = _run("""
        import torch, braingate as bg
        from torch import nn
        from braingate.sim import compile_events
        for fused in (False, True):
            torch.manual_seed(0)
            net = nn.Sequential(bg.EventLinear(64, 32, 16)); bg.execution(net, "event")
            net[0].V = nn.Parameter(torch.randn(64, 8))
            step = compile_events(net) if fused else net
            try:
                with torch.no_grad():
                    step(torch.randn(1, 64))
                print("ran silently", fused)
            except (RuntimeError, ValueError):
                print("OK", fused)
    """)
    assert r.returncode == 0 and r.stdout.count("OK") == 2, (r.returncode, r.stdout, r.stderr)


def test_fake_tensor_input_raises_instead_of_crashing():
    r = _run("""
        import torch, braingate as bg
        from torch import nn
        from torch._subclasses.fake_tensor import FakeTensorMode
        from braingate.sim import compile_events
        for fused in (False, True):
            torch.manual_seed(0)
            net = nn.Sequential(bg.EventLinear(8, 6, 4), nn.ReLU(), bg.EventLinear(6, 3, 2))
            bg.execution(net, "event")
            step = compile_events(net) if fused else net
            with torch.no_grad():
                step(torch.randn(2, 8)); step(torch.randn(2, 8))  # a steady stream
                with FakeTensorMode() as mode:
                    fx = mode.from_tensor(torch.randn(2, 8))
                try:
                    step(fx)
                except Exception:
                    print("OK", fused, flush=True)
    """)
    assert r.returncode == 0 and r.stdout.count("OK") == 2, (
        r.returncode,
        r.stdout,
        r.stderr[-300:],
    )


# -- 6. counters and validation that differ between chain and module stepping -----------------


@pytest.mark.parametrize("other", ["module", "second_chain"])
def test_last_counts_follow_the_chain_after_interleaved_stepping(other):
    net = _net(threshold=0.3)
    ref = copy.deepcopy(net)
    xs = torch.randn(4, 2, 8).cumsum(0)
    chain = compile_events(net)
    second = compile_events(net) if other == "second_chain" else net
    with torch.no_grad():
        for t, step in enumerate([chain, second, chain, chain]):
            assert torch.equal(step(xs[t]), ref(xs[t]))
            for a, b in ((net[0], ref[0]), (net[2], ref[2])):
                assert (a._runner.last_counts == b._runner.last_counts).all(), t


def test_chain_rejects_a_per_sample_gate_for_another_batch_like_the_module_path():
    net = nn.Sequential(bg.EventLinear(8, 6, 4, blocks=2))
    bg.execution(net, "event")
    net[0].set_active_blocks(torch.tensor([[True, False]]))
    with torch.no_grad():
        with pytest.raises(ValueError, match="per-sample gate"):
            net(torch.randn(3, 8))
        with pytest.raises(ValueError, match="per-sample gate"):
            compile_events(net)(torch.randn(3, 8))


@pytest.mark.parametrize("how", ["data_assign", "data_inplace"])
@pytest.mark.parametrize("fused", [False, True], ids=["module", "chain"])
def test_refresh_makes_unseen_parameter_edits_reach_the_kernel(how, fused):
    _check_step_after_edit(how, fused, refresh=True)


def test_chain_follows_an_execution_switch():
    net, ref = _net(threshold=0.2), _net(threshold=0.2)
    chain = compile_events(net)
    xs = torch.randn(6, 2, 8)
    with torch.no_grad():
        for t in range(6):
            if t == 3:
                net[2].execution = ref[2].execution = "dense"
            torch.testing.assert_close(chain(xs[t]), ref(xs[t]), rtol=0, atol=0)
