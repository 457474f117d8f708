"""The Lightning callback logs braingate metrics per step, equal to a direct simulate()."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import braingate as bg

pytest.importorskip("lightning")
import lightning.pytorch as pl

from braingate.integrations.lightning import BraingateMetricsCallback, static_metrics


class _Module(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            bg.EventLinear(6, 12, 6, blocks=2, threshold=0.05), nn.ReLU(), bg.EventLinear(12, 3, 3)
        )
        self.net[0].set_active_blocks(1)

    def training_step(self, batch, _idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(callback, tmp_path, steps: int = 4):
    torch.manual_seed(0)
    module = _Module()
    data = torch.utils.data.TensorDataset(torch.randn(32, 6), torch.randint(0, 3, (32,)))
    trainer = pl.Trainer(
        max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
        callbacks=[callback],
    )  # fmt: skip
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=8))
    return module, trainer


def test_logs_event_metrics_matching_simulate(tmp_path, rng):
    probe = torch.randn(10, 4, 6).cumsum(0) * 0.3
    cb = BraingateMetricsCallback(probe, model_attr="net")
    module, trainer = _fit(cb, tmp_path)
    logged = trainer.callback_metrics
    for key in ("synops", "input_events", "latent_events", "rank", "energy_J_per_sample", "lowrank_ops"):
        assert f"braingate/{key}" in logged
    st = module.net[0]._runner.state  # reset after the probe: none, or zeroed in place
    assert module.net[0].execution == "dense"
    assert st is None or all(not bool(t.any()) for t in st[:4])
    _, rep = bg.simulate(module.net, probe, mode="event")
    assert float(logged["braingate/synops"]) == pytest.approx(rep.total["synops"], rel=1e-5)
    assert float(logged["braingate/rank"]) == 3 + 3  # 1 of 2 blocks of rank 6, plus rank 3
    assert float(logged["braingate/energy_J_per_sample"]) > 0


def test_static_metrics_and_errors():
    layer = bg.EventLinear(8, 4, 4, blocks=2)
    layer.set_active_blocks(torch.tensor([[True, False], [True, True]]))
    m = static_metrics(nn.Sequential(layer))
    assert m == {"rank": 3.0, "lowrank_ops": 36.0, "dense_synops": 32.0}
    with pytest.raises(ValueError, match="every_n_steps"):
        BraingateMetricsCallback(every_n_steps=0)
    with pytest.raises(ValueError, match="probe"):
        BraingateMetricsCallback(torch.zeros(3))
