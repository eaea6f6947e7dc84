"""Tests for vln_ros.core.pose_history: interpolated pose lookup and dead reckoning."""

import math
import os
import random

from hypothesis import given, settings
from hypothesis import strategies as st
import pytest

from vln_ros.core.geometry import Pose2D, integrate_twist, normalize_angle
from vln_ros.core.pose_history import DeadReckoner, PoseHistory

FUZZ = settings(max_examples=int(os.environ.get('VLN_FUZZ_EXAMPLES', '300')),
                deadline=None, derandomize=True)


def assert_pose_close(a, b, tol=1e-9):
    assert a is not None
    assert a.x == pytest.approx(b.x, abs=tol)
    assert a.y == pytest.approx(b.y, abs=tol)
    assert abs(normalize_angle(a.yaw - b.yaw)) <= tol


def test_empty_history():
    h = PoseHistory()
    assert len(h) == 0
    assert h.latest() is None
    assert h.at(1.0) is None


def test_interpolates_between_neighbours():
    h = PoseHistory()
    h.add(10.0, Pose2D(0.0, 0.0, 0.0))
    h.add(11.0, Pose2D(1.0, 2.0, 0.4))
    h.add(12.0, Pose2D(3.0, 2.0, 0.4))
    assert_pose_close(h.at(10.25), Pose2D(0.25, 0.5, 0.1))
    assert_pose_close(h.at(11.5), Pose2D(2.0, 2.0, 0.4))
    assert_pose_close(h.at(11.0), Pose2D(1.0, 2.0, 0.4))
    assert_pose_close(h.at(10.0), Pose2D(0.0, 0.0, 0.0))


def test_yaw_interpolates_across_pi():
    h = PoseHistory()
    h.add(0.0, Pose2D(0.0, 0.0, 3.0))
    h.add(1.0, Pose2D(0.0, 0.0, -3.0))
    # The short way round (through pi), not through zero.
    assert abs(abs(h.at(0.5).yaw) - math.pi) < 1e-9


def test_out_of_order_stamps_are_inserted_in_order():
    h = PoseHistory()
    h.add(2.0, Pose2D(2.0, 0.0, 0.0))
    h.add(0.0, Pose2D(0.0, 0.0, 0.0))
    h.add(1.0, Pose2D(1.0, 0.0, 0.0))
    assert len(h) == 3
    assert h.latest()[0] == 2.0
    assert_pose_close(h.at(0.5), Pose2D(0.5, 0.0, 0.0))
    assert_pose_close(h.at(1.5), Pose2D(1.5, 0.0, 0.0))


def test_equal_stamp_replaces():
    h = PoseHistory()
    h.add(1.0, Pose2D(1.0, 0.0, 0.0))
    h.add(1.0, Pose2D(5.0, 0.0, 0.0))
    assert len(h) == 1
    assert h.latest()[1].x == 5.0


def test_before_oldest_and_far_after_newest_are_unknown():
    h = PoseHistory(max_extrapolation=0.2)
    h.add(1.0, Pose2D(0.0, 0.0, 0.0))
    h.add(2.0, Pose2D(1.0, 0.0, 0.0))
    assert h.at(0.99) is None
    assert_pose_close(h.at(2.15), Pose2D(1.0, 0.0, 0.0))  # slightly after: the newest
    assert_pose_close(h.at(2.19), Pose2D(1.0, 0.0, 0.0))
    assert h.at(2.3) is None
    assert h.at(float('nan')) is None


def test_prunes_poses_older_than_max_age():
    h = PoseHistory(max_age=5.0)
    for i in range(20):
        h.add(float(i), Pose2D(float(i), 0.0, 0.0))
    assert len(h) == 6  # stamps 14..19
    assert h.at(13.5) is None
    assert_pose_close(h.at(14.5), Pose2D(14.5, 0.0, 0.0))
    h.add(1.0, Pose2D(1.0, 0.0, 0.0))  # far too old to keep
    assert len(h) == 6


def test_non_finite_poses_are_ignored():
    h = PoseHistory()
    h.add(1.0, Pose2D(0.0, 0.0, 0.0))
    h.add(2.0, Pose2D(float('nan'), 0.0, 0.0))
    h.add(float('inf'), Pose2D(0.0, 0.0, 0.0))
    assert len(h) == 1


