"""Torch-free IR: FactorBlock, Network, Tile, Placement, with JSON round trips.

A factored layer ``W ≈ U·diag(s)·Vᵀ`` becomes blocks of synapses. A **V block** holds the rank
(latent) units of one gate block: ``rows = R_b`` destination units, ``cols = n`` source units
(the layer's inputs). The **U block** holds the layer's ``rows = m`` output units fed by the
``cols = R`` latent units. Units live in named *populations* ("L0.in", "L0.latent", ...); a block
reads ``cols`` units of population ``source`` from ``source_start`` and holds ``rows`` units of
population ``dest`` from ``dest_start``. ``source_events[i]`` is the measured number of events
per step that source unit ``i`` emits; each event touches ``rows`` synapses of the block.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hwmaps.chips.spec import ChipSpec


def _check_int(name: str, val, low: int) -> None:
    if not isinstance(val, (int, np.integer)) or isinstance(val, bool) or val < low:
        raise ValueError(f"{name}={val!r} must be an int >= {low}")


@dataclass(frozen=True)
class FactorBlock:
    """A rows × cols block of synapses and the ``rows`` destination units it feeds.

    Args:
        name: unique block name, e.g. "0.V1".
        layer: the layer it belongs to (module name).
        kind: "V" (inputs -> latent units) or "U" (latent units -> outputs).
        rows: destination units held (neurons).
        cols: source units read (fan-in); the block has rows·cols synapses.
        source, source_start: source population and first unit read.
        dest, dest_start: destination population and first unit held.
        source_events: events per step of each source unit, length ``cols``.
    """

    name: str
    layer: str
    kind: str
    rows: int
    cols: int
    source: str
    dest: str
    source_events: tuple[float, ...]
    source_start: int = 0
    dest_start: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name={self.name!r} must be a non-empty string")
        if self.kind not in ("V", "U"):
            raise ValueError(f"block {self.name!r}: kind={self.kind!r} must be 'V' or 'U'")
        for key, low in (("rows", 1), ("cols", 1), ("source_start", 0), ("dest_start", 0)):
            _check_int(f"block {self.name!r}: {key}", getattr(self, key), low)
        ev = tuple(float(e) for e in self.source_events)
        if len(ev) != self.cols:
            raise ValueError(
                f"block {self.name!r}: source_events has {len(ev)} entries, needs cols={self.cols}"
            )
        if any(not math.isfinite(e) or e < 0 for e in ev):
            raise ValueError(f"block {self.name!r}: source_events must be finite and >= 0")
        object.__setattr__(self, "source_events", ev)

    @property
    def synapses(self) -> int:
        """rows · cols."""
        return self.rows * self.cols

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["source_events"] = list(self.source_events)
        return d


@dataclass(frozen=True)
class Network:
    """A network of factor blocks, with measured events per step.

    Args:
        blocks: the blocks (unique names; each destination unit held by one block).
        name: network name.
        output_events: events per step of units that no block reads (the outputs), by
            population; optional, used for neuron activity.
        meta: free JSON-ready metadata (dataset, steps, ...).
    """

    blocks: tuple[FactorBlock, ...]
    name: str = "network"
    output_events: dict[str, tuple[float, ...]] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        blocks = tuple(self.blocks)
        if not blocks or not all(isinstance(b, FactorBlock) for b in blocks):
            raise ValueError("blocks must be a non-empty sequence of FactorBlock")
        names = [b.name for b in blocks]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"block names must be unique; repeated: {dup}")
        object.__setattr__(self, "blocks", blocks)
        object.__setattr__(
            self, "output_events", {k: tuple(map(float, v)) for k, v in self.output_events.items()}
        )
        sizes = self.populations()
        held: dict[str, np.ndarray] = {p: np.zeros(n, dtype=np.int64) for p, n in sizes.items()}
        events: dict[str, np.ndarray] = {p: np.full(n, np.nan) for p, n in sizes.items()}
        for b in blocks:
            held[b.dest][b.dest_start : b.dest_start + b.rows] += 1
            seg = events[b.source][b.source_start : b.source_start + b.cols]
            new = np.asarray(b.source_events)
            clash = ~np.isnan(seg) & ~np.isclose(seg, new, rtol=1e-6, atol=1e-9)
            if clash.any():
                raise ValueError(
                    f"block {b.name!r} reads population {b.source!r} with source_events that "
                    "disagree with another block reading the same units; pass equal events"
                )
            seg[:] = new
        for pop, h in held.items():
            if (h > 1).any():
                raise ValueError(
                    f"population {pop!r}: unit {int(np.argmax(h > 1))} is held by more than one "
                    "block; destination ranges must not overlap"
                )

    # ------------------------------------------------------------ queries
    def block(self, name: str) -> FactorBlock:
        """The block called ``name``."""
        for b in self.blocks:
            if b.name == name:
                return b
        raise ValueError(f"no block {name!r}; blocks: {[b.name for b in self.blocks]}")

    def populations(self) -> dict[str, int]:
        """Population name -> number of units (largest index referenced + 1)."""
        sizes: dict[str, int] = {}
        for b in self.blocks:
            sizes[b.source] = max(sizes.get(b.source, 0), b.source_start + b.cols)
            sizes[b.dest] = max(sizes.get(b.dest, 0), b.dest_start + b.rows)
        for pop, ev in self.output_events.items():
            sizes[pop] = max(sizes.get(pop, 0), len(ev))
        return sizes

    def unit_events(self, pop: str) -> np.ndarray:
        """Events per step of each unit of ``pop``; NaN where unknown. Shape: (size,)."""
        out = np.full(self.populations()[pop], np.nan)
        ev = self.output_events.get(pop)
        if ev is not None:
            out[: len(ev)] = ev
        for b in self.blocks:
            if b.source == pop:
                out[b.source_start : b.source_start + b.cols] = b.source_events
        return out

    @property
    def synapses(self) -> int:
        """Total synapses."""
        return sum(b.synapses for b in self.blocks)

    @property
    def neurons(self) -> int:
        """Total destination units."""
        return sum(b.rows for b in self.blocks)

    def traffic(self) -> dict[tuple[str, str], float]:
        """Events per step from block to block: Σ over units held by the first, read by the second.

        Returns:
            {(source_block, dest_block): events per step}; external inputs use source "input".
        """
        out: dict[tuple[str, str], float] = {}
        for dst in self.blocks:
            lo, hi = dst.source_start, dst.source_start + dst.cols
            ev = np.asarray(dst.source_events)
            covered = np.zeros(dst.cols, dtype=bool)
            for src in self.blocks:
                if src.dest != dst.source:
                    continue
                a, z = max(lo, src.dest_start), min(hi, src.dest_start + src.rows)
                if a < z:
                    out[(src.name, dst.name)] = float(ev[a - lo : z - lo].sum())
                    covered[a - lo : z - lo] = True
            if (~covered).any():
                out[("input", dst.name)] = float(ev[~covered].sum())
        return out

    # ------------------------------------------------------------ io
    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {
            "name": self.name,
            "blocks": [b.to_dict() for b in self.blocks],
            "output_events": {k: list(v) for k, v in self.output_events.items()},
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Network:
        """Inverse of :meth:`to_dict`; malformed data raises ValueError."""
        try:
            blocks = tuple(FactorBlock(**b) for b in data["blocks"])
            return cls(blocks, data.get("name", "network"), data.get("output_events", {}),
                       data.get("meta", {}))  # fmt: skip
        except (KeyError, TypeError) as err:
            raise ValueError(f"malformed Network data ({type(err).__name__}: {err})") from None

    def save(self, path: str | Path) -> None:
        """Write JSON to ``path``."""
        Path(path).write_text(json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | Path) -> Network:
        """Read a Network saved with :meth:`save`."""
        return cls.from_dict(_read_json(path, "Network"))


def _read_json(path: str | Path, what: str) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON for a {what} ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a {what} file holds a JSON object, got {type(data).__name__}")
    return data


@dataclass(frozen=True)
class Tile:
    """Rows [row0, row1) × cols [col0, col1) of block ``block``, placed on one core."""

    block: str
    row0: int
    row1: int
    col0: int
    col1: int

    @property
    def rows(self) -> int:
        return self.row1 - self.row0

    @property
    def cols(self) -> int:
        return self.col1 - self.col0


@dataclass(frozen=True)
class Placement:
    """Tiles of a Network assigned to cores of a ChipSpec.

    Args:
        network, chip: what was mapped where.
        tiles: the tiles (together they cover every block's rows × cols exactly once).
        cores: core id of each tile.
        method, seed: how it was made.
        meta: free metadata (mapping time, ...).
    """

    network: Network
    chip: ChipSpec
    tiles: tuple[Tile, ...]
    cores: tuple[int, ...]
    method: str = ""
    seed: int = 0
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tiles", tuple(self.tiles))
        object.__setattr__(self, "cores", tuple(int(c) for c in self.cores))
        if len(self.tiles) != len(self.cores):
            raise ValueError(f"{len(self.tiles)} tiles but {len(self.cores)} core ids")
        bad = [c for c in self.cores if not 0 <= c < self.chip.cores]
        if bad:
            raise ValueError(f"core id {bad[0]} outside 0..{self.chip.cores - 1}")
        cover = {b.name: np.zeros((b.rows, b.cols), np.int8) for b in self.network.blocks}
        for t in self.tiles:
            if t.block not in cover:
                raise ValueError(f"tile of unknown block {t.block!r}")
            r, c = cover[t.block].shape
            if not (0 <= t.row0 < t.row1 <= r and 0 <= t.col0 < t.col1 <= c):
                raise ValueError(f"tile {t} outside block {t.block!r} of {r}x{c}")
            cover[t.block][t.row0 : t.row1, t.col0 : t.col1] += 1
        for name, arr in cover.items():
            if (arr != 1).any():
                raise ValueError(f"tiles cover block {name!r} {int(arr.min())}..{int(arr.max())} "
                                 "times; every synapse must be placed exactly once")  # fmt: skip

    def core_loads(self) -> dict[int, dict[str, int]]:
        """{core_id: {"neurons": int, "synapses": int, "fan_in": int}} over used cores.

        A column tile holds its rows as (partial-sum) neurons; fan-in counts distinct source
        units per core.
        """
        loads: dict[int, dict[str, int]] = {}
        srcs: dict[int, set] = {}
        blocks = {b.name: b for b in self.network.blocks}
        for t, c in zip(self.tiles, self.cores):
            d = loads.setdefault(c, {"neurons": 0, "synapses": 0, "fan_in": 0})
            d["neurons"] += t.rows
            d["synapses"] += t.rows * t.cols
            b = blocks[t.block]
            s0 = b.source_start + t.col0
            srcs.setdefault(c, set()).update((b.source, u) for u in range(s0, s0 + t.cols))
        for c, s in srcs.items():
            loads[c]["fan_in"] = len(s)
        return dict(sorted(loads.items()))

    def to_dict(self) -> dict:
        """JSON-ready dict holding the network and chip too."""
        return {
            "network": self.network.to_dict(),
            "chip": self.chip.to_dict(),
            "tiles": [[t.block, t.row0, t.row1, t.col0, t.col1] for t in self.tiles],
            "cores": list(self.cores),
            "method": self.method,
            "seed": self.seed,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Placement:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(
                Network.from_dict(data["network"]),
                ChipSpec.from_dict(data["chip"]),
                tuple(Tile(str(b), *map(int, r)) for b, *r in data["tiles"]),
                tuple(data["cores"]),
                data.get("method", ""),
                int(data.get("seed", 0)),
                data.get("meta", {}),
            )
        except (KeyError, TypeError) as err:
            raise ValueError(f"malformed Placement data ({type(err).__name__}: {err})") from None

    def save(self, path: str | Path) -> None:
        """Write JSON to ``path``."""
        Path(path).write_text(json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | Path) -> Placement:
        """Read a Placement saved with :meth:`save`."""
        return cls.from_dict(_read_json(path, "Placement"))
