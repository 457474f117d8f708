"""Chip presets. Each value cites REFERENCES.md §C, or is flagged as an assumption."""

from __future__ import annotations

from hwmaps.chips.spec import PHYSICAL_FIELDS, ChipSpec

DAVIES = "Davies et al., IEEE Micro 38(1) 2018, Table 2 (pre-silicon, 0.75 V)"
FRADY = "derived from Frady et al., NICE 2020, Table 1 (3.34 W / 32 chips)"
INTEL_L2 = "Intel Loihi 2 brief 2021; lava-nc/lava magma/compiler constants"
MEROLLA = "Merolla et al., Science 2014 (+SM)"
AKOPYAN = "Akopyan et al., TCAD 2015"
SHARP = "Sharp et al., J. Neurosci. Methods 2012; Painkras et al. 2012"
SINABS = "sinabs/backend/dynapcnn/chips/dynapcnn.py; Yao et al., Nat. Commun. 2024"


def _finish(spec: dict, sources: dict[str, str]) -> ChipSpec:
    """Build a ChipSpec; fields whose source starts with 'assumption' are listed as such."""
    missing = [f for f in PHYSICAL_FIELDS if f not in sources]
    if missing:  # a programming error in this file, not user input
        raise RuntimeError(f"preset {spec['name']} lacks sources for {missing}")
    assumed = tuple(k for k, v in sources.items() if v.startswith("assumption"))
    return ChipSpec(**spec, sources=sources, assumptions=assumed)


def loihi() -> ChipSpec:
    """Intel Loihi (one chip): 128 neurocores, 4 per router tile on an 8×4 mesh."""
    spec = dict(
        name="loihi", mesh=(8, 4), cores_per_router=4, neurons_per_core=1024,
        synaptic_memory_bits=128 * 1024 * 8, weight_bits=8, fan_in=4096, fan_out=4096,
        max_dest_cores=None,
        e_synop_j=23.6e-12, e_neuron_active_j=81e-12, e_neuron_idle_j=52e-12,
        e_spike_j=1.7e-12, e_hop_ew_j=3.0e-12, e_hop_ns_j=4.0e-12, e_offchip_j=30e-12,
        static_w=0.104, t_synop_s=3.5e-9, t_neuron_s=8.4e-9, t_hop_ew_s=4.1e-9,
        t_hop_ns_s=6.5e-9, t_offchip_s=100e-9, time_step_s=1e-3,
    )  # fmt: skip
    src = {k: DAVIES for k in PHYSICAL_FIELDS}
    src.update(
        mesh="assumption: 128 cores as 32 router tiles of 4 (Davies 2018 describes tiles; "
        "the 8x4 layout is not in REFERENCES)",
        cores_per_router="assumption: 4 cores per tile (see mesh)",
        weight_bits="Davies 2018: 1-9 bit weights; 8 bits chosen (assumption of the user's "
        "precision): 128 KB -> 131,072 synapses",
        max_dest_cores="Davies 2018: no per-core destination limit beyond fan-out",
        e_offchip_j="assumption: chip-to-chip link energy unpublished; 10x an E-W hop",
        t_offchip_s="assumption: chip-to-chip link latency unpublished (100 ns)",
        static_w=FRADY,
        time_step_s="Frady et al., NICE 2020: 1 ms throttled time step",
    )
    return _finish(spec, src)


def loihi2() -> ChipSpec:
    """Intel Loihi 2: 128 neurocores, up to 8,192 neurons each; energies are assumptions."""
    base = loihi()
    spec = {k: getattr(base, k) for k in PHYSICAL_FIELDS}
    spec.update(name="loihi2", neurons_per_core=8192)
    note = "assumption: Loihi 2 per-event energies/latencies unpublished; Loihi 1 value reused"
    src = {k: note for k in PHYSICAL_FIELDS if k.startswith(("e_", "t_"))}
    src.update(
        mesh="assumption: 128 cores as 32 tiles of 4 like Loihi (" + INTEL_L2 + ")",
        cores_per_router="assumption: 4 cores per tile like Loihi",
        neurons_per_core=INTEL_L2 + " (up to 8,192 neurons)",
        synaptic_memory_bits=INTEL_L2 + " (128 KB SRAM)",
        weight_bits="assumption: 8-bit weights",
        fan_in="assumption: Loihi 1 value (4,096) reused",
        fan_out="assumption: Loihi 1 value (4,096) reused",
        max_dest_cores="assumption: unlimited",
        static_w="assumption: Loihi 1 static power reused",
        time_step_s="assumption: 1 ms like Loihi 1",
    )
    return _finish(spec, src)


