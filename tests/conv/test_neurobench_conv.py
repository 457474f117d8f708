"""NeuroBench's SynapticOperations on a converted CNN equal braingate's synops (DESIGN §2b)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import braingate as bg
import braingate.convert_conv  # Conv converters

pytest.importorskip("neurobench")
from neurobench.benchmarks import Benchmark
from neurobench.metrics.workload import SynapticOperations
from torch.utils.data import DataLoader, TensorDataset

import braingate.integrations.neurobench_conv  # registers the conv probes
from braingate.datasets.saccade import saccade_digits
from braingate.integrations.neurobench import NeuroBenchModel


@pytest.fixture(scope="module")
def digits():
    d = saccade_digits(n=8, steps_per_saccade=2, size=28)
    return d.x_train[:, :6], d.y_train[:6]


def _cnn():
    torch.manual_seed(0)
    dense = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
        nn.Linear(8 * 7 * 7, 10),
    )  # fmt: skip
    net = bg.convert(copy.deepcopy(dense), rank={"0": 4, "3": 6, "6": 10}, blocks=2,
                     threshold=0.05, latent_threshold=0.02)  # fmt: skip
    net[3].set_active_blocks(torch.tensor([[True, False], [True, True], [False, True]]))
    return net


def _bench(model, xs, ys, view):
    X = xs.transpose(0, 1)  # NeuroBench data is batch-first
    loader = DataLoader(TensorDataset(X, ys), batch_size=3)
    nb = NeuroBenchModel(model, view=view)
    return Benchmark(nb, loader, [], [lambda p: p[:, -1].argmax(-1)],
                     [[], [SynapticOperations]]).run(quiet=True)["SynapticOperations"]  # fmt: skip


def test_neurobench_synops_equal_braingate_on_a_converted_cnn(digits):
    xs, ys = digits
    net = _cnn()
    ops = _bench(net, xs, ys, "event")
    totals = {}
    for half in (slice(0, 3), slice(3, 6)):  # the benchmark's batches of 3 (the gate is per sample)
        _, rep = bg.simulate(net, xs[:, half], mode="event")
        for k in ("synops", "lowrank_ops"):
            totals[k] = totals.get(k, 0) + rep.total[k] * 3
    assert totals["synops"] < 0.8 * totals["lowrank_ops"]  # thresholds do skip work
    assert ops["Effective_MACs"] + ops["Effective_ACs"] == pytest.approx(totals["synops"] / 6,
                                                                         rel=1e-6)  # fmt: skip
    assert ops["Dense"] == pytest.approx(totals["lowrank_ops"] / 6, rel=1e-9)


def test_neurobench_dense_view_counts_the_dense_conv(digits):
    xs, ys = digits
    net = _cnn()
    net[3].set_active_blocks(None)
    ops = _bench(net, xs, ys, "dense")
    _, rep = bg.simulate(net, xs, mode="event")
    assert ops["Dense"] == pytest.approx(rep.total["dense_synops"], rel=1e-9)
