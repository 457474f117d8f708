"""The event-module protocol (DESIGN §2d): what every event layer provides to the runtime.

``simulate``, ``Report``, ``calibrate_thresholds``, ``compile_events``, training through events
(``rollout`` / ``EventTape``), ``hwmaps.extract`` and the integrations talk to event layers
through this protocol only — never through ``isinstance`` checks of concrete layer types. A new
layer type is one file: a subclass of :class:`EventModule` that implements the abstract hooks,
registered once with :func:`register_event_layer` (its compiled kernels, hwmaps extractor, NIR and
NeuroBench mappings register in their own registries under the same ``kind``).

Counts have names, never positions: :class:`Counts` (``synops``, ``dense_synops``,
``lowrank_ops``, ``input_events``, ``latent_events``, ``gate_ops``, ``resync_ops``,
``neuron_ops``), each the per-sample value of one step.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from braingate._registry import Registry
from braingate.nn import _validate as check

__all__ = [
    "COUNT_FIELDS",
    "EVENT_LAYERS",
    "Counts",
    "EventModule",
    "event_modules",
    "register_event_layer",
    "threshold_property",
]

#: Counter names of the protocol, in :class:`Counts` order (per sample, one step).
COUNT_FIELDS = (
    "synops",
    "dense_synops",
    "lowrank_ops",
    "input_events",
    "latent_events",
    "gate_ops",
    "resync_ops",
    "neuron_ops",
)


class Counts(NamedTuple):
    """What one step of one layer did, per sample (floats, or ``(B,)`` arrays / tensors).

    ``synops``: synaptic operations done (DESIGN §2, §2b, §2c). ``dense_synops``: what the dense
    full-rank layer costs. ``lowrank_ops``: what the dense low-rank path costs. ``input_events``
    / ``latent_events``: inputs and rank units sent. ``gate_ops``: work of blocks switching.
    ``resync_ops``: work of exact re-syncs. ``neuron_ops``: elementwise work (gates of recurrent
    cells), apart from synops.
    """

    synops: Any = 0.0
    dense_synops: Any = 0.0
    lowrank_ops: Any = 0.0
    input_events: Any = 0.0
    latent_events: Any = 0.0
    gate_ops: Any = 0.0
    resync_ops: Any = 0.0
    neuron_ops: Any = 0.0

    def mean(self) -> Counts:
        """Every field averaged over the batch (plain floats)."""
        return Counts(*(float(np.mean(_np(v))) for v in self))


def _np(v) -> np.ndarray | float:
    if isinstance(v, Tensor):
        return v.detach().double().cpu().numpy()
    return v


#: Event layer types by ``kind`` (one row per type; see :func:`register_event_layer`).
EVENT_LAYERS: Registry[type] = Registry("event layer type")


def register_event_layer(kind: str):
    """Class decorator: register an :class:`EventModule` subclass under ``kind``.

    ``kind`` is what reports, hwmaps extractors, NIR and NeuroBench mappings key on.
    """

    def deco(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, EventModule)):
            raise TypeError(f"register_event_layer({kind!r}) takes an EventModule subclass")
        cls.kind = kind
        EVENT_LAYERS.add(kind, cls)
        return cls

    return deco


class EventModule(nn.Module):
    """Base class of event layers: the protocol of DESIGN §2d.

    Subclasses implement the abstract hooks below and call ``super().__init__()``. Class
    attributes: ``kind`` (set by :func:`register_event_layer`), ``recurrent`` (dense mode needs
    the whole sequence in order), ``threshold_names`` (the attributes ``calibrate_thresholds``
    tunes, in order: input first, latent last).

    Protocol:
        - ``execution`` ∈ {"dense", "event", "auto"}; :meth:`reset`.
        - ``forward(x)``: dense mode any leading dims (recurrent: the whole ``(T, B, ...)``
          sequence); event / auto mode one step ``(B, ...)`` on the layer's state.
        - :attr:`last_counts`: :class:`Counts` of the last step, per sample (``(B,)`` arrays).
        - :meth:`dense_counts`: :class:`Counts` of one dense step of one sample.
        - :meth:`report_entry`: the layer's part of a :class:`~braingate.sim.Report`.
        - :meth:`reference_step`: the differentiable torch step (training through events).
        - thresholds as attributes, :meth:`learn_thresholds`, ``blocks``,
          :meth:`set_active_blocks`.
    """

    kind: ClassVar[str] = ""
    recurrent: ClassVar[bool] = False
    threshold_names: ClassVar[tuple[str, ...]] = ("threshold", "latent_threshold")

    def __init__(self) -> None:
        super().__init__()
        self._execution = "dense"

    # -- execution ------------------------------------------------------------------------------
    @property
    def execution(self) -> str:
        """``"dense"`` | ``"event"`` | ``"auto"``."""
        return self._execution

    @execution.setter
    def execution(self, mode: str) -> None:
        self._execution = check.execution_mode(mode)

    # -- hooks every layer type implements ------------------------------------------------------
    def reset(self) -> None:  # pragma: no cover - abstract
        """Clear the event state and counters (parameters, thresholds and gates are kept)."""
        raise NotImplementedError

    @property
    def last_counts(self) -> Counts | None:  # pragma: no cover - abstract
        """:class:`Counts` of the last event / auto step (per sample), None before one."""
        raise NotImplementedError

    def dense_counts(self, sample_shape: tuple[int, ...]) -> Counts:  # pragma: no cover
        """:class:`Counts` of one dense step of one sample whose input has ``sample_shape``
        (the per-step input without its batch dim): every input and active unit sent."""
        raise NotImplementedError

    def unit_events(self) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - abstract
        """Events per input unit and per latent unit, summed over samples and steps since the
        last reset (dense steps send every unit)."""
        raise NotImplementedError

    def describe(self) -> dict:  # pragma: no cover - abstract
        """Shape facts for reports and hwmaps: at least ``in_features``, ``out_features``,
        ``rank``, ``blocks`` (the factored view) and any type-specific fields."""
        raise NotImplementedError

    def init_state(self, batch: int, like: Tensor) -> Any:  # pragma: no cover - abstract
        """The zero state of :meth:`reference_step` for ``batch`` samples (dtype/device of
        ``like``)."""
        raise NotImplementedError

    def reference_step(self, x: Tensor, state: Any) -> tuple[Tensor, Any, Counts]:
        """One differentiable event step in torch: ``(y, new_state, counts)`` with
        per-sample ``(B,)`` tensors in ``counts`` (surrogate gradients flow to learned
        thresholds). Used by training through events."""
        raise NotImplementedError  # pragma: no cover - abstract

    def format_step(self, y: Tensor, state: Any) -> Any:
        """What an event-mode call returns, from :meth:`reference_step`'s ``y`` and ``state``
        (``y`` itself by default; recurrent layers return torch's ``(output, hidden)``)."""
        return y

    # -- shared behaviour -----------------------------------------------------------------------
    def report_entry(self, batch: int, dense_steps: int = 0) -> dict:
        """The layer's fields in a Report: ``kind``, :meth:`describe`, and the unit events per
        sample (``dense_steps`` whole-sequence dense steps that the layer did not see itself add
        one event per unit each)."""
        in_u, lat_u = self.unit_events()
        d = {"kind": self.kind, **self.describe()}
        d["input_unit_events"] = (np.asarray(in_u, np.float64) / batch + dense_steps).tolist()
        d["latent_unit_events"] = (np.asarray(lat_u, np.float64) / batch + dense_steps).tolist()
        return d

    # -- thresholds (fixed values, or learned: ``softplus(<name>_raw)``) ------------------------
    def threshold_sizes(self) -> dict[str, int]:  # pragma: no cover - abstract
        """``{threshold name: units}``: what :func:`threshold_property`, :meth:`learn_thresholds`
        and :meth:`freeze_thresholds` work on (e.g. input width and rank)."""
        raise NotImplementedError

    def learn_thresholds(self, per_unit: bool = True) -> None:
        """Make the thresholds learnable: a parameter ``<name>_raw`` per threshold, ``(units,)``
        (``()`` when ``per_unit=False``), used as ``θ = softplus(raw) ≥ 0`` and started at the
        current values. The torch event path (autograd on) passes surrogate gradients to them;
        :meth:`freeze_thresholds` turns them back into fixed values."""
        from braingate.functional.surrogate import softplus_inverse

        like = next(self.parameters())
        for name, size in self.threshold_sizes().items():
            value = torch.as_tensor(getattr(self, name), dtype=like.dtype, device=like.device)
            value = value.detach().expand(size) if per_unit else value.detach().mean()
            self.register_parameter(f"{name}_raw", nn.Parameter(softplus_inverse(value.clone())))
        self._epoch += 1

    def freeze_thresholds(self) -> None:
        """Replace learned thresholds by their current values (fixed tensors) and drop the
        ``*_raw`` parameters; a no-op for fixed thresholds."""
        for name in self.threshold_sizes():
            raw = self._parameters.pop(f"{name}_raw", None)
            if raw is not None:
                value = F.softplus(raw.detach()).clone()
                setattr(self, name, value if value.dim() else float(value))

    def threshold_tensors(self) -> list[Tensor]:
        """The tensors this layer's thresholds are read from: each learned one's ``<name>_raw``
        parameter, else a fixed per-unit tensor (scalars: none). What compiled kernels' copies of
        the thresholds depend on (their in-place edits must rebuild the copies)."""
        out = []
        for name in self.threshold_sizes():
            raw = self._parameters.get(name + "_raw")
            fixed = self.__dict__.get("_" + name)
            if raw is not None:
                out.append(raw)
            elif isinstance(fixed, Tensor):
                out.append(fixed)
        return out

    def _set_raw(self, key: str, value: float | Tensor) -> None:
        """Keep a learned threshold in step with an assigned value (calibration sets values)."""
        raw = self._parameters.get(key)
        if raw is not None:
            from braingate.functional.surrogate import softplus_inverse

            with torch.no_grad():
                v = torch.as_tensor(value, dtype=raw.dtype, device=raw.device)
                raw.copy_(softplus_inverse(v.expand_as(raw) if v.dim() <= raw.dim() else v.mean()))

    def set_active_blocks(self, k_or_mask) -> None:  # pragma: no cover - abstract
        """Switch gate blocks: ``k`` most important, a bool mask, or None for all."""
        raise NotImplementedError


def threshold_property(name: str, doc: str) -> property:
    """A threshold attribute of an :class:`EventModule`: the fixed value ``_<name>`` (checked
    against ``threshold_sizes()[name]`` when assigned), or ``softplus(<name>_raw)`` while learned.
    Assigning bumps the layer's ``_epoch`` (cached kernel arguments are rebuilt)."""
    key = "_" + name

    def get(self):
        raw = self._parameters.get(name + "_raw")
        return getattr(self, key) if raw is None else F.softplus(raw)

    def set(self, value) -> None:
        setattr(self, key, check.threshold(name, value, self.threshold_sizes()[name]))
        self._set_raw(name + "_raw", getattr(self, key))
        self._epoch += 1

    return property(get, set, doc=doc)


def event_modules(model: nn.Module) -> dict[str, EventModule]:
    """``{name: module}`` of every :class:`EventModule` in ``model`` (forward order), outermost
    first; event modules nested inside another event module are its own business and skipped."""
    out: dict[str, EventModule] = {}
    for name, m in model.named_modules():
        if isinstance(m, EventModule) and not any(name.startswith(p + ".") or p == "" for p in out):
            out[name] = m
    return out
