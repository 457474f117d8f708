"""calibrate(): fit auto mode's cost model to measured step times on the current device."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from braingate.functional.cost import CostModel, current_cost_model, set_cost_model
from braingate.nn.event_linear import EventLinear

__all__ = ["calibrate"]

_MEMO: dict[str, CostModel] = {}


def _cache_file(device: torch.device) -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "braingate"
    # the version moves when the measured paths change (v3: the descriptor kernel's lower
    # per-call cost), so a cache written by older code is measured again
    tag = f"cost-v3-{device.type}-torch{torch.__version__}-threads{torch.get_num_threads()}.json"
    return root / tag


def calibrate(device: torch.device | str | None = None, *, force: bool = False) -> CostModel:
    """Measure event and dense step times here and install the fitted :class:`CostModel`.

    Times the two paths exactly as auto mode runs them (probe layers in auto mode, the decision
    forced one way), over a range of shapes, batch sizes and activities, and fits the models of
    :class:`~braingate.functional.cost.CostModel` by least squares. The result is cached in
    memory and on disk (``~/.cache/braingate``); ``force=True`` measures again.

    Returns:
        The installed cost model (auto mode uses it for layers on this device type).
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    key = dev.type
    path = _cache_file(dev)
    if not force:
        model = _MEMO.get(key)
        if model is None and path.exists():
            try:  # a cache from another version of the model's fields is measured again
                model = CostModel(**json.loads(path.read_text()))
            except (ValueError, TypeError):
                model = None
        if model is not None:
            _MEMO[key] = model
            set_cost_model(key, model)
            return model
    model = _measure(dev)
    _MEMO[key] = model
    set_cost_model(key, model)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(model.to_dict()))
    except OSError:
        pass  # a read-only home only loses the disk cache
    return model


def _time(fn, reps: int, sync=None) -> float:
    """Median of 5 means over ``reps`` calls: robust to a machine shared with other work."""
    fn()
    means = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        if sync is not None:
            sync()
        means.append((time.perf_counter() - t0) / reps)
    return float(np.median(means))


#: Probe layers (n = m, R, B): batch 1 to 16 at several shapes, so the dense model can separate
#: the per-op term from the per-step weight traffic.
_PROBES = ((128, 16, 1), (256, 32, 1), (1024, 128, 1), (512, 64, 4), (1024, 32, 16),
           (256, 128, 16), (1024, 128, 16), (2048, 64, 1), (2048, 64, 16))  # fmt: skip

# cost models that force auto mode's decision: 1 s per step on the other path
_ALWAYS_DENSE = CostModel(1.0, 0.0, 0.0, 0.0, 0.0, device="probe")
_ALWAYS_EVENT = CostModel(0.0, 0.0, 0.0, 1.0, 0.0, device="probe")


def _measure(dev: torch.device) -> CostModel:
    """Time both paths of probe layers; fit ``t = c·features`` by non-negative least squares."""
    gen = torch.Generator().manual_seed(0)
    ev_rows, ev_t, de_rows, de_t = [], [], [], []
    sync = torch.cuda.synchronize if dev.type == "cuda" else None
    installed = current_cost_model(dev.type)
    try:
        with torch.no_grad():
            for n, R, B in _PROBES:
                layer = EventLinear(n, n, R).to(dev)
                layer.execution = "auto"
                x0 = torch.randn(B, n, generator=gen).to(dev)
                set_cost_model(dev.type, _ALWAYS_DENSE)
                layer.reset()
                de_rows.append([1.0, B * 2 * n * R, 2 * n * R])
                de_t.append(_time(lambda layer=layer, x=x0: layer(x), 10, sync))
                set_cost_model(dev.type, _ALWAYS_EVENT)
                for frac in (0.0, 0.02, 0.1, 0.3, 1.0):
                    k = int(frac * n)
                    xs = [x0.clone(), x0.clone()]
                    xs[1][:, :k] += 1.0
                    layer.reset()
                    layer(xs[0])
                    flip = [0]

                    def ev(layer=layer, xs=xs, flip=flip):
                        flip[0] ^= 1
                        layer(xs[flip[0]])

                    ev_t.append(_time(ev, 10, sync))
                    c = layer._runner.last_counts
                    ev_rows.append([1.0, B * n, float(c[:, 2].sum())])
    finally:
        set_cost_model(dev.type, installed)
    a = _nonneg_lstsq(np.array(ev_rows), np.array(ev_t))
    d = _nonneg_lstsq(np.array(de_rows), np.array(de_t))
    return CostModel(*a, *d, device=str(dev))


def _nonneg_lstsq(A: np.ndarray, b: np.ndarray) -> list[float]:
    """Non-negative fit of relative error (rows weighted by 1/b): small and large steps count alike."""
    from scipy.optimize import nnls

    w = 1.0 / np.maximum(b, 1e-9)
    Aw = A * w[:, None]
    scale = Aw.max(0)
    scale[scale == 0] = 1.0
    coef, _ = nnls(Aw / scale, b * w)
    return [float(c) for c in coef / scale]
