"""Markdown and PNG output of the comparison (examples/02). Energies in joules per sample."""

from __future__ import annotations

import math
from pathlib import Path

import _outputs

KINDS = {"event_linear": "EventLinear", "linear": "Linear"}
COMPONENTS = ("synops", "neurons", "spikes", "noc")


def layer_label(name: str, rec: dict) -> str:
    """``"0 EventLinear 6→256 r6"``: module name, type, shape and rank of a report layer."""
    kind = KINDS.get(rec.get("kind"), rec.get("kind", "layer"))
    rank = f" r{rec['rank']}" if rec.get("kind") != "linear" and "rank" in rec else ""
    return f"{name} {kind} {rec['in_features']}→{rec['out_features']}{rank}"


def _si(v: float, _pos=None) -> str:
    """Compact tick label: 2k, 50k, 1.2M."""
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{unit}"
    return f"{v:.3g}"


def _g(v) -> str:
    return f"{v:.3g}" if isinstance(v, (int, float)) else str(v)


def _ratio(v) -> str:
    return "∞ (no synops)" if v is None else f"{v:.1f}x"


def markdown(doc: dict) -> str:
    """The comparison as a markdown report (tables per dataset)."""
    m = doc["meta"]
    lines = ["# Event-driven vs dense execution", "",
             f"Command: `{m['command']}` — {m['seconds']:.0f} s, torch {m['torch']}, "
             f"{m['threads']} thread(s), batch 1 timing on this CPU.", ""]  # fmt: skip
    for name, r in doc["results"].items():
        lines += [f"## {name} ({r['test_samples']} test streams x {r['steps']} steps)", "",
                  "| execution | test accuracy | ops per sample | dense / ops |",
                  "|---|---:|---:|---:|"]  # fmt: skip
        for row, v in r["rows"].items():
            lines.append(f"| {row} | {100 * v['accuracy']:.1f} % | {v['ops']:,.0f} | "
                         f"{_ratio(v['ratio'])} |")  # fmt: skip
        lines += ["", "| execution (batch 1) | wall clock per step | reset per stream |",
                  "|---|---:|---:|"]  # fmt: skip
        for k, v in r["wall_s_per_step"].items():
            lines.append(f"| {k} | {v * 1e6:.1f} µs | {r['wall_s_reset'][k] * 1e6:.1f} µs |")
        lines += ["", f"Event-driven vs dense full-rank (PyTorch) per step: "
                      f"**{r['speedup_event_vs_dense']:.2f}x**; per {r['steps']}-step stream "
                      f"with its reset: {r['speedup_per_stream_with_reset']:.2f}x.", ""]  # fmt: skip
        lines += energy_table(r["energy"])
        c = r["calibration"]
        lines += ["", f"Calibration alone (greedy, training split): {c['ratio_train']:.1f}x "
                      f"fewer synops in {c['evaluations']} simulations; fine-tuning history: "
                      f"{len(r['history'])} epochs. Rows: *ops* are dense synops (n·m per "
                      "step) for full rank, (n+m)·R per step for low rank, and counted synops "
                      "(|E|·R + |L|·m) for event execution.", ""]  # fmt: skip
    return "\n".join(lines) + "\n"


def energy_table(e: dict) -> list[str]:
    """Energy rows: J per sample (one test stream), dynamic apart from static."""
    T = e["steps"]
    lines = [f"Energy in **J per sample** (one test stream of {T} steps; per step = / {T}). "
             "Chips: hwmaps, `traffic` mapping, dynamic = synops + neurons + spikes + NoC; "
             "static power is listed apart.", "",
             "| energy, J per sample | dense full-rank | dense low-rank | event-driven |",
             "|---|---:|---:|---:|"]  # fmt: skip
    for dev, v in e["devices"].items():
        lines.append(f"| {dev} ({v['energy_model']}), dynamic | {_g(v['dense full-rank'])} | "
                     f"{_g(v['dense low-rank'])} | {_g(v['event-driven'])} |")  # fmt: skip
    for chip, v in e["chips"].items():
        dyn = [_g(v[k].get("dynamic_J_per_sample", v[k].get("error")))
               for k in ("dense low-rank", "event")]  # fmt: skip
        stat = [_g(v[k].get("static_J_per_sample", "—")) for k in ("dense low-rank", "event")]
        lines.append(f"| {chip}, dynamic | — | {dyn[0]} | {dyn[1]} |")
        lines.append(f"| {chip}, static | — | {stat[0]} | {stat[1]} |")
    return lines


# ----------------------------------------------------------------------------- plots
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plots(doc: dict, out: Path) -> list[Path]:
    """accuracy_vs_synops.png, events_per_layer.png, energy_breakdown.png."""
    return [accuracy_plot(doc, out / "accuracy_vs_synops.png"),
            events_plot(doc, out / "events_per_layer.png"),
            energy_plot(doc, out / "energy_breakdown.png")]  # fmt: skip


def accuracy_plot(doc: dict, path: Path) -> Path:
    """Test accuracy against ops per sample (log x: ops span decades); one legend below."""
    plt = _plt()
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    res = doc["results"]
    fig, axes = plt.subplots(1, len(res), figsize=(5.5 * len(res), 4.4), squeeze=False,
                             layout="constrained")  # fmt: skip
    for ax, (name, r) in zip(axes[0], res.items()):
        for i, (row, v) in enumerate(r["rows"].items()):
            ax.scatter(v["ops"], 100 * v["accuracy"], s=60, color=f"C{i}", label=row, zorder=3)
            ax.annotate(_ratio(v["ratio"]), (v["ops"], 100 * v["accuracy"]), fontsize=8,
                        textcoords="offset points", xytext=(6, 4 if i % 2 else -11))  # fmt: skip
        ops = [v["ops"] for v in r["rows"].values() if v["ops"] > 0]
        acc = [100 * v["accuracy"] for v in r["rows"].values()]
        ax.set_xscale("log")
        ax.set_xlim(min(ops) / 2, max(ops) * 3)
        ax.set_ylim(min(acc) - 2, min(100.5, max(acc) + 2))
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(_si))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set(title=f"{name}: accuracy vs work", xlabel="ops per sample (log scale)",
               ylabel="test accuracy (%)")  # fmt: skip
        ax.grid(alpha=0.3, which="major")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8,
               title="point labels: dense synops / ops")  # fmt: skip
    return _outputs.save_figure(fig, path)


