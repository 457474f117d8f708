"""Export braingate models to NIR (Neuromorphic Intermediate Representation) and back.

An :class:`~braingate.nn.EventLinear` ``W = U·diag(s⊙g)·Vᵀ`` becomes, by ``form``:

- ``"folded"`` (default): ``Linear(diag(s⊙g)·Vᵀ) → Affine(U, b)`` — two weight layers that
  snntorch's ``import_from_nir`` reads (it has no mapping for ``Scale``);
- ``"scaled"``: ``Linear(Vᵀ) → Scale(s⊙g) → Affine(U, b)`` — the factors unchanged;
- ``"fused"``: one ``Affine(U·diag(s⊙g)·Vᵀ, b)``, for chips that reject two weight layers in a
  row (Speck, Xylo; REFERENCES §E).

``Linear`` instead of ``Affine`` when there is no bias. Thresholds, rank, blocks, the block gate and
``s`` go into the first node's metadata (flat keys ``braingate_*``), so :func:`from_nir` rebuilds
the same EventLinear.

Convolutional networks: an :class:`~braingate.nn.EventConv2d` / ``EventConv1d`` becomes one NIR
``Conv2d`` / ``Conv1d`` holding the product weight ``U·diag(s⊙g)·Vᵀ`` (whatever ``form``: NIR has
no 1×1-conv chain that readers keep apart, and chips map one conv per core), with ``U``, ``s``,
``V``, the gate and the thresholds in its metadata, so :func:`from_nir` rebuilds the same factors.
``nn.Conv1d`` / ``nn.Conv2d`` → ``Conv1d`` / ``Conv2d`` (zero bias when there is none: readers
such as snntorch require one), ``nn.AvgPool2d`` → ``AvgPool2d`` (``SumPool2d`` with
``divisor_override=1``), ``nn.LPPool2d(norm_type=1)`` → ``SumPool2d``, ``nn.Flatten`` →
``Flatten`` with NIR's batch-free dims (``start_dim − 1``, as snntorch's and Norse's exporters
write it). NIR 1.0 has no max pooling, no ReLU and no BatchNorm node: those modules are refused
with the fix in the message.

Neurons: snntorch ``Leaky`` → ``LIF`` and ``Synaptic`` → ``CubaLIF`` with snntorch's own
discretisation (``dt = 1e-4``, ``τ = dt/(1−β)``, ``r = τ/dt``, ``w_in = τ_syn/dt``), so one Euler
step of the NIR ODE is one snntorch step; braingate's :class:`~braingate.nn.LIF` → ``LIF`` the same
way. Their parameters take the shape of the layer they follow (``(n,)`` after a linear layer,
``(C, H, W)`` after a conv). NIR resets to ``v_reset``: a ``"subtract"`` reset is recorded in
metadata (and restored by :func:`from_nir`) but other readers reset to zero.

Every module type has one entry in :data:`EXPORTERS` (event layers by ``kind``, torch and snntorch
modules by type); the graph builder itself knows none of them.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import torch
from torch import Tensor, nn

from braingate._registry import Registry
from braingate.integrations._nir_import import from_nir
from braingate.integrations._optional import require
from braingate.nn.base import EventModule
from braingate.nn.event_linear import EventLinear
from braingate.nn.lif import LIF

__all__ = ["EXPORTERS", "FORMS", "from_nir", "to_nir"]

#: NIR export per event layer ``kind`` (str) or torch module type:
#: ``fn(nir, key, name, module, shape, form, dt) -> ({node name: node}, output shape)``, where
#: ``shape`` is the per-sample shape the module receives (no batch dim, e.g. ``(n,)`` or
#: ``(C, H, W)``) and the output shape is what it passes on.
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
        \mathrm{Affine}(U, b)\quad(\text{form="folded"}),\qquad
        \text{EventConv2d} \mapsto \mathrm{Conv2d}(U\,\mathrm{diag}(s⊙g)V^\top)

    Args:
        model: an ``nn.Sequential`` (nested ones are flattened) of modules registered in
            :data:`EXPORTERS`: EventLinear, EventConv1d/2d, nn.Linear, nn.Conv1d/2d,
            nn.AvgPool2d, nn.LPPool2d (norm 1), nn.Flatten, nn.Identity, braingate LIF,
            snntorch Leaky / Synaptic.
        sample: optional input ``(n,)`` or ``(B, ...)`` (a batch: ``(B, C, H, W)`` for a 2-D
            CNN); sets the Input node's shape. Needed when the model starts with a conv.
        form: ``"folded"`` | ``"scaled"`` | ``"fused"`` (how EventLinear factors are written).
        dt: time step of the exported neuron ODEs.

    Returns:
        ``nir.NIRGraph`` with nodes ``input``, one or more per layer, ``output``; edges a chain.
    """
    nir = require("nir", "nir")
    if form not in FORMS:
        raise ValueError(f"form={form!r} is unknown; pass one of {FORMS}")
    if not (isinstance(dt, float) and dt > 0):
        raise ValueError(f"dt={dt!r} must be a positive float, e.g. dt=1e-4")
    _register_snntorch()
    layers = _flatten(model)
    shape = _input_shape(layers, sample)
    nodes = {"input": nir.Input(input_type={"input": np.array(shape)})}
    chain = ["input"]
    for i, (name, mod) in enumerate(layers):
        new, shape = _export(nir, f"{i}", name, mod, shape, form, dt)
        nodes.update(new)
        chain += list(new)
    nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
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
    if sample is None:
        first = layers[0][1] if layers else None
        if first is None or not _has_width(first):
            raise ValueError(
                "cannot infer the input shape; pass sample= a tensor (n,) or (B, n), or "
                "(B, C, H, W) / (B, C, L) for a model that starts with a conv"
            )
        return (first.in_features,)
    if not isinstance(sample, Tensor) or sample.dim() == 0:
        raise TypeError(f"sample must be a tensor (n,) or (B, ...), got {type(sample).__name__}")
    return tuple(sample.shape[1:]) if sample.dim() > 1 else tuple(sample.shape)


