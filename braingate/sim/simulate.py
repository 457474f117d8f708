"""simulate(): run a model over a time-first stream and count every operation done and skipped.

Event layers are seen only through the event-module protocol (:mod:`braingate.nn.base`); plain
torch layers that stay dense inside an event network are counted at their dense cost by the
counters registered in :data:`DENSE_COUNTERS` (``nn.Linear`` here; convolutions and pooling
register theirs in their own files), so the totals stay honest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from braingate._registry import Registry
from braingate.nn._validate import execution_mode
from braingate.nn.base import COUNT_FIELDS, Counts, EventModule, event_modules
from braingate.nn.event_rnn import streaming
from braingate.sim.control import execution, reset
from braingate.sim.fused import EventChain, why_not_fusable
from braingate.sim.report import COUNTERS, Report

__all__ = ["DENSE_COUNTERS", "DenseCounter", "simulate"]


class DenseCounter(NamedTuple):
    """How simulate counts a torch module that stays dense.

    Attributes:
        count: ``(module, x, y) -> (Counts of (N,) arrays, units)``: per-sample counts of one
            call on ``N`` samples (``x`` the input, ``y`` the output), and the events per input
            unit summed over those samples (an array, or None).
        describe: ``module -> dict`` with ``kind``, ``in_features``, ``out_features``, ``rank``,
            ``blocks`` (the Report fields).
    """

    count: Callable
    describe: Callable


#: Module type -> :class:`DenseCounter` (subclasses inherit their base's counter).
DENSE_COUNTERS: Registry[DenseCounter] = Registry("dense layer counter")


def _count_linear(mod: nn.Linear, x: Tensor, y: Tensor):
    n, m = mod.in_features, mod.out_features
    nz = (x.detach() != 0).reshape(-1, n)
    per = nz.sum(-1).double().cpu().numpy()
    full = np.full(per.shape, float(n * m))
    counts = Counts(synops=per * m, dense_synops=full, lowrank_ops=full, input_events=per)
    return counts, nz.sum(0).cpu().numpy().astype(np.float64)


DENSE_COUNTERS.add(
    nn.Linear,
    DenseCounter(
        _count_linear,
        lambda m: {
            "kind": "linear",
            "in_features": m.in_features,
            "out_features": m.out_features,
            "rank": min(m.in_features, m.out_features),
            "blocks": 1,
        },
    ),
)

_GATES = {"GRU": 3, "LSTM": 4, "RNN_TANH": 1, "RNN_RELU": 1}


def _rnn_shape(mod: nn.Module) -> tuple[int, int, int, int, int, int]:
    """``(G, D, H, P, L, cell)`` of a torch recurrent module: gates, directions, hidden size,
    size of the state it feeds back (``proj_size`` or ``H``), layers, 1 for a cell."""
    if isinstance(mod, nn.RNNCellBase):
        name = {nn.GRUCell: "GRU", nn.LSTMCell: "LSTM"}.get(type(mod), "RNN_TANH")
        return _GATES[name], 1, mod.hidden_size, mod.hidden_size, 1, 1
    D = 2 if mod.bidirectional else 1
    P = getattr(mod, "proj_size", 0) or mod.hidden_size
    return _GATES.get(mod.mode, 1), D, mod.hidden_size, P, mod.num_layers, 0


def _count_rnn(mod: nn.Module, x, y):
    """A torch GRU / LSTM / RNN (or cell) left dense: per sample and step, every gate's
    ``W_ih x + W_hh h`` (and the LSTM projection) as MACs; ``synops`` skips the zero inputs of
    the first layer (NeuroBench's effective synops), the fed-back state counted in full."""
    G, D, H, P, L, cell = _rnn_shape(mod)
    if isinstance(x, nn.utils.rnn.PackedSequence):
        x = nn.utils.rnn.pad_packed_sequence(x, batch_first=False)[0]
    x = x.detach()
    n = x.shape[-1]
    if cell:
        x = x.reshape(-1, n)  # (B, n) or (n,)
    elif x.dim() == 3:
        x = (x.transpose(0, 1) if mod.batch_first else x).reshape(-1, n)  # time-major
    else:  # unbatched (T, n)
        x = x.reshape(-1, n)
    per_unit_in = D * G * H
    rest = D * G * H * P  # the state fed back, per layer
    rest += (D * H * P) if P != H else 0  # LSTM projection
    above = (L - 1) * (D * G * H * (D * P) + rest)
    dense = n * per_unit_in + rest + above
    nz = (x != 0).sum(-1).double().cpu().numpy()
    synops = nz * per_unit_in + rest + above
    full = np.full(nz.shape, float(dense))
    counts = Counts(synops=synops, dense_synops=full, lowrank_ops=full, input_events=nz)
    return counts, (x != 0).sum(0).cpu().numpy().astype(np.float64)


def _describe_rnn(m: nn.Module) -> dict:
    G, D, H, P, L, _ = _rnn_shape(m)
    return {"kind": "dense_rnn", "in_features": m.input_size, "out_features": D * P,
            "rank": min(m.input_size, G * H), "blocks": 1, "gates": G, "hidden_size": H,
            "num_layers": L, "directions": D}  # fmt: skip


for _t in (nn.RNNBase, nn.RNNCellBase):
    DENSE_COUNTERS.add(_t, DenseCounter(_count_rnn, _describe_rnn))

#: Torch modules with hidden state across calls that simulate cannot step one time step at a
#: time: stepping them would silently treat every step as a new sequence.
_UNSTEPPABLE = (nn.RNNBase, nn.RNNCellBase)


def _dense_counter(m: nn.Module) -> DenseCounter | None:
    for cls in type(m).__mro__:
        if cls in DENSE_COUNTERS:
            return DENSE_COUNTERS.get(cls)
    return None


def simulate(
    model: nn.Module,
    xs: Tensor,
    mode: str = "event",
    *,
    reset_state: bool = True,
    fuse: bool = True,
) -> tuple[Tensor, Report]:
    """Run ``model`` over the stream ``xs`` and count operations per layer, per step.

    In ``"event"`` / ``"auto"`` mode the model is called once per time step and every event
    layer recomputes only what changed. In ``"dense"`` mode a feed-forward model gets the whole
    stream in one call with time folded into the batch (each layer one batched GEMM / conv: the
    GPU fallback); a model with recurrent layers gets the whole ``(T, B, ...)`` sequence; one
    with stateful neurons (braingate's LIF, snntorch) is stepped in time (recurrent event layers
    carrying their hidden state from step to step). Plain torch layers that stay dense are
    counted at their dense cost (``nn.Linear`` as NeuroBench does, ``nnz(x)·m``).

    A model written for torch's recurrent call — one whose ``forward`` calls a recurrent event
    layer that returns torch's ``(out, h_n)`` (``return_state=True``, what ``bg.convert`` makes
    of an ``nn.GRU`` / ``nn.LSTM`` / cell), e.g. ``out, _ = self.gru(x); return
    self.head(out[-1])``, or loops a cell over time — is fed length-1 sequences ``xs[t:t+1]`` (``(B, 1, ...)`` when its recurrent layers are
    ``batch_first``) in every mode, its layers carrying their state from step to step (an
    initial state its forward passes, ``self.gru(x, h0)``, counts at the first step only), so
    ``ys[t]`` is what the torch model returns for ``xs[:t+1]``; a length-1 time axis in its
    output (``(1, B, ...)``, ``(B, 1, ...)``) is dropped, and of a tuple only the first element
    is kept. A model with unconverted torch recurrent layers runs once on the whole sequence in
    dense mode (``(B, T, ...)`` for ``batch_first`` ones) and ``ys`` is what it returns.

    Args:
        model: any module containing event layers and / or plain torch layers.
        xs: stream ``(T, B, ...)``, time first.
        mode: ``"event"`` | ``"auto"`` | ``"dense"``.
        reset_state: reset the model's state before the run (``bg.reset``).
        fuse: in event mode, step the model through :class:`~braingate.sim.fused.EventChain`
            when all of it lowers to compiled ops (same results, less overhead).

    Returns:
        ``(ys, report)`` with ``ys`` of shape ``(T, B, ...)`` and a :class:`Report`.

    Raises:
        ValueError: a bad stream, or a module simulate cannot step one time step at a time
            (``nn.GRU`` / ``nn.LSTM`` / RNN cells in event or auto mode: convert them).
    """
    execution_mode(mode)
    if not isinstance(xs, Tensor):
        raise TypeError(f"xs must be a torch.Tensor (T, B, ...), got {type(xs).__name__}")
    if xs.dim() < 2 or xs.shape[0] == 0 or xs.shape[1] == 0:
        raise ValueError(f"xs has shape {tuple(xs.shape)}; pass a time-first stream (T, B, ...)")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    recurrent = _recurrent(model)
    feed = _Feed(model)
    if mode != "dense":
        bad = [n for n, m in model.named_modules() if isinstance(m, _UNSTEPPABLE)]
        if bad:
            raise ValueError(
                f"simulate(mode={mode!r}) steps the model one time step at a time, but "
                f"{bad[0]!r} ({type(model.get_submodule(bad[0])).__name__}) keeps hidden state "
                "that a per-step call would restart; convert it to an event layer first "
                "(bg.convert(model, rank=...)) or use mode='dense'"
            )
    if mode == "auto":
        from braingate.sim.calibrate import calibrate

        calibrate(xs.device)
    T, B = xs.shape[0], xs.shape[1]
    rec = _Recorder(model, T, B)
    with torch.no_grad(), execution(model, mode), rec:
        if reset_state:
            reset(model)
        if mode == "dense" and not (_stateful(model) or feed.chunks or feed.stepped_cells):
            rec.dense = True
            if recurrent:
                ys = feed.whole(model, xs)  # recurrent layers take the whole sequence in order
            else:
                ys = model(xs.flatten(0, 1))  # time folded into the batch: one call per layer
                ys = ys.unflatten(0, (T, B))
            rec.dense_steps(T)
        else:
            step = model
            if (mode == "event" and fuse and not feed.chunks and not why_not_fusable(model)
                    and not _reused(model)):  # fmt: skip
                step = EventChain(model)  # same computation, one call per step
            hooked = step is model
            outs = []
            # dense steps carry the recurrent layers' hidden state too; a torch forward's h0
            # starts the stream (it is passed again at every length-1 sequence)
            with streaming(model, hx_at_start_only=feed.chunks):
                for t in range(T):
                    outs.append(feed.output(step(feed.input(xs, t)), B))
                    rec.step(t, dense=mode == "dense", hooked=hooked)
            ys = _stack(outs)
    return ys, rec.report(mode)


class _Feed:
    """How a model takes one time step: ``xs[t]`` (braingate's stepping), or a length-1
    sequence (``chunks``) for a model written for torch's recurrent call."""

    def __init__(self, model: nn.Module) -> None:
        stepped = _sequential_reach(model)  # called with the model's per-step input
        torch_style = [
            m for m in model.modules()
            if isinstance(m, EventModule) and m.recurrent and getattr(m, "return_state", False)
            and not any(m is s for s in stepped)
        ]  # fmt: skip
        self.chunks = bool(torch_style)
        # cells stepped braingate's way take one step per call in dense mode too
        self.stepped_cells = any(
            isinstance(m, EventModule) and m.recurrent and getattr(m, "is_cell", False)
            for m in stepped
        )
        layouts = {
            bool(getattr(m, "batch_first", False))
            for m in model.modules()
            if (isinstance(m, nn.RNNBase) or (m in torch_style and not getattr(m, "is_cell", 0)))
        }
        if len(layouts) > 1:
            raise ValueError(
                "the model's recurrent layers disagree on batch_first, so simulate cannot tell "
                "which layout its input takes; give them the same batch_first"
            )
        self.batch_first = layouts == {True}

    def input(self, xs: Tensor, t: int) -> Tensor:
        if not self.chunks:
            return xs[t]
        return xs[t].unsqueeze(1) if self.batch_first else xs[t : t + 1]

    def output(self, y, B: int):
        y = _first(y)
        if self.chunks and isinstance(y, Tensor) and y.dim() >= 3:
            if self.batch_first and y.shape[:2] == (B, 1):
                return y[:, 0]
            if not self.batch_first and y.shape[:2] == (1, B):
                return y[0]
        return y

    def whole(self, model: nn.Module, xs: Tensor):
        """The model on the whole sequence (dense mode), time first again when it can tell."""
        if not self.batch_first:
            return _first(model(xs))
        y = _first(model(xs.transpose(0, 1)))
        if isinstance(y, Tensor) and y.dim() >= 3 and y.shape[:2] == xs.shape[1::-1]:
            y = y.transpose(0, 1)
        return y


def _reused(model: nn.Module) -> bool:
    """An event layer placed twice in the model (e.g. ``nn.Sequential(lin, relu, lin)``)."""
    seen: set[int] = set()
    for m in model.modules():
        for child in m._modules.values():  # children() would skip the repeats
            if isinstance(child, EventModule):
                if id(child) in seen:
                    return True
                seen.add(id(child))
    return False


def _sequential_reach(model: nn.Module) -> list[nn.Module]:
    """The model and the modules it reaches through ``nn.Sequential`` containers only: those
    see one step per call (a recurrent layer among them is stepped braingate's way; one inside
    a user's ``forward`` is called as that forward calls it, the torch way)."""
    out, todo = [], [model]
    while todo:
        m = todo.pop()
        out.append(m)
        if isinstance(m, nn.Sequential):
            todo.extend(m.children())
    return out


def _first(y):
    """Of torch's recurrent returns ``(out, h_n)`` the output."""
    return y[0] if isinstance(y, tuple) and y and isinstance(y[0], Tensor) else y


def _stack(outs: list):
    if not all(isinstance(o, Tensor) for o in outs):
        kinds = sorted({type(o).__name__ for o in outs})
        raise TypeError(
            f"the model returned {', '.join(kinds)} per step; simulate stacks tensors over time: "
            "make its forward return a tensor (or a tuple whose first element is one)"
        )
    return torch.stack(outs)


def _recurrent(model: nn.Module) -> bool:
    return any(
        isinstance(m, (nn.RNNBase, nn.RNNCellBase)) or (isinstance(m, EventModule) and m.recurrent)
        for m in model.modules()
    )


def _stateful(model: nn.Module) -> bool:
    """Neurons with state across calls (stepped in time even in dense mode)."""
    for m in model.modules():
        mod = type(m).__module__
        if mod.startswith("snntorch"):
            return True
        if mod.startswith("braingate") and not isinstance(m, EventModule) and hasattr(m, "mem"):
            return True
    return False


class _Recorder:
    """Collects per-step counts from event layers (protocol) and dense layers (forward hooks)."""

    def __init__(self, model: nn.Module, T: int, B: int) -> None:
        self.T, self.B = T, B
        self.events = event_modules(model)
        inner = {id(p) for m in self.events.values() for p in m.modules()}
        self.dense_layers = {
            n: (m, c)
            for n, m in model.named_modules()
            if id(m) not in inner and (c := _dense_counter(m)) is not None
        }
        names = [n for n, _ in model.named_modules() if n in self.events or n in self.dense_layers]
        self.trace = {n: {c: np.zeros(T) for c in COUNTERS} for n in names}
        self.in_units: dict[str, np.ndarray] = {}
        self.shapes: dict[str, tuple] = {}  # per-sample input shape of each event layer
        self.dense = False
        self.dense_t = 0  # steps run by simulate's dense mode (the layers did not see them)
        self._hooks: list = []
        self._t = 0
        self._cursor: dict[str, int] = {}  # next step of each dense layer (whole-sequence call)
        self.calls: dict[str, int] = {}  # calls of each event layer since the last step

    def __enter__(self) -> _Recorder:
        for name, (mod, counter) in self.dense_layers.items():
            self._hooks.append(mod.register_forward_hook(self._dense_hook(name, counter)))
        for name, mod in self.events.items():
            self._hooks.append(mod.register_forward_pre_hook(self._shape_hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._hooks:
            h.remove()

    def _shape_hook(self, name: str):
        def hook(mod, inp) -> None:
            self.calls[name] = self.calls.get(name, 0) + 1
            x = inp[0] if inp else None
            if isinstance(x, Tensor) and x.dim() >= 1:
                self.shapes[name] = tuple(x.shape[1:])

        return hook

    def _dense_hook(self, name: str, counter: DenseCounter):
        def hook(mod: nn.Module, inp, out) -> None:
            counts, units = counter.count(mod, inp[0], out)
            tr = self.trace[name]
            N = np.asarray(counts.dense_synops).size  # samples in this call (T·B or B)
            per_step = {
                f: np.broadcast_to(np.asarray(v, np.float64), (N,)).reshape(-1, self.B).mean(-1)
                for f, v in zip(COUNT_FIELDS, counts, strict=True)
                if f in tr
            }
            steps = len(next(iter(per_step.values())))
            if self.dense and steps == self.T:  # a whole-sequence call: every step
                start = 0
            elif self.dense:  # part of it: the next steps (a cell looped over time: one each)
                start = self._cursor.get(name, 0)
                self._cursor[name] = start + steps
            else:  # stepped: every call of this step counts at this step
                start = self._t
            idx = np.minimum(np.arange(start, start + steps), self.T - 1)
            for f, v in per_step.items():
                np.add.at(tr[f], idx, v)
            if units is not None:
                self.in_units[name] = self.in_units.get(name, 0) + np.asarray(units) / self.B

        return hook

    def step(self, t: int, dense: bool, hooked: bool = True) -> None:
        """Record step ``t`` (``hooked``: the layers ran as module calls, so their calls were
        counted; a compiled chain runs a Sequential, each layer once per step)."""
        for name, layer in self.events.items():
            calls = self.calls.get(name, 0) if hooked else 1
            if not dense and calls != 1:
                what = "did not run" if not calls else f"ran {calls} times"
                raise ValueError(
                    f"event layer {name!r} {what} at step {t}: an event layer keeps the state of "
                    "one stream and is counted once per step, so the model's forward must call "
                    "it exactly once per step; give each call its own layer (copy.deepcopy), or "
                    "use mode='dense'"
                )
            c = layer.dense_counts(self.shapes.get(name, ())) if dense else layer.last_counts
            if c is None:
                raise ValueError(
                    f"event layer {name!r} did not run at step {t}: its model's forward does not "
                    "call it once per step; simulate can only count layers the step reaches"
                )
            tr = self.trace[name]
            scale = calls if dense else 1  # dense: every call's MACs (0 when it did not run)
            for f, v in zip(COUNT_FIELDS, c.mean() if not dense else c, strict=True):
                if f in tr:
                    tr[f][t] = v * scale
            if dense:
                self.dense_t += 1 if name == next(iter(self.events)) else 0
        self.calls.clear()
        self._t = t + 1

    def dense_steps(self, T: int) -> None:
        for name, layer in self.events.items():
            c = layer.dense_counts(self.shapes.get(name, ()))
            # a whole-sequence call per call of the layer (a recurrent layer: once in all)
            scale = 1 if layer.recurrent else self.calls.get(name, 1)
            tr = self.trace[name]
            for f, v in zip(COUNT_FIELDS, c, strict=True):
                if f in tr:
                    tr[f][:] = v * scale
        self.calls.clear()
        self.dense_t = T
        self._t = T

    def report(self, mode: str) -> Report:
        layers, trace = {}, {}
        for name, tr in self.trace.items():
            d = {c: float(tr[c].sum()) for c in COUNTERS}
            if name in self.events:
                layer = self.events[name]
                entry = layer.report_entry(self.B, self.dense_t)
                d["resync_ops"] = float(entry.pop("resync_ops", d["resync_ops"]))
                d.update(entry)
            else:
                mod, counter = self.dense_layers[name]
                d.update(counter.describe(mod), dense=True)
                units = self.in_units.get(name, np.zeros(d.get("in_features", 0)))
                d.update(input_unit_events=np.asarray(units).tolist(), latent_unit_events=[])
            layers[name] = d
            trace[name] = {c: tr[c].tolist() for c in COUNTERS}
        total = {c: float(sum(d[c] for d in layers.values())) for c in COUNTERS}
        meta = {"steps": self.T, "batch": self.B, "mode": mode}
        return Report(total, layers, trace, meta)
