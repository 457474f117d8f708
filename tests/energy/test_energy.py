"""EnergyModel presets, PerfEstimator and Report energy."""

from __future__ import annotations

import pytest

from braingate.energy import (
    EnergyModel,
    PerfEstimator,
    energy_model,
    energy_model_names,
    report_energy,
)


@pytest.mark.parametrize("name", energy_model_names())
def test_every_preset_cites_a_source(name):
    em = energy_model(name)
    assert em.sources and all(s.strip() for s in em.sources)
    assert em.mac_pJ > 0 and em.synop_pJ > 0


def test_preset_values_match_references():
    assert energy_model("horowitz45_fp32").mac_pJ == pytest.approx(4.6)
    assert energy_model("loihi").synop_pJ == pytest.approx(23.6)
    assert energy_model("h100_fp32").flop_pJ == pytest.approx(10.5)


def test_unknown_preset_lists_known():
    with pytest.raises(ValueError, match="known: .*loihi"):
        energy_model("tpu9000")


def test_energy_model_rejects_negative():
    with pytest.raises(ValueError, match="synop_pJ"):
        EnergyModel("bad", -1.0, 0, 0, 1)


def test_estimate_counts_and_monotone():
    est = PerfEstimator({})
    a = est.estimate((512, 256), 64, batch_size=32)
    assert set(a) >= {"flops", "bytes", "latency_s", "energy_mJ"}
    assert a["flops"] == 32 * (2 * 64 * 768 + 64 + 256)
    e = [est.estimate((512, 256), r)["energy_mJ"] for r in (0, 8, 16, 64)]
    assert e == sorted(e) and e[0] < e[-1]
    # 10.5 pJ per FLOP default (H100 FP32 datasheet ratio): mJ = FLOPs * 10.5e-9
    assert a["energy_mJ"] == pytest.approx(a["flops"] * 10.5e-9)


def test_profile_overrides_and_partial_profile():
    est = PerfEstimator({"gpu_cores": 5120, "memory_bandwidth": 1e12})
    assert est.peak_flops == pytest.approx(2 * 5120 * 1.41e9)
    seed = PerfEstimator({"energy_per_flop": 1e-6})
    assert seed.estimate((10, 10), 2)["energy_mJ"] == pytest.approx(
        seed.estimate((10, 10), 2)["flops"] * 1e-6
    )


@pytest.mark.parametrize("dims", [(0, 5), (5,), "ab", (3.0, 4), None])
def test_bad_layer_dims(dims):
    with pytest.raises(ValueError, match="layer_dims"):
        PerfEstimator().estimate(dims, 1)


def test_bad_rank_and_profile():
    with pytest.raises(ValueError, match="rank=9"):
        PerfEstimator().estimate((8, 4), 9)
    with pytest.raises(TypeError, match="hardware_profile"):
        PerfEstimator([1, 2])
    with pytest.raises(ValueError, match="peak_flops"):
        PerfEstimator({"peak_flops": 0})


def test_subclass_as_in_the_guide():
    class Custom(PerfEstimator):
        def estimate(self, layer_dims, rank, batch_size=1, **kw):
            n, m = layer_dims
            return batch_size * (n * rank + rank * m) * 1e-6

    est = Custom({"gpu_efficiency": 0.85})
    assert est.hardware_profile["gpu_efficiency"] == 0.85
    assert est.energy_per_sample((512, 256), [64], batch_size=32)[0] == pytest.approx(
        768 * 64 * 1e-6
    )


def test_report_energy_from_dict_per_op_model():
    rep = {"total": {"synops": 1000.0, "dense_synops": 5000.0, "lowrank_ops": 2000.0,
                     "input_events": 10.0, "latent_events": 5.0},
           "layers": {"0": {"out_features": 4, "rank": 2}}, "meta": {"steps": 3}}  # fmt: skip
    e = report_energy(rep, "horowitz45_fp32")
    assert (e["unit"], e["kind"], e["steps"]) == ("J", "per-op", 3)
    s = e["per_sample"]
    assert s["synops"] == pytest.approx(1000 * 4.6e-12)
    assert s["neurons"] == pytest.approx(3 * 6 * 0.9e-12)
    assert s["static"] == 0.0 and s["total"] == pytest.approx(s["dynamic"])
    assert s["dynamic"] == pytest.approx(s["synops"] + s["neurons"] + s["spikes"])
    assert s["dense"] == pytest.approx(5000 * 4.6e-12)
    assert e["per_step"]["synops"] == pytest.approx(s["synops"] / 3)
    with pytest.raises(ValueError, match="synops"):
        report_energy({"total": {}})
    with pytest.raises(ValueError, match="neither a chip .*known: "):
        report_energy(rep, "tpu9000")