def _export(nir, key: str, name: str, mod: nn.Module, shape: tuple, form: str, dt: float):
    """NIR nodes for one module: ``({node name: node}, output shape)``."""
    if isinstance(mod, EventModule):
        if mod.kind not in EXPORTERS:
            raise ValueError(
                f"module {name!r} is an event layer of kind {mod.kind!r} with no NIR export "
                f"(known: {', '.join(k for k in EXPORTERS.names() if isinstance(k, str))}); "
                "register one in braingate.integrations.nir.EXPORTERS"
            )
        return EXPORTERS.get(mod.kind)(nir, key, name, mod, shape, form, dt)
    for cls in type(mod).__mro__:
        if cls in EXPORTERS:
            return EXPORTERS.get(cls)(nir, key, name, mod, shape, form, dt)
    known = ", ".join(k if isinstance(k, str) else k.__name__ for k in EXPORTERS.names())
    raise ValueError(
        f"module {name!r} ({type(mod).__name__}) has no NIR export; supported: {known}; "
        "register one in braingate.integrations.nir.EXPORTERS"
    )


# -- shared helpers ------------------------------------------------------------------------------
def _np(t: Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float32).numpy().copy()


def _meta_value(v):
    """A threshold (float or tensor) as metadata: float64 scalar or float32 array."""
    return _np(v) if isinstance(v, Tensor) else np.float64(v)


def _weight_node(nir, w: np.ndarray, b: Tensor | None, meta: dict):
    if b is None:
        return nir.Linear(weight=w, metadata=meta)
    return nir.Affine(weight=w, bias=_np(b), metadata=meta)


def _want_vector(name: str, mod: nn.Module, shape: tuple, n: int) -> None:
    if tuple(shape) != (n,):
        hint = " (put an nn.Flatten before it)" if len(shape) > 1 else ""
        raise ValueError(
            f"module {name!r} ({type(mod).__name__}) takes {n} features but receives per-sample "
            f"shape {tuple(shape)}{hint}; pass a matching sample or fix the model"
        )


def _static_gate(name: str, layer: EventModule) -> Tensor:
    gate = layer.gate_units()
    if gate.dim() == 2:
        raise ValueError(f"layer {name!r} has a per-sample gate; NIR holds one weight per layer: "
                         "call set_active_blocks(k) or a (blocks,) mask before to_nir")  # fmt: skip
    return gate


