"""Tests for vln_ros.core.collision: sensor points in the base frame, and source ages."""

import math

import numpy as np
import pytest

from vln_ros.core.camera_mount import CameraMount
from vln_ros.core.collision.obstacle_memory import ObstacleMemory
from vln_ros.core.collision.sensor_points import (
    SensorPose,
    depth_to_points,
    scan_to_points,
    to_base_plane,
)
from vln_ros.core.geometry import Pose2D, quaternion_from_yaw


def test_scan_returns_land_where_the_beams_point_and_invalid_ranges_drop():
    ranges = [1.0, float('inf'), 0.01, float('nan'), 2.0, 9.0]
    pts = scan_to_points(ranges, -math.pi / 2, math.pi / 4, 0.05, 8.0)
    assert pts.shape == (2, 3)
    assert pts[0] == pytest.approx([0.0, -1.0, 0.0], abs=1e-9)  # first beam: to the right
    assert pts[1] == pytest.approx([0.0, 2.0, 0.0], abs=1e-9)  # fifth beam: to the left


def test_scan_mounted_ahead_and_turned_moves_into_the_base_frame():
    pts = scan_to_points([1.0], 0.0, 0.1, 0.05, 8.0)
    pose = SensorPose.planar(0.2, 0.0, 0.3, yaw=math.pi / 2)
    base = to_base_plane(pts, pose, 0.05, 1.0)
    assert base == pytest.approx(np.array([[0.2, 1.0]]), abs=1e-9)
    assert len(to_base_plane(pts, pose, 0.4, 1.0)) == 0  # the scan plane is below min_height


def test_depth_pixels_become_points_and_the_floor_is_dropped():
    # A camera 0.5 m up, level: the centre pixel at 2 m depth is 2 m ahead at 0.5 m height;
    # the bottom rows see the floor, which min_height removes.
    fx = fy = 100.0
    cx, cy = 40.0, 30.0
    depth = np.full((61, 81), np.nan)
    depth[30, 40] = 2.0                       # straight ahead
    depth[60, 40] = 0.5 * fx / 30.0           # a floor pixel: 30 rows below centre
    mount = CameraMount(x=0.3, y=0.0, height=0.5, pitch=0.0)
    optical = depth_to_points(depth, fx, fy, cx, cy)
    assert len(optical) == 2
    base3 = optical @ SensorPose.optical(mount).rotation.T + np.array((0.3, 0.0, 0.5))
    floor = base3[np.argmin(base3[:, 2])]
    assert floor[2] == pytest.approx(0.0, abs=1e-9)
    kept = to_base_plane(optical, SensorPose.optical(mount), 0.05, 1.5)
    assert kept == pytest.approx(np.array([[2.3, 0.0]]), abs=1e-9)


def test_depth_from_a_pitched_camera_agrees_with_the_tf_form():
    mount = CameraMount(x=0.25, y=0.05, height=0.4, pitch=0.3)
    optical = SensorPose.optical(mount)
    # The same optical frame as a quaternion: R = Rz(0) Ry(pitch) * optical-to-body.
    q = _matrix_to_quaternion(optical.rotation)
    tf = SensorPose.from_quaternion((0.25, 0.05, 0.1), q, base_height=0.3)
    pts = np.array([[0.1, -0.2, 1.5], [0.0, 0.3, 0.7]])
    a = pts @ optical.rotation.T + np.asarray(optical.translation)
    b = pts @ tf.rotation.T + np.asarray(tf.translation)
    assert a == pytest.approx(b, abs=1e-9)


def test_depth_rejects_bad_intrinsics_and_subsamples():
    with pytest.raises(ValueError, match='fx'):
        depth_to_points(np.ones((4, 4)), 0.0, 1.0, 2.0, 2.0)
    assert len(depth_to_points(np.ones((120, 160)), 100.0, 100.0, 80.0, 60.0, stride=4)) \
        == 30 * 40


def test_memory_reports_missing_and_stale_sources_and_counts_age_from_the_older_time():
    mem = ObstacleMemory(['scan', 'depth'], 0.5)
    assert mem.stale(10.0) == ['scan', 'depth']
    mem.update('scan', np.zeros((0, 2)), stamp=10.0, arrival=10.0, pose=None)
    mem.update('depth', np.zeros((0, 2)), stamp=9.0, arrival=10.0, pose=None)  # delayed
    assert mem.stale(10.2) == ['depth']
    mem.update('depth', np.zeros((0, 2)), stamp=12.0, arrival=10.3, pose=None)  # clock ahead
    assert mem.stale(10.45) == []
    assert mem.stale(10.7) == ['scan']
    assert mem.stale(10.81) == ['scan', 'depth']
    mem.update('points', np.ones((3, 2)), 10.0, 10.0, None)  # not configured: ignored
    assert len(mem.points(None)) == 0


def test_memory_moves_old_points_into_the_current_base_frame():
    mem = ObstacleMemory(['scan'], 0.5)
    mem.update('scan', np.array([[1.0, 0.0]]), 0.0, 0.0, Pose2D(0.0, 0.0, 0.0))
    now = mem.points(Pose2D(0.2, 0.0, math.pi / 2))
    assert now == pytest.approx(np.array([[0.0, -0.8]]), abs=1e-9)


@pytest.mark.parametrize('sources,match', [(['scan', 'lidar'], 'unknown'),
                                           (['scan', 'scan'], 'twice')])
def test_memory_rejects_bad_source_lists(sources, match):
    with pytest.raises(ValueError, match=match):
        ObstacleMemory(sources, 0.5)


def _matrix_to_quaternion(m):
    w = math.sqrt(max(0.0, 1.0 + m[0, 0] + m[1, 1] + m[2, 2])) / 2.0
    x = (m[2, 1] - m[1, 2]) / (4.0 * w)
    y = (m[0, 2] - m[2, 0]) / (4.0 * w)
    z = (m[1, 0] - m[0, 1]) / (4.0 * w)
    return (x, y, z, w)


def test_quaternion_helper_matches_yaw():
    q = quaternion_from_yaw(0.7)
    pose = SensorPose.from_quaternion((0, 0, 0), q, 0.0)
    assert _matrix_to_quaternion(pose.rotation) == pytest.approx(q)