def truenorth() -> ChipSpec:
    """IBM TrueNorth: 4,096 cores on a 64×64 mesh, 256 neurons × 256 axons, binary synapses."""
    spec = dict(
        name="truenorth", mesh=(64, 64), cores_per_router=1, neurons_per_core=256,
        synaptic_memory_bits=256 * 256, weight_bits=1, fan_in=256, fan_out=None,
        max_dest_cores=None,
        e_synop_j=2.3e-12, e_neuron_active_j=0.0, e_neuron_idle_j=0.0, e_spike_j=0.0,
        e_hop_ew_j=2.3e-12, e_hop_ns_j=2.3e-12, e_offchip_j=23e-12, static_w=0.042,
        t_synop_s=1e-9, t_neuron_s=1e-9, t_hop_ew_s=5e-9, t_hop_ns_s=5e-9,
        t_offchip_s=100e-9, time_step_s=1e-3,
    )  # fmt: skip
    src = {k: MEROLLA for k in PHYSICAL_FIELDS}
    src.update(
        e_synop_j=MEROLLA + ": marginal 2.3 pJ per synaptic event (26 pJ includes static)",
        e_hop_ew_j=MEROLLA + ": 2.3 pJ per spike per hop",
        e_hop_ns_j=MEROLLA + ": 2.3 pJ per spike per hop",
        fan_out="assumption: not enforced; a TrueNorth neuron targets one axon and multicast "
        "copies (splitter neurons) are not modelled",
        max_dest_cores="assumption: unlimited (see fan_out)",
        e_neuron_active_j="assumption: neuron update folded into the regression's static term",
        e_neuron_idle_j="assumption: neuron update folded into the regression's static term",
        e_spike_j="assumption: delivery folded into per-hop and per-synop energies",
        e_offchip_j="assumption: chip-to-chip link energy unpublished; 10x a hop",
        static_w=AKOPYAN + " §VII: 42 mW idle floor at 0.70 V",
        t_synop_s="assumption: per-op latency unpublished (1 ns)",
        t_neuron_s="assumption: per-op latency unpublished (1 ns)",
        t_hop_ew_s="assumption: hop latency unpublished (5 ns)",
        t_hop_ns_s="assumption: hop latency unpublished (5 ns)",
        t_offchip_s="assumption: chip-to-chip latency unpublished (100 ns)",
        time_step_s=MEROLLA + ": 1 ms tick",
    )
    return _finish(spec, src)


def spinnaker() -> ChipSpec:
    """SpiNNaker 1, one chip of 18 ARM cores behind one router; pass chips=48 for a SpiNN-5."""
    spec = dict(
        name="spinnaker", mesh=(1, 1), cores_per_router=18, neurons_per_core=256,
        synaptic_memory_bits=64 * 1024 * 8, weight_bits=32, fan_in=None, fan_out=None,
        max_dest_cores=None,
        e_synop_j=43e-9, e_neuron_active_j=100e-9, e_neuron_idle_j=100e-9, e_spike_j=0.0,
        e_hop_ew_j=0.0, e_hop_ns_j=0.0, e_offchip_j=2e-9, static_w=1.0,
        t_synop_s=50e-9, t_neuron_s=200e-9, t_hop_ew_s=0.0, t_hop_ns_s=0.0,
        t_offchip_s=200e-9, time_step_s=1e-3,
    )  # fmt: skip
    src = {k: SHARP for k in PHYSICAL_FIELDS}
    src.update(
        mesh=SHARP + ": one router per chip (chips form a triangular torus, modelled as a mesh "
        "of chips: assumption)",
        cores_per_router=SHARP + ": 18 ARM cores per chip",
        neurons_per_core="assumption: 256 neurons per core (software limit, not in REFERENCES)",
        synaptic_memory_bits=SHARP + ": 64 KB DTCM per core",
        weight_bits="assumption: 32-bit synaptic words",
        fan_in="assumption: unlimited (software routing tables)",
        fan_out="assumption: unlimited (multicast router)",
        max_dest_cores="assumption: unlimited (multicast router)",
        e_synop_j=SHARP + ": 43 nJ per synaptic event",
        e_neuron_active_j=SHARP + ": 100 nJ per neuron per ms",
        e_neuron_idle_j=SHARP + ": 100 nJ per neuron per ms",
        e_spike_j="assumption: inside synaptic event cost",
        e_hop_ew_j="assumption: one router per chip, no intra-chip hops",
        e_hop_ns_j="assumption: one router per chip, no intra-chip hops",
        e_offchip_j="assumption: chip-to-chip packet energy unpublished (2 nJ)",
        static_w=SHARP + ": 1 W per chip",
        t_synop_s="assumption: ~50 ns per synaptic event on a 200 MHz ARM968",
        t_neuron_s="assumption: ~200 ns per neuron update on a 200 MHz ARM968",
        t_hop_ew_s="assumption: one router per chip, no intra-chip hops",
        t_hop_ns_s="assumption: one router per chip, no intra-chip hops",
        t_offchip_s="assumption: chip-to-chip latency unpublished (200 ns)",
        time_step_s=SHARP + ": 1 ms",
    )
    return _finish(spec, src)


