"""Tests of the rolling latency statistics."""

import math

import numpy as np
import pytest

from vln_ros.core.latency_stats import RollingStats


def test_empty():
    stats = RollingStats()
    assert stats.count == 0 and len(stats) == 0
    assert stats.mean is None and stats.percentile(50) is None


def test_percentiles_match_numpy_linear():
    rng = np.random.default_rng(0)
    values = rng.exponential(0.5, 150)
    stats = RollingStats(maxlen=200)
    for v in values:
        stats.add(v)
    for p in (0, 1, 50, 90, 99, 100):
        assert stats.percentile(p) == pytest.approx(np.percentile(values, p))
    assert stats.mean == pytest.approx(values.mean())
    assert stats.count == 150


def test_window_keeps_the_newest_samples():
    stats = RollingStats(maxlen=3)
    for v in (100.0, 1.0, 2.0, 3.0):
        stats.add(v)
    assert stats.count == 3 and stats.mean == 2.0 and stats.percentile(100) == 3.0


def test_non_finite_samples_are_ignored_and_bad_arguments_raise():
    stats = RollingStats()
    for v in (math.nan, math.inf, 1.0):
        stats.add(v)
    assert stats.count == 1
    with pytest.raises(ValueError):
        stats.percentile(101)
    with pytest.raises(ValueError):
        RollingStats(maxlen=0)
    stats.clear()
    assert stats.count == 0
