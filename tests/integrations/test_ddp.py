"""DDP with 2 CPU gloo processes trains braingate layers exactly like one process on all data."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from braingate.integrations.distributed import config_fingerprint, run_ddp, wrap_ddp

HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")


@pytest.fixture
def worker(monkeypatch):
    """The worker module, importable by name in spawned processes too."""
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    import _ddp_worker

    yield _ddp_worker
    sys.modules.pop("_ddp_worker", None)


@pytest.mark.slow
def test_two_gloo_processes_match_single_process_and_refuse_mismatch(worker):
    x, y = worker.make_data()
    grads, params = worker.train(worker.make_model(), x, y)
    per_rank = run_ddp(worker.ddp_worker, 2)
    for rank_grads, rank_params, refused in per_rank:
        assert "differs from rank 0 on ranks [1]" in refused
        assert rank_params.keys() == params.keys()
        for name in params:
            torch.testing.assert_close(rank_grads[name], grads[name], atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(rank_params[name], params[name], atol=1e-6, rtol=1e-5)
    moved = max(
        float((params[n] - p0.detach()).abs().max())
        for n, p0 in worker.make_model().named_parameters()
    )
    assert moved > 1e-3  # training changed the parameters, so agreement is not trivial


def test_fingerprint_and_errors(worker):
    a, b = worker.make_model(), worker.make_model()
    assert config_fingerprint(a) == config_fingerprint(b)
    b[2].latent_threshold = 0.1
    assert config_fingerprint(a) != config_fingerprint(b)
    with pytest.raises(RuntimeError, match="init_process_group"):
        wrap_ddp(a)
    with pytest.raises(ValueError, match="world_size"):
        run_ddp(worker.ddp_worker, 0)
