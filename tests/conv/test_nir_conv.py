"""NIR export / import of converted CNNs: round trips, snntorch's reader on saccade digits, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import braingate as bg

nir = pytest.importorskip("nir")
pytest.importorskip("nirtorch")
snn = pytest.importorskip("snntorch")
pytest.importorskip("sklearn")
from braingate.datasets.saccade import saccade_digits  # noqa: E402
from braingate.integrations.nir import from_nir, to_nir  # noqa: E402
from braingate.nn.event_conv import EventConv1d, EventConv2d  # noqa: E402


def _saccades(encoding: str) -> torch.Tensor:
    """A few saccade-digit frames (real digits, real motion): (T=9, B=4, C, 16, 16)."""
    d = saccade_digits(encoding=encoding, n=40, size=16, scale=1, steps_per_saccade=3, seed=0)
    return d.x_test[:, :4].contiguous()


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    """Intensity frames, (9, 4, 1, 16, 16)."""
    return _saccades("intensity")


def _leaky(beta: float, th: float) -> nn.Module:
    return snn.Leaky(beta=beta, threshold=th, init_hidden=True, reset_mechanism="zero")


def _spiking_cnn(seed: int = 0, blocks: int = 2, channels: int = 1) -> nn.Sequential:
    """conv → LIF → avg pool → conv (stride 2) → LIF → flatten → linear → LIF, converted."""
    torch.manual_seed(seed)
    dense = nn.Sequential(
        nn.Conv2d(channels, 8, 3, padding=1), _leaky(0.8, 0.3), nn.AvgPool2d(2),
        nn.Conv2d(8, 12, 3, stride=2), _leaky(0.7, 0.2), nn.Flatten(),
        nn.Linear(12 * 3 * 3, 10), _leaky(0.9, 0.2),
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # what bg.convert leaves dense is not the point here
        model = bg.convert(dense, rank=4, blocks=blocks)
    return model


def _record(net: nn.Module, seen: dict[str, list]) -> list:
    """Forward hooks that append every snntorch Leaky's spikes to ``seen[module name]``."""

    def hook(name):
        return lambda _m, _i, out: seen.setdefault(name, []).append(out)

    return [m.register_forward_hook(hook(name)) for name, m in net.named_modules()
            if isinstance(m, snn.Leaky)]  # fmt: skip