def _event_meta(name: str, layer: EventModule, form: str) -> dict:
    gate = _static_gate(name, layer)
    blocks = gate.reshape(layer.blocks, -1)[:, 0].to(torch.int8)
    return {
        "braingate_kind": layer.kind, "braingate_name": name, "braingate_form": form,
        "braingate_rank": layer.rank, "braingate_blocks": layer.blocks,
        "braingate_gate": blocks.cpu().numpy(), "braingate_s": _np(layer.s),
        "braingate_threshold": _meta_value(layer.threshold),
        "braingate_latent_threshold": _meta_value(layer.latent_threshold),
    }  # fmt: skip


# -- weight layers -------------------------------------------------------------------------------
@EXPORTERS.register("event_linear")
def _export_event_linear(nir, key, name, mod: EventLinear, shape, form, dt):
    _want_vector(name, mod, shape, mod.in_features)
    meta = _event_meta(name, mod, form)
    sg = mod.s * mod.gate_units()
    out = (mod.out_features,)
    if form == "fused":
        return {f"ev{key}": _weight_node(nir, _np(mod.dense_weight()), mod.bias, meta)}, out
    tail = {"braingate_kind": "event_linear_u", "braingate_name": name}
    u = _weight_node(nir, _np(mod.U), mod.bias, tail)
    if form == "scaled":
        nodes = {f"ev{key}_v": nir.Linear(weight=_np(mod.V.t()), metadata=meta),
                 f"ev{key}_s": nir.Scale(scale=_np(sg), metadata={"braingate_name": name}),
                 f"ev{key}_u": u}  # fmt: skip
    else:
        nodes = {f"ev{key}_v": nir.Linear(weight=_np(mod.V.t() * sg[:, None]), metadata=meta),
                 f"ev{key}_u": u}  # fmt: skip
    return nodes, out


@EXPORTERS.register(nn.Linear)
def _export_linear(nir, key, name, mod: nn.Linear, shape, form, dt):
    _want_vector(name, mod, shape, mod.in_features)
    return {f"lin{key}": _weight_node(nir, _np(mod.weight), mod.bias, {})}, (mod.out_features,)


def _conv_out(sp: tuple, k, s, p, d) -> tuple[int, ...]:
    return tuple(
        (n + 2 * pp - dd * (kk - 1) - 1) // ss + 1 for n, kk, ss, pp, dd in zip(sp, k, s, p, d)
    )


def _conv_input(name: str, mod: nn.Module, shape: tuple, dims: int, channels: int) -> tuple:
    if len(shape) != dims + 1 or shape[0] != channels:
        want = "(C, H, W)" if dims == 2 else "(C, L)"
        raise ValueError(
            f"conv {name!r} takes {want} with C={channels} but receives per-sample shape "
            f"{tuple(shape)}; pass sample=(B, {channels}, ...) or fix the model"
        )
    return tuple(shape[1:])


def _conv_node(nir, dims: int, sp: tuple, w: np.ndarray, bias: np.ndarray, k, s, p, d, meta):
    if dims == 2:
        return nir.Conv2d(input_shape=tuple(sp), weight=w, stride=tuple(s), padding=tuple(p),
                          dilation=tuple(d), groups=1, bias=bias, metadata=meta)  # fmt: skip
    return nir.Conv1d(input_shape=int(sp[0]), weight=w, stride=int(s[0]), padding=int(p[0]),
                      dilation=int(d[0]), groups=1, bias=bias, metadata=meta)  # fmt: skip


def _export_event_conv(nir, key, name, mod, shape, form, dt):
    dims = mod.dims
    sp = _conv_input(name, mod, shape, dims, mod.in_channels)
    out_sp = mod.out_spatial(sp)
    if min(out_sp) < 1:
        raise ValueError(f"conv {name!r} gives an empty output on input {tuple(shape)}; pass a "
                         "larger sample")  # fmt: skip
    meta = _event_meta(name, mod, form)
    meta.update({
        "braingate_U": _np(mod.U), "braingate_V": _np(mod.V),
        "braingate_bias": np.int8(mod.bias is not None),
        "braingate_granularity": mod.granularity,
        "braingate_resync_every": np.int64(mod.resync_every),
    })  # fmt: skip
    bias = _np(mod.bias) if mod.bias is not None else np.zeros(mod.out_channels, np.float32)
    with torch.no_grad():
        w = _np(mod.weight())
    g = mod.kernel_size, mod.stride, mod.padding, mod.dilation
    node = _conv_node(nir, dims, sp, w, bias, *g, meta)
    return {f"conv{key}": node}, (mod.out_channels, *out_sp)


