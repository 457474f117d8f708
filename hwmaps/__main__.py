"""CLI: ``python -m hwmaps chips | map | compare``.

    python -m hwmaps chips [--sources]
    python -m hwmaps map RUN.json --chip loihi --method traffic --out DIR
    python -m hwmaps compare RUN.json --chip loihi --out DIR

RUN.json is a braingate Report saved by ``Report.save`` (from ``simulate(..., mode="event")``),
the ``comparison.json`` that ``make demo`` writes (pick a dataset with ``--dataset``), or a
Network saved by ``Network.save``.
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

PATH_TO_ESTIMATE = """\
from a braingate run to a chip estimate:
  1. run the converted model in event mode and save its Report:
       ys, rep = bg.simulate(model, xs, mode="event"); rep.save("run.json")
     (`make demo` writes results/02_compare_event_vs_dense/report_<dataset>.json and
     comparison.json; examples/01_quickstart.py writes results/01_quickstart/report.json)
  2. python -m hwmaps map run.json --chip loihi          one method (default: traffic)
     python -m hwmaps compare run.json --chip truenorth  every method side by side
     python -m hwmaps map results/02_compare_event_vs_dense/comparison.json --dataset digits
  3. read OUT/report.md (energy in pJ per step and J per sample, static apart), energy.json,
     placement_<method>.json and the PNGs (energy, core utilisation, link traffic).
  `python -m hwmaps chips --sources` lists the chips and where every constant comes from."""


def _fail(msg: str):
    raise SystemExit(f"hwmaps: {msg}")


def load_network(path: str, dataset: str | None = None) -> Network:
    """A Network from a Network JSON, a braingate Report JSON or example 02's comparison JSON."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        _fail(f"cannot read {path}: {err}")
    if not isinstance(data, dict):
        _fail(f"{path} is neither a Network, a braingate Report nor a comparison JSON "
              f"(it holds a {type(data).__name__})")  # fmt: skip
    name = Path(path).stem
    if isinstance(data.get("results"), dict):  # examples/02's comparison.json: one run per dataset
        runs = {k: v["report"] for k, v in data["results"].items()
                if isinstance(v, dict) and isinstance(v.get("report"), dict)}  # fmt: skip
        if not runs:
            _fail(f"{path} has 'results' but no run with a 'report'; pass a Report JSON")
        if dataset is None and len(runs) > 1:
            _fail(f"{path} holds runs of {sorted(runs)}; pick one with --dataset NAME")
        dataset = dataset if dataset is not None else next(iter(runs))
        if dataset not in runs:
            _fail(f"--dataset {dataset!r} is not in {path}; choose from {sorted(runs)}")
        data, name = runs[dataset], dataset
    elif dataset is not None:
        _fail(f"--dataset applies to a comparison JSON (with 'results'); {path} is not one")
    try:
        if "blocks" in data:
            return Network.from_dict(data)
        if "layers" in data:
            return from_report(data, name=name)
    except ValueError as err:
        _fail(f"{path}: {err}")
    _fail(f"{path} is neither a Network, a braingate Report nor a comparison JSON; "
          "save a run with Report.save (see python -m hwmaps map --help)")  # fmt: skip


def _chip(args) -> chips.ChipSpec:
    kw: dict = {"chips": args.chips}
    if args.cores is not None:
        if args.chip != "generic":
            raise ValueError(f"--cores applies to --chip generic only (got --chip {args.chip})")
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
    print("energies in J per event; the table: hwmaps/chips/chips.json (braingate reads it too)")


def _run(args, names: list[str]) -> None:
    chip = _chip(args)  # bad flags fail before the file is read
    net = load_network(args.network, args.dataset)
    placements, reports = {}, {}
    bar = names
    if len(names) > 1:
        from tqdm import tqdm

        bar = tqdm(names, desc="mapping", disable=args.quiet)
    for m in bar:
        placements[m] = map_network(net, chip, m, seed=args.seed)
        reports[m] = estimate(placements[m])
    out = Path(args.out)
    skipped = report.not_mapped(net.meta)
    paths = report.write(out, placements, reports, f"{net.name} on {chip.name}", skipped)
    if not args.no_plots:
        paths.append(plot.breakdown(reports, out / "energy_breakdown.png"))
        best = min(reports, key=lambda m: reports[m].breakdown["noc"])
        paths.append(plot.utilisation(placements[best], out / f"utilisation_{best}.png"))
        paths.append(plot.links(placements[best], out / f"links_{best}.png"))
    print(report.markdown(reports, f"{net.name} on {chip.name}", skipped))
    print(f"wrote into {out}/: " + ", ".join(p.name for p in paths))


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m hwmaps`` and the ``hwmaps`` script."""
    fmt = argparse.RawDescriptionHelpFormatter
    ap = argparse.ArgumentParser(prog="hwmaps", description="map braingate networks onto chips",
                                 epilog=PATH_TO_ESTIMATE, formatter_class=fmt)  # fmt: skip
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("chips", help="list chip presets")
    p.add_argument("--sources", action="store_true", help="print every constant's source")
    for name in ("map", "compare"):
        what = "map a run with one method" if name == "map" else "map a run with every method"
        p = sub.add_parser(name, help=what, description=what, epilog=PATH_TO_ESTIMATE,
                           formatter_class=fmt)  # fmt: skip
        p.add_argument("network", help="Report JSON (Report.save), comparison.json of "
                                       "`make demo`, or Network JSON")  # fmt: skip
        p.add_argument("--dataset", default=None, help="which run of a comparison.json")
        p.add_argument("--chip", default="loihi", choices=chips.names())
        p.add_argument("--chips", type=int, default=1, help="chips on the board (>= 1)")
        p.add_argument("--cores", type=int, default=None,
                       help="cores of the generic chip (default 1024)")  # fmt: skip
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--out", default="hwmaps_out", help="output folder")
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
