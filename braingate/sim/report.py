"""Report: what a simulated run did and skipped, per layer and in total, with a per-step trace."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from braingate._files import atomic_write_text

__all__ = ["COUNTERS", "Report"]

#: Counters kept per layer and in total; per sample, summed over steps (DESIGN §2).
COUNTERS = (
    "synops",
    "dense_synops",
    "lowrank_ops",
    "input_events",
    "latent_events",
    "gate_ops",
    "resync_ops",
    "neuron_ops",
)


@dataclass
class Report:
    """Operation counts of one :func:`braingate.simulate` run.

    Attributes:
        total: ``{counter: value}`` summed over layers; per sample, summed over steps.
        layers: ``{module name: {counter: value, "in_features", "out_features", "rank",
            "blocks", "kind", "input_unit_events" (list n), "latent_unit_events" (list R)}}``.
        trace: ``{module name: {counter: [T values]}}`` per step, mean over the batch.
        meta: ``{"steps": T, "batch": B, "mode": ...}``.

    ``synops = Σ|E|·R_act + Σ|L|·m`` for event layers (plain ``nn.Linear`` layers count
    NeuroBench's effective synops ``nnz(x)·m``); ``dense_synops = n·m`` per step;
    ``lowrank_ops = (n + m)·R_act`` per step.
    """

    total: dict = field(default_factory=dict)
    layers: dict = field(default_factory=dict)
    trace: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def ratio(self, num: str = "dense_synops", den: str = "synops") -> float:
        """``total[num] / total[den]`` (inf when the denominator is 0)."""
        d = self.total.get(den, 0.0)
        return float("inf") if d == 0 else self.total.get(num, 0.0) / d

    def summary(self) -> str:
        """A plain-text table of the per-layer and total counters; layers that ran dense (plain
        torch layers left unconverted, counted at their dense cost) are marked ``*``."""
        cols = ("synops", "dense_synops", "lowrank_ops", "input_events", "latent_events")
        names = {n: f"{n or '(model)'}{' *' if d.get('dense') else ''}"
                 for n, d in self.layers.items()}  # fmt: skip
        w = max(15, *(len(v) for v in names.values())) + 1 if names else 16
        head = f"{'layer':<{w}}" + "".join(f"{c:>15}" for c in cols)
        rows = [head, "-" * len(head)]
        for name, d in self.layers.items():
            rows.append(f"{names[name]:<{w}}" + "".join(f"{d[c]:>15,.0f}" for c in cols))
        rows.append(f"{'total':<{w}}" + "".join(f"{self.total[c]:>15,.0f}" for c in cols))
        m = self.meta
        rows.append(
            f"mode={m.get('mode')} steps={m.get('steps')} batch={m.get('batch')} "
            f"dense/synops={self.ratio():.2f}x lowrank/synops={self.ratio('lowrank_ops'):.2f}x"
        )
        if any(d.get("dense") for d in self.layers.values()):
            rows.append("* left dense: counted at its dense cost (NeuroBench synops)")
        return "\n".join(rows)

    def to_dict(self) -> dict:
        """Plain JSON-able dict."""
        return {"total": self.total, "layers": self.layers, "trace": self.trace, "meta": self.meta}

    @classmethod
    def from_dict(cls, d: dict) -> Report:
        missing = {"total", "layers", "trace", "meta"} - set(d)
        if missing:
            raise ValueError(f"report dict lacks keys {sorted(missing)}; was it written by save()?")
        return cls(d["total"], d["layers"], d["trace"], d["meta"])

    def save(self, path: str | Path) -> Path:
        """Write JSON to ``path`` atomically (a reader sees the old file or the new one);
        returns the path."""
        return atomic_write_text(path, json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | Path) -> Report:
        """Read a report written by :meth:`save`."""
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid report JSON: {e}") from e
        return cls.from_dict(data)
