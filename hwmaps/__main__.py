"""CLI: ``python -m hwmaps chips | map | compare``.

    python -m hwmaps chips [--sources]
    python -m hwmaps map NETWORK_OR_REPORT.json --chip loihi --method traffic --out DIR
    python -m hwmaps compare NETWORK_OR_REPORT.json --chip loihi --out DIR

The input is a Network saved by ``Network.save`` or a braingate Report saved by
``Report.save`` (from ``simulate(..., mode="event")``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hwmaps import chips, methods, plot, report
from hwmaps.estimate import estimate
from hwmaps.extract import from_report
from hwmaps.ir import Network
from hwmaps.mapping import map_network


def load_network(path: str) -> Network:
    """A Network from a Network JSON or a braingate Report JSON."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SystemExit(f"hwmaps: cannot read {path}: {err}") from None
    if isinstance(data, dict) and "blocks" in data:
        return Network.from_dict(data)
    if isinstance(data, dict) and "layers" in data:
        return from_report(data, name=Path(path).stem)
    raise SystemExit(f"hwmaps: {path} is neither a Network nor a braingate Report JSON")


def _chip(args) -> chips.ChipSpec:
    kw = {"chips": args.chips} if args.chips > 1 else {}
    if args.chip == "generic":
        kw["cores"] = args.cores
    return chips.get(args.chip, **kw)


def cmd_chips(args) -> None:
    cols = ("cores", "neurons_per_core", "synapses_per_core", "e_synop_j", "e_hop_ew_j")
    print(f"{'chip':<10}" + "".join(f"{c:>19}" for c in cols) + "  assumed")
    for name in chips.names():
        c = chips.get(name)
        vals = [c.cores, c.neurons_per_core, c.synapses_per_core, c.e_synop_j, c.e_hop_ew_j]
        cells = "".join(f"{v:>19,}" if isinstance(v, int) else f"{v:>19.3g}" for v in vals)
        print(f"{name:<10}{cells}  {len(c.assumptions)}/{len(c.sources)}")
        if args.sources:
            for k, v in c.sources.items():
                print(f"    {k:<22} {v}")


def _run(args, names: list[str]) -> None:
    net, chip = load_network(args.network), _chip(args)
    placements, reports = {}, {}
    bar = names
    if len(names) > 1:
        from tqdm import tqdm

        bar = tqdm(names, desc="mapping", disable=args.quiet)
    for m in bar:
        placements[m] = map_network(net, chip, m, seed=args.seed)
        reports[m] = estimate(placements[m])
    out = Path(args.out)
    paths = report.write(out, placements, reports, f"{net.name} on {chip.name}")
    if not args.no_plots:
        paths.append(plot.breakdown(reports, out / "energy_breakdown.png"))
        best = min(reports, key=lambda m: reports[m].breakdown["noc"])
        paths.append(plot.utilisation(placements[best], out / f"utilisation_{best}.png"))
        paths.append(plot.links(placements[best], out / f"links_{best}.png"))
    print(report.markdown(reports, f"{net.name} on {chip.name}"))
    print("wrote " + ", ".join(str(p) for p in paths))


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m hwmaps`` and the ``hwmaps`` script."""
    ap = argparse.ArgumentParser(prog="hwmaps", description="map braingate networks onto chips")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("chips", help="list chip presets")
    p.add_argument("--sources", action="store_true", help="print every constant's source")
    for name in ("map", "compare"):
        p = sub.add_parser(name, help=f"{name} a network (Network or Report JSON)")
        p.add_argument("network")
        p.add_argument("--chip", default="loihi", choices=chips.names())
        p.add_argument("--chips", type=int, default=1, help="chips on the board")
        p.add_argument("--cores", type=int, default=1024, help="cores of the generic chip")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--out", default="hwmaps_out")
        p.add_argument("--no-plots", action="store_true")
        p.add_argument("--quiet", action="store_true")
        if name == "map":
            p.add_argument("--method", default="traffic", choices=methods.names())
    args = ap.parse_args(argv)
    try:
        if args.cmd == "chips":
            cmd_chips(args)
        elif args.cmd == "map":
            _run(args, [args.method])
        else:
            _run(args, methods.names())
    except ValueError as err:
        print(f"hwmaps: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
