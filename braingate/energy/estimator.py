"""``PerfEstimator``: FLOPs, bytes, roofline latency and energy of a (low-rank) linear layer."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from braingate.energy.costs import EnergyModel, energy_model

__all__ = [
    "DEFAULT_HARDWARE_PROFILE",
    "GPU_PROFILES",
    "PROFILE_KEYS",
    "PerfEstimator",
    "check_hardware_profile",
    "check_layer_dims",
    "energy_of",
]

# The default machine: an NVIDIA H100 SXM at FP32.
DEFAULT_HARDWARE_PROFILE: dict[str, Any] = {
    # 10.5 pJ/FLOP FP32: datasheet peak ÷ TDP (REFERENCES.md §C), via the "h100_fp32" preset.
    "energy_model": "h100_fp32",
    # 67 TFLOP/s FP32 (non-tensor) peak, NVIDIA H100 SXM datasheet.
    "peak_flops": 67e12,
    # 3.35 TB/s HBM3, NVIDIA H100 SXM datasheet.
    "memory_bandwidth": 3.35e12,
    # Clock used only when a profile gives gpu_cores but no peak_flops: 1.41 GHz, an
    # assumption (a typical data-centre GPU boost clock); peak = 2 · cores · clock.
    "clock_hz": 1.41e9,
    "bytes_per_param": 4,  # fp32
    # FLOPs per multiply-accumulate: 2 (a multiply and an add), the usual count.
    "flops_per_mac": 2,
}

# ``hardware.gpu_type``: datasheet figures of a GPU at FP32; explicit profile keys override them.
# Energy per FLOP = TDP ÷ peak FP32 FLOP/s (the best case of REFERENCES.md §C).
GPU_PROFILES: dict[str, dict[str, Any]] = {
    # NVIDIA Tesla V100 SXM2 datasheet: 15.7 TFLOP/s FP32, 900 GB/s HBM2, 300 W TDP
    # -> 19.1 pJ/FLOP = 19.1e-9 mJ (the datasheet is not in REFERENCES.md; same method as §C).
    "V100": {
        "peak_flops": 15.7e12,
        "memory_bandwidth": 900e9,
        "energy_per_flop": 300 / 15.7e12 * 1e3,
    },
    # NVIDIA A100 SXM4 80 GB datasheet: 19.5 TFLOP/s FP32, 2,039 GB/s HBM2e; 20.5 pJ/FLOP (§C).
    "A100": {"energy_model": "a100_fp32", "peak_flops": 19.5e12, "memory_bandwidth": 2.039e12},
    # NVIDIA H100 SXM datasheet: 67 TFLOP/s FP32, 3.35 TB/s HBM3; 10.5 pJ/FLOP (§C).
    "H100": {"energy_model": "h100_fp32", "peak_flops": 67e12, "memory_bandwidth": 3.35e12},
}

#: Every hardware-profile key the estimator reads (``check_hardware_profile`` rejects others).
PROFILE_KEYS = frozenset(
    {*DEFAULT_HARDWARE_PROFILE, "energy_per_flop", "energy_per_byte", "gpu_cores", "gpu_type"}
)


def check_hardware_profile(profile: Mapping[str, Any], where: str = "hardware") -> None:
    """Raise ValueError for a key the estimator does not read (a typo would be ignored
    silently otherwise) or an unknown ``gpu_type``.

    ``PerfEstimator`` itself keeps unknown keys for subclasses (the seed guide's custom
    estimators read their own keys); configs call this to refuse them.
    """
    unknown = sorted(set(profile) - PROFILE_KEYS)
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {unknown}; the estimator reads {sorted(PROFILE_KEYS)}"
        )
    gpu = profile.get("gpu_type")
    if gpu is not None and str(gpu).upper() not in GPU_PROFILES:
        raise ValueError(
            f"{where}.gpu_type={gpu!r} is unknown; known: {', '.join(GPU_PROFILES)} (or give "
            "peak_flops, memory_bandwidth and energy_per_flop yourself)"
        )


def check_layer_dims(layer_dims: Any) -> tuple[int, int]:
    """Validate ``layer_dims`` = (in_features, out_features) of positive ints."""
    ok = (
        isinstance(layer_dims, Sequence)
        and not isinstance(layer_dims, str)
        and len(layer_dims) == 2
        and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in layer_dims)
    )
    if not ok:
        raise ValueError(
            f"layer_dims={layer_dims!r} must be (in_features, out_features), two positive ints; "
            "pass e.g. layer_dims=(512, 256)"
        )
    return int(layer_dims[0]), int(layer_dims[1])


def energy_of(result: Any) -> float:
    """Energy in mJ from an ``estimate`` result: a dict with ``energy_mJ`` or a number."""
    if isinstance(result, Mapping):
        return float(result["energy_mJ"])
    return float(result)


class PerfEstimator:
    """Analytic cost model of a rank-``r`` factored linear layer on given hardware.

    Per sample, the product :math:`y = U\\,\\mathrm{diag}(s)\\,V^T x + b` costs

    .. math::
        \\mathrm{FLOPs}(r) = f\\,r (n + m) + r + m, \\qquad
        \\mathrm{bytes}(r, B) = p\\,(r(n+m) + r + m) + p\\,B\\,(n + m)

    (``f`` FLOPs per MAC, 2 by default; weights read once per batch of ``B``, ``p`` bytes per
    value). Energy is
    ``FLOPs · e_flop + bytes · e_byte``; latency is the roofline
    ``max(FLOPs / peak_flops, bytes / memory_bandwidth)``.

    Args:
        hardware_profile: dict; missing keys fall back to ``DEFAULT_HARDWARE_PROFILE``
            (an H100 SXM, FP32, cited). Keys: ``energy_model`` (preset name or
            :class:`EnergyModel`), ``energy_per_flop`` / ``energy_per_byte`` (mJ, the seed
            guide's unit; override the model), ``peak_flops`` (FLOP/s), ``gpu_cores`` and
            ``clock_hz`` (peak = 2·cores·clock when ``peak_flops`` is absent),
            ``memory_bandwidth`` (B/s), ``bytes_per_param``, ``flops_per_mac`` (2: a multiply
            and an add), ``gpu_type`` (a :data:`GPU_PROFILES` name: its datasheet peak,
            bandwidth and energy per FLOP, below any key given explicitly). Extra keys are
            kept in ``self.hardware_profile`` for subclasses (:func:`check_hardware_profile`
            refuses them).
    """

    def __init__(self, hardware_profile: Mapping[str, Any] | None = None) -> None:
        if hardware_profile is None:
            hardware_profile = {}
        if not isinstance(hardware_profile, Mapping):
            raise TypeError(
                f"hardware_profile={hardware_profile!r} is not a dict; pass e.g. "
                "{'gpu_cores': 5120, 'memory_bandwidth': 1e12} or {}"
            )
        self.hardware_profile: dict[str, Any] = dict(hardware_profile)
        gpu: dict[str, Any] = {}
        if self.hardware_profile.get("gpu_type") is not None:
            check_hardware_profile({"gpu_type": self.hardware_profile["gpu_type"]})
            gpu = GPU_PROFILES[str(self.hardware_profile["gpu_type"]).upper()]
        prof = {**DEFAULT_HARDWARE_PROFILE, **gpu, **self.hardware_profile}
        self.energy_model: EnergyModel = energy_model(prof["energy_model"])
        self.energy_per_flop_mJ = float(
            prof.get("energy_per_flop", self.energy_model.flop_pJ * 1e-9)
        )
        self.energy_per_byte_mJ = float(
            prof.get("energy_per_byte", self.energy_model.byte_pJ * 1e-9)
        )
        # precedence: keys given > gpu_type's datasheet > defaults
        if "gpu_cores" in self.hardware_profile and "peak_flops" not in self.hardware_profile:
            self.peak_flops = 2.0 * float(prof["gpu_cores"]) * float(prof["clock_hz"])
        else:
            self.peak_flops = float(prof["peak_flops"])
        self.memory_bandwidth = float(prof["memory_bandwidth"])
        self.bytes_per_param = float(prof["bytes_per_param"])
        self.flops_per_mac = float(prof["flops_per_mac"])
        for key in ("energy_per_flop_mJ", "energy_per_byte_mJ", "peak_flops", "memory_bandwidth",
                    "flops_per_mac"):  # fmt: skip
            value = getattr(self, key)
            if (
                not math.isfinite(value)
                or value < 0
                or (key in ("peak_flops", "memory_bandwidth", "flops_per_mac") and value == 0)
            ):
                raise ValueError(
                    f"hardware_profile gives {key}={value}; it must be finite and positive"
                )

    def estimate(
        self, layer_dims: Sequence[int], rank: int, batch_size: int = 1, **kw: Any
    ) -> dict[str, float]:
        """Cost of one forward of a batch.

        Args:
            layer_dims: ``(in_features, out_features)``.
            rank: active rank, ``0 <= rank <= min(layer_dims)``.
            batch_size: samples in the batch (weights are read once per batch).

        Returns:
            ``{"flops", "bytes", "latency_s", "energy_mJ", "energy_mJ_per_sample"}`` for the batch.
        """
        n, m = check_layer_dims(layer_dims)
        if not isinstance(rank, int) or isinstance(rank, bool) or not 0 <= rank <= min(n, m):
            raise ValueError(f"rank={rank!r} must be an int in [0, min(layer_dims)={min(n, m)}]")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} must be a positive int")
        flops = batch_size * (self.flops_per_mac * rank * (n + m) + rank + m)
        params = rank * (n + m) + rank + m
        nbytes = self.bytes_per_param * (params + batch_size * (n + m))
        return self._costs(flops, nbytes, batch_size)

    def estimate_dense(self, layer_dims: Sequence[int], batch_size: int = 1) -> dict[str, float]:
        """Cost of the dense ``nn.Linear`` (no factorisation): ``f·nm + m`` FLOPs per sample."""
        n, m = check_layer_dims(layer_dims)
        flops = batch_size * (self.flops_per_mac * n * m + m)
        nbytes = self.bytes_per_param * (n * m + m + batch_size * (n + m))
        return self._costs(flops, nbytes, batch_size)

    def _costs(self, flops: float, nbytes: float, batch_size: int) -> dict[str, float]:
        """Energy and roofline latency of a batch that does ``flops`` and moves ``nbytes``.

        .. math::
            E = \\mathrm{FLOPs}\\, e_{flop} + \\mathrm{bytes}\\, e_{byte}, \\qquad
            t = \\max(\\mathrm{FLOPs} / \\mathrm{peak}, \\mathrm{bytes} / \\mathrm{bandwidth})
        """
        energy = flops * self.energy_per_flop_mJ + nbytes * self.energy_per_byte_mJ
        latency = max(flops / self.peak_flops, nbytes / self.memory_bandwidth)
        return {
            "flops": flops,
            "bytes": nbytes,
            "latency_s": latency,
            "energy_mJ": energy,
            "energy_mJ_per_sample": energy / batch_size,
        }

    def energy_per_sample(
        self, layer_dims: Sequence[int], ranks: Sequence[int], batch_size: int = 1
    ) -> list[float]:
        """Per-sample energy (mJ) at each rank in ``ranks``; works with subclasses whose
        ``estimate`` returns a plain number (the batch energy) as in the seed guide."""
        return [
            energy_of(self.estimate(layer_dims, int(r), batch_size=batch_size)) / batch_size
            for r in ranks
        ]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.hardware_profile!r})"