def test_report_energy_knows_every_chip_of_the_table():
    import hwmaps
    from braingate.energy.chips import chip_costs, chip_names

    assert chip_names() == sorted(hwmaps.chips.names())  # one table: both know the same chips
    rep = {"total": {"synops": 10.0, "input_events": 1.0, "latent_events": 1.0},
           "layers": {}, "meta": {"steps": 2}}  # fmt: skip
    for name in chip_names():
        c, spec = chip_costs(name), hwmaps.chips.get(name)
        assert (c.e_synop_j, c.e_spike_j, c.static_w, c.time_step_s) == (
            spec.e_synop_j, spec.e_spike_j, spec.static_w, spec.time_step_s)  # fmt: skip
        e = report_energy(rep, name)
        assert e["kind"] == "chip" and e["per_sample"]["synops"] == pytest.approx(10 * c.e_synop_j)
    assert report_energy(rep, "speck")["per_sample"]["static"] == 0.0  # asynchronous chip
    loihi = report_energy(rep, "loihi")["per_sample"]
    assert loihi["static"] == pytest.approx(0.104 * 1e-3 * 2)  # 104 mW x 2 steps of 1 ms
    with pytest.raises(ValueError, match="unknown chip 'tpu'.*loihi"):
        chip_costs("tpu")


@pytest.fixture
def event_run(rng):
    import torch

    from braingate.nn.event_linear import EventLinear
    from braingate.sim import simulate

    model = torch.nn.Sequential(
        EventLinear(16, 12, 4, blocks=2, threshold=0.1, latent_threshold=0.05),
        torch.nn.ReLU(),
        EventLinear(12, 3, 2, threshold=0.05, latent_threshold=0.05),
    )
    xs = torch.cumsum(torch.from_numpy(rng.normal(0, 0.1, (20, 3, 16))).float(), 0)
    _, report = simulate(model, xs, mode="event")
    return model, report


def test_report_energy_of_a_simulation(event_run):
    _, report = event_run
    e = report_energy(report, "loihi")
    s, t = e["per_sample"], e["per_step"]
    assert 0 < s["synops"] < s["dense"]  # loihi prices a MAC as one synop
    assert s["total"] > s["dynamic"] > s["synops"]
    assert all(t[k] == pytest.approx(s[k] / 20) for k in s)


def test_report_energy_agrees_with_hwmaps_on_one_core(event_run):
    """Same run, same chip table: on a placement that keeps every block on one core (no NoC,
    one delivery per event), braingate's chip energy equals hwmaps' estimate term by term."""
    import dataclasses

    import hwmaps

    model, report = event_run
    net = hwmaps.extract(model, report)
    chip = dataclasses.replace(hwmaps.chips.get("generic", cores=4, neurons_per_core=4096,
                                                synapses_per_core=1 << 20))  # fmt: skip
    tiles = hwmaps.partition.make_tiles(net, chip)
    placement = hwmaps.Placement(net, chip, tuple(tiles), (0,) * len(tiles), "one-core")
    est = hwmaps.estimate(placement)
    mine = report_energy(report, "generic")["per_step"]
    for key in ("synops", "neurons", "spikes", "static"):
        assert mine[key] == pytest.approx(est.breakdown[key], rel=1e-9), key
    assert est.breakdown["noc"] == 0.0
    assert mine["dynamic"] == pytest.approx(est.total_j - est.breakdown["static"], rel=1e-9)


def test_seed_hardware_keys_are_used():
    """The ADLRNS seed's `hardware:` section (gpu_type V100, flops_per_mac 2,
    energy_per_flop 1e-6) is read by the estimator, key by key."""
    v100 = PerfEstimator({"gpu_type": "V100"})
    assert v100.peak_flops == pytest.approx(15.7e12)
    assert v100.memory_bandwidth == pytest.approx(900e9)
    assert v100.energy_per_flop_mJ == pytest.approx(300 / 15.7e12 * 1e3)  # TDP / peak
    seed = PerfEstimator({"gpu_type": "V100", "flops_per_mac": 2, "energy_per_flop": 1e-6})
    assert seed.energy_per_flop_mJ == 1e-6 and seed.peak_flops == pytest.approx(15.7e12)
    one = PerfEstimator({"flops_per_mac": 1})
    two = PerfEstimator({"flops_per_mac": 2})
    n, m, r = 64, 32, 8
    assert two.estimate((n, m), r)["flops"] - one.estimate((n, m), r)["flops"] == r * (n + m)
    assert two.estimate_dense((n, m))["flops"] == 2 * n * m + m
    assert PerfEstimator({"gpu_type": "a100"}).energy_model.name == "a100_fp32"
    given = PerfEstimator({"gpu_type": "H100", "gpu_cores": 100})  # keys given win
    assert given.peak_flops == pytest.approx(2 * 100 * 1.41e9)


def test_hardware_profile_check_refuses_unknown_keys():
    from braingate.energy import estimator

    estimator.check_hardware_profile({"gpu_type": "V100", "flops_per_mac": 2,
                                      "energy_per_flop": 1e-6})  # fmt: skip
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['gpu_typo'\].*reads"):
        estimator.check_hardware_profile({"gpu_typo": "V100"})
    with pytest.raises(ValueError, match="gpu_type='TPU' is unknown; known: V100"):
        PerfEstimator({"gpu_type": "TPU"})
    with pytest.raises(ValueError, match="flops_per_mac"):
        PerfEstimator({"flops_per_mac": 0})
    assert PerfEstimator({"gpu_efficiency": 0.85}).hardware_profile["gpu_efficiency"] == 0.85