def _run_ours(model: nn.Module, xs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Our event path, frame by frame; the spikes of every neuron layer, (T, B, ...) each."""
    for m in bg.nn.base.event_modules(model).values():
        m.execution = "event"
    seen: dict[str, list] = {}
    hooks = _record(model, seen)
    bg.reset(model)
    try:
        with torch.no_grad():
            for x in xs:
                model(x)
    finally:
        for h in hooks:
            h.remove()
    return {n: torch.stack(v) for n, v in seen.items()}


def _run_snntorch(net: nn.Module, xs: torch.Tensor) -> dict[str, torch.Tensor]:
    """snntorch's imported graph, one sample at a time without a batch dim (NIR has none)."""
    per: dict[str, list] = {}
    for b in range(xs.shape[1]):
        seen: dict[str, list] = {}
        hooks = _record(net, seen)
        bg.reset(net)
        with torch.no_grad():
            for x in xs:
                net(x[b])
        for h in hooks:
            h.remove()
        for n, v in seen.items():
            per.setdefault(n, []).append(torch.stack(v))
    return {n: torch.stack(v, 1) for n, v in per.items()}


def test_graph_nodes_shapes_and_metadata(frames):
    model = _spiking_cnn()
    model[0].set_active_blocks(torch.tensor([True, False]))
    g = to_nir(model, frames[0])
    kinds = {k: type(v).__name__ for k, v in g.nodes.items()}
    assert kinds == {"input": "Input", "conv0": "Conv2d", "lif1": "LIF", "pool2": "AvgPool2d",
                     "conv3": "Conv2d", "lif4": "LIF", "flat5": "Flatten", "ev6_v": "Linear",
                     "ev6_u": "Affine", "lif7": "LIF", "output": "Output"}  # fmt: skip
    g.check_types()  # every edge's shapes agree (NIR's own check)
    conv = g.nodes["conv0"]
    # the product weight of the gated factors, as the layer computes it
    np.testing.assert_allclose(conv.weight, model[0].weight().detach().numpy(), rtol=1e-6)
    assert conv.weight.shape == (8, 1, 3, 3) and tuple(conv.padding) == (1, 1)
    md = conv.metadata
    assert md["braingate_kind"] == "event_conv2d" and md["braingate_rank"] == 4
    assert md["braingate_gate"].tolist() == [1, 0]
    assert md["braingate_U"].shape == (8, 4) and md["braingate_V"].shape == (9, 4)
    assert g.nodes["lif1"].v_threshold.shape == (8, 16, 16)  # neurons take the conv map's shape
    assert g.nodes["lif4"].v_threshold.shape == (12, 3, 3)
    flat = g.nodes["flat5"]
    assert (flat.start_dim, flat.end_dim) == (0, -1)  # NIR dims leave out the batch
    assert g.nodes["output"].output_type["output"].tolist() == [10]


@pytest.mark.parametrize("theta", [0.0, 0.05])
def test_round_trip_rebuilds_the_event_cnn(tmp_path, frames, theta):
    model = _spiking_cnn(seed=1)
    for layer in bg.nn.base.event_modules(model).values():
        layer.threshold, layer.latent_threshold = theta, theta / 2
    model[3].set_active_blocks(torch.tensor([False, True]))
    nir.write(tmp_path / "cnn.nir", to_nir(model, frames[0]))
    back = from_nir(nir.read(tmp_path / "cnn.nir"))
    assert [type(m).__name__ for m in back] == [type(m).__name__ for m in model]
    for a, b in ((model[0], back[0]), (model[3], back[3])):
        assert isinstance(b, EventConv2d)
        for p in ("U", "s", "V", "bias"):
            torch.testing.assert_close(getattr(b, p), getattr(a, p), rtol=0, atol=0)
        assert b.gate_units().tolist() == a.gate_units().tolist()
        assert (b.stride, b.padding, b.threshold, b.latent_threshold) == (
            a.stride, a.padding, a.threshold, a.latent_threshold)  # fmt: skip
    for mode in ("dense", "event"):
        ys, rep = bg.simulate(model, frames, mode=mode)
        ys2, rep2 = bg.simulate(back, frames, mode=mode)
        assert 0.02 < float(ys.mean()) < 0.98
        torch.testing.assert_close(ys2, ys, rtol=0, atol=0)
        assert rep2.total["synops"] == pytest.approx(rep.total["synops"])


@pytest.mark.parametrize("encoding", ["intensity", "polarity"])
def test_snntorch_reproduces_our_spikes_step_by_step(tmp_path, encoding, capsys):
    """snntorch's import_from_nir of the exported spiking CNN fires as our event path does, in
    every neuron layer at every frame (θ = θ_z = 0: the event path equals the dense conv)."""
    from snntorch.import_nir import import_from_nir

    frames = _saccades(encoding)
    model = _spiking_cnn(seed=2, channels=frames.shape[2])
    model[0].set_active_blocks(torch.tensor([True, False]))  # the gate lives in the weight
    nir.write(tmp_path / "cnn.nir", to_nir(model, frames[0]))
    net = import_from_nir(nir.read(tmp_path / "cnn.nir"))
    capsys.readouterr()  # snntorch's importer prints progress lines
    ours = _run_ours(model, frames)
    theirs = _run_snntorch(net, frames)
    assert list(theirs) == ["lif1", "lif4", "lif7"]
    for (name, a), b in zip(ours.items(), theirs.values()):
        assert a.shape == b.shape, name
        assert 0.01 < float(a.mean()) < 0.99, f"{name} must spike and stay silent somewhere"
        # float rounding of the event path may flip a membrane sitting on its threshold
        assert (a != b).float().mean() <= 1e-3, name
    ys, _ = bg.simulate(model, frames, mode="event")
    torch.testing.assert_close(ours["7"], ys)


def test_plain_convs_pools_and_braingate_lif(tmp_path, frames):
    """Unconverted convs (no bias), sum pooling both ways, a 1-D event conv and braingate's LIF."""
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False), _leaky(0.8, 0.3), nn.LPPool2d(1, 2),
        nn.AvgPool2d(2, divisor_override=1), nn.Flatten(), nn.Linear(4 * 4 * 4, 6),
        bg.LIF(6, beta=0.85, threshold=0.2, reset="subtract"),
    )  # fmt: skip
    with pytest.warns(UserWarning, match="subtract"):
        g = to_nir(model, frames[0])
    assert all(isinstance(g.nodes[k], nir.SumPool2d) for k in ("pool2", "pool3"))
    nir.write(tmp_path / "m.nir", g)
    back = from_nir(nir.read(tmp_path / "m.nir"))
    assert isinstance(back[0], nn.Conv2d) and back[0].bias is None
    assert isinstance(back[6], bg.LIF) and back[6].reset_mode == "subtract"
    ys, _ = bg.simulate(model, frames, mode="dense")
    ys2, _ = bg.simulate(back, frames, mode="dense")
    assert 0.02 < float(ys.mean()) < 0.98
    assert (ys == ys2).float().mean() >= 0.99  # β = 1 − dt/τ in float32 may move a spike

    conv1d = EventConv1d(3, 5, 3, rank=3, padding=1, threshold=0.02)
    seq = nn.Sequential(conv1d, nn.Flatten(), nn.Linear(5 * 12, 4))
    x = torch.randn(6, 2, 3, 12)
    g1 = to_nir(seq, x[0])
    assert isinstance(g1.nodes["conv0"], nir.Conv1d)
    back1 = from_nir(g1)
    assert isinstance(back1[0], EventConv1d) and back1[0].threshold == pytest.approx(0.02)
    for mode in ("dense", "event"):
        torch.testing.assert_close(bg.simulate(back1, x, mode=mode)[0],
                                   bg.simulate(seq, x, mode=mode)[0], rtol=0, atol=0)  # fmt: skip