def count_axis(ax, values, axis: str = "y") -> str:
    """Log scale when the positive ``values`` span a decade or more (minor labels off), else
    linear from 0. Returns the scale used."""
    pos = [v for v in values if v > 0]
    if pos and max(pos) >= 10 * min(pos):
        getattr(ax, f"set_{axis}scale")("log")
        from matplotlib.ticker import NullFormatter

        getattr(ax, f"{axis}axis").set_minor_formatter(NullFormatter())
        return "log"
    getattr(ax, f"set_{axis}lim")(0, 1.1 * max(pos, default=1.0))
    return "linear"


def events_plot(doc: dict, path: Path) -> Path:
    """Events per step of every layer, input and latent apart; log y when counts span decades."""
    plt = _plt()
    res = doc["results"]
    fig, axes = plt.subplots(len(res), 2, figsize=(12, 3.4 * len(res)), squeeze=False,
                             layout="constrained")  # fmt: skip
    for row_axes, (name, r) in zip(axes, res.items()):
        layers = r["report"]["layers"]
        for ax, kind in zip(row_axes, ("input_events", "latent_events")):
            values = []
            for i, (lname, tr) in enumerate(r["report"]["trace"].items()):
                vals = [v if v > 0 else float("nan") for v in tr[kind]]  # log axis: 0 = gap
                values += tr[kind]
                ax.plot(vals, color=f"C{i}", marker="." if len(vals) <= 20 else None,
                        label=layer_label(lname, layers[lname]))  # fmt: skip
            scale = count_axis(ax, values)
            what = "input events |E|" if kind == "input_events" else "latent events |L|"
            ax.set(title=f"{name}: {what} per step", xlabel="step",
                   ylabel=f"events per step (test mean{', log' if scale == 'log' else ''})")  # fmt: skip
            ax.grid(alpha=0.3)
        row_axes[1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8,
                           title="layer (module name, type)")  # fmt: skip
    return _outputs.save_figure(fig, path)


def _energy_bars(e: dict) -> tuple[dict, dict]:
    """({execution: {component: J per sample}} of dynamic energy, {execution: static J})."""
    bars, static = {}, {}
    for dev, v in e["devices"].items():
        bars[f"{dev}: dense full-rank"] = {"dense MACs + memory": v["dense full-rank"]}
        bars[f"{dev}: dense low-rank"] = {"dense MACs + memory": v["dense low-rank"]}
        bars[f"{dev}: event"] = dict(v["event breakdown"])
    for chip, v in e["chips"].items():
        for label in ("dense low-rank", "event"):
            if "error" not in v[label]:
                js = v[label]["J_per_sample"]
                bars[f"{chip}: {label}"] = {k: js[k] for k in COMPONENTS}
                static[f"{chip}: {label}"] = js["static"]
    return bars, static


def energy_plot(doc: dict, path: Path) -> Path:
    """Per dataset: (left) dynamic energy per sample of every execution, log x, with the chips'
    static energy as separate hatched bars; (right) what the dynamic energy consists of, as
    shares on a linear axis (no stacking on a log axis)."""
    plt = _plt()
    res = doc["results"]
    comps = ["dense MACs + memory", "synops", "neurons", "spikes", "noc"]
    colors = {c: f"C{i}" for i, c in enumerate(comps)}
    fig, axes = plt.subplots(len(res), 2, figsize=(12, 4 * len(res)), squeeze=False,
                             layout="constrained", gridspec_kw={"width_ratios": [1.2, 1]})  # fmt: skip
    for (ax, bx), (name, r) in zip(axes, res.items()):
        bars, static = _energy_bars(r["energy"])
        names = list(bars)
        y = list(range(len(names)))
        dyn = [sum(bars[n].values()) for n in names]
        ax.barh([i + 0.2 for i in y], dyn, 0.4, color="0.35", label="dynamic")
        st = [static.get(n, math.nan) for n in names]
        ax.barh([i - 0.2 for i in y], st, 0.4, color="white", edgecolor="C3", hatch="///",
                label="static (chip idle power x T steps)")  # fmt: skip
        ax.set_xscale("log")
        ax.set_yticks(y, names, fontsize=8)
        ax.invert_yaxis()
        ax.set(title=f"{name}: energy per sample (J, log)", xlabel="J per sample (log scale)")
        ax.grid(alpha=0.3, axis="x", which="major")
        left = [0.0] * len(names)
        for c in comps:
            share = [bars[n].get(c, 0.0) / d if d > 0 else 0.0 for n, d in zip(names, dyn)]
            if any(share):
                bx.barh(y, [100 * s for s in share], left=left, color=colors[c], label=c)
                left = [a + 100 * s for a, s in zip(left, share)]
        bx.set_yticks(y, [""] * len(names))
        bx.invert_yaxis()
        bx.set(xlim=(0, 100), title="share of the dynamic energy (%, linear)",
               xlabel="% of dynamic energy")  # fmt: skip
    handles, labels = [], []
    for ax in axes[:, :].ravel():  # one legend for the whole figure, outside the data
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=8)
    return _outputs.save_figure(fig, path)
