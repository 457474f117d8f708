"""What calibrate_thresholds() returns, and the warning it raises when the data cannot judge."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CalibrationResult", "CalibrationWarning"]


class CalibrationWarning(UserWarning):
    """The calibration data cannot support the requested guarantee (too few samples to resolve
    the tolerance, a class without samples, nothing held out)."""


@dataclass
class CalibrationResult:
    """What :func:`calibrate_thresholds` chose, and what it measured on the data it searched on
    and on the data it held out.

    Attributes:
        thresholds: ``{layer: {knob: float | list}}`` (knobs: the layer's ``threshold_names``,
            e.g. ``threshold`` and ``latent_threshold``).
        score: the metric at the chosen thresholds on the search part of the calibration data;
            reference_score: the same at θ = 0 (exact event run). Accuracy, agreement, minus the
            relative output error, or the callable metric's value — higher is better.
        synops, dense_synops: per sample, summed over steps and layers, on every sample of
            ``xs`` (search and held-out parts together).
        evaluations: event-mode simulations run (search, held-out check and back-off).
        holdout_score, holdout_reference_score: the metric on the held-out part of ``xs`` (or on
            the ``validation`` stream) at the chosen thresholds and at θ = 0; None when nothing
            was held out. Their difference is the estimate of the drop on unseen data.
        holdout_synops: per sample on the held-out part (None when nothing was held out).
        samples, holdout_samples: units the two parts were judged on (samples; decisions for a
            per-step readout).
        margin: the noise margin (``z·SE`` of the estimated drop) at the chosen thresholds.
        headroom: the found thresholds were divided by this before the held-out check (1.0:
            none; 2.0 by default when the data cannot resolve the tolerance).
        backoff: factor the thresholds were scaled by after failing the held-out check (1.0:
            they passed as found).
        warnings: the :class:`CalibrationWarning` messages raised during the call.
    """

    thresholds: dict = field(default_factory=dict)
    score: float = 0.0
    reference_score: float = 0.0
    synops: float = 0.0
    dense_synops: float = 0.0
    evaluations: int = 0
    holdout_score: float | None = None
    holdout_reference_score: float | None = None
    holdout_synops: float | None = None
    samples: int = 0
    holdout_samples: int = 0
    margin: float = 0.0
    headroom: float = 1.0
    backoff: float = 1.0
    warnings: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """``dense_synops / synops`` at the chosen thresholds."""
        return float("inf") if self.synops == 0 else self.dense_synops / self.synops

    @property
    def drop(self) -> float:
        """Drop of the score on the search part: ``reference_score − score``."""
        return self.reference_score - self.score

    @property
    def holdout_drop(self) -> float | None:
        """Drop on the held-out part (the estimate for unseen data); None if nothing was held
        out."""
        if self.holdout_score is None or self.holdout_reference_score is None:
            return None
        return self.holdout_reference_score - self.holdout_score

    def summary(self) -> str:
        """One paragraph: scores on both parts, and the synops saving."""
        lines = [
            f"calibration: score {self.score:.4f} (reference {self.reference_score:.4f}) on "
            f"{self.samples} units, noise margin {self.margin:.4f}"
        ]
        if self.holdout_score is not None:
            lines.append(
                f"held out:    score {self.holdout_score:.4f} (reference "
                f"{self.holdout_reference_score:.4f}) on {self.holdout_samples} units"
            )
        else:
            lines.append("held out:    nothing (no estimate for unseen data)")
        lines.append(
            f"synops:      {self.synops:,.0f} per sample, {self.ratio:.1f}x fewer than dense; "
            f"{self.evaluations} evaluations"
            + (f"; thresholds / headroom {self.headroom:g}" if self.headroom != 1.0 else "")
            + (f"; backed off x{self.backoff:.2f}" if self.backoff != 1.0 else "")
        )
        return "\n".join(lines + [f"warning: {w}" for w in self.warnings])
