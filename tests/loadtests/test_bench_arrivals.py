"""Arrival schedule: all at once for an infinite rate, gamma gaps with mean 1/rate and CV^2 = 1/burstiness."""

import math
import statistics

import pytest

from loadtests.arrivals import arrival_offsets


def gaps(rate, burstiness, n=4000, seed=0):
    offsets = arrival_offsets(n, rate, burstiness, seed)
    assert offsets[0] == 0.0 and offsets == sorted(offsets)
    return [b - a for a, b in zip(offsets, offsets[1:])]


def test_infinite_rate_sends_everything_at_once():
    assert arrival_offsets(5, math.inf, 1.0, 0) == [0.0] * 5


@pytest.mark.parametrize("rate, burstiness", [(4.0, 1.0), (50.0, 0.25), (2.0, 4.0)])
def test_gap_mean_and_dispersion(rate, burstiness):
    g = gaps(rate, burstiness)
    mean = statistics.fmean(g)
    cv2 = statistics.pvariance(g) / mean**2
    # 4000 draws: the sample mean is within ~3 standard errors of 1/rate, CV^2 of 1/burstiness.
    assert mean == pytest.approx(1 / rate, rel=3 / math.sqrt(burstiness * 4000) + 0.01)
    assert cv2 == pytest.approx(1 / burstiness, rel=0.25)


def test_schedule_depends_only_on_seed():
    assert arrival_offsets(50, 3.0, 1.0, 7) == arrival_offsets(50, 3.0, 1.0, 7)
    assert arrival_offsets(50, 3.0, 1.0, 7) != arrival_offsets(50, 3.0, 1.0, 8)


@pytest.mark.parametrize("rate, burstiness, field", [(0.0, 1.0, "request_rate"), (-1.0, 1.0, "request_rate"),
                                                     (1.0, 0.0, "burstiness"), (1.0, math.inf, "burstiness")])
def test_bad_schedule_parameters_are_named(rate, burstiness, field):
    with pytest.raises(ValueError, match=field):
        arrival_offsets(3, rate, burstiness, 0)
