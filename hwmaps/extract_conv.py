"""Event convolutions (DESIGN §2b) -> hwmaps factor blocks, and Speck's conv-core fit.

**Blocks (weight sharing).** A conv's weights are shared by every output position, so its blocks
live in *channel* space: a report entry ``name`` (kinds ``event_conv1d`` / ``event_conv2d``,
``C_in`` input channels, ``C_out`` output channels, rank ``R``, ``B`` gate blocks) becomes B **V
blocks** ``name.V{b}`` (rows ``R/B`` latent channels, cols ``C_in`` channels) and one **U
block** ``name.U`` (rows ``C_out``, cols ``R``). Traffic per step and sample is the report's
events per channel (summed over positions) divided by the steps; the output channels of one
conv are the input channels of the next, so cores chain as the layers do. Each V synapse stands
for ``∏k`` kernel weights (``taps``) and each row for ``∏out`` neurons (``positions``): when
:class:`~hwmaps.ir.FactorBlock` carries those multipliers they are passed on (kernel memory
``rows·cols·taps``, neuron memory ``rows·positions``); :func:`conv_memory` gives both per layer.

**Speck.** On SynSense's DYNAP-CNN / Speck a conv layer (with its neurons and an optional
pooling) occupies one of 9 cores, each with its own kernel and neuron memory. sinabs computes
a layer's needs as (``sinabs/backend/dynapcnn/dynapcnn_layer.py``, ``memory_summary``)

.. math::
    K = c_{in} · 2^{⌈\\log_2(k_h k_w)⌉ + ⌈\\log_2 c_{out}⌉},\\qquad
    N = c_{out} · 2^{⌈\\log_2 h'⌉ + ⌈\\log_2 w'⌉}

and assigns layers to cores by bipartite matching (``sinabs/backend/dynapcnn/mapping.py``,
constraints ``_WEIGHTS_MEMORY_SIZE`` / ``_NEURONS_MEMORY_SIZE``, bias ≤ 1 Ki per core). A
factored event conv is two chip layers (the ``C_in→R`` ``k×k`` conv of ``V``, then the ``R→C_out``
1×1 conv of ``U``); a linear layer is a conv whose kernel covers its input
(:func:`speck_layers`, :func:`speck_fit`). Torch-free.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from hwmaps.extract import EXTRACTORS, _check_counts, _positive_int
from hwmaps.ir import FactorBlock

__all__ = ["KINDS", "SpeckLayer", "conv_memory", "extract_conv", "speck_fit", "speck_layers"]

#: Report kinds of braingate's event convolutions.
KINDS = ("event_conv1d", "event_conv2d")
#: Bias memory per Speck core (sinabs 3.1.3, ``backend/dynapcnn/chips/dynapcnn.py``:
#: ``bias_memory_size``, 1024 per core).
SPECK_BIAS_MEMORY = 1024


def _ints(lname: str, key: str, value) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"report layer {lname!r}: {key}={value!r} must be a list of ints")
    return tuple(_positive_int(lname, key, v) for v in value)


def conv_memory(rec: dict, lname: str = "conv") -> dict:
    """Kernel weights and neurons of one event conv report entry, weights shared by positions:
    ``V`` holds ``R·C_in·∏k`` weights and ``R·∏out`` latent neurons, ``U`` ``C_out·R`` weights
    and ``C_out·∏out`` output neurons."""
    C = _positive_int(lname, "in_channels", rec.get("in_channels"))
    Co = _positive_int(lname, "out_channels", rec.get("out_channels"))
    R = _positive_int(lname, "rank", rec.get("rank"))
    taps = math.prod(_ints(lname, "kernel_size", rec.get("kernel_size")))
    out = rec.get("out_spatial")
    positions = math.prod(_ints(lname, "out_spatial", out)) if out is not None else None
    return {
        "taps": taps,
        "positions": positions,
        "kernel_weights": R * C * taps + Co * R,
        "neurons": None if positions is None else (R + Co) * positions,
    }


def extract_conv(blocks, lname, rec, steps, prev_out, prev_m) -> tuple[str, int]:
    """Append the V and U blocks of one event conv (module docstring); returns the output
    population (channels) and its size."""
    C = _positive_int(lname, "in_channels", rec.get("in_channels"))
    Co = _positive_int(lname, "out_channels", rec.get("out_channels"))
    R = _positive_int(lname, "rank", rec.get("rank"))
    nb = _positive_int(lname, "blocks", rec.get("blocks", 1))
    for key in ("input_unit_events", "latent_unit_events"):
        _check_counts(lname, key, rec.get(key))
    ev_in = [float(e) / steps for e in rec["input_unit_events"]]
    ev_lat = [float(e) / steps for e in rec["latent_unit_events"]]
    if len(ev_in) != C or len(ev_lat) != R or R % nb:
        raise ValueError(
            f"report layer {lname!r}: {len(ev_in)} input / {len(ev_lat)} latent channel counts "
            f"for in_channels={C}, rank={R}, blocks={nb}; pass the report of this model"
        )
    mem = conv_memory(rec, lname)
    fields = FactorBlock.__dataclass_fields__
    extra_v = {"taps": mem["taps"]} if "taps" in fields else {}
    extra_pos = (
        {"positions": mem["positions"]} if "positions" in fields and mem["positions"] else {}
    )
    source = prev_out if prev_m == C else f"{lname}.in"
    rb = R // nb
    for b in range(nb):
        blocks.append(FactorBlock(f"{lname}.V{b}", lname, "V", rb, C, source, f"{lname}.latent",
                                  tuple(ev_in), 0, b * rb, **extra_v, **extra_pos))  # fmt: skip
    blocks.append(FactorBlock(f"{lname}.U", lname, "U", Co, R, f"{lname}.latent",
                              f"{lname}.out", tuple(ev_lat), **extra_pos))  # fmt: skip
    return f"{lname}.out", Co


for _kind in KINDS:
    EXTRACTORS.register(_kind)(extract_conv)


# -- Speck ---------------------------------------------------------------------------------------
class SpeckLayer(NamedTuple):
    """One chip layer: a conv with ``c_in`` → ``c_out`` channels, a ``kernel`` and the neuron map
    ``neurons`` (h', w') it produces."""

    name: str
    c_in: int
    c_out: int
    kernel: tuple[int, int]
    neurons: tuple[int, int]
    bias: bool = True

    @property
    def kernel_memory(self) -> int:
        """sinabs: ``c_in · 2^(⌈log2(kh·kw)⌉ + ⌈log2 c_out⌉)``."""
        kh, kw = self.kernel
        return self.c_in * 2 ** (_clog2(kh * kw) + _clog2(self.c_out))

    @property
    def neuron_memory(self) -> int:
        """sinabs: ``c_out · 2^(⌈log2 h'⌉ + ⌈log2 w'⌉)``."""
        h, w = self.neurons
        return self.c_out * 2 ** (_clog2(h) + _clog2(w))


def _clog2(n: int) -> int:
    return max(0, math.ceil(math.log2(n))) if n > 1 else 0


def speck_layers(report) -> list[SpeckLayer]:
    """The chip layers of a braingate model from its Report (or ``to_dict()``): two per event
    conv (``V`` as a ``k×k`` conv to ``R`` channels, ``U`` as a 1×1 conv), one per plain conv, and
    one per linear layer (event or dense: a conv whose kernel is the previous conv's map, after
    the pooling an integer size ratio implies, or a 1×1 conv). Layers in the report's order."""
    data = report if isinstance(report, dict) else {"layers": report.layers}
    out: list[SpeckLayer] = []
    last: tuple[int, int, int] | None = None  # (channels, h, w) of the previous layer's output
    for lname, rec in data["layers"].items():
        kind = rec.get("kind")
        if kind in KINDS:
            C, Co, R = (int(rec[k]) for k in ("in_channels", "out_channels", "rank"))
            k = tuple(rec["kernel_size"])
            sp = rec.get("out_spatial")
            if sp is None:
                raise ValueError(f"report layer {lname!r} has no out_spatial; simulate the model")
            h, w = (1, sp[0]) if len(sp) == 1 else sp
            kk = (1, k[0]) if len(k) == 1 else k
            out.append(SpeckLayer(f"{lname}.V", C, R, kk, (h, w), False))
            out.append(SpeckLayer(f"{lname}.U", R, Co, (1, 1), (h, w)))
            last = (Co, h, w)
        elif kind in ("event_linear", "linear"):
            n, m = int(rec["in_features"]), int(rec["out_features"])
            c, h, w = n, 1, 1
            if last is not None and n % last[0] == 0:
                # the previous conv's map, pooled on its core by an integer factor p (if any)
                per, (lc, lh, lw) = n // last[0], last
                p = math.isqrt(lh * lw // per) if per and (lh * lw) % per == 0 else 0
                if p and lh % p == 0 and lw % p == 0 and (lh // p) * (lw // p) == per:
                    c, h, w = lc, lh // p, lw // p
            if kind == "event_linear":
                R = int(rec["rank"])
                out.append(SpeckLayer(f"{lname}.V", c, R, (h, w), (1, 1), False))
                out.append(SpeckLayer(f"{lname}.U", R, m, (1, 1), (1, 1)))
            else:
                out.append(SpeckLayer(lname, c, m, (h, w), (1, 1)))
            last = (m, 1, 1)
        elif kind == "conv":
            raise ValueError(
                f"report layer {lname!r} is a dense conv without its output size; convert it "
                "(bg.convert) or describe it with speck_layers' SpeckLayer directly"
            )
    return out


def speck_fit(layers: list[SpeckLayer], chip=None) -> dict:
    """Whether ``layers`` fit on Speck: each on its own core with enough kernel, neuron and
    bias memory (maximum bipartite matching, as sinabs' mapper), at most 9 layers.

    Args:
        layers: chip layers (:func:`speck_layers`).
        chip: a ChipSpec with ``core_synapses`` / ``core_neurons`` (default: the speck preset).

    A layer whose kernel is not square fits no core (sinabs 3.1.3 ``DynapcnnLayer``: "The
    kernel of a `nn.Conv2d` must have the same height and width"): a 1-D conv's ``(1, k)``
    kernel, or a linear head over a non-square map.

    Returns:
        ``{"fits": bool, "assignment": {layer: core} or {}, "unplaced": [layer names],
        "refused": {layer: reason}, "needs": {layer: {"kernel", "neuron"}}}``.
    """
    if chip is None:
        from hwmaps.chips import get

        chip = get("speck")
    kernels, neurons = chip.core_synapses, chip.core_neurons
    if kernels is None or neurons is None:
        raise ValueError(f"chip {chip.name!r} has no per-core memories; pass the speck preset")
    options, refused = [], {}
    for layer in layers:
        if layer.kernel[0] != layer.kernel[1]:
            refused[layer.name] = f"kernel {tuple(layer.kernel)} is not square"
            options.append([])
            continue
        ok = [
            c
            for c in range(len(kernels))
            if layer.kernel_memory <= kernels[c]
            and layer.neuron_memory <= neurons[c]
            and (layer.c_out if layer.bias else 0) <= SPECK_BIAS_MEMORY
        ]
        options.append(ok)
    owner: dict[int, int] = {}  # core -> layer index (augmenting paths: Kuhn's algorithm)

    def place(i: int, seen: set) -> bool:
        for c in options[i]:
            if c in seen:
                continue
            seen.add(c)
            if c not in owner or place(owner[c], seen):
                owner[c] = i
                return True
        return False

    placed = {i for i in range(len(layers)) if place(i, set())}
    assignment = {layers[i].name: c for c, i in sorted(owner.items(), key=lambda t: t[1])}
    fits = len(placed) == len(layers)
    return {
        "fits": fits,
        "assignment": assignment if fits else {},
        "unplaced": [layers[i].name for i in range(len(layers)) if i not in placed],
        "refused": refused,
        "needs": {la.name: {"kernel": la.kernel_memory, "neuron": la.neuron_memory}
                  for la in layers},
    }  # fmt: skip
