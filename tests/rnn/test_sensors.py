"""The aeon sensor streams (braingate.datasets.sensors): shapes, standardisation, errors."""

import pytest
import torch

pytest.importorskip("aeon")

from braingate.datasets.sensors import basic_motions, daphnet, gun_point


def test_classification_streams():
    b = basic_motions()
    assert b.x_train.shape == (100, 40, 6) and b.x_test.shape == (100, 40, 6)
    assert b.classes == 4 and set(b.y_train.tolist()) == {0, 1, 2, 3}
    flat = b.x_train.reshape(-1, 6)
    torch.testing.assert_close(flat.mean(0), torch.zeros(6), atol=1e-4, rtol=0)
    torch.testing.assert_close(flat.std(0), torch.ones(6), atol=1e-2, rtol=0)
    g = gun_point()
    assert g.x_train.shape == (150, 50, 1) and g.x_test.shape == (150, 150, 1) and g.classes == 2


def test_daphnet_forecast_windows_and_test_stream():
    d = daphnet(horizon=3, window=64, stride=64)
    assert d.x_train.shape[0] == 64 and d.x_train.shape[2] == 9 and d.horizon == 3
    # targets are the inputs shifted by the horizon, inside a window and in the test stream
    torch.testing.assert_close(d.y_train[:-3], d.x_train[3:])
    torch.testing.assert_close(d.y_test[:-3, 0], d.x_test[3:, 0])
    assert d.x_test.shape[1] == 1 and d.x_test.shape[0] + 3 == 7040 - int(7040 * 0.7)
    with pytest.raises(ValueError, match="horizon=0"):
        daphnet(horizon=0)
    with pytest.raises(ValueError, match="train_fraction=1.5"):
        daphnet(train_fraction=1.5)
