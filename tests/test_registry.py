"""The one registry helper, and a contract per braingate registry built on it.

Each registry: a duplicate name raises through its public register function (and the
registry is unchanged), an unknown name lists the known ones, and every entry works.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

import braingate
import braingate.lora as L
from braingate._registry import Registry
from braingate.bio import distributions as bio_dist
from braingate.bio import targets as bio_targets
from braingate.bio.bio_config import Distribution
from braingate.energy import costs
from braingate.lora.variants import registry as lora_reg
from braingate.scheduling import RankScheduler, register_scheduler, scheduler_names
from braingate.scheduling import base as sched_base

# --- the helper itself ---------------------------------------------------------------------


def test_registry_add_register_get_names_contains_iter():
    reg: Registry = Registry("widget")
    assert reg.add("b", 2) == 2

    @reg.register("a")
    def make_a():
        return 1

    assert reg.get("a") is make_a and reg.get("b") == 2
    assert reg.names() == ["b", "a"]  # registration order
    assert list(reg) == ["b", "a"] and len(reg) == 2
    assert "a" in reg and "zzz" not in reg and [1] not in reg  # unhashable: False, no error
    assert reg.remove("b") == 2 and reg.names() == ["a"]


def test_registry_duplicate_raises_and_keeps_the_first():
    reg: Registry = Registry("widget")
    reg.add("a", 1)
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        reg.add("a", 2)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(3)
    assert reg.get("a") == 1


def test_registry_unknown_lists_known_sorted():
    reg: Registry = Registry("widget")
    reg.add("zeta", 1)
    reg.add("alpha", 2)
    with pytest.raises(ValueError, match=r"unknown widget 'beta'; known: alpha, zeta"):
        reg.get("beta")
    with pytest.raises(ValueError, match=r"known: \(none\)"):
        Registry("empty").get("x")
    with pytest.raises(ValueError, match="unknown widget"):
        reg.get(["unhashable"])
    with pytest.raises(ValueError, match="unknown widget"):
        reg.remove("beta")


def test_registry_bad_arguments():
    with pytest.raises(TypeError, match="not hashable"):
        Registry("widget").add(["x"], 1)
    with pytest.raises(ValueError, match="kind="):
        Registry("")


def test_registry_non_string_keys_are_labelled_by_name():
    reg: Registry = Registry("thing")
    reg.add(Distribution.GAMMA, 1)
    reg.add(nn.Linear, 2)
    with pytest.raises(ValueError, match="known: GAMMA, Linear"):
        reg.get(Distribution.BETA)


# --- one contract per braingate registry ----------------------------------------------------


class _Sched(RankScheduler):
    def schedule_rank(self, complexity_scores, budget=None, **kw):
        return torch.full_like(complexity_scores, 1, dtype=torch.long)


def _dup_scheduler():
    register_scheduler(scheduler_names()[0])(_Sched)


def _dup_energy():
    name = costs.energy_model_names()[0]
    costs.register_energy_model(costs.EnergyModel(name, 1.0, 1.0, 1.0, 1.0))


def _dup_distribution():
    bio_dist.register_distribution(Distribution.UNIFORM)(lambda w, nu, ctx: w)


def _dup_layer():
    bio_targets.register_layer(nn.Linear, bio_targets.LayerSpec(bio_targets._WEIGHT, -1))


def _dup_variant():
    @L.register_variant(lora_reg.VariantConfig)
    class Again:  # a stand-in strategy, never used
        pass


# (registry, register a taken name, look up an unknown name, match for the unknown error)
CONTRACTS = {
    "scheduler": (
        sched_base.REGISTRY,
        _dup_scheduler,
        lambda: RankScheduler("greedy", r_min=1, r_max=2),
        "unknown scheduler 'greedy'; known: budget, complexity",
    ),
    "energy": (
        costs.REGISTRY,
        _dup_energy,
        lambda: costs.energy_model("nope"),
        "unknown energy model 'nope'; known: .*loihi",
    ),
    "distribution": (
        bio_dist.REGISTRY,
        _dup_distribution,
        lambda: bio_dist.get_sampler("uniform"),  # a string, not the enum member
        "unknown bio distribution 'uniform'; known: ACTIVITY, BASELINE, BETA",
    ),
    "layer": (
        bio_targets.REGISTRY,
        _dup_layer,
        lambda: bio_targets.REGISTRY.get(nn.GRU),
        "unknown bio layer type .*GRU.*; known: .*Conv2d.*Linear",
    ),
    "variant": (
        lora_reg.REGISTRY,
        _dup_variant,
        lambda: L.LoRAConfig(variant="nope"),
        "unknown LoRA variant 'nope'; known variants: adalora",
    ),
}


@pytest.mark.parametrize("which", list(CONTRACTS))
def test_duplicate_raises_and_leaves_registry_unchanged(which):
    reg, dup, _, _ = CONTRACTS[which]
    L.variants()  # make sure the built-in variants are loaded before the snapshot
    before = {k: reg.get(k) for k in reg.names()}
    with pytest.raises(ValueError, match="already registered"):
        dup()
    assert {k: reg.get(k) for k in reg.names()} == before


@pytest.mark.parametrize("which", list(CONTRACTS))
def test_unknown_lists_known_names(which):
    _, _, unknown, match = CONTRACTS[which]
    with pytest.raises(ValueError, match=match):
        unknown()


def test_register_functions_reject_wrong_types():
    with pytest.raises(ValueError, match="name=''"):
        register_scheduler("")
    with pytest.raises(TypeError, match="not a RankScheduler subclass"):
        register_scheduler("brand_new")(object)
    assert "brand_new" not in sched_base.REGISTRY
    with pytest.raises(TypeError, match="not an EnergyModel"):
        costs.register_energy_model({"name": "x"})
    with pytest.raises(TypeError, match="not a Distribution"):
        bio_dist.register_distribution("uniform")
    with pytest.raises(TypeError, match="not an nn.Module subclass"):
        bio_targets.register_layer(int, bio_targets.LayerSpec(bio_targets._WEIGHT, -1))
    with pytest.raises(TypeError, match="must be a LayerSpec"):
        bio_targets.register_layer(nn.GRU, ("weight",))
    assert nn.GRU not in bio_targets.REGISTRY
    with pytest.raises(TypeError, match="not a VariantConfig subclass"):
        L.register_variant(dict)


# --- every entry works ------------------------------------------------------------------------


@pytest.mark.parametrize("name", scheduler_names())
def test_every_scheduler_builds_and_schedules(name):
    kw = {"target_mJ": 0.5} if name == "budget" else {}
    s = RankScheduler(name, r_min=2, r_max=8, **kw)
    assert s.name == name
    cand = torch.tensor([2, 4, 8])
    r = torch.as_tensor(s.schedule_rank(torch.rand(5), candidates=cand, energy=cand / 8.0))
    assert r.shape == (5,) and ((r >= 2) & (r <= 8)).all()


@pytest.mark.parametrize("name", costs.energy_model_names())
def test_every_energy_preset_is_finite_and_cited(name):
    m = costs.energy_model(name)
    assert m.name == name and m.sources
    for value in (m.synop_pJ, m.neuron_update_pJ, m.spike_pJ, m.mac_pJ, m.byte_pJ):
        assert math.isfinite(value) and value >= 0


@pytest.mark.parametrize("dist", list(Distribution))
def test_every_distribution_has_a_sampler_with_mean_one(dist):
    torch.manual_seed(0)
    w = torch.randn(200, 100)
    p = bio_dist.get_sampler(dist)(w, 0.16, bio_dist.SampleContext(0, 2))
    assert p.shape == w.shape and torch.isfinite(p).all()
    assert abs(p.mean().item() - 1.0) < 0.02


def _instance(layer_type: type[nn.Module]) -> nn.Module:
    if layer_type is nn.Linear:
        return nn.Linear(6, 5)
    if layer_type is nn.Conv2d:
        return nn.Conv2d(3, 5, 3)
    return layer_type(6, 5, 2)  # EventLinear(in, out, rank)


def test_every_layer_target_resolves():
    types = bio_targets.supported_types()
    assert {nn.Linear, nn.Conv2d} <= set(types) and len(types) >= 3
    for layer_type in types:
        m = _instance(layer_type)
        spec = bio_targets.layer_spec(m)
        assert spec is bio_targets.REGISTRY.get(layer_type)
        for t in spec.targets:
            assert isinstance(getattr(m, t.name), torch.Tensor)
        assert bio_targets.out_features(m) == 5


def test_layer_target_found_through_a_subclass():
    class MyLinear(nn.Linear):
        pass

    assert bio_targets.layer_spec(MyLinear(2, 3)) is bio_targets.REGISTRY.get(nn.Linear)
    assert bio_targets.layer_spec(nn.GRU(2, 3)) is None


@pytest.mark.parametrize("name", L.variants())
def test_every_variant_resolves_to_its_config_and_strategy(name):
    cfg_cls, strategy_cls = L.get_variant(name)
    assert cfg_cls.name == name and strategy_cls.name == name
    assert lora_reg.REGISTRY.get(name) == (cfg_cls, strategy_cls)


# --- every Registry in braingate, found by a sweep (new ones are covered without a new row) ---


def _all_registries() -> list[tuple[str, Registry]]:
    import importlib

    root = Path(braingate.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "__main__.py" or "Registry(" not in path.read_text(encoding="utf-8"):
            continue
        rel = path.relative_to(root.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        try:
            module = importlib.import_module(name)
        except ImportError:  # an optional dependency is missing: nothing registered there
            continue
        for attr, value in vars(module).items():
            if isinstance(value, Registry):
                found.append((f"{name}.{attr}", value))
    return found


ALL_REGISTRIES = _all_registries()


def test_the_sweep_finds_every_migrated_registry():
    names = {n for n, _ in ALL_REGISTRIES}
    expected = {
        "braingate.scheduling.base.REGISTRY",
        "braingate.energy.costs.REGISTRY",
        "braingate.bio.distributions.REGISTRY",
        "braingate.bio.targets.REGISTRY",
        "braingate.lora.variants.registry.REGISTRY",
    }
    assert expected <= names


@pytest.mark.parametrize(("name", "reg"), ALL_REGISTRIES, ids=[n for n, _ in ALL_REGISTRIES])
def test_every_registry_refuses_duplicates_and_lists_known_names(name, reg):
    L.variants()  # load lazily registered entries first
    keys = reg.names()
    if not keys:
        pytest.skip(f"{name} is empty until something registers into it")
    before = {k: reg.get(k) for k in keys}
    with pytest.raises(ValueError, match="already registered"):
        reg.add(keys[0], object())
    assert {k: reg.get(k) for k in reg.names()} == before
    with pytest.raises(ValueError, match=rf"unknown {reg.kind} .*; known: "):
        reg.get("no-such-entry-anywhere")
