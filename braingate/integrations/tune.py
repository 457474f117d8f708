"""Sweeps over thresholds, rank budget and gate blocks, and their accuracy–energy Pareto front.

:func:`sweep` runs an evaluation function over the grid of a search space with Ray Tune (a local
Ray instance on this machine; extra ``tune``) or serially without Ray (``backend="serial"``),
writes every trial and the Pareto front to JSON (and a PNG plot when matplotlib is installed).
:class:`CompressionEvaluator` is the evaluation used for braingate models: convert a trained dense
model with the trial's ``rank`` / ``blocks`` / ``threshold``, run it in event mode over a real
stream with :func:`braingate.simulate`, and report accuracy, synops and estimated energy.
"""

from __future__ import annotations

import copy
import itertools
import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from braingate.convert import convert
from braingate.energy.report import report_energy
from braingate.integrations._optional import require
from braingate.sim.simulate import simulate

__all__ = ["BACKENDS", "CompressionEvaluator", "grid", "pareto_front", "sweep"]

BACKENDS = ("ray", "serial")


def pareto_front(
    trials: Sequence[dict], x: str = "energy_J_per_sample", y: str = "accuracy"
) -> list[dict]:
    r"""The trials no other trial dominates (lower ``x`` and higher ``y`` are better).

    .. math:: P = \{p : \nexists q,\ x_q \le x_p,\ y_q \ge y_p,\ (x_q, y_q) \ne (x_p, y_p)\}

    Returns:
        the non-dominated trials sorted by ``x`` (ties in both keep the first one).
    """
    for t in trials:
        if x not in t or y not in t:
            raise ValueError(f"trial {t} lacks {x!r} or {y!r}; the evaluation must return both")
    front: list[dict] = []
    for t in sorted(trials, key=lambda t: (t[x], -t[y])):
        if not front or t[y] > front[-1][y]:
            front.append(t)
    return front


def grid(space: dict[str, Sequence]) -> list[dict]:
    """Every combination of a ``{name: [values]}`` search space (a scalar is one value)."""
    if not isinstance(space, dict) or not space:
        raise ValueError("space must be a non-empty dict {name: [values]}")
    keys = list(space)
    vals = [v if isinstance(v, (list, tuple)) else [v] for v in space.values()]
    return [dict(zip(keys, combo)) for combo in itertools.product(*vals)]


@dataclass
class CompressionEvaluator:
    """Evaluate one ``{"rank", "blocks", "threshold", ...}`` config of a trained dense model.

    Config keys: ``rank`` (int or fraction, as :func:`braingate.convert`), ``blocks``,
    ``threshold``, optional ``latent_threshold`` (default ``threshold / 2``) and
    ``active_blocks`` (k blocks kept on in every layer; default all).

    Args:
        model: trained model with ``nn.Linear`` layers; it is copied, never modified.
        xs: time-first stream ``(T, B, F)``. labels: ``(B,)`` class indices.
        readout: ``ys (T, B, C) -> logits (B, C)``; default: mean over time.
        energy_model: a chip or per-op model of :func:`braingate.energy.report_energy`.

    Returns (``__call__``):
        ``{"accuracy", "synops", "active_rank", "dense_synops", "energy_J_per_sample",
        "dense_J_per_sample"}`` (counts per sample; energy in joules per sample, the dynamic
        energy of the event run and of dense execution; ``active_rank`` summed over layers).
    """

    model: nn.Module
    xs: Tensor
    labels: Tensor
    readout: Callable[[Tensor], Tensor] | None = None
    energy_model: str = "loihi"
    targets: list[str] | None = field(default=None)

    def __call__(self, config: dict) -> dict:
        m = copy.deepcopy(self.model)
        th = float(config.get("threshold", 0.0))
        convert(m, rank=config["rank"], blocks=int(config.get("blocks", 1)), threshold=th,
                latent_threshold=float(config.get("latent_threshold", th / 2)),
                targets=self.targets)  # fmt: skip
        if "active_blocks" in config:
            for layer in m.modules():
                if hasattr(layer, "set_active_blocks"):
                    layer.set_active_blocks(min(int(config["active_blocks"]), layer.blocks))
        ys, rep = simulate(m, self.xs, mode="event")
        logits = self.readout(ys) if self.readout is not None else ys.mean(0)
        acc = float((logits.argmax(-1) == self.labels).double().mean())
        energy = report_energy(rep, self.energy_model)["per_sample"]
        active = sum(float(la.active_rank.double().mean()) for la in m.modules()
                     if hasattr(la, "active_rank"))  # fmt: skip
        return {"accuracy": acc, "synops": rep.total["synops"], "active_rank": active,
                "dense_synops": rep.total["dense_synops"],
                "energy_J_per_sample": energy["dynamic"],
                "dense_J_per_sample": energy["dense"]}  # fmt: skip


