"""NF4: codebook, round-trip error floor, storage cost, packing layout."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from braingate.lora.quant import NF4_CODE, Linear4bit, quantize_nf4

REFERENCE_CODE = [
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0,
]  # fmt: skip


def test_codebook_matches_references():
    torch.testing.assert_close(NF4_CODE, torch.tensor(REFERENCE_CODE), atol=1e-7, rtol=0)


@pytest.mark.parametrize("double_quant", [False, True])
def test_gaussian_round_trip_error_in_range(rng, double_quant):
    w = torch.from_numpy(rng.standard_normal((256, 512))).float()
    q = quantize_nf4(w, blocksize=64, double_quant=double_quant)
    rel = torch.linalg.norm(q.dequantize() - w) / torch.linalg.norm(w)
    assert 0.05 <= rel <= 0.12


def test_bits_per_weight():
    w = torch.randn(1024, 1024)
    assert quantize_nf4(w).bits_per_weight == pytest.approx(4.5, abs=1e-6)
    dq = quantize_nf4(w, double_quant=True).bits_per_weight
    assert dq == pytest.approx(4 + 8 / 64 + 32 / (64 * 256), abs=2e-3)  # ≈ 4.127


def test_packing_first_code_in_high_nibble():
    block = torch.zeros(64)
    block[0], block[1] = -1.0, 1.0  # codes 0 and 15
    q = quantize_nf4(block)
    assert int(q.packed[0]) == (0 << 4) | 15
    assert q.packed.dtype == torch.uint8 and q.packed.numel() == 32


def test_codebook_values_are_exact_fixed_points():
    w = NF4_CODE.repeat(4)  # one block of 64, absmax 1
    torch.testing.assert_close(quantize_nf4(w).dequantize(), w, atol=0, rtol=0)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 300),
    scale=st.floats(1e-3, 1e3),
    seed=st.integers(0, 2**16),
)
def test_error_bounded_by_half_code_gap(n, scale, seed):
    w = torch.randn(n, generator=torch.Generator().manual_seed(seed)) * scale
    out = quantize_nf4(w, blocksize=64).dequantize()
    assert out.shape == w.shape
    half_gap = float((NF4_CODE[1:] - NF4_CODE[:-1]).max()) / 2
    assert (out - w).abs().max() <= half_gap * w.abs().max() * (1 + 1e-5)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="blocksize=3"):
        quantize_nf4(torch.randn(8), blocksize=3)
    with pytest.raises(TypeError, match="floating-point"):
        quantize_nf4(torch.arange(8))


def test_linear4bit_forward_and_state_dict():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 32)
    q = Linear4bit(lin)
    x = torch.randn(5, 64)
    expected = torch.nn.functional.linear(x, q.weight, lin.bias)
    torch.testing.assert_close(q(x), expected)
    assert torch.linalg.norm(q.weight - lin.weight) / torch.linalg.norm(lin.weight) < 0.12
    sd = q.state_dict()
    q2 = Linear4bit(torch.nn.Linear(64, 32))
    q2.load_state_dict(sd)
    torch.testing.assert_close(q2(x), q(x))
