"""Markdown and PNG output of the comparison (examples/02)."""

from __future__ import annotations

from pathlib import Path


def _fmt_j(v) -> str:
    return f"{v:.3g}" if isinstance(v, (int, float)) else str(v)


def _dynamic(breakdown: dict) -> float:
    return sum(v for k, v in breakdown.items() if k != "static")


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
                         f"{v['ratio']:.1f}x |")  # fmt: skip
        lines += ["", "| execution (batch 1) | wall clock per step | reset per stream |",
                  "|---|---:|---:|"]  # fmt: skip
        for k, v in r["wall_s_per_step"].items():
            lines.append(f"| {k} | {v * 1e6:.1f} µs | {r['wall_s_reset'][k] * 1e6:.1f} µs |")
        lines += ["", f"Event-driven vs dense full-rank (PyTorch) per step: "
                      f"**{r['speedup_event_vs_dense']:.2f}x**; per {r['steps']}-step stream "
                      f"with its reset: {r['speedup_per_stream_with_reset']:.2f}x.", ""]  # fmt: skip
        e = r["energy"]
        lines += ["| energy per sample | dense full-rank | dense low-rank | event-driven |",
                  "|---|---:|---:|---:|"]  # fmt: skip
        for dev, v in e["devices_mJ"].items():
            lines.append(f"| {dev} ({v['energy_model']}), mJ | {_fmt_j(v['dense full-rank'])} | "
                         f"{_fmt_j(v['dense low-rank'])} | {_fmt_j(v['event-driven'])} |")  # fmt: skip
        for chip, v in e["chips_J"].items():
            if "error" in v:
                lines.append(f"| {chip}, J | {v['error']} | | |")
            else:
                dyn = {k: _dynamic(v[k]["breakdown_j"]) for k in ("dense low-rank", "event")}
                static = v["event"]["breakdown_j"].get("static", 0.0)
                lines.append(f"| {chip} (hwmaps, traffic mapping), J dynamic (+ {static:.3g} "
                             f"static) | — | {_fmt_j(dyn['dense low-rank'])} | "
                             f"{_fmt_j(dyn['event'])} |")  # fmt: skip
        c = r["calibration"]
        lines += ["", f"Calibration alone (greedy, training split): {c['ratio_train']:.1f}x "
                      f"fewer synops in {c['evaluations']} simulations; fine-tuning history: "
                      f"{len(r['history'])} epochs. Rows: *ops* are dense synops (n·m per "
                      "step) for full rank, (n+m)·R per step for low rank, and counted synops "
                      "(|E|·R + |L|·m) for event execution.", ""]  # fmt: skip
    return "\n".join(lines) + "\n"


def plots(doc: dict, out: Path) -> list[Path]:
    """accuracy_vs_synops.png, events_per_layer.png, energy_breakdown.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = doc["results"]
    paths = []
    fig, axes = plt.subplots(1, len(res), figsize=(5 * len(res), 4), squeeze=False)
    for ax, (name, r) in zip(axes[0], res.items()):
        for row, v in r["rows"].items():
            ax.scatter(v["ops"], 100 * v["accuracy"], s=50, label=row)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(plt.NullFormatter())  # minor labels overlap on short ranges
        ax.set(title=name, xlabel="ops per sample (log)", ylabel="test accuracy (%)")
        ax.legend(fontsize=7)
    paths.append(_save(fig, out / "accuracy_vs_synops.png"))
    fig, axes = plt.subplots(1, len(res), figsize=(5 * len(res), 4), squeeze=False)
    for ax, (name, r) in zip(axes[0], res.items()):
        for layer, tr in r["report"]["trace"].items():
            ax.plot(tr["input_events"], label=f"layer {layer} input")
            ax.plot(tr["latent_events"], "--", label=f"layer {layer} latent")
        ax.set(title=f"{name}: events per step (test mean)", xlabel="step", ylabel="events")
        ax.legend(fontsize=7)
    paths.append(_save(fig, out / "events_per_layer.png"))
    fig, axes = plt.subplots(1, len(res), figsize=(5 * len(res), 4), squeeze=False)
    for ax, (name, r) in zip(axes[0], res.items()):
        bars, static = {}, []
        for chip, v in r["energy"]["chips_J"].items():
            if "error" not in v:
                dyn = lambda b: {k: x for k, x in b.items() if k != "static"}  # noqa: E731
                bars[f"{chip} dense-LR"] = dyn(v["dense low-rank"]["breakdown_j"])
                bars[f"{chip} event"] = dyn(v["event"]["breakdown_j"])
                static.append(f"{chip} {v['event']['breakdown_j'].get('static', 0):.2g}")
        for dev, v in r["energy"]["devices_mJ"].items():
            bars[f"{dev} dense"] = {"dense MACs": v["dense full-rank"] * 1e-3}
            bars[f"{dev} event"] = {k.removesuffix("_mJ"): x * 1e-3
                                    for k, x in v["event breakdown"].items()}  # fmt: skip
        bottom = [0.0] * len(bars)
        keys = sorted({k for b in bars.values() for k in b})
        for k in keys:
            vals = [b.get(k, 0.0) for b in bars.values()]
            ax.bar(list(bars), vals, bottom=bottom, label=k)
            bottom = [a + b for a, b in zip(bottom, vals)]
        ax.set_yscale("log" if any(bottom) else "linear")
        ax.set(title=f"{name}: dynamic energy per sample (J)", ylabel="J",
               xlabel="static J not shown: " + ", ".join(static))  # fmt: skip
        ax.tick_params(axis="x", rotation=45, labelsize=7)
        ax.legend(fontsize=7)
    paths.append(_save(fig, out / "energy_breakdown.png"))
    return paths


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
