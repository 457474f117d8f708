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


def test_report_energy_from_dict():
    rep = {"total": {"synops": 1000.0, "dense_synops": 5000.0, "lowrank_ops": 2000.0,
                     "input_events": 10.0, "latent_events": 5.0},
           "layers": {"0": {"out_features": 4, "rank": 2}}, "meta": {"steps": 3}}  # fmt: skip
    e = report_energy(rep, "loihi")
    assert e["synops_mJ"] == pytest.approx(1000 * 23.6e-9)
    assert e["spikes_mJ"] == pytest.approx(15 * 1.7e-9)
    assert e["neurons_mJ"] == pytest.approx(3 * 6 * 81e-9)
    assert e["total_mJ"] == pytest.approx(e["synops_mJ"] + e["spikes_mJ"] + e["neurons_mJ"])
    with pytest.raises(ValueError, match="synops"):
        report_energy({"total": {}})


def test_report_energy_of_a_simulation(rng):
    import torch

    from braingate.nn.event_linear import EventLinear
    from braingate.sim import simulate

    model = torch.nn.Sequential(EventLinear(16, 8, 4, blocks=2, threshold=0.1))
    xs = torch.cumsum(torch.from_numpy(rng.normal(0, 0.05, (20, 3, 16))).float(), 0)
    _, report = simulate(model, xs, mode="event")
    e = report_energy(report, "loihi")
    assert 0 < e["synops_mJ"] < e["dense_mJ"]  # loihi prices a MAC as one synop
    assert e["total_mJ"] > e["synops_mJ"]
