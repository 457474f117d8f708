"""The seed document's code blocks run against braingate.lora with only the import changed.

Blocks that need downloads (``from_pretrained``, torchvision weights) are left out. Each block's
class definitions of names braingate.lora exports are replaced by ``from braingate.lora import
...``; the one line that reads a factor as a tensor is rewritten as documented in
``braingate/lora/seed.py`` (``lora_A`` is a module here, as in PEFT).
"""

from __future__ import annotations

import ast
import contextlib
import io
import re
from pathlib import Path

import pytest
import torch

import braingate.lora as L

SEED = Path(__file__).parent / "data" / "seed_002_lora_variants.md"
NEEDS_DOWNLOAD = ("from_pretrained", "pretrained=True", "torchvision")
REWRITES = {  # documented in braingate/lora/seed.py
    "torch.count_nonzero(pruning_lora.lora_A)": "torch.count_nonzero(pruning_lora.lora_A.weight)",
    "torch.count_nonzero(pruning_lora.lora_B)": "torch.count_nonzero(pruning_lora.lora_B.weight)",
}


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", SEED.read_text(), flags=re.S)


def _adapt(code: str) -> tuple[str, list[str]]:
    tree = ast.parse(code)
    replaced, body = [], []
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name in L.__all__:
            replaced.append(node.name)
            continue
        if isinstance(node, ast.ImportFrom) and node.module == "bitsandbytes":
            continue
        body.append(node)
    tree.body = body
    src = ast.unparse(tree)
    for old, new in REWRITES.items():
        src = src.replace(old, new)
    header = f"from braingate.lora import {', '.join(replaced)}\n" if replaced else ""
    return header + src, replaced


RUNNABLE = [b for b in _blocks() if not any(s in b for s in NEEDS_DOWNLOAD)]


def test_seed_blocks_found():
    assert len(_blocks()) == 14
    assert len(RUNNABLE) == 11


@pytest.mark.parametrize("index", range(len(RUNNABLE)))
def test_seed_block_runs(index):
    src, replaced = _adapt(RUNNABLE[index])
    assert replaced, "every runnable block defines a name braingate.lora provides"
    torch.manual_seed(0)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), torch.no_grad():
        # the slides run in one session: later blocks rely on the first block's imports
        namespace = {"__name__": "seed", "torch": torch, "nn": torch.nn}
        exec(compile(src, f"seed-block-{index}", "exec"), namespace)
    printed = out.getvalue().lower()
    assert any(word in printed for word in ("shape", "rank", "sparsity", "pruning"))
