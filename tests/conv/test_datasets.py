"""Saccade digits and camera-motion video: shapes, the protocols' invariants, errors."""

import numpy as np
import pytest
import torch

from braingate.datasets.camera import camera_motion
from braingate.datasets.saccade import _positions, polarity_events, saccade_digits


def test_saccade_path_is_three_saccades_ending_at_the_start():
    pos = _positions(4)
    assert pos.shape == (12, 2)
    np.testing.assert_allclose(pos[-1], [0.0, 0.0])  # back at the origin
    turns = pos[3], pos[7]  # the triangle's other two vertices
    np.testing.assert_allclose(turns, [[3.0, 1.5], [0.0, 3.0]])


def test_saccade_digits_intensity_and_polarity():
    d = saccade_digits(n=40, steps_per_saccade=3, test_fraction=0.25)
    assert d.x_train.shape == (9, 30, 1, 28, 28) and d.x_test.shape == (9, 10, 1, 28, 28)
    assert d.y_train.shape == (30,) and set(d.y_test.tolist()) <= set(range(10))
    assert 0 <= float(d.x_train.min()) and float(d.x_train.max()) <= 1
    # the digit's mass is kept while it moves (inside the sensor at every position)
    mass = d.x_train.sum((-1, -2, -3))
    torch.testing.assert_close(mass, mass[0].expand_as(mass), rtol=0.03, atol=0.0)
    p = saccade_digits(n=40, steps_per_saccade=3, encoding="polarity")
    assert p.x_train.shape == (9, 30, 2, 28, 28)
    assert (p.x_train >= 0).all() and (p.x_train == p.x_train.round()).all()
    torch.testing.assert_close(p.y_train, d.y_train)
    with pytest.raises(ValueError, match="encoding='rgb' is unknown"):
        saccade_digits(n=4, encoding="rgb")
    with pytest.raises(ValueError, match="size=20 cannot hold"):
        saccade_digits(n=4, size=20)


def test_polarity_events_follow_the_log_intensity_with_a_reference_per_pixel():
    inten = torch.tensor([0.2, 0.2 * np.exp(0.45), 0.2 * np.exp(0.5), 0.2]).view(4, 1, 1, 1)
    ev = polarity_events(inten, contrast=0.2, eps=0.0)
    on, off = ev[:, 0, 0, 0].tolist(), ev[:, 1, 0, 0].tolist()
    # +0.45 -> 2 ON (ref +0.4); +0.05 more -> none (0.1 < C); back to 0 -> 2 OFF (0.4 of 0.5)
    assert on == [0, 2, 0, 0] and off == [0, 0, 0, 2]
    with pytest.raises(ValueError, match="contrast=0"):
        polarity_events(inten, contrast=0)


def test_camera_motion_video():
    v = camera_motion(6, size=32, seed=1)
    assert v.shape == (6, 1, 3, 32, 32) and v.dtype == torch.float32
    d = (v[1:] - v[:-1]).abs()
    assert 0 < float(d.mean()) < 0.1  # small changes between frames, not none
    torch.testing.assert_close(camera_motion(6, size=32, seed=1), v)
    assert camera_motion(2, size=16, grayscale=True).shape == (2, 1, 1, 16, 16)
    with pytest.raises(ValueError, match="size=8 must be"):
        camera_motion(2, size=8)
