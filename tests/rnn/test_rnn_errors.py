"""Bad input to the recurrent event modules: clear errors, state untouched."""

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from braingate.nn.event_rnn import EventGRU, EventGRUCell, EventLSTM, EventLSTMCell


def _state(m):
    return m._runner.hidden(m, torch.zeros(1))[0].clone()


@pytest.fixture(params=["dense", "event"])
def gru(request):
    m = EventGRU(4, 6, 3, num_layers=2)
    m.execution = request.param
    with torch.no_grad():
        m(torch.randn(2, 4) if request.param == "event" else torch.randn(3, 2, 4))
    return m


def test_wrong_input_width(gru):
    before = _state(gru)
    with pytest.raises(ValueError, match=r"input_size=4"):
        gru(torch.randn(2, 5))
    assert torch.equal(_state(gru), before)


@pytest.mark.parametrize("bad", [torch.randn(3, 2, 6), torch.randn(2, 3, 6), torch.randn(2, 6)])
def test_wrong_hidden_shape(gru, bad):
    before = _state(gru)
    x = torch.randn(2, 4) if gru.execution == "event" else torch.randn(3, 2, 4)
    with pytest.raises(ValueError, match=r"h0 has shape .* expected \(2, 2, 6\)"):
        gru(x, bad)
    assert torch.equal(_state(gru), before)


def test_lstm_hidden_must_be_a_pair():
    m = EventLSTM(3, 5, 3)
    with pytest.raises(TypeError, match=r"tuple \(h, c\)"):
        m(torch.randn(4, 2, 3), torch.zeros(1, 2, 5))
    with pytest.raises(ValueError, match=r"hx has shape \(2, 4\); expected \(2, 5\)"):
        EventLSTMCell(3, 5, 3)(torch.randn(2, 3), (torch.zeros(2, 4), torch.zeros(2, 4)))


def test_bidirectional_is_refused():
    with pytest.raises(ValueError, match="bidirectional=True is not supported"):
        EventGRU(3, 4, 2, bidirectional=True)
    with pytest.raises(ValueError, match=r"GRU\(bidirectional=True\) cannot be converted"):
        EventGRU.from_gru(nn.GRU(3, 4, bidirectional=True), 2)
    with pytest.raises(ValueError, match=r"proj_size=2"):
        EventLSTM.from_lstm(nn.LSTM(3, 4, proj_size=2), 2)


def test_packed_sequences_are_refused(gru):
    packed = pack_padded_sequence(torch.randn(5, 2, 4), torch.tensor([5, 3]))
    with pytest.raises(TypeError, match="PackedSequence.*pad_packed_sequence"):
        gru(packed)


def test_dtype_device_and_type_errors():
    m = EventGRUCell(3, 4, 2)
    with pytest.raises(TypeError, match=r"use x.to\(torch.float32\)"):
        m(torch.randn(2, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        m([1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="must be an nn.GRU"):
        EventGRU.from_gru(nn.LSTM(3, 4), 2)
    with pytest.raises(
        TypeError, match=r"rank must be an int, a pair \(r_ih, r_hh\) or a list of 1 pairs"
    ):
        EventGRU(3, 4, 2.5)
    with pytest.raises(ValueError, match=r"dropout=1.5"):
        EventGRU(3, 4, 2, dropout=1.5)
    with pytest.raises(ValueError, match=r"hidden_threshold tensor has shape \(3,\)"):
        EventGRU(3, 4, 2, num_layers=2, hidden_threshold=torch.ones(3))


def test_event_mode_rejects_other_ranks_of_input():
    m = EventGRU(3, 4, 2)
    m.execution = "event"
    with pytest.raises(ValueError, match=r"one step \(B, 3\) or a chunk"):
        m(torch.randn(2, 2, 2, 3))


def test_gate_mask_errors():
    m = EventLSTM(4, 4, 4, blocks=2)
    with pytest.raises(ValueError, match=r"pass \(2,\) or \(B, 2\)"):
        m.set_active_blocks(torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="out of range"):
        m.set_active_blocks(3)
    m.set_active_blocks(torch.tensor([[True, False], [True, True]]))
    m.execution = "event"
    with pytest.raises(ValueError, match="per-sample gate for B=2"):
        m(torch.randn(3, 4))
