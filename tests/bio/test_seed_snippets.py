"""Every Python snippet of the Bio Transformations seed runs against braingate.bio.

The only change to a snippet is its import line (``bio_transformations`` → ``braingate.bio``).
The page's import statements are the reader's imports: they are run before each snippet.
Snippets whose names are all bound by themselves plus those imports run as written; the others
use names the page leaves to the reader (``model``, ``optimizer``, ``train_loader``, ...), which
:func:`reader_context` supplies with a small real training setup.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
import itertools

import _snippets

SEED = _snippets.seed_path()
pytestmark = pytest.mark.skipif(SEED is None, reason="seed 003 not found (set BRAINGATE_SEEDS_DIR)")
BLOCKS = _snippets.extract(SEED.read_text()) if SEED else []
IMPORTS, IMPORTED = _snippets.page_imports(BLOCKS) if SEED else ("", set())
CONTEXT_NAMES = {"model", "bio_model", "converter", "inputs", "targets", "inputs_batch",
                 "criterion", "optimizer", "train_loader", "device", "YourModel"}  # fmt: skip
SELF_CONTAINED = [i for i, c in enumerate(BLOCKS) if not _snippets.free_names(c) - IMPORTED]
MONITORING = next((i for i, c in enumerate(BLOCKS) if "crystallized_weights_history" in c), -1)
# the monitoring snippet runs once, in its own test with assertions on what it records
NEEDS_CONTEXT = [i for i in range(len(BLOCKS)) if i not in SELF_CONTAINED and i != MONITORING]


class YourModel(nn.Module):
    """The reader's model: 10 inputs, a hidden layer of 20, 4 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(10, 20)
        self.fc2 = nn.Linear(20, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def reader_context() -> dict:
    from braingate.bio import BioConverter

    torch.manual_seed(0)
    inputs, targets = torch.randn(16, 10), torch.randint(0, 4, (16,))
    bio_model = BioConverter()(YourModel())
    return {
        "YourModel": YourModel,
        "model": YourModel(),
        "bio_model": bio_model,
        "converter": BioConverter(),
        "inputs": inputs,
        "targets": targets,
        "inputs_batch": inputs,
        "criterion": nn.CrossEntropyLoss(),
        "optimizer": torch.optim.SGD(bio_model.parameters(), lr=0.05),
        "train_loader": [(inputs[:8], targets[:8]), (inputs[8:], targets[8:])],
        "device": torch.device("cpu"),
    }


def _run(code: str, namespace: dict) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    exec(compile(IMPORTS, "<seed imports>", "exec"), namespace)
    exec(compile(code, "<seed snippet>", "exec"), namespace)
    return namespace


def test_collector_found_the_snippets():
    assert len(BLOCKS) == 13
    assert len(SELF_CONTAINED) >= 5
    assert all("bio_transformations" not in c for c in BLOCKS)


@pytest.mark.parametrize("index", SELF_CONTAINED)
def test_self_contained_snippet_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ns = _run(BLOCKS[index], {"__name__": f"seed_snippet_{index}"})
    from braingate.bio import BioConfig, BioConverter

    made = [v for v in ns.values() if isinstance(v, (BioConfig, BioConverter))]
    assert made, "each self-contained snippet builds configs or converters"


@pytest.mark.parametrize("index", NEEDS_CONTEXT)
def test_snippet_with_reader_context_runs(index, tmp_path, monkeypatch, recwarn):
    code = BLOCKS[index]
    assert _snippets.free_names(code) - IMPORTED <= CONTEXT_NAMES
    monkeypatch.chdir(tmp_path)
    ns = _run(code, {"__name__": f"seed_snippet_{index}", **reader_context()})
    bio_model = ns.get("bio_model")
    assert bio_model is not None
    assert any(hasattr(m, "bio_mod") for m in bio_model.modules())


def test_seed_values_reach_the_converter():
    ns = _run(BLOCKS[1], {"__name__": "seed"})
    cfg = ns["current_config"]
    from braingate.bio import Distribution

    assert cfg.fuzzy_learning_rate_factor_nu == 0.2 and cfg.weight_splitting_Gamma == 2
    assert cfg.fuzzy_lr_distribution is Distribution.LOGNORMAL and cfg.apply_dales_principle


def test_monitoring_snippet_records_histories(tmp_path, monkeypatch):
    assert _snippets.free_names(BLOCKS[MONITORING]) - IMPORTED <= CONTEXT_NAMES
    monkeypatch.chdir(tmp_path)
    ns = _run(BLOCKS[MONITORING], {"__name__": "seed", **reader_context()})
    assert len(ns["crystallized_weights_history"]) == 100
    assert len(ns["rejuvenated_weights_history"]) == 10
    # P only ever shrinks under crystallize: the crystallized count never decreases
    counts = ns["crystallized_weights_history"]
    assert all(a <= b for a, b in itertools.pairwise(counts))
