"""NIR export / import: round trips through files, snntorch's reader, metadata, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import braingate as bg

nir = pytest.importorskip("nir")
pytest.importorskip("nirtorch")
snn = pytest.importorskip("snntorch")
from braingate.integrations.nir import from_nir, to_nir  # noqa: E402


def _model(th: float = 0.0) -> nn.Sequential:
    def leaky(beta, vth):
        return snn.Leaky(beta=beta, threshold=vth, init_hidden=True, reset_mechanism="zero")

    return nn.Sequential(
        bg.EventLinear(16, 24, 8, blocks=2, threshold=th, latent_threshold=th / 2),
        leaky(0.9, 0.4),
        bg.EventLinear(24, 10, 6, blocks=3, threshold=th),
        leaky(0.8, 0.3),
    )


def _spikes(xs: torch.Tensor) -> torch.Tensor:
    return (xs < 0.4).float()


def _run_snntorch(net: nn.Module, xs: torch.Tensor) -> torch.Tensor:
    bg.reset(net)
    with torch.no_grad():
        return torch.stack([net(x)[0] for x in xs])


@pytest.mark.parametrize("form", ["folded", "fused"])
@pytest.mark.parametrize("mode", ["dense", "event"])
def test_snntorch_reads_graph_with_same_spikes(tmp_path, rng, form, mode, capsys):
    from snntorch.import_nir import import_from_nir

    model = _model()
    xs = _spikes(torch.rand(30, 8, 16))
    ys, _ = bg.simulate(model, xs, mode=mode)
    assert 0.02 < ys.mean() < 0.98  # the check means something only with spikes and silences
    nir.write(tmp_path / "m.nir", to_nir(model, xs[0], form=form))
    ours = _run_snntorch(import_from_nir(nir.read(tmp_path / "m.nir")), xs)
    capsys.readouterr()  # snntorch's importer prints progress lines
    assert ours.shape == ys.shape
    assert (ours == ys).float().mean() >= 0.98


@pytest.mark.parametrize("form", ["folded", "scaled", "fused"])
def test_from_nir_reproduces_outputs_and_settings(tmp_path, rng, form):
    model = _model(th=0.05)
    model[0].set_active_blocks(torch.tensor([True, False]))
    nir.write(tmp_path / "m.nir", to_nir(model, form=form))
    back = from_nir(nir.read(tmp_path / "m.nir"))
    xs = _spikes(torch.rand(30, 4, 16))
    for mode in ("dense", "event"):
        ys, rep = bg.simulate(model, xs, mode=mode)
        ys2, rep2 = bg.simulate(back, xs, mode=mode)
        assert (ys == ys2).float().mean() >= 0.99
    first = back[0]
    assert isinstance(first, bg.EventLinear)
    assert (first.rank, first.blocks) == (8, 2)
    assert first.threshold == pytest.approx(0.05) and first.latent_threshold == pytest.approx(0.025)
    if form != "fused":  # a fused weight holds the gated product only; its SVD needs no gate
        assert first.gate_units().tolist() == model[0].gate_units().tolist()
    torch.testing.assert_close(first.dense_weight(), model[0].dense_weight(), atol=1e-5, rtol=1e-4)
    if form != "fused":  # the factors themselves survive, not only their product
        torch.testing.assert_close(first.s, model[0].s)
        torch.testing.assert_close(first.U, model[0].U)
    assert isinstance(back[1], snn.Leaky) and float(back[1].beta) == pytest.approx(0.9)


def test_graph_structure_and_metadata():
    model = _model(th=0.1)
    g = to_nir(model, form="scaled")
    assert isinstance(g.nodes["ev0_v"], nir.Linear)
    assert isinstance(g.nodes["ev0_s"], nir.Scale)
    assert isinstance(g.nodes["ev0_u"], nir.Affine)
    assert isinstance(g.nodes["lif1"], nir.LIF)
    md = g.nodes["ev0_v"].metadata
    assert md["braingate_rank"] == 8 and md["braingate_blocks"] == 2
    assert float(md["braingate_threshold"]) == pytest.approx(0.1)
    assert md["braingate_gate"].tolist() == [1, 1]
    assert ("input", "ev0_v") in g.edges and ("lif3", "output") in g.edges
    fused = to_nir(model, form="fused")
    assert isinstance(fused.nodes["ev0"], nir.Affine)
    assert not any(isinstance(n, nir.Linear) for n in fused.nodes.values())


def test_synaptic_round_trip_as_cubalif(tmp_path, rng, capsys):
    from snntorch.import_nir import import_from_nir

    syn = snn.Synaptic(
        alpha=0.7,
        beta=0.85,
        threshold=0.5,
        init_hidden=True,
        reset_mechanism="zero",
        reset_delay=False,
    )
    model = nn.Sequential(nn.Linear(8, 12), syn)
    g = to_nir(model)
    assert isinstance(g.nodes["lif1"], nir.CubaLIF)
    nir.write(tmp_path / "s.nir", g)
    xs = _spikes(torch.rand(30, 5, 8))
    ys, _ = bg.simulate(model, xs, mode="dense")
    back = from_nir(nir.read(tmp_path / "s.nir"))
    ys2, _ = bg.simulate(back, xs, mode="dense")
    ours = _run_snntorch(import_from_nir(nir.read(tmp_path / "s.nir")), xs)
    capsys.readouterr()
    assert ys.mean() > 0.02
    assert (ys2 == ys).float().mean() >= 0.99
    assert (ours == ys).float().mean() >= 0.98


def test_factor_chain_without_metadata_is_rebuilt():
    import numpy as np

    g = nir.NIRGraph.from_list(
        nir.Linear(weight=np.random.default_rng(0).normal(size=(3, 7)).astype(np.float32)),
        nir.Linear(weight=np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)),
    )
    m = from_nir(g)
    assert isinstance(m[0], bg.EventLinear) and m[0].rank == 3
    x = torch.randn(4, 7)
    ref = (
        x
        @ torch.as_tensor(g.nodes["linear"].weight).t()
        @ torch.as_tensor(g.nodes["linear_1"].weight).t()
    )
    torch.testing.assert_close(m(x), ref, atol=1e-4, rtol=1e-4)


def test_errors():
    with pytest.raises(ValueError, match="form='bogus'"):
        to_nir(_model(), form="bogus")
    with pytest.raises(ValueError, match="no NIR export"):
        to_nir(nn.Sequential(nn.Linear(4, 4), nn.Tanh()))
    with pytest.raises(ValueError, match="no ReLU node.*spiking neuron"):
        to_nir(nn.Sequential(nn.Linear(4, 4), nn.ReLU()))
    with pytest.raises(ValueError, match="takes 5 features but receives per-sample shape"):
        to_nir(nn.Sequential(nn.Linear(4, 4), nn.Linear(5, 2)))
    with pytest.raises(TypeError, match="nn.Sequential"):
        to_nir(nn.GRU(3, 3))
    per_sample = _model()
    per_sample[0].set_active_blocks(torch.tensor([[True, False], [True, True]]))
    with pytest.raises(ValueError, match="per-sample gate"):
        to_nir(per_sample)
    with pytest.warns(UserWarning, match="subtract"):
        to_nir(nn.Sequential(nn.Linear(4, 4), snn.Leaky(beta=0.9, init_hidden=True)))
    with pytest.raises(TypeError, match="NIRGraph"):
        from_nir({"nodes": {}})
