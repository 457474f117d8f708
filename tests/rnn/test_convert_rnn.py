"""Converting nn.GRU / nn.LSTM / cells (braingate.convert_rnn) through bg.convert."""

import pytest
import torch
from torch import nn

import braingate as bg
from braingate.convert import CONVERTERS
from braingate.convert_rnn import CONVERTERS_RNN, build, plan_ranks
from braingate.nn.event_rnn import EventGRU, EventGRUCell, EventLSTM, EventLSTMCell


def test_registered_in_convert():
    for t in CONVERTERS_RNN:
        assert t in CONVERTERS


class Clf(nn.Module):
    def __init__(self, rnn):
        super().__init__()
        self.rnn, self.head = rnn, nn.Linear(rnn.hidden_size, 3)

    def forward(self, xs):
        out, _ = self.rnn(xs)
        return self.head(out[-1])


@pytest.mark.parametrize("rnn", [nn.GRU(4, 8, num_layers=2), nn.LSTM(4, 8, batch_first=True)])
def test_convert_full_rank_keeps_the_model_working(rnn):
    torch.manual_seed(0)
    model = Clf(rnn)
    xs = torch.randn(3, 6, 4) if rnn.batch_first else torch.randn(6, 3, 4)
    want = model(xs)
    bg.convert(model, rank=1.0)
    assert isinstance(model.rnn, (EventGRU, EventLSTM)) and isinstance(model.head, bg.EventLinear)
    assert torch.allclose(model(xs), want, atol=1e-5)
    assert model.conversion_report["rnn"]["converted"] and model.conversion_errors["rnn"] < 1e-5


def test_convert_cells_and_low_rank_error():
    torch.manual_seed(1)
    model = nn.ModuleDict({"a": nn.GRUCell(5, 6), "b": nn.LSTMCell(6, 6)})
    bg.convert(model, rank=3)
    assert isinstance(model["a"], EventGRUCell) and isinstance(model["b"], EventLSTMCell)
    assert model["a"].ranks == ((3, 3),)
    assert 0 < model.conversion_errors["a"] < 1


def test_bidirectional_is_refused_with_the_reason():
    model = nn.Sequential(nn.GRU(4, 5, bidirectional=True))
    with pytest.warns(UserWarning, match="bidirectional"):  # left dense, never silently
        bg.convert(model, rank=2)
    assert isinstance(model[0], nn.GRU)
    rep = model.conversion_report["0"]
    assert not rep["converted"] and "bidirectional" in rep["reason"]


def test_plan_ranks_per_factor_and_blocks():
    gru = nn.GRU(6, 32, num_layers=2)
    ranks, b, notes = plan_ranks(gru, 16, 4)
    assert (ranks, b) == ([(4, 16), (16, 16)], 4)
    assert any("capped at its full rank 6" in n for n in notes)
    ranks2, b2, notes2 = plan_ranks(nn.GRU(2, 8), 8, 4)
    assert (ranks2, b2) == ([(2, 8)], 2) and "blocks 4 reduced to 2" in notes2[0]
    m = build(gru, 16, 4, 0.1, 0.01)
    assert m.ranks == ((4, 16), (16, 16)) and m.blocks == 4
    assert m.threshold == m.hidden_threshold == 0.1 and m.conversion_adjustments == notes
