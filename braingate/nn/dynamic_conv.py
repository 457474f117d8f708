"""``DynamicLowRankConv2d``: a gated low-rank conv whose active rank is chosen per sample."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from braingate.energy.estimator import energy_of
from braingate.functional.conv_events import _latent as conv_latent
from braingate.functional.conv_events import _mix as conv_mix
from braingate.functional.conv_events import conv_out_shape
from braingate.nn.dynamic import DynamicLowRankLayer, _ScorerObjective, sanitize_input
from braingate.nn.event_conv import EventConv2d
from braingate.scheduling.scorers import scorer_flops

__all__ = ["DynamicLowRankConv2d"]


def _pair(name: str, value: Any) -> tuple[int, int]:
    vals = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(vals) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in vals):
        raise ValueError(f"{name}={value!r} must be a positive int or two positive ints")
    return vals


class DynamicLowRankConv2d(DynamicLowRankLayer):
    """2-D convolution whose active rank (latent channels) is chosen per sample.

    The weight ``W ∈ R^{C_out×C_in×k_h×k_w}``, seen as ``W_mat ∈ R^{C_out×n}`` with
    ``n = C_in·k_h·k_w``, is factored as in :class:`~braingate.nn.event_conv.EventConv2d`
    (DESIGN §2b); sample ``i`` uses the first ``r_i`` latent channels:

    .. math::
        c_i = \\mathrm{scorer}(x_i), \\quad r_i = \\mathrm{scheduler}(c_i, \\text{budget}), \\quad
        y_i = U\\,\\mathrm{diag}(s \\odot g_i)\\,(V ∗ x_i) + b, \\quad g_{ij} = [j < r_i]

    Everything about ranks is the linear :class:`~braingate.nn.dynamic.DynamicLowRankLayer`'s
    (this class is one, with ``in_features = n`` and ``out_features = C_out``): the rank range
    ``[r_min, r_max]`` realised by gate blocks that start at ``r_min``, the scheduler and its
    budget cap, nested training (a fraction ``nested`` of training images at a random block
    end, seeing the best truncation of the current weight), inference on canonical factors so
    every prefix is the best truncation, the scorer's own objective, the extra state. What
    differs:

    - **Scorer.** The default learned scorer reads the spatial RMS of the first
      ``k = min(r_min, 16)`` latent maps, :math:`\\sqrt{\\mathrm{mean}_{p} z_{j,p}^2}`,
      ``j < k`` (maps every sample computes anyway). A scorer that reads the input gets it
      flattened, ``(B, C_in·H·W)``.
    - **Energy.** A conv applies its factored ``n → C_out`` product at each of the ``P`` output
      positions, so the per-sample energy at rank ``r`` is the estimator's price of a batch of
      ``B·P`` rows at rank ``r``, divided by ``B`` (the weights are read once per batch); the
      scorer is charged its MLP plus the ``2kP`` FLOPs of the pooling. Energies depend on the
      input size: :meth:`energy_table` uses the last input's (or ``in_spatial``).
    - **Execution.** ``self.base`` is an :class:`EventConv2d` with ``capacity`` latent
      channels in blocks of ``gate_unit``; ``execution="event"`` runs one frame ``(B, C_in, H,
      W)`` per call through its event path with the per-sample gates of this call
      (``set_active_blocks((B, blocks) mask)``), so gates change between frames as the ranks
      do.
    - **Training at the plan** (``planned``, default 0): a fraction of training images run at
      the rank the scheduler plans for them (what inference will give them), the best
      truncation as for nested images. When the scheduler keeps most images near ``r_min``
      (the energy-aware scheduler at the ADLRNS seed's ``alpha = 1``), a network trained only
      at capacity and random ends is far less accurate at inference than one trained partly at
      its plan (see ``model.planned`` of the experiments runner's ``adlrns_resnet``).

    Args:
        in_channels, out_channels, kernel_size: as ``nn.Conv2d``.
        r_max, r_min: inference rank range, ``1 <= r_min <= r_max <= min(C_out, n)``
            (defaults as the linear layer: half the full rank, an eighth of ``r_max``).
        scorer_hidden, num_gate_blocks, scheduler, estimator, scorer, rank_bias, capacity,
            nested, gate_unit: as :class:`~braingate.nn.dynamic.DynamicLowRankLayer`
            (``rank_bias`` adds a per-channel bias per realised rank).
        planned: fraction of training images at their planned rank; ``planned + nested <= 1``
            (the rest train at ``capacity``).
        stride, padding (int, pair, ``"valid"`` or ``"same"``), dilation, bias: as
            ``nn.Conv2d`` (``groups=1``, zero padding).

    Shape:
        ``x (..., C_in, H, W) -> (y (..., C_out, H', W'), ranks (N,))``, ``N`` the product of
        the leading dims (one rank per image); event execution takes ``(B, C_in, H, W)``.

    Example:
        >>> import torch
        >>> from braingate.nn.dynamic_conv import DynamicLowRankConv2d
        >>> conv = DynamicLowRankConv2d(4, 16, 3, r_max=16, r_min=4, padding=1)
        >>> y, ranks = conv(torch.randn(5, 4, 8, 8))
        >>> y.shape, ranks.shape, bool(((ranks >= 4) & (ranks <= 16)).all())
        (torch.Size([5, 16, 8, 8]), torch.Size([5]), True)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        r_max: int | None = None,
        r_min: int | None = None,
        scorer_hidden: int = 32,
        num_gate_blocks: int = 8,
        scheduler: Any = None,
        estimator: Any = None,
        *,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
        scorer: nn.Module | None = None,
        rank_bias: bool = False,
        capacity: int | None = None,
        nested: float = 0.0,
        planned: float = 0.0,
        gate_unit: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        for key, val in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(val, int) or isinstance(val, bool) or val < 1:
                raise ValueError(f"{key}={val!r} must be a positive int")
        k = _pair("kernel_size", kernel_size)
        n = in_channels * k[0] * k[1]
        full = min(out_channels, n)
        if (
            not isinstance(planned, (int, float))
            or isinstance(planned, bool)
            or not 0 <= planned <= 1
        ):
            raise ValueError(f"planned={planned!r} must be a fraction in [0, 1]")
        if isinstance(nested, (int, float)) and planned + nested > 1:
            raise ValueError(
                f"planned={planned!r} + nested={nested!r} exceeds 1; pass fractions that sum "
                "to at most 1 (the rest of the training images run at capacity)"
            )
        for key, val in (("r_max", r_max), ("r_min", r_min), ("capacity", capacity)):
            if isinstance(val, int) and not isinstance(val, bool) and val > full:
                raise ValueError(
                    f"{key}={val} exceeds min(out_channels, in_channels·k_h·k_w)="
                    f"min({out_channels}, {n})={full}; pass {key}<={full}"
                )
        super().__init__(n, out_channels, r_max, r_min, scorer_hidden, num_gate_blocks,
                         scheduler, estimator, bias=bias, scorer=scorer, rank_bias=rank_bias,
                         capacity=capacity, nested=nested, gate_unit=gate_unit, device=device,
                         dtype=dtype)  # fmt: skip
        # the linear base built by the parent holds the initial factors (the SVD of an
        # nn.Conv2d-scaled random weight); move them into a conv base of the same capacity
        flat = self.base
        conv = EventConv2d(in_channels, out_channels, k, self.capacity, stride=stride,
                           padding=padding, dilation=dilation, blocks=self._ev_blocks, bias=bias,
                           device=flat.U.device, dtype=flat.U.dtype)  # fmt: skip
        with torch.no_grad():
            for name in ("U", "s", "V"):
                getattr(conv, name).copy_(getattr(flat, name))
            if bias:
                conv.bias.copy_(flat.bias)
        self.base = conv
        # Orthonormal U, V (the SVD itself) rather than the linear layer's scaled columns
        # (FACTOR_SCALE): measured on the seed's adlrns_resnet config (digits, lr 1e-4), 30
        # epochs reach 86 % validation accuracy this way against 72 % with scaled columns.
        self.canonicalize()
        self.planned = float(planned)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = k
        self.in_spatial: tuple[int, int] | None = None  # of the last input (prices the ranks)

    # -- geometry and energy --------------------------------------------------------------------
    def positions(self, in_spatial: tuple[int, int] | None = None) -> int:
        """Output positions ``H'·W'`` for an input of ``in_spatial`` (default the last input's)."""
        sp = self.in_spatial if in_spatial is None else tuple(in_spatial)
        if sp is None:
            raise ValueError(
                "a conv's energy depends on its input size: run a forward first or pass "
                "in_spatial=(H, W)"
            )
        return math.prod(conv_out_shape(sp, self.base.geometry()))

    def scorer_energy_mJ(self, in_spatial: tuple[int, int] | None = None) -> float:
        """Per-sample energy of the scorer (mJ): its MLP, the pooling of its latent maps
        (``2kP`` FLOPs) and latent maps it reads above ``r_min`` (``2nP`` FLOPs each); 0 when
        the estimator has no price per FLOP, the scorer no FLOP count, or ``r_min == r_max``."""
        per_flop = getattr(self.estimator, "energy_per_flop_mJ", None)
        if per_flop is None or self.r_min == self.r_max:
            return 0.0
        P = self.positions(in_spatial)
        if getattr(self.scorer, "reads", "input") == "latent":
            k = int(self.scorer.units)
            flops = scorer_flops(self.scorer, k)
            if flops is None:
                return 0.0
            flops += 2.0 * k * P + max(0, k - self.r_min) * 2.0 * self.in_features * P
        else:
            sp = self.in_spatial if in_spatial is None else tuple(in_spatial)
            flops = scorer_flops(self.scorer, self.in_channels * math.prod(sp))
            if flops is None:
                return 0.0
        return flops * float(per_flop)

    def energy_table(self, batch_size: int, in_spatial: tuple[int, int] | None = None) -> Tensor:
        """Per-sample energy (mJ) at each block end, ``(K,)`` float64: the estimator's price of
        ``batch_size·P`` rows of the factored product at that rank, per sample, plus the
        scorer's; ``P`` output positions of an ``in_spatial`` input (default the last one)."""
        P = self.positions(in_spatial)
        key = (batch_size, P, id(self.estimator), id(self.scorer), tuple(self.ends.tolist()))
        if key not in self._energy_cache:
            dims = (self.in_features, self.out_features)
            extra = self.scorer_energy_mJ(in_spatial)
            vals = [energy_of(self.estimator.estimate(dims, int(r), batch_size=batch_size * P))
                    / batch_size + extra for r in self.ends.tolist()]  # fmt: skip
            self._energy_cache[key] = torch.tensor(vals, dtype=torch.float64)
        return self._energy_cache[key]

    # -- forward --------------------------------------------------------------------------------
    def _latent(self, x: Tensor, V: Tensor, s: Tensor | None, lo: int, hi: int) -> Tensor:
        """Latent maps ``s_j (V_j ∗ x)`` (unscaled when ``s`` is None) for ``lo <= j < hi``:
        ``(N, hi - lo, H', W')``."""
        z = conv_latent(x, V[:, lo:hi], self.base.geometry())
        return z if s is None else z * s[lo:hi, None, None]

    def _mix(self, z: Tensor, U: Tensor, gate: Tensor | None = None) -> Tensor:
        """``U_{<r} (g ⊙ z) + b`` with ``r = z.shape[1]`` and gate ``(N, r)`` (all on if None)."""
        b = self.base
        ones = torch.ones(z.shape[1], dtype=z.dtype, device=z.device)
        y = conv_mix(z, U[:, : z.shape[1]], ones if gate is None else gate, 2)
        return y if b.bias is None else y + b.bias[:, None, None]

    def _score_units(self) -> int:
        """Latent maps the scorer reads (0: it reads the input, or it is not run)."""
        if self.r_min == self.r_max or getattr(self.scorer, "reads", "input") != "latent":
            return 0
        return int(self.scorer.units)

    def _conv_scores(self, x: Tensor, zk: Tensor | None) -> Tensor:
        """Scores from the spatial RMS of the first latent maps ``zk`` (latent scorers), or from
        the flattened input."""
        if self.r_min == self.r_max:  # one rank to give: the scorer is not run (nor charged)
            return torch.full((x.shape[0],), 0.5, dtype=x.dtype, device=x.device)
        if getattr(self.scorer, "reads", "input") == "latent":
            return self.scorer(zk.detach().pow(2).mean((2, 3)).add(1e-12).sqrt())
        return self.scorer(x.flatten(1))

    def _check(self, x: Any) -> None:
        if not isinstance(x, Tensor) or x.dim() < 3 or x.shape[-3] != self.in_channels:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(
                f"x has shape {shape}; expected (..., {self.in_channels}, H, W) for "
                f"in_channels={self.in_channels}"
            )
        out = conv_out_shape(tuple(x.shape[-2:]), self.base.geometry())
        if min(out) < 1:
            raise ValueError(
                f"input spatial size {tuple(x.shape[-2:])} is smaller than the dilated kernel "
                f"{self.kernel_size} (padding {self.base.padding}); pass a larger input"
            )

    def forward(self, x: Tensor, budget: Any = None) -> tuple[Tensor, Tensor]:
        """Returns ``(y, ranks)``: ``ranks`` a LongTensor with the scheduler's rank per image
        (``last_ranks``, ``last_energy_mJ`` and ``last_soft_rank`` hold the same plan). In
        training the layer computes wider (``capacity``, or a nested rank per image:
        ``last_train_ranks``)."""
        self._check(x)
        x = sanitize_input(x, self)
        lead = x.shape[:-3]
        xs = x.reshape(-1, *x.shape[-3:])
        dev, b = x.device, self.base
        learning = self.training and torch.is_grad_enabled() and b.execution == "dense"
        self.in_spatial = tuple(x.shape[-2:])
        budget = self.budget if budget is None else budget
        k = self._score_units()
        if b.execution != "dense":
            if x.dim() != 4:
                raise ValueError(
                    f"execution={self.execution!r} takes one frame (B, {self.in_channels}, H, W), "
                    f"got {tuple(x.shape)}"
                )
            if self.prefixes == "canonical" and self._base_canonical != self._versions():
                self.canonicalize()
            zk = self._latent(xs, b.V, b.s, 0, k) if k else None
            ranks, _ = self._record(self._conv_scores(xs, zk), budget, x.dtype, dev)
            units = ranks.to(dev)
            gate = torch.arange(self._ev_blocks, device=dev) * self.gate_unit < units[:, None]
            b.set_active_blocks(gate)
            return self._add_rank_bias(b(xs), ranks), ranks
        if learning:
            return self._train_forward_conv(xs, budget, lead)
        # inference: compute only the latent maps some image uses
        U, s, V = self.canonical() if self.prefixes == "canonical" else (b.U, b.s, b.V)
        z = self._latent(xs, V, s, 0, k) if k else None
        planned, _ = self._record(self._conv_scores(xs, z), budget, x.dtype, dev)
        top = max(int(planned.max()), 1) if planned.numel() else 1
        if z is None:
            z = self._latent(xs, V, s, 0, top)
        else:
            z = z[:, :top] if top <= k else torch.cat([z, self._latent(xs, V, s, k, top)], dim=1)
        gate = (torch.arange(top, device=dev) < planned.to(dev)[:, None]).to(x.dtype)
        y = self._add_rank_bias(self._mix(z, U, gate), planned)
        return y.reshape(*lead, *y.shape[1:]), planned

    def _train_forward_conv(self, xs: Tensor, budget: Any, lead: tuple) -> tuple[Tensor, Tensor]:
        r"""Every latent map trains; a nested image sees the best rank-``r`` truncation of the
        current weight in the canonical basis ``V_c`` (held fixed):
        :math:`z = \mathrm{diag}(s) V^T V_c\,(g_r \odot (V_c ∗ x))`, as the linear layer."""
        b, dev, N = self.base, xs.device, xs.shape[0]
        k = self._score_units()
        needs_basis = self.nested > 0 or self.planned > 0 or k > 0
        Uc, sc, Vc = self.canonical(fresh=False) if needs_basis else (None, None, None)
        zc = None if Vc is None else self._latent(xs.detach(), Vc, None, 0, self.capacity)
        scores = self._conv_scores(xs, None if zc is None else zc[:, :k] * sc[:k, None, None])
        planned, _ = self._record(scores, budget, xs.dtype, dev)
        ranks = torch.full((N,), self.capacity, dtype=torch.long)
        u = torch.rand(N)
        at_plan = u < self.planned
        ranks[at_plan] = planned[at_plan].clamp(max=self.capacity)
        pick = (u >= self.planned) & (u < self.planned + self.nested)
        ranks[pick] = self.ends.cpu()[torch.randint(len(self.ends), (int(pick.sum()),))]
        z = self._latent(xs, b.V, b.s, 0, self.capacity)
        nested = (ranks < self.capacity).to(dev)
        if bool(nested.any()):
            keep = (torch.arange(self.capacity, device=dev) < ranks.to(dev)[:, None]).to(z.dtype)
            zn = conv_mix(zc, b.V.t() @ Vc, keep, 2) * b.s[:, None, None]
            z = torch.where(nested[:, None, None, None], zn, z)
        y = self._add_rank_bias(self._mix(z, b.U), ranks)
        if scores.requires_grad:
            lo, hi = self.r_min, self.r_max
            delta = conv_mix(zc[:, lo:hi], Uc[:, lo:hi], sc[lo:hi], 2)  # upper maps' output share
            y = _ScorerObjective.apply(y.flatten(1), scores, delta.flatten(1)).view_as(y)
        self.last_train_ranks = ranks
        return y.reshape(*lead, *y.shape[1:]), planned

    def _add_rank_bias(self, y: Tensor, ranks: Tensor) -> Tensor:
        if self.rank_bias is None:
            return y
        return y + self.rank_bias[ranks.to(y.device)][:, :, None, None]

    def forward_ranks(self, x: Tensor, ranks: Any) -> Tensor:
        """Outputs of every image at each rank of ``ranks`` (nested prefixes, one latent pass).

        .. math:: y^{(r)} = \\sum_{j<r} u_j s_j (V_j ∗ x) + b + c_r

        Args:
            x: ``(B, C_in, H, W)``.
            ranks: ints in ``[1, capacity]``.

        Shape: ``(B, C_in, H, W) -> (B, K, C_out, H', W')`` with ``K = len(ranks)``.
        """
        self._check(x)
        if x.dim() != 4:
            raise ValueError(
                f"x has shape {tuple(x.shape)}; expected (B, {self.in_channels}, H, W)"
            )
        r = torch.as_tensor(ranks, dtype=torch.long).reshape(-1)
        if r.numel() == 0 or int(r.min()) < 1 or int(r.max()) > self.capacity:
            raise ValueError(f"ranks={ranks!r} must be ints in [1, capacity={self.capacity}]")
        if self.training and torch.is_grad_enabled():
            self.prefixes = "raw"  # these very prefixes are being trained: inference uses them
        b = self.base
        z = self._latent(sanitize_input(x, self), b.V, b.s, 0, int(r.max()))
        outs = [self._add_rank_bias(self._mix(z[:, :rk], b.U), torch.full((x.shape[0],), rk))
                for rk in r.tolist()]  # fmt: skip
        return torch.stack(outs, dim=1)

    def extra_repr(self) -> str:
        b = self.base
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={b.stride}, padding={b.padding}, dilation={b.dilation}, "
                f"r_min={self.r_min}, r_max={self.r_max}, capacity={self.capacity}, "
                f"num_gate_blocks={len(self.ends)}, nested={self.nested}")  # fmt: skip
