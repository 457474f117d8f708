"""hwmaps is torch-free except extract(): importing it pulls neither torch nor matplotlib."""

from __future__ import annotations

import subprocess
import sys


def test_import_hwmaps_is_torch_free():
    code = (
        "import sys, hwmaps, hwmaps.ir, hwmaps.chips, hwmaps.report, hwmaps.plot;"
        "bad = [m for m in ('torch', 'braingate', 'matplotlib') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
