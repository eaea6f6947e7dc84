"""Tests for vln_ros.core.geometry: poses, angles, quaternions, twist integration."""

import math
import os

from hypothesis import given, settings
from hypothesis import strategies as st
import pytest

from test.unit.kinematics import unicycle
from vln_ros.core.geometry import (
    Pose2D,
    integrate_twist,
    interpolate_pose,
    normalize_angle,
    quaternion_from_yaw,
    yaw_from_quaternion,
)

FUZZ = settings(max_examples=int(os.environ.get('VLN_FUZZ_EXAMPLES', '300')),
                deadline=None, derandomize=True)

coords = st.floats(-100.0, 100.0, allow_nan=False)
angles = st.floats(-20.0, 20.0, allow_nan=False)
poses = st.builds(Pose2D, coords, coords, angles)


def assert_pose_close(a: Pose2D, b: Pose2D, tol: float = 1e-9) -> None:
    assert a.x == pytest.approx(b.x, abs=tol)
    assert a.y == pytest.approx(b.y, abs=tol)
    assert abs(normalize_angle(a.yaw - b.yaw)) <= tol


@pytest.mark.parametrize('angle, expected', [
    (0.0, 0.0),
    (math.pi, math.pi),
    (-math.pi, math.pi),
    (3.0 * math.pi, math.pi),
    (2.0 * math.pi, 0.0),
    (-0.5, -0.5),
    (4.0, 4.0 - 2.0 * math.pi),
])
def test_normalize_angle_values(angle, expected):
    assert normalize_angle(angle) == pytest.approx(expected, abs=1e-12)


@FUZZ
@given(st.floats(-1e4, 1e4, allow_nan=False))
def test_normalize_angle_range_and_equivalence(a):
    n = normalize_angle(a)
    assert -math.pi < n <= math.pi
    assert math.cos(n) == pytest.approx(math.cos(a), abs=1e-9)
    assert math.sin(n) == pytest.approx(math.sin(a), abs=1e-9)


def test_compose_moves_child_into_parent_frame():
    # A robot at (1, 2) facing +y: one metre ahead of it is (1, 3); left of it is (0, 2).
    robot = Pose2D(1.0, 2.0, math.pi / 2)
    assert_pose_close(robot.compose(Pose2D(1.0, 0.0, 0.0)), Pose2D(1.0, 3.0, math.pi / 2))
    assert_pose_close(robot.compose(Pose2D(0.0, 1.0, 0.5)), Pose2D(0.0, 2.0, math.pi / 2 + 0.5))


def test_inverse_and_relative_to_values():
    robot = Pose2D(1.0, 2.0, math.pi / 2)
    assert_pose_close(robot.inverse(), Pose2D(-2.0, 1.0, -math.pi / 2))
    assert_pose_close(Pose2D(1.0, 3.0, math.pi).relative_to(robot),
                      Pose2D(1.0, 0.0, math.pi / 2))


@FUZZ
@given(poses, poses)
def test_compose_inverse_and_relative_to_round_trip(a, b):
    identity = Pose2D(0.0, 0.0, 0.0)
    assert_pose_close(a.compose(a.inverse()), identity, 1e-9)
    assert_pose_close(a.inverse().compose(a), identity, 1e-9)
    rel = b.relative_to(a)
    assert_pose_close(a.compose(rel), b, 1e-8)
    assert -math.pi < a.compose(b).yaw <= math.pi
    # Distances are frame independent.
    assert math.hypot(rel.x, rel.y) == pytest.approx(a.distance_to(b), abs=1e-8)


@FUZZ
@given(poses, poses, poses)
def test_compose_is_associative(a, b, c):
    assert_pose_close(a.compose(b).compose(c), a.compose(b.compose(c)), 1e-7)


@FUZZ
@given(angles)
def test_quaternion_round_trip(yaw):
    q = quaternion_from_yaw(yaw)
    assert sum(v * v for v in q) == pytest.approx(1.0)
    assert q[0] == 0.0 and q[1] == 0.0
    back = yaw_from_quaternion(*q)
    assert -math.pi < back <= math.pi
    assert abs(normalize_angle(back - yaw)) < 1e-9


def test_yaw_from_quaternion_known_values():
    s = math.sqrt(0.5)
    assert yaw_from_quaternion(0.0, 0.0, s, s) == pytest.approx(math.pi / 2)
    assert yaw_from_quaternion(0.0, 0.0, -s, s) == pytest.approx(-math.pi / 2)
    assert yaw_from_quaternion(0.0, 0.0, 0.0, 1.0) == 0.0
    # A pure roll has no yaw.
    assert yaw_from_quaternion(math.sin(0.3), 0.0, 0.0, math.cos(0.3)) == pytest.approx(0.0)


def test_interpolate_pose_endpoints_and_midpoint():
    a = Pose2D(0.0, 0.0, 0.0)
    b = Pose2D(2.0, -4.0, 1.0)
    assert_pose_close(interpolate_pose(a, b, 0.0), a)
    assert_pose_close(interpolate_pose(a, b, 1.0), b)
    assert_pose_close(interpolate_pose(a, b, 0.5), Pose2D(1.0, -2.0, 0.5))
    # t is clamped to 0..1.
    assert_pose_close(interpolate_pose(a, b, 3.0), b)


def test_interpolate_pose_takes_the_shortest_arc():
    a = Pose2D(0.0, 0.0, 3.0)
    b = Pose2D(0.0, 0.0, -3.0)
    mid = interpolate_pose(a, b, 0.5)
    # Through pi (0.28 rad away), not through 0 (6 rad away).
    assert abs(abs(mid.yaw) - math.pi) < 1e-9


@pytest.mark.parametrize('twist', [(0.5, 0.0, 0.8), (0.3, 0.2, -1.1), (0.4, -0.1, 0.0),
                                   (0.0, 0.0, 0.7), (0.2, 0.0, 1e-12)])
def test_integrate_twist_matches_fine_numerical_integration(twist):
    start = Pose2D(1.0, -2.0, 0.4)
    exact = integrate_twist(start, *twist, 1.5)
    assert_pose_close(exact, unicycle(start, *twist, 1.5, substeps=20000), 1e-7)


def test_integrate_twist_full_circle_returns_to_start():
    start = Pose2D(1.0, 1.0, 0.3)
    end = integrate_twist(start, 0.5, 0.0, 1.0, 2.0 * math.pi)
    assert_pose_close(end, start, 1e-9)
    half = integrate_twist(start, 0.5, 0.0, 1.0, math.pi)
    # Radius 0.5 m: after half a circle the base is 1 m to the left of where it began.
    assert_pose_close(half.relative_to(start), Pose2D(0.0, 1.0, math.pi), 1e-9)
