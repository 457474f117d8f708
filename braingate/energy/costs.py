"""Per-operation energy costs (``EnergyModel``) and cited presets.

Every number below comes from REFERENCES.md §C; values nobody published are marked
``assumption`` in the model's ``assumptions`` field and in the comment next to them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from braingate._registry import Registry

__all__ = ["REGISTRY", "EnergyModel", "energy_model", "energy_model_names", "register_energy_model"]


@dataclass(frozen=True)
class EnergyModel:
    """Energy per elementary operation, in picojoules.

    .. math::
        E = N_{syn} e_{syn} + N_{neu} e_{neu} + N_{spk} e_{spk} + N_{mac} e_{mac} + N_{B} e_{B}

    Args:
        name: preset name.
        synop_pJ: one synaptic operation (event-driven accumulate).
        neuron_update_pJ: one neuron (accumulator) update per time step.
        spike_pJ: one spike / event sent.
        mac_pJ: one dense multiply-accumulate (2 FLOPs).
        byte_pJ: one byte moved to or from memory (0 when the per-FLOP figure already
            includes memory power, as datasheet peak ÷ TDP does).
        sources: citations for the numbers.
        assumptions: which numbers are assumptions, not published figures.
    """

    name: str
    synop_pJ: float
    neuron_update_pJ: float
    spike_pJ: float
    mac_pJ: float
    byte_pJ: float = 0.0
    sources: tuple[str, ...] = ()
    assumptions: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        for key in ("synop_pJ", "neuron_update_pJ", "spike_pJ", "mac_pJ", "byte_pJ"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"{key}={value!r} is not a finite non-negative number of picojoules; "
                    f"pass e.g. {key}=1.0"
                )

    @property
    def flop_pJ(self) -> float:
        """Energy of one FLOP (half a MAC)."""
        return self.mac_pJ / 2.0

    def with_overrides(self, **kw: float) -> EnergyModel:
        """Return a copy with some costs replaced (validated again)."""
        return replace(self, **kw)


REGISTRY: Registry[EnergyModel] = Registry("energy model")


def register_energy_model(model: EnergyModel) -> EnergyModel:
    """Add ``model`` to the preset registry under ``model.name`` (a taken name raises)."""
    if not isinstance(model, EnergyModel):
        raise TypeError(f"model={model!r} is not an EnergyModel; build one with EnergyModel(...)")
    if not isinstance(model.name, str) or not model.name:
        raise ValueError(f"model.name={model.name!r} must be a non-empty string")
    return REGISTRY.add(model.name, model)


def energy_model_names() -> list[str]:
    """Names of the registered presets, sorted."""
    return sorted(REGISTRY.names())


def energy_model(name: str | EnergyModel) -> EnergyModel:
    """Look up a preset by name (an ``EnergyModel`` is returned unchanged)."""
    if isinstance(name, EnergyModel):
        return name
    return REGISTRY.get(name)


_HOROWITZ = "Horowitz, ISSCC 2014, 45 nm (REFERENCES.md §C)"
_EVENT_AS_MAC = "event ops priced as one MAC (no event hardware): assumption"

# fp32 mult 3.7 pJ + add 0.9 pJ = MAC 4.6 pJ; SRAM 32 KB: 20 pJ per 64-bit access = 2.5 pJ/B.
register_energy_model(
    EnergyModel("horowitz45_fp32", 4.6, 0.9, 0.0, 4.6, 2.5, (_HOROWITZ,), (_EVENT_AS_MAC,))
)
# int8 mult 0.2 pJ + add 0.03 pJ = MAC 0.23 pJ; same SRAM figure.
register_energy_model(
    EnergyModel("horowitz45_int8", 0.23, 0.03, 0.0, 0.23, 2.5, (_HOROWITZ,), (_EVENT_AS_MAC,))
)
# DRAM 1.3 nJ per 64-bit access (low end of 1.3-2.6 nJ) = 162.5 pJ/B.
register_energy_model(
    EnergyModel("horowitz45_fp32_dram", 4.6, 0.9, 0.0, 4.6, 162.5, (_HOROWITZ,), (_EVENT_AS_MAC,))
)
_GPU = (
    "datasheet peak FLOP/s ÷ TDP, a best case that already includes memory power (REFERENCES.md §C)"
)
_GPU_EVENT = "synop/neuron/spike priced as one FLOP (GPUs have no event hardware): assumption"
# H100 SXM: 10.5 pJ/FLOP FP32, 0.71 pJ/FLOP BF16; A100: 20.5 FP32, 1.28 BF16.
for _name, _flop in (
    ("h100_fp32", 10.5),
    ("h100_bf16", 0.71),
    ("a100_fp32", 20.5),
    ("a100_bf16", 1.28),
):
    register_energy_model(
        EnergyModel(_name, _flop, _flop, 0.0, 2 * _flop, 0.0, (_GPU,), (_GPU_EVENT,))
    )


# Neuromorphic chips: per-event costs from the one chip table that hwmaps maps with
# (hwmaps/chips/chips.json, every value with its source; braingate.energy.chips reads it), so
# an EnergyModel named after a chip and hwmaps' ChipSpec can never drift apart. A dense MAC
# costs one synop (these chips have no dense MAC unit): assumption.
def _chip_model(name: str) -> EnergyModel:
    from braingate.energy.chips import chip_costs

    c = chip_costs(name)
    notes = tuple(f"{k}: {v}" for k, v in c.sources.items())  # as in the table
    assumed = tuple(f"{k}: {v}" for k, v in c.sources.items() if v.startswith("assumption"))
    return EnergyModel(name, c.e_synop_j * 1e12, c.e_neuron_active_j * 1e12, c.e_spike_j * 1e12,
                       c.e_synop_j * 1e12, 0.0, notes,
                       (*assumed, "mac_pJ = synop_pJ (no dense MAC unit): assumption"))  # fmt: skip


def _register_chips() -> None:
    from braingate.energy.chips import chip_names

    for name in chip_names():
        register_energy_model(_chip_model(name))


_register_chips()