def test_clear():
    h = PoseHistory()
    h.add(1.0, Pose2D(0.0, 0.0, 0.0))
    h.clear()
    assert len(h) == 0 and h.latest() is None


def test_rejects_bad_parameters():
    with pytest.raises(ValueError):
        PoseHistory(max_age=0.0)
    with pytest.raises(ValueError):
        PoseHistory(max_extrapolation=-1.0)


@FUZZ
@given(st.lists(st.floats(0.0, 20.0, allow_nan=False), min_size=2, max_size=30, unique=True),
       st.floats(0.0, 1.0), st.integers(0, 2**31))
def test_recovers_any_pose_of_a_linear_trajectory(stamps, frac, seed):
    # Along a straight line at constant speed and turn rate, linear interpolation is exact,
    # whatever order the samples arrive in.
    def truth(t):
        return Pose2D(1.0 + 0.3 * t, -2.0 + 0.1 * t, normalize_angle(0.05 * t))

    order = list(stamps)
    random.Random(seed).shuffle(order)
    h = PoseHistory(max_age=100.0)
    for t in order:
        h.add(t, truth(t))
    lo, hi = min(stamps), max(stamps)
    t = lo + frac * (hi - lo)
    assert_pose_close(h.at(t), truth(t), 1e-7)
    assert h.latest()[0] == hi


def test_dead_reckoner_first_step_only_records_start():
    start = Pose2D(1.0, 2.0, 0.5)
    r = DeadReckoner(start)
    assert r.stamp is None
    pose = r.step(3.0, 1.0, 0.0, 1.0)
    assert_pose_close(pose, start)
    assert r.stamp == 3.0
    assert len(r.history) == 1


def test_dead_reckoner_integrates_exact_arcs_independent_of_step_size():
    start = Pose2D(1.0, 2.0, 0.5)
    coarse = DeadReckoner(start)
    fine = DeadReckoner(start)
    coarse.step(0.0, 0.0, 0.0, 0.0)
    fine.step(0.0, 0.0, 0.0, 0.0)
    coarse.step(2.0, 0.4, 0.1, 0.7)
    rng = random.Random(3)
    t = 0.0
    while t < 2.0:
        t = min(2.0, t + rng.uniform(0.001, 0.05))
        fine.step(t, 0.4, 0.1, 0.7)
    expected = integrate_twist(start, 0.4, 0.1, 0.7, 2.0)
    assert_pose_close(coarse.pose, expected, 1e-12)
    assert_pose_close(fine.pose, expected, 1e-9)
    # On a circle of radius v / w, not a straight line: the chord of a 1.4 rad arc.
    length = math.hypot(0.4, 0.1) * 2.0
    assert coarse.pose.distance_to(start) == pytest.approx(length * math.sin(0.7) / 0.7)


def test_dead_reckoner_fills_history_and_ignores_time_going_back():
    r = DeadReckoner()
    r.step(0.0, 0.0, 0.0, 0.0)
    r.step(1.0, 0.5, 0.0, 0.0)
    r.step(2.0, 0.5, 0.0, 0.0)
    assert_pose_close(r.pose, Pose2D(1.0, 0.0, 0.0))
    assert_pose_close(r.history.at(1.5), Pose2D(0.75, 0.0, 0.0))
    r.step(1.5, 5.0, 0.0, 0.0)  # clock jumped back: nothing integrated
    assert_pose_close(r.pose, Pose2D(1.0, 0.0, 0.0))
    assert r.stamp == 2.0
    r.step(3.0, float('nan'), 0.0, 0.0)  # a NaN command moves nothing
    assert_pose_close(r.pose, Pose2D(1.0, 0.0, 0.0))


def test_dead_reckoner_reset():
    r = DeadReckoner()
    r.step(0.0, 0.0, 0.0, 0.0)
    r.step(1.0, 1.0, 0.0, 0.0)
    r.reset(Pose2D(5.0, 0.0, 0.0))
    assert r.stamp is None and len(r.history) == 0
    assert r.pose.x == 5.0
