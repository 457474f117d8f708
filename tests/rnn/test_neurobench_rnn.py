"""NeuroBench's SynapticOperations agree with braingate's counts for recurrent layers.

- Dense: NeuroBench's own ``nn.GRUCell`` / ``nn.LSTMCell`` hooks on the torch model stepped one
  step at a time count ``G·H·(n + H)`` MACs plus ``3H`` elementwise products per step: braingate's
  ``dense_synops + neuron_ops`` of the converted model.
- Event: each step of an EventGRU replayed as ``nn.Linear`` calls NeuroBench hooks (``V_xᵀ`` fed
  the sent input deltas, ``U_x diag(s_x)`` fed the sent latent deltas, the same for the hidden
  factor): NeuroBench's effective operations equal braingate's ``synops``. (The replay is the
  recurrent counterpart of ``braingate.integrations.neurobench``'s EventLinear probes.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import braingate as bg
from braingate.nn.event_rnn import EventGRU, EventLSTM

pytest.importorskip("neurobench")
from neurobench.benchmarks import Benchmark
from neurobench.metrics.workload import SynapticOperations
from neurobench.models import TorchModel
from neurobench.models.neurobench_model import NeuroBenchModel
from torch.utils.data import DataLoader, TensorDataset


class CellStepper(nn.Module):
    """A torch model stepping a cell over batch-first data (B, T, n), the state passed in."""

    def __init__(self, cell, head):
        super().__init__()
        self.cell, self.head = cell, head

    def forward(self, x):
        B = x.shape[0]
        h = torch.zeros(B, self.cell.hidden_size)
        c = torch.zeros_like(h)
        outs = []
        for t in range(x.shape[1]):
            if isinstance(self.cell, nn.LSTMCell):
                h, c = self.cell(x[:, t], (h, c))
            else:
                h = self.cell(x[:, t], h)
            outs.append(self.head(h))
        return torch.stack(outs, 1)


def _data():
    g = torch.Generator().manual_seed(0)
    X = (0.4 * torch.randn(6, 15, 4, generator=g)).cumsum(1)
    return X, torch.zeros(6, dtype=torch.long)


def _run(model, X, y):
    loader = DataLoader(TensorDataset(X, y), batch_size=3)
    post = [lambda p: p[:, -1].argmax(-1)]
    return Benchmark(model, loader, [], post, [[], [SynapticOperations]]).run(quiet=True)


@pytest.mark.parametrize("pair", [(nn.GRUCell, EventGRU, "gru"), (nn.LSTMCell, EventLSTM, "lstm")])
def test_dense_counts_equal_neurobench_cell_hooks(pair):
    torch.manual_seed(1)
    cell_t, cls, kind = pair
    cell, head = cell_t(4, 6), nn.Linear(6, 3)
    X, y = _data()
    ops = _run(TorchModel(CellStepper(cell, head)), X, y)["SynapticOperations"]
    seq = (nn.GRU if kind == "gru" else nn.LSTM)(4, 6)
    with torch.no_grad():
        for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(seq, k + "_l0").copy_(getattr(cell, k))
    model = nn.Sequential(cls._from_torch(seq, 6, return_state=False),
                          bg.EventLinear.from_linear(head, 3))  # fmt: skip
    _, rep = bg.simulate(model, X.transpose(0, 1), mode="event")
    t = rep.total
    want = t["dense_synops"] + t["neuron_ops"]
    if kind == "lstm":
        # NeuroBench's "Dense" binarises a nested (h, c) state instead of setting it to ones
        # (neurobench/metrics/utils/layers/input.py, cylce_tuple_ones -> cylce_tuple), so at
        # the first step, where h = c = 0, it counts neither W_hh·h (4H·H) nor the f⊙c product
        # (H); from then on every entry is nonzero and the counts agree.
        want -= 4 * 6 * 6 + 6
    assert ops["Dense"] == pytest.approx(want, rel=1e-9)


class _Replay(nn.Module):
    """nn.Linear replay of one EventGRU / EventLSTM step (module docstring)."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn
        self.lin = nn.ModuleList()
        for layer in range(rnn.num_layers):
            for side in (0, 1):
                U, s, V, _ = (rnn._param(layer, 4 * side + k) for k in range(4))
                v, u = (
                    nn.Linear(V.shape[0], V.shape[1], bias=False),
                    nn.Linear(*U.shape[::-1], bias=False),
                )
                with torch.no_grad():
                    v.weight.copy_(V.t())
                    u.weight.copy_(U * s)
                self.lin.extend([v, u])
        self.before = None

    def _refs(self):
        r = self.rnn._runner
        if r.arrays is None:
            return None
        return [(a["x_hat"].copy(), a["zx_hat"].copy(), a["h_hat"].copy(), a["zh_hat"].copy())
                for a in r.arrays]  # fmt: skip

    def pre(self):
        self.before = self._refs()

    @torch.no_grad()
    def post(self):
        after, before = self._refs(), self.before
        for layer, new in enumerate(after):
            old = before[layer] if before is not None else [np.zeros_like(a) for a in new]
            for side in (0, 1):
                dx = torch.from_numpy(new[2 * side] - old[2 * side])
                dz = torch.from_numpy(new[2 * side + 1] - old[2 * side + 1])
                self.lin[4 * layer + 2 * side](dx)
                self.lin[4 * layer + 2 * side + 1](dz)


class ReplayModel(NeuroBenchModel):
    """Steps a Sequential in event mode; every recurrent step is replayed as nn.Linear calls."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.replays = nn.ModuleList(_Replay(m) for m in net if isinstance(m, (EventGRU,)))

    def __call__(self, batch):
        bg.reset(self.net)
        outs = []
        with torch.no_grad(), bg.execution(self.net, "event"):
            for t in range(batch.shape[1]):
                for rp in self.replays:
                    rp.pre()
                outs.append(self.net(batch[:, t]))
                for rp in self.replays:
                    rp.post()
        return torch.stack(outs, 1)

    def __net__(self):
        return self.replays

    def connection_layers(self):
        return [m for rp in self.replays for m in rp.lin]

    def activation_layers(self):
        return []


def test_event_synops_equal_neurobench_on_the_replay():
    torch.manual_seed(2)
    rnn = EventGRU(4, 6, (4, 4), num_layers=2, threshold=0.1, hidden_threshold=0.05,
                   latent_threshold=0.05, return_state=False)  # fmt: skip
    X, y = _data()
    ops = _run(ReplayModel(nn.Sequential(rnn)), X, y)["SynapticOperations"]
    _, rep = bg.simulate(nn.Sequential(rnn), X.transpose(0, 1), mode="event", fuse=False)
    effective = ops["Effective_MACs"] + ops["Effective_ACs"]
    assert rep.total["synops"] < 0.8 * rep.total["lowrank_ops"]  # events were skipped
    assert effective == pytest.approx(rep.total["synops"], rel=1e-9)
