"""Probe suite for the event runtime (issue: nothing done from Python can crash it).

Each probe runs in its own interpreter: a crash (SIGSEGV, SIGBUS, abort) fails the test by its
signal instead of taking the test run down. A probe prints ``OK`` only when the stepper's result
is right (equal to a twin that never saw the disturbance, or the documented stale-but-valid
read) or the refusal is a clear error; anything else fails.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

PRELUDE = """
import copy, io, pickle, threading
import torch
from torch import nn
import braingate as bg
torch.manual_seed(0)

def net(n=512, h=256, R=64):
    m = nn.Sequential(bg.EventLinear(n, h, R, threshold=0.01), nn.ReLU(), bg.EventLinear(h, 10, 8))
    bg.execution(m, "event")
    return m

def twin_of(m):
    t = copy.deepcopy(m)
    bg.reset(t)
    return t

def stream(T=40, B=1, n=512):
    return (0.2 * torch.randn(T, B, n)).cumsum(0)

def close(a, b, tol=1e-4):
    assert torch.allclose(a, b, atol=tol, rtol=tol), float((a - b).abs().max())
"""

PROBES = {
    "share_memory_module": """
m = net(); t = twin_of(m); xs = stream()
with torch.no_grad():
    for i, x in enumerate(xs):
        if i == 10:
            m[0].V.share_memory_(); m[0].U.share_memory_()
        close(m(x), t(x))
""",
    "share_memory_chain": """
m = net(); t = twin_of(m); xs = stream(); step = bg.sim.compile_events(m)
with torch.no_grad():
    for i, x in enumerate(xs):
        if i % 7 == 3:
            m[0].V.share_memory_(); m[2].U.share_memory_(); m.share_memory()
        close(step(x), t(x))
""",
    "storage_swap_set_": """
m = net(); t = twin_of(m); xs = stream(); step = bg.sim.compile_events(m)
with torch.no_grad():
    for i, x in enumerate(xs):
        if i == 10:
            new = torch.randn_like(m[0].V)
            m[0].V.set_(new.clone()); t[0].V.set_(new.clone())
        close(step(x), t(x))
""",
    "data_assign_then_refresh": """
m = net(); t = twin_of(m); xs = stream(); step = bg.sim.compile_events(m)
with torch.no_grad():
    for i, x in enumerate(xs):
        if i == 10:
            new = torch.randn_like(m[0].V)
            m[0].V.data = new.clone(); t[0].V.data = new.clone()
            del new
            import gc; gc.collect()
            step(x); t(x)  # documented: a stale but valid read until refresh()
            m[0].refresh(); t[0].refresh()
            continue
        close(step(x), t(x))
""",
    "inplace_edits": """
m = net(); t = twin_of(m); xs = stream(); step = bg.sim.compile_events(m)
with torch.no_grad():
    for i, x in enumerate(xs):
        if i in (5, 17):
            for mm in (m, t):
                mm[0].V.mul_(1.5); mm[2].bias.add_(0.1); mm[0].s[0] = 3.0
        close(step(x), t(x))
""",
    "replace_and_append_modules": """
m = net(); t = twin_of(m); xs = stream(); step = bg.sim.compile_events(m)
with torch.no_grad():
    for i, x in enumerate(xs):
        if i == 10:
            new = bg.EventLinear(256, 10, 8); new.execution = "event"
            m[2] = new; t[2] = copy.deepcopy(new)
        if i == 20:
            m.append(nn.ReLU()); t.append(nn.ReLU())
        if i == 30:
            del m[3]; del t[3]
        close(step(x), t(x))
m2 = net(); step2 = bg.sim.compile_events(m2)
with torch.no_grad():
    step2(xs[0])
    m2[2] = nn.Identity()
    assert step2(xs[1]).shape == (1, 256)  # the replaced layer is gone from the chain
    m2.append(bg.EventLinear(256, 3, 2)); m2[-1].execution = "event"
    assert step2(xs[2]).shape == (1, 3)
""",
    "dtype_conversion": """
m = net(); xs = stream(); step = bg.sim.compile_events(m)
with torch.no_grad():
    step(xs[0])
    m.double()
    try:
        step(xs[1])
        raise SystemExit("float32 input accepted by a float64 model")
    except TypeError as e:
        assert "dtype" in str(e)
    t = twin_of(m)
    bg.reset(m)
    for x in xs.double():
        close(step(x), t(x), 1e-9)
