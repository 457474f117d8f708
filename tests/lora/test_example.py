"""Example 06 runs end to end in quick mode and writes its JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "06_lora_finetune.py"


@pytest.mark.slow
def test_example_06_quick(tmp_path):
    out = tmp_path / "lora.json"
    subprocess.run(
        [sys.executable, str(EXAMPLE), "--quick", "--out", str(out)], check=True, timeout=300
    )
    result = json.loads(out.read_text())
    assert result["lora"]["trainable"] < 0.2 * result["full"]["trainable"]
    assert result["lora"]["stored_bytes"] < 0.2 * result["full"]["stored_bytes"]
    assert result["lora"]["reload_identical"] is True
    assert result["lora"]["acc"] > 0.5  # far above chance (0.2) even in quick mode
