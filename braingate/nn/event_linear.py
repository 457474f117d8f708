"""EventLinear: a gated low-rank linear layer with dense, event-driven and auto execution."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from braingate.functional.event_step import event_step
from braingate.functional.events import refuse_nonfinite
from braingate.functional.gating import block_importance, blocks_to_units, first_k_blocks
from braingate.functional.lowrank import lowrank_linear, masked_weight, orthonormal_, svd_factorize
from braingate.nn import _validate as check
from braingate.nn._event_runner import EventRunner
from braingate.nn.base import Counts, EventModule, register_event_layer, threshold_property
from braingate.runtime import RUNTIME_LOCK
from braingate.state import EventState

__all__ = ["EventLinear"]

_ACQUIRE, _RELEASE = RUNTIME_LOCK.acquire, RUNTIME_LOCK.release

# attributes whose replacement invalidates the event runtime's cached views
_CACHED = frozenset({"U", "s", "V", "bias", "threshold_raw", "latent_threshold_raw"})
# settings compiled chains depend on: each assignment bumps ``_changes``, the one counter
# a chain watches per layer (cheaper than watching each)
_WATCHED = frozenset({"_epoch", "_gate_version", "_execution", "resync_every"})


@register_event_layer("event_linear")
class EventLinear(EventModule):
    r"""Linear layer with weight ``W ≈ U·diag(s⊙g)·Vᵀ`` that can recompute only what changed.

    .. math::
        y = U\,\mathrm{diag}(s ⊙ g)\,V^\top x + b

    The rank ``R`` is split into ``blocks`` contiguous subspace blocks; the gate ``g`` switches
    whole blocks on and off, shared or per sample (:meth:`set_active_blocks`).

    Execution (attribute ``execution``):

    - ``"dense"`` (default): stateless, any leading dims, one batched GEMM for a whole
      ``(T, B, n)`` sequence. The training path and the GPU fallback.
    - ``"event"``: one time step ``(B, n)`` per call, with state. Input coordinates whose change
      since they were last sent exceeds ``threshold`` are sent (residual carried), rank units
      whose accumulated change exceeds ``latent_threshold`` are sent; gate changes are events too.
      At every step ``|y − W_g x|∞ ≤ θ‖U diag(s⊙g) Vᵀ‖∞ + θ_z‖U diag(s⊙g)‖∞`` (row-sum norms),
      with no growth over time; with ``θ = θ_z = 0`` it equals the dense path up to rounding.
      Rounding cannot accumulate either: every ``resync_every`` steps the accumulators are
      recomputed exactly from the transmitted references (``0`` disables it). Changing ``U``,
      ``s`` or ``V`` mid-stream (an optimizer step, an in-place edit, a replaced factor) triggers
      the same re-sync at the next step, so the bound holds for the new weights at once.
    - ``"auto"``: per step, the path that the device's cost model (:func:`braingate.calibrate`)
      predicts to be faster; both leave the state consistent.

    Args:
        in_features: ``n``. out_features: ``m``.
        rank: ``R`` with ``1 ≤ R ≤ min(n, m)``, divisible by ``blocks``.
        blocks: number of gate blocks.
        threshold: input θ ≥ 0 (scalar or ``(n,)`` tensor). latent_threshold: θ_z ≥ 0 (scalar or
            ``(R,)``).
        bias: learn an additive bias.
        resync_every: steps between exact re-syncs of the event state.

    Shape:
        dense: ``(..., n) -> (..., m)``; event/auto: ``(B, n) -> (B, m)``.

    Example:
        >>> import torch, braingate as bg
        >>> layer = bg.EventLinear(16, 8, rank=4, blocks=2)
        >>> x = torch.randn(3, 16)
        >>> y_dense = layer(x)
        >>> layer.execution = "event"
        >>> torch.allclose(layer(x), y_dense, atol=1e-5)
        True
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int,
        *,
        blocks: int = 1,
        threshold: float | Tensor = 0.0,
        latent_threshold: float | Tensor = 0.0,
        bias: bool = True,
        resync_every: int = 1000,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        n = check.positive_int("in_features", in_features)
        m = check.positive_int("out_features", out_features)
        check.positive_int("rank", rank)
        check.positive_int("blocks", blocks)
        if rank > min(n, m):
            raise ValueError(
                f"rank={rank} exceeds min(in_features, out_features)={min(n, m)}; "
                f"pass rank<={min(n, m)}"
            )
        if rank % blocks:
            raise ValueError(
                f"rank={rank} is not divisible by blocks={blocks}; pass a rank that is a "
                f"multiple of blocks (e.g. rank={max(blocks, rank // blocks * blocks)})"
            )
        if isinstance(resync_every, bool) or not isinstance(resync_every, int) or resync_every < 0:
            raise ValueError(f"resync_every={resync_every!r} must be an int >= 0 (0 disables)")
        self.in_features, self.out_features, self.rank, self.blocks = n, m, rank, blocks
        kw = {"device": device, "dtype": dtype}
        self.U = nn.Parameter(torch.empty(m, rank, **kw))
        self.s = nn.Parameter(torch.empty(rank, **kw))
        self.V = nn.Parameter(torch.empty(n, rank, **kw))
        if bias:
            self.bias = nn.Parameter(torch.empty(m, **kw))
        else:
            self.register_parameter("bias", None)
        self.resync_every = resync_every
        self._threshold = check.threshold("threshold", threshold, n)
        self._latent_threshold = check.threshold("latent_threshold", latent_threshold, rank)
        self._gate: Tensor | None = None  # None: all on; else bool (R,) or (B, R)
        self.register_buffer("_all_on", torch.ones(rank, dtype=torch.bool, device=device), False)
        self._runner = EventRunner(n, m, rank)
        self._gate_version = 0  # bumped by set_active_blocks: a step input, no context rebuild
        self._epoch = 0  # bumped by every other change the event runtime caches (thresholds)
        self.reset_parameters()

    # -- parameters -----------------------------------------------------------------------------
    def reset_parameters(self) -> None:
        """Orthonormal ``U``, ``V`` and equal ``s`` with the scale of ``nn.Linear``'s init."""
        with torch.no_grad():
            for p in (self.U, self.V):
                orthonormal_(p)
            # nn.Linear draws U(-1/√n, 1/√n): entry variance 1/(3n), ‖W‖_F² = m/3.
            self.s.fill_(math.sqrt(self.out_features / (3.0 * self.rank)))
            if self.bias is not None:
                bound = 1.0 / math.sqrt(self.in_features)
                self.bias.uniform_(-bound, bound)
        self.reset()

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int, **kw) -> EventLinear:
        """Factor an ``nn.Linear`` by truncated SVD; ``rank=min(n, m)`` reproduces it.

        The relative Frobenius error of the factorisation is stored as ``approx_error``.
        """
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        w = linear.weight
        kw.setdefault("device", w.device)
        kw.setdefault("dtype", w.dtype)
        layer = cls(linear.in_features, linear.out_features, rank,
                    bias=linear.bias is not None, **kw)  # fmt: skip
        U, s, V, err = svd_factorize(w, rank)
        with torch.no_grad():
            layer.U.copy_(U)
            layer.s.copy_(s)
            layer.V.copy_(V)
            if linear.bias is not None:
                layer.bias.copy_(linear.bias)
        layer.approx_error = err
        return layer

    # -- configuration --------------------------------------------------------------------------
    threshold = threshold_property(
        "threshold",
        "Input threshold θ ≥ 0 (scalar or per input coordinate); ``softplus(threshold_raw)`` "
        "while learned (:meth:`learn_thresholds`).",
    )
    latent_threshold = threshold_property(
        "latent_threshold",
        "Latent threshold θ_z ≥ 0 (scalar or per rank unit); learnable like ``threshold``.",
    )

    def threshold_sizes(self) -> dict[str, int]:
        return {"threshold": self.in_features, "latent_threshold": self.rank}

    def set_active_blocks(self, k_or_mask: int | Tensor | None) -> None:
        """Switch gate blocks: ``k`` most important blocks (by ``Σ s²``), or a bool mask.

        Args:
            k_or_mask: int ``0 ≤ k ≤ blocks``; a bool tensor ``(blocks,)`` or per sample
                ``(B, blocks)``; or None for all blocks on. In event mode the change takes
                effect at the next step: blocks switched off withdraw their contribution, blocks
                switched on add theirs.
        """
        if k_or_mask is None:
            self._gate = None
        elif isinstance(k_or_mask, Tensor):
            mask = k_or_mask
            if mask.dtype != torch.bool:
                raise TypeError(f"gate mask must be a bool tensor, got dtype {mask.dtype}")
            if mask.dim() not in (1, 2) or mask.shape[-1] != self.blocks:
                raise ValueError(
                    f"gate mask has shape {tuple(mask.shape)}; pass ({self.blocks},) or "
                    f"(B, {self.blocks}) for blocks={self.blocks}"
                )
            self._gate = blocks_to_units(mask.to(self.U.device), self.rank).clone()
        elif isinstance(k_or_mask, int) and not isinstance(k_or_mask, bool):
            if not 0 <= k_or_mask <= self.blocks:
                raise ValueError(
                    f"k={k_or_mask} active blocks is out of range; pass 0 <= k <= {self.blocks}"
                )
            mask = first_k_blocks(block_importance(self.s, self.blocks), k_or_mask)
            self._gate = blocks_to_units(mask, self.rank)
        else:
            raise TypeError(
                f"set_active_blocks takes an int, a bool tensor or None, got "
                f"{type(k_or_mask).__name__}"
            )
        self._gate_version += 1

    @property
    def active_rank(self) -> Tensor:
        """Active rank units: ``()`` for a shared gate, ``(B,)`` for a per-sample one."""
        return self.gate_units().sum(-1)

    def gate_units(self) -> Tensor:
        """The rank-unit gate: bool ``(R,)`` or ``(B, R)``."""
        return self._all_on if self._gate is None else self._gate

    def reset(self) -> None:
        """Clear the event state and its counters (parameters and gates are kept)."""
        self._runner.reset(self._gate)

    def __setattr__(self, name: str, value) -> None:
        super().__setattr__(name, value)
        d = self.__dict__
        if name in _CACHED and "_epoch" in d:
            d["_epoch"] += 1  # a replaced factor invalidates cached views
            d["_changes"] = d.get("_changes", 0) + 1
        elif name in _WATCHED:
            d["_changes"] = d.get("_changes", 0) + 1

    def register_parameter(self, name: str, param) -> None:
        super().register_parameter(name, param)
        if name in _CACHED and "_epoch" in self.__dict__:
            self.__dict__["_epoch"] += 1
            self.__dict__["_changes"] = self.__dict__.get("_changes", 0) + 1

    def refresh(self) -> None:
        """Re-read the factors, thresholds and bias at the next step, and re-sync the stream
        state to them.

        Edits through autograd-visible in-place ops, optimizer steps (fused ones included),
        attribute assignment and ``.to()`` are noticed on their own. Call this after changes
        that bypass all of them: ``p.data = ...``, ``p.data.mul_(...)``, or swapping tensors
        in with ``torch.func.functional_call``.
        """
        self._epoch += 1
        self._runner._basis = None  # the accumulators no longer match the factors: re-sync

    def _apply(self, fn, recurse: bool = True):
        # .to(), .double(), .share_memory(): parameters move or change type. The stream goes on:
        # its state is converted by the same function (the runtime re-adopts it into arrays it
        # owns at the next compiled step); cached kernel arguments are rebuilt.
        out = super()._apply(fn, recurse)
        if self._gate is not None:
            self._gate = fn(self._gate)
        self._epoch += 1
        r = self._runner
        if r.state is not None and r._mark is None:
            with torch.no_grad():
                r.state = EventState(*(fn(t) for t in r.state))
            r._views, r._hot = None, None
        else:
            r.reset(drop=True)
        return out

    def dense_weight(self) -> Tensor:
        """``U·diag(s⊙g)·Vᵀ``: ``(m, n)``, or ``(B, m, n)`` under a per-sample gate."""
        return masked_weight(self.U, self.s, self.V, self.gate_units())

    # -- forward --------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        mode = self._execution
        if mode != "dense":
            _ACQUIRE()  # threads stepping one layer are serialised (see runtime.ops); acquire /
            try:  # release directly: half the cost of a with-statement on every step
                # a steady event stream: the lean path (None if it does not apply)
                out = self._runner.hot_step(self, x, mode == "auto")
                if out is not None:
                    return out
                return self._checked_forward(x)
            finally:
                _RELEASE()
        return self._checked_forward(x)

    def _checked_forward(self, x: Tensor) -> Tensor:
        check.layer_input(x, self.in_features, self.U.dtype, self.U.device)
        if self._execution == "dense":
            refuse_nonfinite(x.detach())  # event paths check in the runner / compiled kernel
        gate = self.gate_units()
        if self._execution == "dense":
            if gate.dim() == 2 and (x.dim() < 2 or x.shape[-2] != gate.shape[0]):
                raise ValueError(
                    f"per-sample gate for B={gate.shape[0]} does not match input shape "
                    f"{tuple(x.shape)}; pass (..., {gate.shape[0]}, {self.in_features})"
                )
            return lowrank_linear(x, self.U, self.s, self.V, self.bias, self._gate)
        if x.dim() != 2:
            raise ValueError(
                f"execution={self._execution!r} takes one time step of shape (B, "
                f"{self.in_features}), got {tuple(x.shape)}; use bg.simulate(model, xs) for a "
                "(T, B, n) stream or execution='dense'"
            )
        if gate.dim() == 2 and gate.shape[0] != x.shape[0]:
            raise ValueError(
                f"per-sample gate for B={gate.shape[0]} does not match batch {x.shape[0]}; "
                "call set_active_blocks with a (B, blocks) mask for this batch"
            )
        return self._runner.step(self, x, gate, self._execution == "auto")

    # -- introspection --------------------------------------------------------------------------
    def extra_repr(self) -> str:
        th = self._threshold if isinstance(self._threshold, float) else "per-unit"
        lth = self._latent_threshold if isinstance(self._latent_threshold, float) else "per-unit"
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"rank={self.rank}, blocks={self.blocks}, threshold={th}, "
                f"latent_threshold={lth}, execution={self._execution!r}")  # fmt: skip

    # -- the event-module protocol (DESIGN §2d) --------------------------------------------------
    @property
    def last_counts(self) -> Counts | None:
        """:class:`~braingate.nn.base.Counts` of the last event / auto step, ``(B,)`` arrays."""
        c = self._runner.last_counts  # (B, 5): input, latent, synops, gate, active rank
        if c is None:
            return None
        n, m = self.in_features, self.out_features
        zeros = np.zeros(c.shape[0])
        return Counts(
            synops=c[:, 2], dense_synops=zeros + n * m, lowrank_ops=(n + m) * c[:, 4],
            input_events=c[:, 0], latent_events=c[:, 1], gate_ops=c[:, 3],
            resync_ops=zeros, neuron_ops=zeros,
        )  # fmt: skip

    def dense_counts(self, sample_shape: tuple[int, ...] = ()) -> Counts:
        """One dense step of one sample: every input and every active rank unit sent."""
        n, m = self.in_features, self.out_features
        active = float(self.active_rank.double().mean())
        ops = (n + m) * active
        return Counts(synops=ops, dense_synops=float(n * m), lowrank_ops=ops,
                      input_events=float(n), latent_events=active)  # fmt: skip

    def unit_events(self) -> tuple[np.ndarray, np.ndarray]:
        r = self._runner
        return r.input_unit_events, r.latent_unit_events

    def report_entry(self, batch: int, dense_steps: int = 0) -> dict:
        d = super().report_entry(batch, 0)
        gate = self.gate_units().expand(batch, -1).double().mean(0).cpu().numpy()
        d["input_unit_events"] = (np.asarray(d["input_unit_events"]) + dense_steps).tolist()
        d["latent_unit_events"] = (
            np.asarray(d["latent_unit_events"]) + dense_steps * gate
        ).tolist()
        d["resync_ops"] = self._runner.resync_ops / batch
        return d

    def describe(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features,
                "rank": self.rank, "blocks": self.blocks}  # fmt: skip

    def init_state(self, batch: int, like: Tensor) -> EventState:
        gate = self.gate_units().expand(batch, -1)
        return EventState.zeros(batch, self.in_features, self.out_features, gate, like.dtype,
                                like.device)  # fmt: skip

    def reference_step(self, x: Tensor, state: EventState) -> tuple[Tensor, EventState, Counts]:
        """The torch event step (:func:`~braingate.functional.event_step`), differentiable."""
        if x.dim() != 2 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"an event step takes (B, {self.in_features}), got {tuple(x.shape)}; call the "
                "model once per time step"
            )
        refuse_nonfinite(x.detach())
        gate = self.gate_units().expand(x.shape[0], -1)
        y, state, c, _ = event_step(x, state, self.U, self.s, self.V, gate, self.threshold,
                                    self.latent_threshold)  # fmt: skip
        n, m = self.in_features, self.out_features
        counts = Counts(
            synops=c.synops, dense_synops=float(n * m), lowrank_ops=(n + m) * c.active_rank,
            input_events=c.input_events, latent_events=c.latent_events, gate_ops=c.gate_ops,
        )  # fmt: skip
        return (y if self.bias is None else y + self.bias), state, counts

    # -- state dict: everything that changes the function (DESIGN §2d) ---------------------------
    def get_extra_state(self) -> dict:
        return {"threshold": self._threshold, "latent_threshold": self._latent_threshold,
                "execution": self._execution, "resync_every": self.resync_every,
                "gate": None if self._gate is None else self._gate.detach().cpu().clone(),
                "learned": sorted(k for k in self._parameters if k.endswith("_raw"))}  # fmt: skip

    def set_extra_state(self, state: dict) -> None:
        if not isinstance(state, dict) or "threshold" not in state:
            raise ValueError(
                f"EventLinear extra state must be the dict saved by get_extra_state, got "
                f"{type(state).__name__}; load a state dict saved from an EventLinear"
            )
        # a learned threshold's value is its loaded ``*_raw`` parameter: keep it, do not
        # overwrite it with the fixed value saved beside it
        for name in ("threshold", "latent_threshold"):
            size = self.in_features if name == "threshold" else self.rank
            if name + "_raw" in self._parameters:
                self.__dict__["_" + name] = check.threshold(name, state[name], size)
            else:
                setattr(self, name, state[name])
        self.execution = state["execution"]
        self.resync_every = state["resync_every"]
        gate = state.get("gate")
        if gate is not None and (gate.dtype != torch.bool or gate.shape[-1] != self.rank):
            raise ValueError(
                f"saved gate has dtype {gate.dtype} and shape {tuple(gate.shape)}; expected a "
                f"bool (..., {self.rank}) rank mask"
            )
        self._gate = None if gate is None else gate.to(self.U.device).clone()
        self._epoch += 1
        self.reset()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing, unexpected,
                              errors):  # fmt: skip
        # learned thresholds load into a layer whose thresholds are still fixed (a freshly
        # converted skeleton): the ``*_raw`` parameters are created with the saved shapes first
        for name in ("threshold", "latent_threshold"):
            key = prefix + name + "_raw"
            if key in state_dict and name + "_raw" not in self._parameters:
                raw = state_dict[key]
                size = self.in_features if name == "threshold" else self.rank
                if not isinstance(raw, Tensor) or raw.shape not in ((), (size,)):
                    errors.append(
                        f"{key} has shape {getattr(raw, 'shape', None)}; expected () or ({size},)"
                    )
                    continue
                self.register_parameter(
                    name + "_raw",
                    nn.Parameter(torch.zeros(raw.shape, dtype=self.U.dtype, device=self.U.device)),
                )
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing,
                                      unexpected, errors)  # fmt: skip