EXPORTERS.add("event_conv2d", _export_event_conv)
EXPORTERS.add("event_conv1d", _export_event_conv)


def _torch_conv_padding(name: str, mod: nn.Module) -> tuple[int, ...]:
    dims = mod.weight.dim() - 2
    if mod.padding_mode != "zeros":
        raise ValueError(f"conv {name!r} has padding_mode={mod.padding_mode!r}; NIR convs pad "
                         "with zeros: use padding_mode='zeros'")  # fmt: skip
    if mod.padding == "valid":
        return (0,) * dims
    if mod.padding == "same":
        if any(dd * (kk - 1) % 2 for kk, dd in zip(mod.kernel_size, mod.dilation)):
            raise ValueError(f"conv {name!r} has padding='same' with an even dilated kernel "
                             "(asymmetric padding, which NIR cannot hold); pass explicit padding")  # fmt: skip
        return tuple(dd * (kk - 1) // 2 for kk, dd in zip(mod.kernel_size, mod.dilation))
    return tuple(mod.padding)


def _export_torch_conv(nir, key, name, mod, shape, form, dt):
    dims = mod.weight.dim() - 2
    sp = _conv_input(name, mod, shape, dims, mod.in_channels)
    pad = _torch_conv_padding(name, mod)
    out_sp = _conv_out(sp, mod.kernel_size, mod.stride, pad, mod.dilation)
    if min(out_sp) < 1:
        raise ValueError(f"conv {name!r} gives an empty output on input {tuple(shape)}; pass a "
                         "larger sample")  # fmt: skip
    meta = {"braingate_name": name, "braingate_bias": np.int8(mod.bias is not None)}
    bias = _np(mod.bias) if mod.bias is not None else np.zeros(mod.out_channels, np.float32)
    w = _np(mod.weight)
    if dims == 2:
        node = nir.Conv2d(input_shape=tuple(sp), weight=w, stride=tuple(mod.stride),
                          padding=pad, dilation=tuple(mod.dilation), groups=mod.groups,
                          bias=bias, metadata=meta)  # fmt: skip
    else:
        node = nir.Conv1d(input_shape=int(sp[0]), weight=w, stride=int(mod.stride[0]),
                          padding=int(pad[0]), dilation=int(mod.dilation[0]), groups=mod.groups,
                          bias=bias, metadata=meta)  # fmt: skip
    return {f"conv{key}": node}, (mod.out_channels, *out_sp)


EXPORTERS.add(nn.Conv2d, _export_torch_conv)
EXPORTERS.add(nn.Conv1d, _export_torch_conv)


# -- shape-only modules --------------------------------------------------------------------------
@EXPORTERS.register(nn.Identity)
def _export_identity(nir, key, name, mod, shape, form, dt):
    return {}, shape


def _pair(v) -> tuple[int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _pool_input(name: str, mod: nn.Module, shape: tuple) -> tuple[int, int]:
    if len(shape) != 3:
        raise ValueError(f"pool {name!r} ({type(mod).__name__}) takes (C, H, W) but receives "
                         f"per-sample shape {tuple(shape)}; pass sample=(B, C, H, W)")  # fmt: skip
    if mod.ceil_mode:
        raise ValueError(f"pool {name!r} has ceil_mode=True, which NIR pools do not have; use "
                         "ceil_mode=False (pad the input instead)")  # fmt: skip
    return tuple(shape[1:])


def _pool_node(nir, kind, key, k, s, p, shape, sp, meta):
    out = _conv_out(sp, k, s, p, (1, 1))
    if min(out) < 1:
        raise ValueError(f"pool {meta['braingate_name']!r} gives an empty output on input "
                         f"{tuple(shape)}; pass a larger sample")  # fmt: skip
    node = getattr(nir, kind)(kernel_size=np.array(k), stride=np.array(s), padding=np.array(p),
                              metadata=meta)  # fmt: skip
    # NIR pools leave their types open; set them so the graph's types check
    node.input_type = {"input": np.array(shape)}
    node.output_type = {"output": np.array((shape[0], *out))}
    return {f"pool{key}": node}, (shape[0], *out)


@EXPORTERS.register(nn.AvgPool2d)
def _export_avgpool(nir, key, name, mod: nn.AvgPool2d, shape, form, dt):
    sp = _pool_input(name, mod, shape)
    k = _pair(mod.kernel_size)
    s = _pair(mod.stride if mod.stride not in (None, ()) else mod.kernel_size)
    p = _pair(mod.padding)
    if any(p) and not mod.count_include_pad:
        raise ValueError(f"pool {name!r} has padding with count_include_pad=False; NIR's "
                         "AvgPool2d divides by the window size: use count_include_pad=True")  # fmt: skip
    kind = "AvgPool2d"
    if mod.divisor_override not in (None, k[0] * k[1]):
        if mod.divisor_override != 1:
            raise ValueError(
                f"pool {name!r} has divisor_override={mod.divisor_override}; NIR has AvgPool2d "
                f"(divisor {k[0] * k[1]}) and SumPool2d (divisor 1): use None, "
                f"{k[0] * k[1]} or 1, or a Scale after a SumPool2d"
            )
        kind = "SumPool2d"  # divisor 1: the window sum
    return _pool_node(nir, kind, key, k, s, p, shape, sp, {"braingate_name": name})


@EXPORTERS.register(nn.LPPool2d)
def _export_lppool(nir, key, name, mod: nn.LPPool2d, shape, form, dt):
    if float(mod.norm_type) != 1.0:
        raise ValueError(f"pool {name!r} is an LPPool2d with norm_type={mod.norm_type}; only "
                         "norm_type=1 (sum pooling, NIR SumPool2d) has a NIR node")  # fmt: skip
    sp = _pool_input(name, mod, shape)
    k = _pair(mod.kernel_size)
    s = _pair(mod.stride if mod.stride is not None else mod.kernel_size)
    return _pool_node(nir, "SumPool2d", key, k, s, (0, 0), shape, sp, {"braingate_name": name})


@EXPORTERS.register(nn.Flatten)
def _export_flatten(nir, key, name, mod: nn.Flatten, shape, form, dt):
    nd = len(shape) + 1  # with the batch dim

    def dim(d: int) -> int:
        d = d + nd if d < 0 else d
        if not 0 <= d < nd:
            raise ValueError(f"flatten {name!r} dim {d} is out of range for per-sample shape "
                             f"{tuple(shape)}")  # fmt: skip
        return d

    start, end = dim(mod.start_dim), dim(mod.end_dim)
    if start == 0:
        raise ValueError(f"flatten {name!r} has start_dim={mod.start_dim}, which folds the batch "
                         "into the features; NIR graphs have no batch dim: use start_dim=1")  # fmt: skip
    s, e = start - 1, end - 1  # NIR's dims leave out the batch (snntorch / Norse exporters)
    out = (*shape[:s], math.prod(shape[s : e + 1]), *shape[e + 1 :])
    node = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=s,
                       end_dim=-1 if e == len(shape) - 1 else e,
                       metadata={"braingate_name": name})  # fmt: skip
    return {f"flat{key}": node}, tuple(out)


def _refuse(reason: str):
    def refuse(nir, key, name, mod, shape, form, dt):
        raise ValueError(f"module {name!r} ({type(mod).__name__}) cannot be exported: {reason}")

    return refuse


for _t in (nn.MaxPool1d, nn.MaxPool2d, nn.AdaptiveMaxPool2d):
    EXPORTERS.add(_t, _refuse(
        "NIR 1.0 has no max-pooling node; use nn.AvgPool2d (NIR AvgPool2d) or a stride-2 conv "
        "and retrain / re-convert, or export the layers before it"))  # fmt: skip
EXPORTERS.add(nn.AvgPool1d, _refuse(
    "NIR 1.0 has no 1-D pooling node; use a stride-k Conv1d or export the layers before it"))  # fmt: skip
EXPORTERS.add(nn.ReLU, _refuse(
    "NIR 1.0 has no ReLU node (its nodes are weights, pools and spiking / integrating neurons); "
    "replace the ReLU by a spiking neuron (snntorch Leaky or braingate LIF, rate coding) or "
    "export the layers before it"))  # fmt: skip
for _t in (nn.BatchNorm1d, nn.BatchNorm2d):
    EXPORTERS.add(_t, _refuse(
        "NIR 1.0 has no BatchNorm node; fold it into the conv before it "
        "(bg.convert does, or braingate.convert_conv.fold_batchnorm(conv, bn))"))  # fmt: skip


def _no_nir_recurrence(nir, key, name, mod, shape, form, dt):
    raise ValueError(
        f"module {name!r} ({type(mod).__name__}) cannot be exported: NIR 1.0 has no gated "
        "recurrent primitive (no sigmoid/tanh nodes, no elementwise products), so a delta "
        "GRU/LSTM has no NIR form; export the feed-forward parts separately"
    )


for _kind in ("event_gru", "event_lstm", "event_gru_cell", "event_lstm_cell"):
    EXPORTERS.add(_kind, _no_nir_recurrence)


# -- neurons -------------------------------------------------------------------------------------
def _per_unit(name: str, what: str, t, shape: tuple) -> np.ndarray:
    arr = np.asarray(t.detach().cpu().numpy() if isinstance(t, Tensor) else t, np.float32)
    if arr.size == math.prod(shape) and arr.shape != shape:
        arr = arr.reshape(shape)
    try:
        return np.broadcast_to(arr, shape).astype(np.float32)
    except ValueError:
        raise ValueError(f"neuron {name!r} has {what} of shape {arr.shape}, which does not fit "
                         f"the {tuple(shape)} units it receives; pass a scalar or a per-unit "
                         "value") from None  # fmt: skip


def _lif_node(nir, name: str, beta, vth, shape: tuple, dt: float, meta: dict):
    if not shape:
        raise ValueError(f"cannot size neuron layer {name!r}: pass a sample")
    beta = np.clip(_per_unit(name, "beta", beta, shape), 0.0, 1.0 - 1e-7)
    vth = _per_unit(name, "threshold", vth, shape)
    tau_mem = (dt / (1.0 - beta)).astype(np.float32)
    zeros = np.zeros(shape, np.float32)
    return nir.LIF(tau=tau_mem, r=tau_mem / dt, v_leak=zeros, v_threshold=vth, v_reset=zeros,
                   metadata=meta), tau_mem, zeros  # fmt: skip


def _warn_reset(name: str, reset: str) -> None:
    if reset != "zero":
        warnings.warn(
            f"{name!r} resets by {reset!r}; NIR resets to v_reset, so other readers (snntorch's "
            "import_from_nir) rebuild a reset-to-zero neuron. Use reset_mechanism='zero' for "
            "identical spikes.",
            stacklevel=4,
        )


def _snntorch_neuron(nir, key, name, mod, shape, form, dt):
    snn = require("snntorch", "nir")
    reset = getattr(mod, "reset_mechanism", "subtract")
    _warn_reset(name, reset)
    delay = bool(getattr(mod, "reset_delay", True))
    syn = isinstance(mod, snn.Synaptic)
    if syn and delay:
        warnings.warn(
            f"{name!r} is a Synaptic with reset_delay=True; snntorch's import_from_nir rebuilds "
            "reset_delay=False, which fires differently after a spike. Use reset_delay=False.",
            stacklevel=3,
        )
    meta = {"braingate_name": name, "snntorch_reset_mechanism": reset,
            "snntorch_reset_delay": np.int8(delay)}  # fmt: skip
    lif, tau_mem, zeros = _lif_node(nir, name, mod.beta, mod.threshold, shape, dt, meta)
    if not syn:
        return {f"lif{key}": lif}, shape
    alpha = np.clip(_per_unit(name, "alpha", mod.alpha, shape), 0.0, 1.0 - 1e-7)
    tau_syn = (dt / (1.0 - alpha)).astype(np.float32)
    node = nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / dt, v_leak=zeros,
                       v_threshold=lif.v_threshold, v_reset=zeros, w_in=tau_syn / dt,
                       metadata=meta)  # fmt: skip
    return {f"lif{key}": node}, shape


def _register_snntorch() -> None:
    """Register snntorch's neurons (imported only when a graph is exported)."""
    try:
        import snntorch as snn
    except ImportError:  # pragma: no cover - snntorch is a core dependency
        return
    for cls in (snn.Leaky, snn.Synaptic):
        if cls not in EXPORTERS:
            EXPORTERS.add(cls, _snntorch_neuron)


@EXPORTERS.register(LIF)
def _export_lif(nir, key, name, mod: LIF, shape, form, dt):
    _want_vector(name, mod, shape, mod.size)
    _warn_reset(name, mod.reset_mode)
    meta = {"braingate_kind": "lif", "braingate_name": name, "braingate_reset": mod.reset_mode}
    return {f"lif{key}": _lif_node(nir, name, mod.beta, mod.threshold, shape, dt, meta)[0]}, shape
