"""Real sensor streams shipped inside aeon (DESIGN §5), time-first; no downloads.

- :func:`basic_motions`: BasicMotions (accelerometer + gyroscope of a smart watch, 6 channels,
  100 steps at 10 Hz, 4 activities; 40 train / 40 test recordings).
- :func:`gun_point`: GunPoint (x coordinate of a hand, 1 channel, 150 steps, 2 classes; 50 / 150).
- :func:`daphnet`: the Daphnet freezing-of-gait recording S06R02E0 (3 accelerometers at ankle,
  thigh and trunk, 9 channels, 7040 samples at 64 Hz, Roggen et al. 2013), as a *next-sample
  prediction* task: predict every channel ``horizon`` steps ahead. The shipped excerpt has no
  freeze episode labelled (aeon's own note), so freeze detection cannot be evaluated on it;
  forecasting the gait signal can.

Every stream is standardised per channel with statistics of its training part.
"""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["ForecastStreams", "SensorStreams", "aeon_classification", "basic_motions",
           "daphnet", "gun_point"]  # fmt: skip


@dataclass
class SensorStreams:
    """A classification task: streams ``(T, B, F)`` float32 and labels ``(B,)`` int64."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    classes: int

    @property
    def features(self) -> int:
        """Channels per step."""
        return self.x_train.shape[-1]


@dataclass
class ForecastStreams:
    """A streaming regression task: inputs and targets ``(T, B, F)`` float32.

    ``x_train`` / ``y_train`` are windows of the training part (``B`` windows); ``x_test`` /
    ``y_test`` the held-out part as one long stream (``B = 1``). ``y[t] = x[t + horizon]``.
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    horizon: int

    @property
    def features(self) -> int:
        """Channels per step."""
        return self.x_train.shape[-1]


def _require_aeon():
    if importlib.util.find_spec("aeon") is None:
        raise ImportError(
            "the sensor streams come from aeon's shipped datasets; install the 'data' extra: "
            "pip install 'braingate[data]'"
        )


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Per-channel standardisation (last axis) with the statistics of ``train``."""
    axes = tuple(range(train.ndim - 1))
    mu = train.mean(axis=axes, keepdims=True)
    sd = train.std(axis=axes, keepdims=True) + 1e-8
    return [((a - mu) / sd).astype(np.float32) for a in (train, *others)]


def aeon_classification(name: str) -> SensorStreams:
    """An aeon classification dataset shipped in its wheel, with its own train / test split,
    as time-first streams ``(T, B, channels)``.

    Args:
        name: e.g. ``"BasicMotions"``, ``"GunPoint"``, ``"JapaneseVowels"``.
    """
    _require_aeon()
    from aeon.datasets import load_classification

    xtr, ytr = load_classification(name, split="train")
    xte, yte = load_classification(name, split="test")
    classes = sorted(set(ytr.tolist()))
    unknown = sorted(set(yte.tolist()) - set(classes))
    if unknown:
        raise ValueError(f"{name}: test labels {unknown} do not occur in the training split")
    a, b = _standardise(xtr.transpose(0, 2, 1), xte.transpose(0, 2, 1))  # (N, T, C)
    lab = lambda y: torch.as_tensor([classes.index(v) for v in y])  # noqa: E731
    tf = lambda v: torch.from_numpy(v).transpose(0, 1).contiguous()  # noqa: E731
    return SensorStreams(name, tf(a), lab(ytr), tf(b), lab(yte), len(classes))


def basic_motions() -> SensorStreams:
    """BasicMotions: ``(100, 40, 6)`` train and test streams, 4 classes."""
    return aeon_classification("BasicMotions")


def gun_point() -> SensorStreams:
    """GunPoint: ``(150, 50, 1)`` train and ``(150, 150, 1)`` test streams, 2 classes."""
    return aeon_classification("GunPoint")


def _daphnet_array() -> np.ndarray:
    """The 9 accelerometer channels of S06R02E0, ``(7040, 9)`` float64."""
    _require_aeon()
    import aeon

    path = Path(aeon.__file__).parent / "datasets" / "data" / "Daphnet_S06R02E0" / "S06R02E0.csv"
    if path.is_file():
        data = np.genfromtxt(path, delimiter=",", skip_header=1, usecols=range(1, 10))
        return data.astype(np.float64)
    try:  # older layouts: through aeon's loader (deprecated in aeon 1.6, removed in 1.7)
        from aeon.datasets import load_daphnet_s06r02e0
    except ImportError as err:
        raise ImportError(
            "this aeon no longer ships Daphnet_S06R02E0 (removed in aeon 1.7); install "
            "'aeon>=1.0,<1.7'"
        ) from err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        X, _ = load_daphnet_s06r02e0()
    return np.asarray(X, np.float64)


def daphnet(
    *, horizon: int = 4, window: int = 128, stride: int = 32, train_fraction: float = 0.7
) -> ForecastStreams:
    """Daphnet S06R02E0 as next-sample prediction: predict all 9 channels ``horizon`` steps
    (``horizon / 64`` s) ahead.

    The first ``train_fraction`` of the recording gives training windows of ``window`` steps
    every ``stride`` steps; the rest is the test stream, one sequence of ``B = 1``.

    Args:
        horizon: steps ahead (≥ 1). window, stride: training windows. train_fraction: in (0, 1).

    Returns:
        :class:`ForecastStreams` (standardised with the training part's statistics).
    """
    for name, v in (("horizon", horizon), ("window", window), ("stride", stride)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}={v!r} must be an int >= 1")
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction={train_fraction!r} must be in (0, 1), e.g. 0.7")
    data = _daphnet_array()
    cut = int(len(data) * train_fraction)
    if cut < window + horizon or len(data) - cut <= horizon:
        raise ValueError(
            f"window={window} and horizon={horizon} do not fit a recording of {len(data)} "
            f"samples split at {train_fraction}; pass a shorter window or horizon"
        )
    train, test = _standardise(data[:cut], data[cut:])
    starts = range(0, cut - window - horizon + 1, stride)
    xw = np.stack([train[s : s + window] for s in starts], 1)  # (window, N, 9)
    yw = np.stack([train[s + horizon : s + horizon + window] for s in starts], 1)
    xt, yt = test[:-horizon, None], test[horizon:, None]
    t = torch.from_numpy
    return ForecastStreams("Daphnet_S06R02E0", t(xw), t(yw), t(np.ascontiguousarray(xt)),
                           t(np.ascontiguousarray(yt)), horizon)  # fmt: skip
