"""BioModule: the per-layer state and methods of the bio-inspired plasticity rules.

A BioModule is attached to a layer as ``layer.bio_mod`` (by :class:`BioConverter`). It owns the
learning-rate multipliers ``P`` (non-trainable buffers, one per plastic tensor; the first is
``fuzzy_learning_rate_parameters``) and edits the layer's gradients or weights in place. All
gradient methods run between ``loss.backward()`` and ``optimizer.step()``; none is a learning rule.
The math lives in :mod:`braingate.bio.functional`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from braingate.bio import functional as F
from braingate.bio.bio_config import DEFAULT_BIO_CONFIG, BioConfig, DaleMode, Distribution
from braingate.bio.distributions import SampleContext, draw_multipliers
from braingate.bio.targets import Target, layer_spec

_P = "fuzzy_learning_rate_parameters"


class ParentRef:
    """A callable returning the layer a BioModule belongs to (deep-copies with the model)."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __call__(self) -> nn.Module:
        return self.module


def bio_forward_hook(module: nn.Module, inputs: tuple, output: Tensor) -> Tensor | None:
    """Forward hook on a converted layer: defers to ``module.bio_mod`` when it exists."""
    bio_mod = module._modules.get("bio_mod")
    return bio_mod.on_forward(output) if isinstance(bio_mod, BioModule) else None


