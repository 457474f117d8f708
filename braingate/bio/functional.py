"""Pure tensor rules behind the bio-inspired plasticity methods (no modules, no hidden state).

``W`` is a weight tensor, ``G`` its gradient, ``P`` the learning-rate multipliers (same shape).
Each function returns new tensors; :class:`~braingate.bio.bio_module.BioModule` writes them back.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def _tiny(t: Tensor) -> float:
    return torch.finfo(t.dtype).tiny if t.is_floating_point() else 1e-30


def crystallize_mask(grad: Tensor, weight: Tensor, thresh: float) -> Tensor:
    r"""Where a weight crystallizes.

    .. math:: |G| < \text{thresh}\cdot|W| \;\lor\; |G| > \overline{|W|}

    (the first test is ``|G|/|W| < thresh`` written without a division by zero).
    """
    g, w = grad.abs(), weight.abs()
    return (g < thresh * w) | (g > w.mean())


def crystallize(params: Tensor, grad: Tensor, weight: Tensor, thresh: float, damp: float) -> Tensor:
    """``P ← P·damp`` where :func:`crystallize_mask` holds, ``P`` elsewhere."""
    return torch.where(crystallize_mask(grad, weight, thresh), params * damp, params)


def volume_factor(weight: Tensor, base_lr: float, stability: float, variability: float) -> Tensor:
    r"""Volume-dependent gradient factor, one draw per weight.

    .. math:: v = \frac{|W|}{|W|+1},\quad \mu = \text{base\_lr}\,e^{-\text{stability}\cdot v},
              \quad f = |\mathcal{N}(\mu, \text{variability}\cdot\mu)|
    """
    w = weight.detach().abs()
    mu = base_lr * torch.exp(-stability * w / (w + 1.0))
    return (mu + variability * mu * torch.randn_like(mu)).abs()


def rejuvenation_probability(weight: Tensor, dre: float) -> Tensor:
    r"""Per-weight replacement probability :math:`e^{-\text{dre}\cdot|W|/\text{std}(W)}`."""
    w = weight.detach()
    std = w.std() if w.numel() > 1 else w.abs().mean()
    return torch.exp(-dre * w.abs() / std.clamp_min(_tiny(w)))


def rejuvenate(weight: Tensor, dre: float, sign: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Replace weights with probability :func:`rejuvenation_probability` by fresh draws.

    A fresh weight has magnitude ``|N(0, std(W))|`` and a sign that keeps the layer's sign
    balance: the unit's Dale sign when ``sign`` (broadcastable to ``W``) is given, else + with the
    probability of + among the layer's current weights. The original drew positive values only.

    Returns:
        ``(new_weight, replaced)``; ``replaced`` is the boolean mask of replaced entries.
    """
    w = weight.detach()
    replaced = torch.rand_like(w) < rejuvenation_probability(w, dre)
    std = w.std() if w.numel() > 1 else w.abs().mean()
    magnitude = (std * torch.randn_like(w)).abs()
    if sign is None:
        p_pos = (w > 0).to(w.dtype).mean()
        sign = torch.where(torch.rand_like(w) < p_pos, 1.0, -1.0).to(w.dtype)
    return torch.where(replaced, magnitude * sign, w), replaced


def temporal_step(params: Tensor, nu: float, decay: float) -> Tensor:
    r"""One TEMPORAL evolution step of ``P`` (an AR(1) process around 1, unclamped).

    .. math:: P \leftarrow 1 + d\,(P - 1) + \sqrt{1 - d^2}\;\nu\;\epsilon,\quad
              \epsilon\sim\mathcal{N}(0, 1)

    The decay pulls P toward 1, the fresh perturbation keeps the stationary spread at ν.
    """
    noise = (1.0 - decay * decay) ** 0.5 * nu * torch.randn_like(params)
    return 1.0 + decay * (params - 1.0) + noise


def activity_multipliers(base: Tensor, rate: Tensor, out_dim: int) -> Tensor:
    r"""ACTIVITY multipliers: row ``i``'s deviation from 1 rescaled by its relative activity.

    .. math:: P_{i\cdot} = 1 + (P^0_{i\cdot} - 1)\cdot
              \text{clamp}(2 - a_i/\bar a,\ 0.5,\ 1.5)

    ``a_i`` is the fraction of samples where output unit ``i`` was active; a more active unit
    gets a smaller spread (more stable), a silent one a larger one. Unclamped.
    """
    mean = rate.mean()
    rel = rate / mean if float(mean) > 0 else torch.ones_like(rate)
    shape = [1] * base.dim()
    shape[out_dim] = -1
    return 1.0 + (base - 1.0) * (2.0 - rel).clamp(0.5, 1.5).view(shape)


def split_outputs(
    y: Tensor, gamma: int, activation: Callable[[Tensor], Tensor], dim: int
) -> Tensor:
    r"""Weight splitting: sum each group of Γ adjacent outputs after the activation, repeat back.

    .. math:: y'_{k\Gamma + j} = \sum_{i=0}^{\Gamma-1} \phi(y_{k\Gamma + i}),\quad j < \Gamma

    Shape: ``y`` (..., C, ...) with ``C`` at ``dim`` divisible by Γ; output has the same shape.
    """
    dim = dim % y.dim()
    groups = y.shape[dim] // gamma
    summed = activation(y).unflatten(dim, (groups, gamma)).sum(dim + 1)
    return summed.repeat_interleave(gamma, dim=dim)


def _unit_shape(weight: Tensor, unit_dim: int) -> list[int]:
    shape = [1] * weight.dim()
    shape[unit_dim] = -1
    return shape


def dale_signs(weight: Tensor, unit_dim: int) -> Tensor:
    """One sign per unit along ``unit_dim``: the sign of the unit's weight sum (0 counts as +)."""
    dims = [d for d in range(weight.dim()) if d != unit_dim]
    total = weight.detach().sum(dim=dims) if dims else weight.detach()
    return torch.where(total >= 0, 1.0, -1.0).to(weight.dtype)


def enforce_dale(weight: Tensor, sign: Tensor, unit_dim: int) -> Tensor:
    r"""Clip weights of the wrong sign to zero: :math:`W \leftarrow \mathrm{relu}(W s)\,s`."""
    s = sign.view(_unit_shape(weight, unit_dim))
    return torch.relu(weight * s) * s


def homeostatic_scale(grad: Tensor, out_dim: int) -> Tensor:
    r"""Synaptic scaling of gradients: every postsynaptic unit gets the same gradient norm.

    .. math:: G_{i\cdot} \leftarrow G_{i\cdot}\,\frac{\overline{\|G_{k\cdot}\|}}{\|G_{i\cdot}\|}

    the mean taken over units with a non-zero gradient, so the sum of the units' gradient norms
    is kept; directions are kept; units whose gradient is zero stay zero.
    """
    dims = [d for d in range(grad.dim()) if d != out_dim]
    norms = grad.pow(2).sum(dim=dims).sqrt() if dims else grad.abs()
    live = norms > 0
    mean = norms.sum() / live.sum().clamp_min(1)
    scale = torch.where(live, mean / norms.clamp_min(_tiny(grad)), 1.0)
    return grad * scale.view(_unit_shape(grad, out_dim))
