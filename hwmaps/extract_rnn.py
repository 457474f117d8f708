"""Recurrent event layers (delta GRU / LSTM, DESIGN §2c) -> hwmaps factor blocks, from the Report.

A layer ``l`` of a recurrent report entry ``name`` (kinds ``event_gru``, ``event_lstm``,
``event_gru_cell``, ``event_lstm_cell``) becomes:

- **V blocks of the input factor** ``name.l{l}.ih.V{b}``: rows ``R_x / blocks`` latent units,
  cols the layer's inputs (the network input, or the hidden units of layer ``l−1``);
- **V blocks of the hidden factor** ``name.l{l}.hh.V{b}``: rows ``R_h / blocks``, cols ``H``,
  reading the layer's **own** hidden units — the recurrent self-traffic;
- **G gate blocks** ``name.l{l}.U{g}`` (``g`` in ``rzn`` or ``ifgo``): rows ``H``, cols
  ``R_x + R_h`` (both factors' latent units, population ``name.l{l}.latent``). A hidden unit is a
  G-compartment neuron: compartment ``g`` accumulates the pre-activation memories of gate ``g``
  (``m_x + m_h``) and the neuron computes the gates elementwise. Synapses ``G·H·(R_x + R_h)``
  and synops ``|L|·G·H`` per latent event are those of DESIGN §2c.

Every unit is held by one block, so the compartments are named by what leaves them: the last
gate block holds the hidden units as the layer above (or the next module) reads them
(``name.h{l}``), the one before holds them as the layer's own hidden factor reads them
(``name.h{l}.rec``), the others hold the remaining compartments (``name.l{l}.gates``, not
read). Each reader's events are the rate braingate measured for it; on a chip that sends one
shared stream the two agree up to the first and last step when the thresholds are equal (the
recurrence sees ``h_t`` one step after the layer above does).

Traffic per step and sample is the report's measured events per unit divided by the steps.
Assumption (not measured, not routed): a hidden unit's G compartments sit on one core, so
combining the gates costs no NoC traffic; a placement that splits the gate blocks would need
messages this model does not count.

Torch-free: reads the report's ``factors`` (from the layer's ``describe()``) and unit events.
"""

from __future__ import annotations

from hwmaps.extract import EXTRACTORS, _check_counts, _positive_int
from hwmaps.ir import FactorBlock

__all__ = ["KINDS", "extract_recurrent"]

#: Report kinds of braingate's recurrent event layers.
KINDS = ("event_gru", "event_lstm", "event_gru_cell", "event_lstm_cell")
_GATE_NAMES = {3: "rzn", 4: "ifgo"}


def extract_recurrent(blocks, lname, rec, steps, prev_out, prev_m) -> tuple[str, int]:
    """Append the blocks of one recurrent report entry (module docstring); returns the output
    population (the last layer's hidden units) and its size."""
    H = _positive_int(lname, "hidden_size", rec.get("hidden_size"))
    G = _positive_int(lname, "gates", rec.get("gates"))
    L = _positive_int(lname, "num_layers", rec.get("num_layers"))
    nb = _positive_int(lname, "blocks", rec.get("blocks", 1))
    n_in = _positive_int(lname, "in_features", rec.get("in_features"))
    factors = rec.get("factors")
    if G not in _GATE_NAMES or not isinstance(factors, list) or len(factors) != 2 * L:
        raise ValueError(
            f"report layer {lname!r}: gates={G}, factors={type(factors).__name__} do not describe "
            f"a {L}-layer GRU / LSTM; pass the report of bg.simulate on this braingate"
        )
    for key in ("input_unit_events", "latent_unit_events"):
        _check_counts(lname, key, rec[key])
    ins = [float(e) / steps for e in rec["input_unit_events"]]
    lat = [float(e) / steps for e in rec["latent_unit_events"]]
    for layer in range(L):
        ih, hh = factors[2 * layer], factors[2 * layer + 1]
        hidden = f"{lname}.h{layer}"
        latent = f"{lname}.l{layer}.latent"
        if layer == 0:
            source = prev_out if prev_m == n_in else f"{lname}.in"
        else:
            source = f"{lname}.h{layer - 1}"
        start = 0
        for f, src in ((ih, source), (hh, hidden + ".rec")):
            rows_f = _positive_int(lname, "factor rank", f.get("rank"))
            cols = _positive_int(lname, "factor cols", f.get("cols"))
            lo, lat_lo = int(f.get("in_offset", -1)), int(f.get("lat_offset", -1))
            if rows_f % nb or lo < 0 or lo + cols > len(ins) or lat_lo + rows_f > len(lat):
                raise ValueError(
                    f"report layer {lname!r}: factor {f.get('name')!r} (rank {rows_f}, cols "
                    f"{cols}) does not fit its unit counts or blocks={nb}"
                )
            rb = rows_f // nb
            side = "ih" if f is ih else "hh"
            for b in range(nb):
                blocks.append(FactorBlock(f"{lname}.l{layer}.{side}.V{b}", lname, "V", rb, cols,
                                          src, latent, tuple(ins[lo : lo + cols]), 0,
                                          start + b * rb))  # fmt: skip
            start += rows_f
        ev = tuple(lat[ih["lat_offset"] : ih["lat_offset"] + ih["rank"]]) + tuple(
            lat[hh["lat_offset"] : hh["lat_offset"] + hh["rank"]]
        )
        for k, g in enumerate(_GATE_NAMES[G]):
            dest, at = {G - 1: (hidden, 0), G - 2: (hidden + ".rec", 0)}.get(
                k, (f"{lname}.l{layer}.gates", k * H)
            )
            blocks.append(FactorBlock(f"{lname}.l{layer}.U{g}", lname, "U", H, start, latent,
                                      dest, ev, 0, at))  # fmt: skip
    return f"{lname}.h{L - 1}", H


for _kind in KINDS:
    EXTRACTORS.register(_kind)(extract_recurrent)
