"""board_that_fits: the smallest board that holds a network, computed (and checked)."""

from __future__ import annotations

import dataclasses

import pytest

import hwmaps
from hwmaps.feasibility import board_that_fits

from ._nets import mlp


def test_smallest_board_is_computed_and_holds_the_network(rng):
    net = mlp([32, 256, 256, 8], 64, 4, rng)
    chip = hwmaps.chips.get("generic", cores=4)
    fit = board_that_fits(net, chip)
    assert fit.chips is not None and fit.chips >= fit.lower_bound and fit.chips > 1
    board = hwmaps.chips.get("generic", cores=4, chips=fit.chips)
    hwmaps.map_network(net, board, "sequential")  # it holds
    smaller = dataclasses.replace(board, board=(1, fit.chips - 1))
    with pytest.raises(hwmaps.CapacityError):  # and one chip fewer does not
        hwmaps.map_network(net, smaller, "sequential")


def test_map_error_states_the_board_that_fits(rng):
    net = mlp([32, 256, 256, 8], 64, 4, rng)
    fit = board_that_fits(net, hwmaps.chips.get("generic", cores=4))
    with pytest.raises(hwmaps.CapacityError, match=f"needs a board of {fit.chips} generic"):
        hwmaps.map_network(net, hwmaps.chips.get("generic", cores=4), "sequential")


def test_a_per_core_limit_no_board_lifts_is_named(rng):
    # a 2048-wide full-rank layer: each core's outputs reach more cores than Loihi's fan-out
    net = mlp([128, 2048, 2048, 10], 2048, 4, rng)
    fit = board_that_fits(net, hwmaps.chips.get("loihi"))
    assert fit.chips is None and "fan-out" in fit.reason and "more chips do not lift" in fit.reason
    with pytest.raises(hwmaps.CapacityError, match="no board of loihi chips holds"):
        hwmaps.map_network(net, hwmaps.chips.get("loihi", chips=16), "sequential")
