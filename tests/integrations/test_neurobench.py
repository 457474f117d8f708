"""NeuroBench's SynapticOperations on a braingate event model equals braingate's synops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import braingate as bg

pytest.importorskip("neurobench")
from neurobench.benchmarks import Benchmark
from neurobench.metrics.static import ParameterCount
from neurobench.metrics.workload import ActivationSparsity, SynapticOperations
from torch.utils.data import DataLoader, TensorDataset

from braingate.integrations.neurobench import NeuroBenchModel


@pytest.fixture(scope="module")
def basic_motions() -> tuple[torch.Tensor, torch.Tensor]:
    """6 BasicMotions test recordings, batch-first (N, 100, 6), standardised per channel."""
    aeon = pytest.importorskip("aeon.datasets")
    X, y = aeon.load_classification("BasicMotions", split="test")
    X = torch.tensor(X[::7][:6], dtype=torch.float32).transpose(1, 2)
    X = (X - X.mean((0, 1))) / X.std((0, 1))
    return X, torch.as_tensor(np.unique(y, return_inverse=True)[1][::7][:6])


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(
        bg.EventLinear(6, 24, 6, blocks=2, threshold=0.1, latent_threshold=0.05),
        nn.ReLU(),
        bg.EventLinear(24, 8, 4, blocks=2, threshold=0.05, latent_threshold=0.02),
        nn.ReLU(),
        nn.Linear(8, 4),
    )
    model[2].set_active_blocks(1)  # a gated-off block must cost nothing
    return model


def _bench(model, X, y, view: str, metrics=(SynapticOperations,)) -> dict:
    loader = DataLoader(TensorDataset(X, y), batch_size=3)
    nb = NeuroBenchModel(model, view=view)
    post = [lambda p: p[:, -1].argmax(-1)]
    return Benchmark(nb, loader, [], post, [[ParameterCount], list(metrics)]).run(quiet=True)


def test_synops_equal_braingate_over_basic_motions(basic_motions):
    X, y = basic_motions
    model = _model()
    res = _bench(model, X, y, "event", (SynapticOperations, ActivationSparsity))
    _, rep = bg.simulate(model, X.transpose(0, 1), mode="event")
    ops = res["SynapticOperations"]
    effective = ops["Effective_MACs"] + ops["Effective_ACs"]
    assert rep.total["synops"] < 0.8 * rep.total["lowrank_ops"]  # thresholds do skip work
    assert effective == pytest.approx(rep.total["synops"], rel=0.01)
    assert ops["Dense"] == pytest.approx(rep.total["lowrank_ops"], rel=1e-9)
    assert res["ParameterCount"] == sum(p.numel() for p in model.parameters())
    assert 0.0 < res["ActivationSparsity"] < 1.0


def test_dense_view_dense_equals_dense_synops(basic_motions):
    X, y = basic_motions
    model = _model()
    res = _bench(model, X, y, "dense")
    _, rep = bg.simulate(model, X.transpose(0, 1), mode="event")
    assert res["SynapticOperations"]["Dense"] == pytest.approx(rep.total["dense_synops"], rel=1e-9)


class _Switching(nn.Module):
    """Switches per-sample gates mid-stream: blocks switched on must be counted like braingate."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = bg.EventLinear(6, 10, 6, blocks=3, threshold=0.05, latent_threshold=0.02)
        self.t = 0

    def reset(self) -> None:
        self.t = 0
        self.layer.set_active_blocks(torch.tensor([True, False, False]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.t == 20:
            mask = torch.tensor([[True, True, False], [True, False, True], [False, True, True]])
            self.layer.set_active_blocks(mask)
        self.t += 1
        return self.layer(x)


def test_gate_switches_mid_stream(basic_motions):
    X, y = basic_motions
    model = _Switching()
    res = _bench(model, X[:3, :40], y[:3], "event")
    model.reset()
    _, rep = bg.simulate(model, X[:3, :40].transpose(0, 1), mode="event")
    ops = res["SynapticOperations"]
    assert rep.total["gate_ops"] > 0
    assert ops["Effective_MACs"] + ops["Effective_ACs"] == pytest.approx(
        rep.total["synops"], rel=0.01
    )


def test_errors():
    with pytest.raises(ValueError, match="view='sparse'"):
        NeuroBenchModel(_model(), view="sparse")
    with pytest.raises(TypeError, match="nn.Module"):
        NeuroBenchModel("model")
    with pytest.raises(ValueError, match="batch-first"):
        NeuroBenchModel(_model())(torch.zeros(3, 6))
