"""examples/10_event_cnn.py in quick mode: it runs end to end and what it reports is sane."""

import importlib.util
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "10_event_cnn.py"


@pytest.mark.slow
def test_event_cnn_example_quick(tmp_path, monkeypatch):
    import torch

    monkeypatch.chdir(tmp_path)
    spec = importlib.util.spec_from_file_location("ex10", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(EXAMPLE.parent))
    threads = torch.get_num_threads()
    try:
        spec.loader.exec_module(mod)
        res = mod.main(["--quick"])
    finally:
        sys.path.remove(str(EXAMPLE.parent))
        torch.set_num_threads(threads)
    out = tmp_path / "results" / "10_event_cnn" / "quick"
    assert (out / "report.json").is_file() and (out / "summary.json").is_file()
    assert res["acc_dense"] > 0.5 and res["acc_event"] > res["acc_dense"] - 0.05
    assert res["ratio_vs_dense_macs"] > 1 and res["compiled_calls_per_frame"] == 1
    assert res["speck_fits"]