def speck() -> ChipSpec:
    """SynSense Speck / DYNAP-CNN: 9 heterogeneous cores, ≤ 2 destinations per core."""
    spec = dict(
        name="speck", mesh=(3, 3), cores_per_router=1, neurons_per_core=64 * 1024,
        synaptic_memory_bits=64 * 1024 * 8, weight_bits=8, fan_in=None, fan_out=None,
        max_dest_cores=2,
        e_synop_j=10e-12, e_neuron_active_j=10e-12, e_neuron_idle_j=0.0, e_spike_j=1e-12,
        e_hop_ew_j=1e-12, e_hop_ns_j=1e-12, e_offchip_j=100e-12, static_w=0.42e-3,
        t_synop_s=1e-9, t_neuron_s=1e-9, t_hop_ew_s=5e-9, t_hop_ns_s=5e-9,
        t_offchip_s=100e-9, time_step_s=None,
        core_neurons=tuple(k * 1024 for k in (64, 64, 64, 32, 32, 16, 16, 16, 16)),
        core_synapses=tuple(k * 1024 for k in (16, 16, 16, 32, 32, 64, 64, 16, 16)),
    )  # fmt: skip
    note = "assumption: Speck per-op energy/latency unpublished"
    src = {k: note for k in PHYSICAL_FIELDS if k.startswith(("e_", "t_"))}
    src.update(
        mesh="assumption: 9 cores drawn as a 3x3 mesh (the chip routes layer to layer)",
        cores_per_router="assumption: one core per router",
        neurons_per_core=SINABS + ": neuron memory {64,64,64,32,32,16,16,16,16} Ki per core",
        synaptic_memory_bits=SINABS + ": kernel memory {16,16,16,32,32,64,64,16,16} Ki weights",
        weight_bits="assumption: 8-bit kernel weights",
        fan_in="assumption: unlimited within kernel memory",
        fan_out="assumption: unlimited within 2 destinations",
        max_dest_cores=SINABS + ": at most 2 destinations per layer (core)",
        static_w=SINABS + ": resting 0.42 mW",
        time_step_s=SINABS + ": asynchronous (no time step)",
    )
    return _finish(spec, src)


def generic(
    cores: int = 1024,
    neurons_per_core: int = 256,
    synapses_per_core: int = 16384,
    cores_per_router: int = 1,
) -> ChipSpec:
    """A parametrised square-ish mesh chip with Loihi-like per-event costs (all assumptions).

    Args:
        cores: cores on the chip; the mesh is the most square factorisation of
            ``cores / cores_per_router``.
        neurons_per_core, synapses_per_core: capacities (8-bit weights).
        cores_per_router: cores sharing a router.
    """
    for key, val in (("cores", cores), ("neurons_per_core", neurons_per_core),
                     ("synapses_per_core", synapses_per_core),
                     ("cores_per_router", cores_per_router)):  # fmt: skip
        if not isinstance(val, int) or isinstance(val, bool) or val < 1:
            raise ValueError(f"{key}={val!r} must be a positive int")
    if cores % cores_per_router:
        raise ValueError(f"cores={cores} is not a multiple of cores_per_router={cores_per_router}")
    routers = cores // cores_per_router
    rows = max(d for d in range(1, int(routers**0.5) + 1) if routers % d == 0)
    base = loihi()
    spec = {k: getattr(base, k) for k in PHYSICAL_FIELDS}
    spec.update(
        name="generic", mesh=(rows, routers // rows), cores_per_router=cores_per_router,
        neurons_per_core=neurons_per_core, synaptic_memory_bits=synapses_per_core * 8,
        weight_bits=8, fan_in=None, fan_out=None, max_dest_cores=None,
    )  # fmt: skip
    src = {k: "assumption: Loihi value reused (" + DAVIES + ")" for k in PHYSICAL_FIELDS}
    for key in ("mesh", "cores_per_router", "neurons_per_core", "synaptic_memory_bits"):
        src[key] = "assumption: parameter of the generic chip"
    src.update(
        weight_bits="assumption: 8-bit weights",
        fan_in="assumption: unlimited",
        fan_out="assumption: unlimited",
        max_dest_cores="assumption: unlimited",
        e_offchip_j=base.sources["e_offchip_j"],
        t_offchip_s=base.sources["t_offchip_s"],
    )
    return _finish(spec, src)
