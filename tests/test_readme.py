"""The README's quickstart runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_quickstart_runs(capsys):
    text = README.read_text()
    section = text.split("## Quickstart", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope: dict = {}
    exec(compile(code, "README quickstart", "exec"), scope)
    out = capsys.readouterr().out
    assert "max |event - dense|" in out and "synops with 2/4 blocks" in out
    assert tuple(scope["y"].shape) == (1, 10)
    assert scope["gated"].total["synops"] < scope["report"].total["synops"]