def test_edited_weight_is_refactored_with_a_warning(frames):
    model = _spiking_cnn(seed=4, blocks=1)
    g = to_nir(model, frames[0])
    g.nodes["conv0"].weight = g.nodes["conv0"].weight * 2.0
    with pytest.warns(UserWarning, match="refactoring the weight by SVD at rank 4"):
        back = from_nir(g)
    torch.testing.assert_close(back[0].weight(), 2.0 * model[0].weight(), rtol=1e-4, atol=1e-5)


def test_foreign_conv_graph_without_metadata(frames):
    """A graph as another tool writes it: per-unit LIF parameters in the conv map's shape."""
    rng = np.random.default_rng(0)
    shape = (4, 16, 16)
    tau = rng.uniform(2e-4, 1e-3, shape).astype(np.float32)
    g = nir.NIRGraph.from_list(
        nir.Input(input_type={"input": np.array([1, 16, 16])}),
        nir.Conv2d(input_shape=(16, 16), weight=rng.normal(size=(4, 1, 3, 3)).astype(np.float32),
                   stride=1, padding=1, dilation=1, groups=1, bias=np.zeros(4, np.float32)),
        nir.LIF(tau=tau, r=tau / 1e-4, v_leak=np.zeros(shape, np.float32),
                v_threshold=np.full(shape, 0.5, np.float32), v_reset=np.zeros(shape, np.float32)),
        nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                      padding=np.array([0, 0])),
        nir.Flatten(input_type={"input": np.array([4, 8, 8])}, start_dim=0),
    )  # fmt: skip
    m = from_nir(g)
    assert isinstance(m[0], nn.Conv2d) and isinstance(m[1], snn.Leaky)
    assert tuple(m[1].beta.shape) == shape  # per unit, in the map's shape
    assert isinstance(m[2], nn.AvgPool2d) and m[2].divisor_override == 1
    assert isinstance(m[3], nn.Flatten) and m[3].start_dim == 1
    x = frames[0]
    bg.reset(m)
    y = m(x)
    assert y.shape == (4, 4 * 8 * 8)
    v = torch.nn.functional.conv2d(x, torch.as_tensor(g.nodes["conv2d"].weight), padding=1)
    spk = (v > 0.5).float()
    torch.testing.assert_close(y, torch.nn.functional.avg_pool2d(spk, 2).flatten(1) * 4)


def test_refusals_name_the_fix(frames):
    x = frames[0]
    cases = [
        (nn.Sequential(nn.Conv2d(1, 4, 3), nn.MaxPool2d(2)), "no max-pooling node.*AvgPool2d"),
        (nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()), "no ReLU node"),
        (nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)), "fold_batchnorm"),
        (nn.Sequential(nn.Conv2d(2, 4, 3)), r"C=2 but receives per-sample shape \(1, 16, 16\)"),
        (nn.Sequential(nn.Conv2d(1, 4, 3), nn.Linear(14, 3)), "put an nn.Flatten before it"),
        (nn.Sequential(nn.Conv2d(1, 4, 3), nn.AvgPool2d(2, ceil_mode=True)), "ceil_mode=False"),
        (nn.Sequential(nn.Conv2d(1, 4, 3), nn.AvgPool2d(2, divisor_override=3)), "SumPool2d"),
        (nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(0)), "use start_dim=1"),
        (nn.Sequential(nn.Conv2d(1, 4, 3, padding_mode="circular")), "padding_mode='zeros'"),
    ]
    for model, match in cases:
        with pytest.raises(ValueError, match=match):
            to_nir(model, x)
    with pytest.raises(ValueError, match=r"pass sample=.*\(B, C, H, W\)"):
        to_nir(nn.Sequential(nn.Conv2d(1, 4, 3)))
    gated = _spiking_cnn(blocks=2)
    gated[0].set_active_blocks(torch.tensor([[True, False], [True, True]]))
    with pytest.raises(ValueError, match="per-sample gate"):
        to_nir(gated, x)


def test_braingate_lif_zero_reset_fires_as_snntorch_and_exports_without_a_warning():
    """A reset to zero clears the membrane before the next step's input arrives (snntorch's
    Leaky and NIR's LIF): module path, compiled chain and snntorch agree spike for spike."""
    torch.manual_seed(5)
    xs = torch.rand(40, 3, 6) * 0.8
    ours, theirs = bg.LIF(6, 0.9, 0.5, reset="zero"), _leaky(0.9, 0.5)
    net = nn.Sequential(nn.Identity(), bg.LIF(6, 0.9, 0.5, reset="zero"))
    chain = bg.sim.compile_events(net, strict=False)
    fired = 0
    with torch.no_grad():
        for x in xs:
            a, b, c = ours(x), theirs(x), chain(x)
            assert torch.equal(a, b) and torch.equal(a, c)
            fired += int(a.sum())
    assert fired > 20  # the resets were exercised
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        to_nir(nn.Sequential(nn.Linear(4, 6), bg.LIF(6, 0.9, 0.5, reset="zero")))
    assert not [w for w in caught if "reset" in str(w.message)]
