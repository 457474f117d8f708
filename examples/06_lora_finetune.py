"""LoRA vs full fine-tuning of a small transformer on digits read as a sequence of rows.

A torch ``TransformerEncoder`` (8 tokens = the 8 pixel rows of an sklearn digit) is pretrained on
digits 0-4, then adapted to digits 5-9 with a fresh head, two ways: full fine-tuning (every
weight trains) and LoRA (rank-4 adapters on the token embedding and the feed-forward layers, the
new head in ``modules_to_save``). Reports trainable parameters, test accuracy, wall time and the
size of what has to be stored per task (the adapter file vs the whole model), and checks that the
saved adapter reloads with identical outputs. Writes summary.json and the LoRA adapter
(PEFT format, adapter/) into results/06_lora_finetune/ (quick/ with --quick).

    python examples/06_lora_finetune.py [--quick] [--out DIR]
"""

from __future__ import annotations

import copy
import io
import sys
import tempfile
import time
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _outputs

from braingate.lora import LoRAConfig, LoRAModel, LoRAOptimizer, load_adapter


class DigitTransformer(nn.Module):
    """Rows of an 8×8 digit as 8 tokens → 2-layer TransformerEncoder → mean pool → head."""

    def __init__(self, d: int = 32, classes: int = 5):
        super().__init__()
        self.embed = nn.Linear(8, d)
        self.pos = nn.Parameter(torch.randn(8, 1, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, 4, 2 * d, dropout=0.0)  # seq-first: no fast path
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(d, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x.view(-1, 8, 8).transpose(0, 1)) + self.pos  # (8, B, d)
        return self.head(self.encoder(tokens).mean(0))


def split(lo: int, seed: int = 0):
    """Train/test tensors of the digits ``lo..lo+4`` (labels shifted to 0..4)."""
    d = load_digits()
    keep = (d.target >= lo) & (d.target < lo + 5)
    x = torch.tensor(d.data[keep] / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target[keep] - lo)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=seed, stratify=y)
    return xtr, ytr, xte, yte


def train(model, opt, data, epochs: int, batch: int = 64, seed: int = 0) -> float:
    xtr, ytr = data[0], data[1]
    g = torch.Generator().manual_seed(seed)
    model.train()
    t0 = time.perf_counter()
    for _ in range(epochs):
        for idx in torch.randperm(len(xtr), generator=g).split(batch):
            loss = nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return time.perf_counter() - t0


@torch.no_grad()
def accuracy(model, data) -> float:
    model.eval()
    return float((model(data[2]).argmax(1) == data[3]).float().mean())


def nbytes_of_state(model: nn.Module) -> int:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


def main(argv: list[str] | None = None) -> dict:
    args = _outputs.parser(__doc__, "5 epochs each (a smoke run)").parse_args(argv)
    legacy = _outputs.legacy_file(args.out, ".json")  # --out FILE.json: the old interface
    out = legacy.parent if legacy else _outputs.output_dir("06_lora_finetune", args.quick, args.out)
    torch.manual_seed(0)
    torch.set_num_threads(1)  # tiny model: threads only add overhead
    pre_epochs, ft_epochs = (5, 5) if args.quick else (40, 30)

    source, target = split(0), split(5)
    pretrained = DigitTransformer()
    train(pretrained, torch.optim.AdamW(pretrained.parameters(), 3e-3), source, pre_epochs)
    rows = {"pretrained_source_acc": accuracy(pretrained, source)}

    full = copy.deepcopy(pretrained)
    full.head = nn.Linear(32, 5)
    secs = train(full, torch.optim.AdamW(full.parameters(), 1e-3), target, ft_epochs)
    n_full = sum(p.numel() for p in full.parameters())
    rows["full"] = {"trainable": n_full, "total": n_full, "acc": accuracy(full, target),
                    "seconds": secs, "stored_bytes": nbytes_of_state(full)}  # fmt: skip

    base = copy.deepcopy(pretrained)
    base.head = nn.Linear(32, 5)
    cfg = LoRAConfig(rank=4, alpha=8, target_modules=["embed", "linear1", "linear2"],
                     modules_to_save=["head"])  # fmt: skip
    lora = LoRAModel(base, cfg)
    secs = train(lora, LoRAOptimizer(lora, lr=3e-3, loraplus_lr_ratio=4), target, ft_epochs)
    trainable, total = lora.trainable_parameter_count()
    with tempfile.TemporaryDirectory() as tmp:
        lora.save_adapter(tmp)
        size = sum(f.stat().st_size for f in Path(tmp).iterdir())
        reloaded = load_adapter(copy.deepcopy(pretrained), tmp).eval()
        with torch.no_grad():
            same = torch.allclose(reloaded(target[2]), lora.eval()(target[2]), atol=1e-5)
    rows["lora"] = {"trainable": trainable, "total": total, "acc": accuracy(lora, target),
                    "seconds": secs, "stored_bytes": size, "reload_identical": bool(same)}  # fmt: skip
    lora.merge()
    rows["lora"]["merged_acc"] = accuracy(lora, target)

    print(f"pretrained on digits 0-4: test acc {rows['pretrained_source_acc']:.3f}")
    print(f"{'digits 5-9':<12}{'trainable':>10}{'acc':>8}{'seconds':>9}{'stored':>10}")
    for k in ("full", "lora"):
        r = rows[k]
        kb = r["stored_bytes"] / 1024
        print(f"{k:<12}{r['trainable']:>10}{r['acc']:>8.3f}{r['seconds']:>9.1f}{kb:>8.1f}KB")
    print(f"LoRA adapter reloads identically: {rows['lora']['reload_identical']}; "
          f"merged acc {rows['lora']['merged_acc']:.3f}")  # fmt: skip
    lora.unmerge()
    lora.save_adapter(out / "adapter")
    summary = legacy or out / "summary.json"
    paths = [_outputs.write_json(summary, {"quick": args.quick, **rows}),
             out / "adapter"]  # fmt: skip
    _outputs.announce(out, paths)
    return rows


if __name__ == "__main__":
    main()
