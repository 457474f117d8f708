"""Import peft (the test oracle) or skip; works around a torchaudio build that cannot load."""

from __future__ import annotations

import pytest


def import_peft():
    """Return the peft module, skipping the test when it is not installed."""
    try:
        import transformers.utils as tu
        import transformers.utils.import_utils as iu
    except ImportError:  # pragma: no cover - peft needs transformers
        pytest.skip("peft/transformers not installed (pip install braingate[dev])")
    # A torchaudio wheel built for another torch makes `import transformers` submodules fail;
    # the LoRA oracle needs no audio, so tell transformers it is absent.
    iu.is_torchaudio_available = lambda: False
    tu.is_torchaudio_available = lambda: False
    return pytest.importorskip("peft")