class BioModule(nn.Module):
    """Bio-inspired plasticity state for one ``nn.Linear``, ``nn.Conv2d`` or ``EventLinear``.

    Args:
        parent: callable returning the layer (as in ``BioModule(lambda: layer)``), or the layer.
        config: the :class:`BioConfig`.
        context: the layer's position among converted layers (LAYER_ADAPTIVE uses it).

    Buffers: ``fuzzy_learning_rate_parameters`` (P of the first plastic tensor, shaped like it;
    ``fuzzy_learning_rate_parameters_V`` for EventLinear's V), ``dale_sign_<name>`` when Dale's
    principle is on, ``step`` (dynamic updates done) and the ACTIVITY statistics.
    """

    exposed_functions: tuple[str, ...] = (
        "rejuvenate_weights",
        "crystallize",
        "fuzzy_learning_rates",
        "volume_dependent_lr",
        "update_fuzzy_learning_rates",
        "enforce_dales_principle",
        "scale_grad",
    )
    grad_functions: tuple[str, ...] = (
        "crystallize",
        "fuzzy_learning_rates",
        "volume_dependent_lr",
        "scale_grad",
    )

    def __init__(
        self,
        parent: Callable[[], nn.Module] | nn.Module,
        config: BioConfig = DEFAULT_BIO_CONFIG,
        context: SampleContext = SampleContext(),  # noqa: B008 (immutable NamedTuple)
    ) -> None:
        super().__init__()
        if not isinstance(config, BioConfig):
            raise TypeError(f"config must be a BioConfig, got {type(config).__name__}")
        self.config = config
        self.context = context
        self.weight_splitting = False
        self.bind_parent(parent)
        layer = self.get_parent()
        spec = layer_spec(layer)
        if spec is None:
            raise TypeError(
                f"BioModule cannot attach to {type(layer).__name__}; supported layers: "
                "nn.Linear, nn.Conv2d, braingate EventLinear (see targets.register_layer)"
            )
        self.targets: tuple[Target, ...] = spec.targets
        self.output_dim = spec.output_dim
        with torch.no_grad():
            for t in self.targets:
                self.register_buffer(self._p_name(t), draw_multipliers(self._w(t), config, context))
            first = self._w(self.targets[0])
            if config.fuzzy_lr_distribution is Distribution.ACTIVITY:
                self.register_buffer("fuzzy_base", self.multipliers(self.targets[0].name).clone())
                channels = first.shape[self.targets[0].out_dim]
                self.register_buffer("activity_count", first.new_zeros(channels))
                self.register_buffer("activity_samples", first.new_zeros(()))
            self.register_buffer("step", torch.zeros((), dtype=torch.long, device=first.device))
            if config.apply_dales_principle:
                for t in self.targets:
                    sign = F.dale_signs(self._w(t), self._dale_dim(t))
                    self.register_buffer(f"dale_sign_{t.name}", sign)
                self.enforce_dales_principle()

    # -- plumbing ---------------------------------------------------------------------------
    def bind_parent(self, parent: Callable[[], nn.Module] | nn.Module) -> None:
        """Point this module at its layer (a callable returning it, or the layer itself)."""
        if isinstance(parent, nn.Module):
            parent = ParentRef(parent)
        if not callable(parent):
            raise TypeError(f"parent must be a layer or a callable returning it, got {parent!r}")
        self.__dict__["_parent_fn"] = parent

    def get_parent(self) -> nn.Module:
        """The layer this module modifies."""
        return self.__dict__["_parent_fn"]()

    @staticmethod
    def _p_name(t: Target | str) -> str:
        name = t if isinstance(t, str) else t.name
        return _P if name in ("weight", "U") else f"{_P}_{name}"

    def multipliers(self, name: str) -> Tensor:
        """P of the plastic tensor ``name`` (``"weight"``, ``"U"`` or ``"V"``)."""
        return getattr(self, self._p_name(name))

    def _w(self, t: Target) -> Tensor:
        return getattr(self.get_parent(), t.name)

    def _dale_dim(self, t: Target) -> int:
        presyn = self.config.dales_principle_mode is DaleMode.PRESYNAPTIC
        return t.in_dim if presyn else t.out_dim

    def records_activity(self) -> bool:
        """True when forward passes feed the ACTIVITY statistics."""
        cfg = self.config
        return cfg.fuzzy_lr_dynamic and cfg.fuzzy_lr_distribution is Distribution.ACTIVITY

    def attach_hook(self) -> None:
        """Register :func:`bio_forward_hook` on the layer once (splitting, activity)."""
        layer = self.get_parent()
        if bio_forward_hook not in layer._forward_hooks.values():
            layer.register_forward_hook(bio_forward_hook)

    def missing_grads(self) -> list[str]:
        """Names of trainable plastic tensors whose ``.grad`` is None."""
        return [
            t.name for t in self.targets if self._w(t).requires_grad and self._w(t).grad is None
        ]

    def _grads(self, method: str) -> list[tuple[Target, Tensor, Tensor]]:
        missing = self.missing_grads()
        if missing:
            raise ValueError(
                f"{method}() needs gradients but {type(self.get_parent()).__name__}."
                f"{missing[0]}.grad is None; call loss.backward() before {method}()"
            )
        return [
            (t, self._w(t), self._w(t).grad) for t in self.targets if self._w(t).grad is not None
        ]

    def on_forward(self, output: Tensor) -> Tensor | None:
        """Forward-hook body: record activity, then apply weight splitting when enabled."""
        if self.records_activity():
            with torch.no_grad():
                dim = self.output_dim % output.dim()
                active = (output.detach() > 0).to(self.activity_count.dtype)
                other = [d for d in range(output.dim()) if d != dim]
                self.activity_count += active.sum(dim=other) if other else active
                self.activity_samples += active.numel() / max(active.shape[dim], 1)
        if self.weight_splitting:
            cfg = self.config
            gamma, act = cfg.weight_splitting_Gamma, cfg.weight_splitting_activation_function
            return F.split_outputs(output, gamma, act, self.output_dim)
        return None

    # -- the methods exposed on the model ---------------------------------------------------
    @torch.no_grad()
    def fuzzy_learning_rates(self) -> None:
        """``G ← G ⊙ P`` for every plastic tensor (advancing dynamic P first when enabled)."""
        grads = self._grads("fuzzy_learning_rates")
        if self.config.fuzzy_lr_dynamic:
            self._advance()
        for t, _, g in grads:
            g.mul_(self.multipliers(t.name))

    @torch.no_grad()
    def update_fuzzy_learning_rates(self, inputs: Tensor | None = None) -> None:
        """One dynamic step of P (TEMPORAL / ACTIVITY, when ``fuzzy_lr_dynamic``).

        Args:
            inputs: optional batch for the layer; a no-grad forward pass records its activity.
        """
        if inputs is not None:
            self.get_parent()(inputs)
        if self.config.fuzzy_lr_dynamic:
            self._advance()

    def _advance(self) -> None:
        cfg = self.config
        self.step += 1
        lo, hi = cfg.fuzzy_lr_min, cfg.fuzzy_lr_max
        if cfg.fuzzy_lr_distribution is Distribution.TEMPORAL:
            if int(self.step) % cfg.fuzzy_lr_update_freq == 0:
                for t in self.targets:
                    p = self.multipliers(t.name)
                    nu = cfg.fuzzy_learning_rate_factor_nu
                    p.copy_(F.temporal_step(p, nu, cfg.fuzzy_lr_decay).clamp(lo, hi))
        elif (
            cfg.fuzzy_lr_distribution is Distribution.ACTIVITY and float(self.activity_samples) > 0
        ):
            t = self.targets[0]
            rate = self.activity_count / self.activity_samples
            p = F.activity_multipliers(self.fuzzy_base, rate, t.out_dim)
            self.multipliers(t.name).copy_(p.clamp(lo, hi))

    @torch.no_grad()
    def crystallize(self) -> None:
        """``P ← P·dampening`` where ``|G| < crystal_thresh·|W|`` or ``|G| > mean|W|``."""
        cfg = self.config
        for t, w, g in self._grads("crystallize"):
            p = self.multipliers(t.name)
            p.copy_(F.crystallize(p, g, w, cfg.crystal_thresh, cfg.dampening_factor))

    @torch.no_grad()
    def volume_dependent_lr(self) -> None:
        """``G ← G ⊙ |N(μ, lr_variability·μ)|``, ``μ = base_lr·exp(−stability·|W|/(|W|+1))``."""
        cfg = self.config
        for _, w, g in self._grads("volume_dependent_lr"):
            g.mul_(F.volume_factor(w, cfg.base_lr, cfg.stability_factor, cfg.lr_variability))

    @torch.no_grad()
    def scale_grad(self) -> None:
        """Homeostatic synaptic scaling: each postsynaptic unit's gradient gets the mean norm."""
        for t, _, g in self._grads("scale_grad"):
            g.copy_(F.homeostatic_scale(g, t.out_dim))

    @torch.no_grad()
    def rejuvenate_weights(self) -> int:
        """Replace weights with probability ``exp(−dre·|W|/std(W))``; returns how many."""
        total = 0
        for t in self.targets:
            w = self._w(t)
            sign = None
            if self.config.apply_dales_principle:
                dim = self._dale_dim(t)
                shape = [1] * w.dim()
                shape[dim] = -1
                sign = getattr(self, f"dale_sign_{t.name}").view(shape).expand_as(w)
            new, replaced = F.rejuvenate(w, self.config.rejuvenation_parameter_dre, sign)
            w.copy_(new)
            total += int(replaced.sum())
        self._weights_changed()
        return total

    def _weights_changed(self) -> None:
        # An EventLinear running in event mode caches accumulated state computed with the old
        # factors: clear it so its next step starts from the new weights.
        layer = self.get_parent()
        if getattr(layer, "execution", "dense") != "dense" and callable(
            getattr(layer, "reset", None)
        ):
            layer.reset()

    @torch.no_grad()
    def enforce_dales_principle(self) -> None:
        """Clip every weight of the wrong sign to zero (``W ← relu(W·s)·s``)."""
        if not self.config.apply_dales_principle:
            raise ValueError(
                "enforce_dales_principle() needs apply_dales_principle=True in the BioConfig; "
                "convert the model with BioConverter(apply_dales_principle=True)"
            )
        for t in self.targets:
            w = self._w(t)
            w.copy_(F.enforce_dale(w, getattr(self, f"dale_sign_{t.name}"), self._dale_dim(t)))
        self._weights_changed()

    def extra_repr(self) -> str:
        cfg = self.config
        return (
            f"distribution={cfg.fuzzy_lr_distribution.name}, targets={[t.name for t in self.targets]}, "
            f"weight_splitting={self.weight_splitting}, dale={cfg.apply_dales_principle}"
        )