def _ray_trials(evaluate: Callable, configs: list[dict], num_cpus: int) -> list:
    ray = require("ray", "tune")
    tune = require("ray.tune", "tune")
    logs = tempfile.mkdtemp(prefix="braingate_tune_")  # Ray's per-trial logs: not results
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)  # fmt: skip
    try:
        keys = list(configs[0])
        space = {"_trial": tune.grid_search(list(range(len(configs))))}

        def trainable(cfg, evaluate=None, configs=None):
            torch.set_num_threads(1)
            return evaluate(configs[cfg["_trial"]])

        tuner = tune.Tuner(
            tune.with_parameters(trainable, evaluate=evaluate, configs=configs),
            param_space=space,
            tune_config=tune.TuneConfig(max_concurrent_trials=num_cpus, reuse_actors=True),
            run_config=tune.RunConfig(storage_path=str(Path(logs).resolve()), verbose=0),
        )
        grid_result = tuner.fit()
        out = []
        for r in grid_result:
            if r.error is not None:
                raise RuntimeError(f"trial {r.config} failed: {r.error}")
            i = r.config["_trial"]
            out.append((i, {k: configs[i][k] for k in keys}, dict(r.metrics)))
        return [(c, m) for _, c, m in sorted(out, key=lambda t: t[0])]
    finally:
        shutil.rmtree(logs, ignore_errors=True)
        if started:
            ray.shutdown()


def sweep(
    evaluate: Callable[[dict], dict],
    space: dict[str, Sequence],
    out_dir: str | Path,
    *,
    backend: str = "ray",
    x: str = "energy_J_per_sample",
    y: str = "accuracy",
    num_cpus: int = 2,
    plot: bool = True,
) -> dict:
    """Evaluate every config of ``space``; write ``pareto.json`` (and ``pareto.png``).

    Args:
        evaluate: ``config -> {metric: value}`` containing ``x`` and ``y`` (e.g. a
            :class:`CompressionEvaluator`); must be picklable for the Ray backend.
        space: ``{name: [values]}``; the grid of all combinations is run.
        out_dir: where ``pareto.json`` and ``pareto.png`` go (Ray's logs go to a temporary
            folder that is removed afterwards).
        backend: ``"ray"`` (Ray Tune on a local Ray instance) or ``"serial"`` (no Ray).
        x, y: the metrics of the front (minimise ``x``, maximise ``y``).
        num_cpus: CPUs of the local Ray instance (concurrent trials).
        plot: write ``pareto.png`` when matplotlib is installed.

    Returns:
        ``{"trials": [{**config, **metrics}], "pareto": [...], "x", "y", "backend"}``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is unknown; pass one of {BACKENDS}")
    configs = grid(space)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if backend == "ray":
        pairs = _ray_trials(evaluate, configs, num_cpus)
    else:
        pairs = [(c, evaluate(c)) for c in configs]
    keep = (x, y, "synops", "active_rank", "dense_synops", "dense_J_per_sample")
    trials = [{**c, **{k: float(v) for k, v in m.items() if k in keep or k in (x, y)}}
              for c, m in pairs]  # fmt: skip
    result = {"backend": backend, "x": x, "y": y, "trials": trials,
              "pareto": pareto_front(trials, x, y)}  # fmt: skip
    (out_dir / "pareto.json").write_text(json.dumps(result, indent=2))
    if plot:
        _plot(result, out_dir / "pareto.png")
    return result


_LABELS = {"energy_J_per_sample": "dynamic energy per sample (J)", "accuracy": "accuracy"}


def _plot(result: dict, path: Path) -> Path | None:
    """Trials (grey) and the Pareto front (red); a log x axis when ``x`` spans a decade or
    more, at most six x ticks in scientific notation so that labels never overlap."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import LogLocator, MaxNLocator
    except ImportError:
        return None
    x, y = result["x"], result["y"]
    xs = [t[x] for t in result["trials"]]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(xs, [t[y] for t in result["trials"]], c="0.6", label="trials")
    front = result["pareto"]
    ax.plot([t[x] for t in front], [t[y] for t in front], "o-", c="C3", label="Pareto front")
    pos = [v for v in xs if v > 0]
    if pos and len(pos) == len(xs) and max(pos) >= 10 * min(pos):
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(numticks=6))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 3))
    ax.set_xlabel(_LABELS.get(x, x) + (" (log)" if ax.get_xscale() == "log" else ""))
    ax.set_ylabel(_LABELS.get(y, y))
    if y == "accuracy":  # a fraction: no ticks above 1 or below 0
        ys = [t[y] for t in result["trials"]]
        pad = max(0.02, 0.1 * (max(ys) - min(ys)))
        ax.set_ylim(max(0.0, min(ys) - pad), min(1.0, max(ys)) + 0.5 * pad)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
