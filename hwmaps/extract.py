"""braingate model + simulate Report -> hwmaps Network (the only hwmaps file that uses torch).

Each factored event layer (an ``EventLinear``, or any layer kind without an extractor of its own
in :data:`EXTRACTORS`) ``name`` (n inputs, m outputs, rank R,
B gate blocks) becomes B **V blocks** ``name.V{b}`` (rows R/B latent units, cols n inputs) and
one **U block** ``name.U`` (rows m outputs, cols R latent units). Traffic comes from the
measured run: ``report.layers[name]["input_unit_events"]`` feed the V blocks and
``["latent_unit_events"]`` the U block, divided by the number of steps (events per step per
sample). When layer k+1 reads exactly m_k inputs, the outputs of layer k are its inputs (an
elementwise activation in between keeps the unit count), so the U block of layer k feeds the
V blocks of layer k+1. torch and braingate are imported only when :func:`extract` runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from hwmaps._registry import Registry
from hwmaps.ir import FactorBlock, Network


def extract(model, report, name: str = "network") -> Network:
    """Build a Network of factor blocks from a braingate model and its simulate Report.

    Every event layer of the model (braingate's event-module protocol) is looked up in the
    report by its module name and extracted by the extractor registered for its ``kind``
    (:data:`EXTRACTORS`; the factored U/V extractor by default).

    Args:
        model: a torch module containing event layers (in forward order).
        report: the :class:`braingate.sim.Report` of ``simulate(model, xs, mode="event")``.
        name: network name.

    Returns:
        The Network; ``meta`` records steps, batch and mode of the run.

    Raises:
        TypeError: model is not a torch module or report lacks ``layers`` / ``meta``.
        ValueError: no event layer was run, or the report does not match the model.
    """
    from torch import nn

    from braingate.nn.base import event_modules

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not hasattr(report, "layers") or not hasattr(report, "meta"):
        raise TypeError(f"report must be a braingate Report, got {type(report).__name__}")
    steps = int(report.meta.get("steps", 0))
    if steps < 1:
        raise ValueError(f"report.meta['steps']={steps!r}; pass the Report of a run with T >= 1")
    layers = event_modules(model)
    if not layers:
        raise ValueError("model has no event layer; convert it first (bg.convert)")
    for lname in layers:
        rec = report.layers.get(lname)
        if rec is None or "input_unit_events" not in rec:
            raise ValueError(
                f"report has no event counts for layer {lname!r} (layers: "
                f"{sorted(report.layers)}); run bg.simulate(model, xs, mode='event')"
            )
    return from_report(report, name)


#: Per-layer fields a Report must hold for each factored event layer (``Report.to_dict()``).
REPORT_FIELDS = ("in_features", "out_features", "rank", "input_unit_events", "latent_unit_events")
#: Report layer kinds that are dense (not factored): not mapped, listed in ``meta["dense"]``.
DENSE_KINDS = ("linear",)


def _positive_int(lname: str, key: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise ValueError(f"report layer {lname!r}: {key}={value!r} is not an int")
    if value < 1:
        raise ValueError(f"report layer {lname!r}: {key}={value!r} must be >= 1")
    return int(value)


def _check_counts(lname: str, key: str, values) -> None:
    if not isinstance(values, (list, tuple)):
        raise ValueError(f"report layer {lname!r}: {key} must be a list of event counts")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(
                f"report layer {lname!r}: {key} holds {v!r}; event counts are finite and >= 0"
            )


def from_report(report, name: str = "network") -> Network:
    """Build the Network from a Report (or its ``to_dict()``) alone, without torch.

    Factored event layers are taken in the report's order; their shapes come from the report's
    ``in_features``, ``out_features``, ``rank`` and ``blocks`` and their traffic from
    ``input_unit_events`` / ``latent_unit_events`` (:data:`REPORT_FIELDS`). Dense layers
    (``kind`` in :data:`DENSE_KINDS`, or flagged ``dense``) are not factored and not mapped; their
    names are listed in ``meta["dense"]`` and their MACs per sample in
    ``meta["dense_macs_per_sample"]`` (hwmaps' reports list them as left out of the estimate).

    Args:
        report: a braingate Report or the dict of ``Report.to_dict()`` / a saved report file.
        name: network name.

    Raises:
        ValueError: the report lacks ``layers`` / ``meta`` / ``meta["steps"]``, a factored layer
            lacks one of :data:`REPORT_FIELDS` or holds a malformed value, or no layer is
            factored. The message names the layer and the field.
    """
    data = report if isinstance(report, dict) else {"layers": report.layers, "meta": report.meta}
    if not isinstance(data.get("layers"), dict) or not isinstance(data.get("meta"), dict):
        raise ValueError("report data lacks 'layers' / 'meta'; pass Report.to_dict()")
    steps = data["meta"].get("steps")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"report meta steps={steps!r}; pass the report of a run with T >= 1 steps")
    blocks: list[FactorBlock] = []
    dense: list[str] = []
    dense_macs: dict[str, float] = {}  # per sample, from the Report
    prev_out, prev_m = "input", None
    for lname, rec in data["layers"].items():
        if not isinstance(rec, dict):
            raise ValueError(f"report layer {lname!r} is {type(rec).__name__}, not a dict")
        if rec.get("kind") in DENSE_KINDS or rec.get("dense") is True:
            dense.append(lname)
            macs = rec.get("dense_synops")
            if isinstance(macs, (int, float)) and not isinstance(macs, bool):
                dense_macs[lname] = float(macs)
            continue
        missing = [k for k in REPORT_FIELDS if k not in rec]
        if missing:
            raise ValueError(
                f"report layer {lname!r} lacks {missing}; hwmaps needs each event layer's "
                f"{list(REPORT_FIELDS)}: save the Report of bg.simulate(model, xs, "
                "mode='event') with Report.save (this braingate)"
            )
        known = rec.get("kind") in EXTRACTORS.names()
        extractor = EXTRACTORS.get(rec["kind"]) if known else _factored
        prev_out, prev_m = extractor(blocks, lname, rec, steps, prev_out, prev_m)
    if not blocks:
        raise ValueError(
            f"report has no factored event layer (dense layers: {dense}); convert the model "
            "(bg.convert) and simulate it in event mode"
        )
    meta = {k: data["meta"].get(k) for k in ("steps", "batch", "mode")}
    if dense:  # not mapped: the chip estimate leaves them out, and the reports say so
        meta["dense"] = dense
        meta["dense_macs_per_sample"] = dense_macs
    return Network(tuple(blocks), name, {}, meta)


def _factored(blocks, lname, rec, steps, prev_out, prev_m) -> tuple[str, int]:
    """The default extractor: a factored layer ``W ≈ U diag(s) Vᵀ`` (see module docstring)."""
    n, m, rank = (_positive_int(lname, k, rec[k]) for k in REPORT_FIELDS[:3])
    nb = _positive_int(lname, "blocks", rec.get("blocks", 1))
    for key in REPORT_FIELDS[3:]:
        _check_counts(lname, key, rec[key])
    _layer_blocks(blocks, lname, n, m, rank, nb, rec, steps, prev_out, prev_m)
    return f"{lname}.out", m


#: Report layer ``kind`` -> extractor ``(blocks, name, record, steps, prev_out, prev_m) ->
#: (out_source, out_units)`` that appends the layer's FactorBlocks to ``blocks``. Kinds not
#: registered use the factored U/V extractor (any layer reporting :data:`REPORT_FIELDS`).
EXTRACTORS: Registry[Callable] = Registry("layer extractor")
EXTRACTORS.register("event_linear")(_factored)


def _layer_blocks(blocks, lname, n, m, rank, nb, rec, steps, prev_out, prev_m) -> None:
    """Append the V blocks and the U block of one layer (see module docstring)."""
    ev_in = [float(e) / steps for e in rec["input_unit_events"]]
    ev_lat = [float(e) / steps for e in rec["latent_unit_events"]]
    if len(ev_in) != n or len(ev_lat) != rank or rank % nb:
        raise ValueError(
            f"layer {lname!r}: {len(ev_in)} input / {len(ev_lat)} latent unit counts for "
            f"n={n}, rank={rank}, blocks={nb}; pass the report of this model"
        )
    source = prev_out if prev_m == n else f"{lname}.in"
    rb = rank // nb
    for b in range(nb):
        blocks.append(FactorBlock(f"{lname}.V{b}", lname, "V", rb, n, source,
                                  f"{lname}.latent", tuple(ev_in), 0, b * rb))  # fmt: skip
    blocks.append(FactorBlock(f"{lname}.U", lname, "U", m, rank, f"{lname}.latent",
                              f"{lname}.out", tuple(ev_lat)))  # fmt: skip