""",
    "deepcopy_and_pickle_mid_stream": """
m = net(); xs = stream(); step = bg.sim.compile_events(m)
with torch.no_grad():
    for x in xs[:10]:
        step(x)
    c = copy.deepcopy(m)
    buf = io.BytesIO(); torch.save(m, buf); buf.seek(0)
    p = torch.load(buf, weights_only=False)
    q = pickle.loads(pickle.dumps(m))
    cs = bg.sim.compile_events(c)
    for x in xs[10:]:
        y = step(x)
        close(cs(x), y); close(p(x), y); close(q(x), y)
    del m, step
    import gc; gc.collect()
    for x in xs[:5]:
        cs(x)
""",
    "delete_originals": """
m = net(); xs = stream(); step = bg.sim.compile_events(m)
with torch.no_grad():
    step(xs[0])
    m[0].V = nn.Parameter(torch.randn(512, 64) * 0.05)
    m[0].U = nn.Parameter(torch.randn(256, 64) * 0.05)
    import gc; gc.collect()
    t = twin_of(m)
    bg.reset(m)
    for x in xs:
        close(step(x), t(x))
""",
    "two_threads_one_stepper": """
m = net(n=256, h=512, R=64)
for l in (m[0], m[2]):
    l.resync_every = 3  # re-syncs due all the time
step = bg.sim.compile_events(m)
xs = stream(T=300, n=256)
errors = []
def work(k):
    try:
        with torch.no_grad():
            for i, x in enumerate(xs):
                step(x)
                if i % 50 == k:
                    step.reset()
    except Exception as e:  # noqa: BLE001 - reported below
        errors.append(e)
ts = [threading.Thread(target=work, args=(k,)) for k in (0, 25)]
[t.start() for t in ts]; [t.join() for t in ts]
assert not errors, errors
t = twin_of(m); step.reset()
with torch.no_grad():
    for x in xs[:30]:
        close(step(x), t(x))
""",
    "two_threads_one_layer": """
layer = bg.EventLinear(512, 512, 64, threshold=0.01); layer.execution = "event"; layer.resync_every = 2
xs = stream(T=300)
errors = []
def work():
    try:
        with torch.no_grad():
            for x in xs:
                layer(x)
    except Exception as e:  # noqa: BLE001
        errors.append(e)
ts = [threading.Thread(target=work) for _ in range(2)]
[t.start() for t in ts]; [t.join() for t in ts]
assert not errors, errors
""",
    "lif_membrane_swaps": """
m = nn.Sequential(bg.EventLinear(64, 32, 8), bg.LIF(32, beta=0.9), bg.EventLinear(32, 4, 4))
bg.execution(m, "event")
t = twin_of(m); step = bg.sim.compile_events(m)
xs = (torch.rand(40, 1, 64) < 0.2).float()
with torch.no_grad():
    for i, x in enumerate(xs):
        if i == 10:
            m[1].mem.share_memory_()
        if i == 20:
            m[1].mem = m[1].mem.clone(); t[1].mem = t[1].mem.clone()
        close(step(x), t(x))
""",
    "nonfinite_input_refused_everywhere": """
m = net(); t = twin_of(m); xs = stream(); step = bg.sim.compile_events(m)
with torch.no_grad():
    for i, x in enumerate(xs):
        if i in (5, 12):
            bad = x.clone(); bad[0, 3] = float("nan") if i == 5 else float("inf")
            for f in (step, m[0]):
                try:
                    f(bad); raise SystemExit("non-finite input accepted")
                except ValueError as e:
                    assert "non-finite" in str(e)
        close(step(x), t(x))  # the refused steps changed nothing
m[0].execution = "dense"
try:
    m[0](xs[0].clone().fill_(float("nan"))); raise SystemExit("dense accepted NaN")
except ValueError as e:
    assert "non-finite" in str(e)
""",
}


@pytest.mark.parametrize("name", sorted(PROBES))
def test_probe(name):
    code = PRELUDE + textwrap.dedent(PROBES[name]) + "\nprint('OK')\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    if proc.returncode < 0:
        sig = signal.Signals(-proc.returncode).name
        pytest.fail(f"probe {name} crashed the interpreter with {sig}\n{proc.stderr[-2000:]}")
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), (
        f"probe {name} failed (rc {proc.returncode}):\n{proc.stdout[-1000:]}\n{proc.stderr[-3000:]}"
    )
