"""Optional dependencies: lazy imports and an ImportError that names the extra to install."""

from __future__ import annotations

import subprocess
import sys

import pytest

from braingate.integrations._optional import require


def test_missing_dependency_names_the_extra():
    with pytest.raises(ImportError, match=r"pip install 'braingate\[tune\]'"):
        require("braingate_no_such_package.sub", "tune")
    assert require("json", "none").dumps([1]) == "[1]"


def test_importing_integrations_imports_no_optional_package():
    code = (
        "import sys, braingate.integrations as i; "
        "print(sorted(m for m in ('nir', 'nirtorch', 'neurobench', 'lightning', 'ray') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
