"""The README's quickstart runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_quickstart_runs(capsys):
    text = README.read_text()
    section = text.split("## Quickstart", 1)[1]
    section = section.split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 2  # the MLP, then the CNN (run in one scope, as a reader would)
    scope: dict = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"README quickstart block {i + 1}", "exec"), scope)
    out = capsys.readouterr().out
    assert "max |event - dense|" in out and "synops with 2/4 blocks" in out
    assert tuple(scope["y"].shape) == (1, 10)
    assert scope["gated"].total["synops"] < scope["report"].total["synops"]
    assert tuple(scope["logits"].shape) == (1, 10)
    assert "compiled calls per frame: 1" in out
    rep = scope["cnn_report"]
    assert set(rep.layers) == {"0", "4", "8"}  # both convs and the head, BatchNorm folded
    assert rep.total["synops"] < rep.total["dense_synops"]
