"""`import peft` and `import transformers` work in the project's environment, as a user runs them
(no workaround in the process): a torchaudio that cannot load must not be installed (see the
Makefile)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest


@pytest.mark.skipif(importlib.util.find_spec("peft") is None, reason="peft not installed")
def test_peft_and_transformers_import_in_a_fresh_interpreter():
    code = "import braingate, peft, transformers; from peft import LoraConfig; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]
