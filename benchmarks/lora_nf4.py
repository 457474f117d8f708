"""NF4 quantisation (braingate.lora.quant): round-trip error, bits per weight, CPU time.

Quantises Gaussian matrices and the weights of a trained-looking layer (an ``nn.Linear``
init), with and without double quantisation, and writes JSON plus a printed table.

    python benchmarks/lora_nf4.py [--out results/lora_nf4.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_json

from braingate.lora.quant import quantize_nf4


def measure(w: torch.Tensor, double_quant: bool, repeats: int = 3) -> dict:
    t0 = time.perf_counter()
    for _ in range(repeats):
        q = quantize_nf4(w, 64, double_quant)
    t1 = time.perf_counter()
    for _ in range(repeats):
        out = q.dequantize()
    t2 = time.perf_counter()
    rel = float(torch.linalg.norm(out - w) / torch.linalg.norm(w))
    return {
        "shape": list(w.shape),
        "double_quant": double_quant,
        "rel_frobenius_error": rel,
        "bits_per_weight": q.bits_per_weight,
        "bytes": q.nbytes,
        "fp32_bytes": w.numel() * 4,
        "quantize_ms": 1e3 * (t1 - t0) / repeats,
        "dequantize_ms": 1e3 * (t2 - t1) / repeats,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/lora_nf4.json")
    args = ap.parse_args()
    torch.manual_seed(0)
    mats = {
        "gaussian_1024x1024": torch.randn(1024, 1024),
        "linear_init_768x3072": torch.nn.Linear(3072, 768).weight.detach(),
    }
    rows = [dict(name=k, **measure(w, dq)) for k, w in mats.items() for dq in (False, True)]
    print(f"{'matrix':<24}{'dq':>4}{'rel.err':>9}{'bits/w':>8}{'MB':>7}{'q ms':>8}{'dq ms':>8}")
    for r in rows:
        print(f"{r['name']:<24}{'yes' if r['double_quant'] else 'no':>4}{r['rel_frobenius_error']:>9.4f}"
              f"{r['bits_per_weight']:>8.3f}{r['bytes'] / 2**20:>7.2f}"
              f"{r['quantize_ms']:>8.1f}{r['dequantize_ms']:>8.1f}")  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, rows)


if __name__ == "__main__":
    main()
