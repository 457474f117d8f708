"""PyTorch Lightning callback that logs braingate metrics (synops, events, rank, energy) per step.

The LoRAven guide's Lightning example logs its layers' metrics by hand inside ``training_step``;
:class:`BraingateMetricsCallback` does it for any LightningModule that contains braingate layers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from braingate.energy.report import report_energy
from braingate.integrations._optional import require
from braingate.nn.base import event_modules
from braingate.sim.simulate import simulate


def _lightning():
    try:
        return require("lightning.pytorch", "lightning")
    except ImportError:
        return require("pytorch_lightning", "lightning")


_pl = _lightning()

__all__ = ["BraingateMetricsCallback", "static_metrics"]


def static_metrics(model: nn.Module) -> dict[str, float]:
    r"""Per-step costs that need no data: active rank and the dense and low-rank op counts.

    .. math::
        \text{rank} = \sum_\ell \bar R_{act,\ell},\quad
        \text{lowrank\_ops} = \sum_\ell (n_\ell + m_\ell)\,\bar R_{act,\ell},\quad
        \text{dense\_synops} = \sum_\ell n_\ell m_\ell

    Returns:
        ``{"rank", "lowrank_ops", "dense_synops"}`` summed over event layers (``R̄`` is the
        mean over samples of a per-sample gate).
    """
    rank = lowrank = dense = 0.0
    for m in event_modules(model).values():
        c = m.dense_counts(getattr(m, "last_sample_shape", ()))
        rank += float(c.latent_events)  # a dense step sends every active rank unit
        lowrank += float(c.lowrank_ops)
        dense += float(c.dense_synops)
    return {"rank": rank, "lowrank_ops": lowrank, "dense_synops": dense}


class BraingateMetricsCallback(_pl.Callback):
    """Log braingate metrics every ``every_n_steps`` training steps.

    Always logged (prefix ``braingate/``): ``rank``, ``lowrank_ops``, ``dense_synops``
    (:func:`static_metrics`). With a ``probe`` stream the model is also run in event mode on it
    (:func:`braingate.simulate`, no gradients, state reset before and after) and ``synops``,
    ``input_events``, ``latent_events``, ``dense_over_synops`` and ``energy_J_per_sample`` (joules per sample,
    :func:`braingate.energy.report_energy` with ``energy_model``) are logged.

    Args:
        probe: a time-first stream ``(T, B, ...)``, or a callable ``(pl_module) -> stream``, or
            None for the static metrics only.
        every_n_steps: logging period in optimizer steps (≥ 1).
        energy_model: an energy preset name (``braingate.energy.energy_model_names()``).
        model_attr: attribute of the LightningModule holding the braingate model; None uses the
            LightningModule itself.
    """

    def __init__(
        self,
        probe: Tensor | Callable | None = None,
        *,
        every_n_steps: int = 1,
        energy_model: str = "loihi",
        model_attr: str | None = None,
    ) -> None:
        super().__init__()
        if (
            isinstance(every_n_steps, bool)
            or not isinstance(every_n_steps, int)
            or every_n_steps < 1
        ):
            raise ValueError(f"every_n_steps={every_n_steps!r} must be an int >= 1")
        if probe is not None and not callable(probe):
            if not isinstance(probe, Tensor) or probe.dim() < 2:
                raise ValueError("probe must be a (T, B, ...) tensor, a callable or None")
        from braingate.energy.costs import energy_model as _lookup

        _lookup(energy_model)  # unknown names fail here, listing the known ones
        self.probe, self.every, self.energy_model = probe, every_n_steps, energy_model
        self.model_attr = model_attr
        self.last: dict[str, float] = {}

    def _model(self, pl_module) -> nn.Module:
        if self.model_attr is None:
            return pl_module
        if not hasattr(pl_module, self.model_attr):
            raise ValueError(f"LightningModule has no attribute {self.model_attr!r} (model_attr)")
        return getattr(pl_module, self.model_attr)

    def metrics(self, pl_module) -> dict[str, float]:
        """Compute the metrics now (also used by the per-step hook)."""
        model = self._model(pl_module)
        out = static_metrics(model)
        if self.probe is not None:
            xs = self.probe(pl_module) if callable(self.probe) else self.probe
            was_training = model.training
            model.eval()
            try:
                _, rep = simulate(model, xs.to(pl_module.device), mode="event")
            finally:
                model.train(was_training)
                from braingate.sim.control import reset

                reset(model)
            t = rep.total
            out.update(synops=t["synops"], input_events=t["input_events"],
                       latent_events=t["latent_events"], dense_over_synops=rep.ratio(),
                       energy_J_per_sample=report_energy(rep, self.energy_model)["per_sample"]["total"])  # fmt: skip
        return out

    @torch.no_grad()
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every:
            return
        self.last = self.metrics(pl_module)
        for k, v in self.last.items():
            pl_module.log(f"braingate/{k}", float(v), on_step=True, on_epoch=False, batch_size=1)
