"""Chip registry contract: sources for every constant, REFERENCES §C values, overrides, errors."""

from __future__ import annotations

import numpy as np
import pytest

from hwmaps import chips
from hwmaps.chips import PHYSICAL_FIELDS, ChipSpec


def test_names_are_the_contract():
    assert chips.names() == ["loihi", "loihi2", "truenorth", "spinnaker", "speck", "generic"]


@pytest.mark.parametrize("name", chips.names())
def test_every_constant_has_a_source(name):
    spec = chips.get(name)
    for f in PHYSICAL_FIELDS:
        assert spec.sources.get(f), f"{name}.{f} has no source"
    assert set(spec.assumptions) == {
        k for k, v in spec.sources.items() if v.startswith("assumption")
    }
    assert spec.cores == len(spec.coords()) == len(spec.capacities()[0])


@pytest.mark.parametrize("name", chips.names())
def test_round_trip(name):
    spec = chips.get(name)
    assert ChipSpec.from_dict(spec.to_dict()) == spec


def test_loihi_matches_references():
    c = chips.get("loihi")
    assert (c.cores, c.neurons_per_core, c.fan_in, c.fan_out) == (128, 1024, 4096, 4096)
    assert c.synaptic_memory_bits == 128 * 1024 * 8 and c.synapses_per_core == 131072
    assert c.e_synop_j == pytest.approx(23.6e-12)
    assert (c.e_neuron_active_j, c.e_neuron_idle_j) == pytest.approx((81e-12, 52e-12))
    assert (c.e_spike_j, c.e_hop_ew_j, c.e_hop_ns_j) == pytest.approx((1.7e-12, 3e-12, 4e-12))
    assert (c.t_synop_s, c.t_hop_ew_s, c.t_hop_ns_s, c.t_neuron_s) == pytest.approx(
        (3.5e-9, 4.1e-9, 6.5e-9, 8.4e-9)
    )
    assert c.static_w == pytest.approx(3.34 / 32, rel=0.01)
    assert "Davies" in c.sources["e_synop_j"]


def test_other_presets_match_references():
    tn = chips.get("truenorth")
    assert (tn.cores, tn.mesh, tn.neurons_per_core, tn.fan_in) == (4096, (64, 64), 256, 256)
    assert tn.synapses_per_core == 256 * 256
    assert tn.e_synop_j == pytest.approx(2.3e-12) and tn.e_hop_ew_j == pytest.approx(2.3e-12)
    assert tn.static_w == pytest.approx(0.042)
    sp = chips.get("spinnaker")
    assert sp.cores_per_router == 18 and sp.e_synop_j == pytest.approx(43e-9)
    assert sp.e_neuron_active_j == pytest.approx(100e-9) and sp.static_w == 1.0
    sk = chips.get("speck")
    assert sk.cores == 9 and sk.max_dest_cores == 2 and sk.static_w == pytest.approx(0.42e-3)
    assert [k // 1024 for k in sk.core_synapses] == [16, 16, 16, 32, 32, 64, 64, 16, 16]
    assert [k // 1024 for k in sk.core_neurons] == [64, 64, 64, 32, 32, 16, 16, 16, 16]
    l2 = chips.get("loihi2")
    assert l2.neurons_per_core == 8192 and "e_synop_j" in l2.assumptions


def test_generic_is_parametrised():
    g = chips.get("generic", cores=1024, neurons_per_core=128, synapses_per_core=4096)
    assert g.cores == 1024 and g.mesh == (32, 32) and g.synapses_per_core == 4096
    assert chips.get("generic", cores=12).mesh == (3, 4)


def test_board_of_chips():
    b = chips.get("loihi", chips=4)
    assert b.board == (2, 2) and b.cores == 512
    xy = b.coords()
    assert xy[:, 0].max() == 15 and xy[:, 1].max() == 7 and set(xy[:, 2]) == {0, 1, 2, 3}
    # consecutive ids stay on one chip first
    assert (xy[:128, 2] == 0).all()


def test_override_marks_source():
    c = chips.get("loihi", e_hop_ew_j=1e-12)
    assert c.e_hop_ew_j == 1e-12 and c.sources["e_hop_ew_j"] == "user override"


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"e_synop_j": -1.0}, "e_synop_j=-1.0 must be"),
        ({"neurons_per_core": 0}, "neurons_per_core=0"),
        ({"mesh": (0, 4)}, "mesh="),
        ({"chips": 0}, "chips=0"),
        ({"bogus": 3}, "unknown override"),
        ({"static_w": float("nan")}, "static_w"),
    ],
)
def test_bad_overrides(kw, match):
    with pytest.raises(ValueError, match=match):
        chips.get("loihi", **kw)


def test_generic_zero_cores():
    with pytest.raises(ValueError, match="cores=0"):
        chips.get("generic", cores=0)


def test_unknown_chip_lists_known():
    with pytest.raises(ValueError, match="known: loihi, loihi2"):
        chips.get("tpu")


def test_capacities_heterogeneous():
    n, s = chips.get("speck", chips=2).capacities()
    assert len(n) == 18 and np.array_equal(n[:9], n[9:])


def test_one_table_of_chip_constants():
    import json

    from hwmaps.chips import presets

    table = json.loads(presets.TABLE_PATH.read_text())["chips"]
    assert set(table) == set(chips.names())
    for name in table:
        spec = chips.get(name)
        for key, value in table[name].get("values", {}).items():
            got = getattr(spec, key)
            assert (list(got) if isinstance(got, tuple) else got) == value, (name, key)


@pytest.mark.parametrize("cores", [0, -1, 2**21 + 1, 10**9])
def test_generic_core_count_is_bounded(cores):
    with pytest.raises(ValueError, match="cores="):
        chips.get("generic", cores=cores)
