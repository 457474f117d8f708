"""Export braingate models to NIR (Neuromorphic Intermediate Representation) and back.

An :class:`~braingate.nn.EventLinear` ``W = U·diag(s⊙g)·Vᵀ`` becomes, by ``form``:

- ``"folded"`` (default): ``Linear(diag(s⊙g)·Vᵀ) → Affine(U, b)`` — two weight layers that
  snntorch's ``import_from_nir`` reads (it has no mapping for ``Scale``);
- ``"scaled"``: ``Linear(Vᵀ) → Scale(s⊙g) → Affine(U, b)`` — the factors unchanged;
- ``"fused"``: one ``Affine(U·diag(s⊙g)·Vᵀ, b)``, for chips that reject two weight layers in a
  row (Speck, Xylo; REFERENCES §E).

``Linear`` instead of ``Affine`` when there is no bias. Thresholds, rank, blocks, the block gate and
``s`` go into the first node's metadata (flat keys ``braingate_*``), so :func:`from_nir` rebuilds
the same EventLinear. snntorch ``Leaky`` → ``LIF`` and ``Synaptic`` → ``CubaLIF`` with snntorch's
own discretisation (``dt = 1e-4``, ``τ = dt/(1−β)``, ``r = τ/dt``, ``w_in = τ_syn/dt``), so one
Euler step of the NIR ODE is one snntorch step. NIR resets to ``v_reset``: a ``"subtract"`` reset
is recorded in metadata (and restored by :func:`from_nir`) but other readers reset to zero.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import torch
from torch import Tensor, nn

from braingate._registry import Registry
from braingate.integrations._nir_import import from_nir
from braingate.integrations._optional import require
from braingate.nn.base import EventModule
from braingate.nn.event_linear import EventLinear

__all__ = ["EXPORTERS", "FORMS", "from_nir", "to_nir"]

#: NIR export per event layer ``kind`` (str) or torch module type:
#: ``fn(nir, key, name, module, width, form, dt) -> ({node name: node}, output width)``.
EXPORTERS: Registry = Registry("NIR exporter")

#: Ways to export the factors of an EventLinear (see the module docstring).
FORMS = ("folded", "scaled", "fused")
#: snntorch's NIR time step (snntorch.export_nir / import_nir use dt = 1e-4).
DEFAULT_DT = 1e-4


def to_nir(
    model: nn.Module, sample: Tensor | None = None, *, form: str = "folded", dt: float = DEFAULT_DT
):
    r"""Export a sequential braingate / snntorch model as a ``nir.NIRGraph``.

    .. math::
        \text{EventLinear} \mapsto \mathrm{Linear}(\mathrm{diag}(s⊙g)V^\top) \to
        \mathrm{Affine}(U, b)\quad(\text{form="folded"})

    Args:
        model: an ``nn.Sequential`` (nested ones are flattened) of EventLinear, nn.Linear,
            snntorch Leaky / Synaptic and nn.Identity modules.
        sample: optional input ``(n,)`` or ``(B, n)``; sets the Input node's shape.
        form: ``"folded"`` | ``"scaled"`` | ``"fused"``.
        dt: time step of the exported neuron ODEs.

    Returns:
        ``nir.NIRGraph`` with nodes ``input``, one or more per layer, ``output``; edges a chain.
    """
    nir = require("nir", "nir")
    if form not in FORMS:
        raise ValueError(f"form={form!r} is unknown; pass one of {FORMS}")
    if not (isinstance(dt, float) and dt > 0):
        raise ValueError(f"dt={dt!r} must be a positive float, e.g. dt=1e-4")
    layers = _flatten(model)
    shape = _input_shape(layers, sample)
    nodes, chain, width = (
        {"input": nir.Input(input_type={"input": np.array(shape)})},
        ["input"],
        None,
    )
    width = shape[-1] if len(shape) == 1 else None
    for i, (name, mod) in enumerate(layers):
        new, width = _export(nir, f"{i}", name, mod, width, form, dt)
        nodes.update(new)
        chain += list(new)
    out_shape = np.array([width]) if width is not None else np.array(shape)
    nodes["output"] = nir.Output(output_type={"output": out_shape})
    chain.append("output")
    meta = {"producer": "braingate", "braingate_form": form, "dt": dt}
    return nir.NIRGraph(nodes=nodes, edges=list(itertools.pairwise(chain)), metadata=meta)


def _flatten(model: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    if not isinstance(model, nn.Sequential):
        if prefix == "" and not _has_width(model):
            raise TypeError(
                f"to_nir exports an nn.Sequential chain, got {type(model).__name__}; wrap the "
                "layers in nn.Sequential (NIR graphs here are chains)"
            )
        return [(prefix or "0", model)]
    out = []
    for name, child in model.named_children():
        full = f"{prefix}.{name}" if prefix else name
        out += _flatten(child, full) if isinstance(child, nn.Sequential) else [(full, child)]
    return out


def _has_width(m: nn.Module) -> bool:
    return isinstance(getattr(m, "in_features", None), int)


def _input_shape(layers, sample: Tensor | None) -> tuple[int, ...]:
    first = next((m for _, m in layers if _has_width(m)), None)
    if sample is None:
        if first is None or not _has_width(layers[0][1]):
            raise ValueError("cannot infer the input shape; pass sample=(n,) or (B, n) tensor")
        return (first.in_features,)
    if not isinstance(sample, Tensor) or sample.dim() == 0:
        raise TypeError(f"sample must be a tensor (n,) or (B, ...), got {type(sample).__name__}")
    shape = tuple(sample.shape[1:]) if sample.dim() > 1 else tuple(sample.shape)
    if _has_width(layers[0][1]) and shape[-1] != first.in_features:
        raise ValueError(f"sample has {shape[-1]} features but the first layer takes "
                         f"{first.in_features}; pass a matching sample")  # fmt: skip
    return shape


def _np(t: Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float32).numpy().copy()


def _weight_node(nir, w: np.ndarray, b: Tensor | None, meta: dict):
    if b is None:
        return nir.Linear(weight=w, metadata=meta)
    return nir.Affine(weight=w, bias=_np(b), metadata=meta)


def _event_meta(name: str, layer: EventLinear, form: str) -> dict:
    gate = layer.gate_units()
    if gate.dim() == 2:
        raise ValueError(f"layer {name!r} has a per-sample gate; NIR holds one weight per layer: "
                         "call set_active_blocks(k) or a (blocks,) mask before to_nir")  # fmt: skip
    blocks = gate.reshape(layer.blocks, -1)[:, 0].to(torch.int8)
    th, lth = layer.threshold, layer.latent_threshold
    return {
        "braingate_kind": "event_linear", "braingate_name": name, "braingate_form": form,
        "braingate_rank": layer.rank, "braingate_blocks": layer.blocks,
        "braingate_gate": blocks.numpy(), "braingate_s": _np(layer.s),
        "braingate_threshold": _np(th) if isinstance(th, Tensor) else np.float64(th),
        "braingate_latent_threshold": _np(lth) if isinstance(lth, Tensor) else np.float64(lth),
    }  # fmt: skip


def _export(nir, key: str, name: str, mod: nn.Module, width, form: str, dt: float):
    """NIR nodes for one module: ``({node name: node}, output width)``."""
    if isinstance(mod, EventModule):
        if mod.kind not in EXPORTERS:
            raise ValueError(
                f"module {name!r} is an event layer of kind {mod.kind!r} with no NIR export "
                f"(known: {', '.join(k for k in EXPORTERS.names() if isinstance(k, str))}); "
                "register one in braingate.integrations.nir.EXPORTERS"
            )
        return EXPORTERS.get(mod.kind)(nir, key, name, mod, width, form, dt)
    for cls in type(mod).__mro__:
        if cls in EXPORTERS:
            return EXPORTERS.get(cls)(nir, key, name, mod, width, form, dt)
    snn = require("snntorch", "nir")
    if isinstance(mod, (snn.Leaky, snn.Synaptic)):
        if width is None:
            raise ValueError(
                f"cannot size neuron layer {name!r}: put a Linear/EventLinear before it"
            )
        return {f"lif{key}": _neuron(nir, snn, name, mod, width, dt)}, width
    raise ValueError(
        f"module {name!r} ({type(mod).__name__}) has no NIR export; supported: "
        f"{', '.join(k if isinstance(k, str) else k.__name__ for k in EXPORTERS.names())}, "
        "snntorch Leaky and Synaptic"
    )


@EXPORTERS.register("event_linear")
def _export_event_linear(nir, key, name, mod: EventLinear, width, form, dt):
    meta = _event_meta(name, mod, form)
    sg = mod.s * mod.gate_units()
    if form == "fused":
        return {
            f"ev{key}": _weight_node(nir, _np(mod.dense_weight()), mod.bias, meta)
        }, mod.out_features
    tail = {"braingate_kind": "event_linear_u", "braingate_name": name}
    u = _weight_node(nir, _np(mod.U), mod.bias, tail)
    if form == "scaled":
        nodes = {f"ev{key}_v": nir.Linear(weight=_np(mod.V.t()), metadata=meta),
                 f"ev{key}_s": nir.Scale(scale=_np(sg), metadata={"braingate_name": name}),
                 f"ev{key}_u": u}  # fmt: skip
    else:
        nodes = {f"ev{key}_v": nir.Linear(weight=_np(mod.V.t() * sg[:, None]), metadata=meta),
                 f"ev{key}_u": u}  # fmt: skip
    return nodes, mod.out_features


def _no_nir_recurrence(nir, key, name, mod, width, form, dt):
    raise ValueError(
        f"module {name!r} ({type(mod).__name__}) cannot be exported: NIR 1.0 has no gated "
        "recurrent primitive (no sigmoid/tanh nodes, no elementwise products), so a delta "
        "GRU/LSTM has no NIR form; export the feed-forward parts separately"
    )


for _kind in ("event_gru", "event_lstm", "event_gru_cell", "event_lstm_cell"):
    EXPORTERS.add(_kind, _no_nir_recurrence)


@EXPORTERS.register(nn.Linear)
def _export_linear(nir, key, name, mod: nn.Linear, width, form, dt):
    return {f"lin{key}": _weight_node(nir, _np(mod.weight), mod.bias, {})}, mod.out_features


@EXPORTERS.register(nn.Identity)
def _export_identity(nir, key, name, mod, width, form, dt):
    return {}, width


def _per_unit(t, width: int) -> np.ndarray:
    arr = np.asarray(t.detach().cpu().numpy() if isinstance(t, Tensor) else t, np.float32)
    return np.broadcast_to(arr.reshape(-1) if arr.size > 1 else arr, (width,)).astype(np.float32)


def _neuron(nir, snn, name: str, mod: nn.Module, width: int, dt: float):
    reset = getattr(mod, "reset_mechanism", "subtract")
    if reset != "zero":
        warnings.warn(
            f"{name!r} resets by {reset!r}; NIR resets to v_reset, so other readers (snntorch's "
            "import_from_nir) rebuild a reset-to-zero neuron. Use reset_mechanism='zero' for "
            "identical spikes.",
            stacklevel=3,
        )
    delay = bool(getattr(mod, "reset_delay", True))
    if isinstance(mod, snn.Synaptic) and delay:
        warnings.warn(
            f"{name!r} is a Synaptic with reset_delay=True; snntorch's import_from_nir rebuilds "
            "reset_delay=False, which fires differently after a spike. Use reset_delay=False.",
            stacklevel=3,
        )
    meta = {"braingate_name": name, "snntorch_reset_mechanism": reset,
            "snntorch_reset_delay": np.int8(delay)}  # fmt: skip
    beta = np.clip(_per_unit(mod.beta, width), 0.0, 1.0 - 1e-7)
    vth = _per_unit(mod.threshold, width)
    tau_mem = (dt / (1.0 - beta)).astype(np.float32)
    zeros = np.zeros(width, np.float32)
    if isinstance(mod, snn.Synaptic):
        alpha = np.clip(_per_unit(mod.alpha, width), 0.0, 1.0 - 1e-7)
        tau_syn = (dt / (1.0 - alpha)).astype(np.float32)
        return nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / dt, v_leak=zeros,
                           v_threshold=vth, v_reset=zeros, w_in=tau_syn / dt, metadata=meta)  # fmt: skip
    return nir.LIF(tau=tau_mem, r=tau_mem / dt, v_leak=zeros, v_threshold=vth, v_reset=zeros,
                   metadata=meta)  # fmt: skip
