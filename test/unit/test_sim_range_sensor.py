"""Tests of the simulated laser scanner and of reading PointCloud2 data without ROS."""

import math

import numpy as np
import pytest

from test.unit.test_sim_world import BASE
from vln_ros.core.collision.cloud import cloud_xyz
from vln_ros.core.collision.sensor_points import SensorPose, scan_to_points, to_base_plane
from vln_ros.sim.range_sensor import ScanConfig, simulate_scan
from vln_ros.sim.sim_pose import Pose
from vln_ros.sim.world import Scenario, World


def world() -> World:
    return World(Scenario.from_dict(BASE), seed=0)


def test_scan_sees_the_walls_and_the_pillar_where_they_are():
    w = world()  # 6 x 4 m room; a 0.5 m box at (3.0, 3.5), a pillar of radius 0.15 at (3, 0.5)
    cfg = ScanConfig(noise=0.0)
    ranges = simulate_scan(w, Pose(3.0, 2.0, 0.0), cfg, np.random.default_rng(0))
    angles = cfg.angle_min + cfg.angle_increment * np.arange(cfg.beams)
    ahead = ranges[np.argmin(np.abs(angles))]
    left = ranges[np.argmin(np.abs(angles - math.pi / 2))]
    right = ranges[np.argmin(np.abs(angles + math.pi / 2))]
    assert left == pytest.approx(3.5 - 0.25 - 2.0, abs=1e-6)  # the box, not the wall
    assert right == pytest.approx(2.0 - 0.5 - 0.15, abs=1e-3)  # the pillar, not the wall
    assert ahead < 3.0  # the red door (a box landmark) on the far wall, or the wall
    assert len(ranges) == cfg.beams and np.all(ranges >= cfg.range_min)


def test_scan_noise_is_seeded_and_the_range_limit_gives_no_return():
    w = world()
    cfg = ScanConfig(noise=0.01, range_max=1.0)
    a = simulate_scan(w, Pose(1.0, 2.0, 0.0), cfg, np.random.default_rng(3))
    b = simulate_scan(w, Pose(1.0, 2.0, 0.0), cfg, np.random.default_rng(3))
    assert np.array_equal(a, b)
    assert np.any(np.isinf(a)) and np.all(a[np.isfinite(a)] <= 1.0)


def test_scan_points_in_the_base_frame_match_the_world():
    w = world()
    cfg = ScanConfig(noise=0.0)
    pose = Pose(1.5, 2.0, math.pi / 2)  # facing the +y wall, 2 m away
    ranges = simulate_scan(w, pose, cfg, np.random.default_rng(0))
    pts = to_base_plane(scan_to_points(ranges, cfg.angle_min, cfg.angle_increment,
                                       cfg.range_min, cfg.range_max),
                        SensorPose.planar(0.0, 0.0, 0.3), 0.05, 1.0)
    ahead = pts[np.abs(pts[:, 1]) < 0.05]
    assert ahead[:, 0] == pytest.approx(np.full(len(ahead), 2.0), abs=0.01)


def _cloud(points, step=16, big=False):
    dtype = np.dtype({'names': ['x', 'y', 'z', 'i'], 'formats': ['f4', 'f4', 'f4', 'f4'],
                      'offsets': [0, 4, 8, 12], 'itemsize': step})
    if big:
        dtype = dtype.newbyteorder('>')
    arr = np.zeros(len(points), dtype=dtype)
    for i, (x, y, z) in enumerate(points):
        arr[i] = (x, y, z, 7.0)
    return arr.tobytes(), [('x', 0, 7), ('y', 4, 7), ('z', 8, 7), ('intensity', 12, 7)]


@pytest.mark.parametrize('big', [False, True])
def test_cloud_reads_xyz_whatever_else_is_packed_and_drops_nans(big):
    data, fields = _cloud([(1.0, 2.0, 0.5), (float('nan'), 0.0, 0.0), (-1.0, 0.5, 2.0)],
                          big=big)
    xyz = cloud_xyz(data, fields, 16, is_bigendian=big)
    assert xyz == pytest.approx(np.array([[1.0, 2.0, 0.5], [-1.0, 0.5, 2.0]]))


@pytest.mark.parametrize('fields,step,match', [
    ([('x', 0, 7), ('y', 4, 7)], 16, 'no z'),
    ([('x', 0, 7), ('y', 4, 7), ('z', 8, 2)], 16, 'datatype'),
    ([('x', 0, 7), ('y', 4, 7), ('z', 8, 7)], 15, 'whole number'),
])
def test_cloud_rejects_layouts_it_cannot_read(fields, step, match):
    with pytest.raises(ValueError, match=match):
        cloud_xyz(bytes(48), fields, step)


def test_depth_image_agrees_with_the_scan_and_lands_in_the_base_frame():
    from vln_ros.core.camera_mount import CameraMount
    from vln_ros.core.collision.sensor_points import depth_to_points
    from vln_ros.sim.render import CameraRenderer
    w = world()
    renderer = CameraRenderer(160, 120, 90.0)
    pose = Pose(1.5, 2.0, math.pi / 2)  # facing the +y wall, 2 m away (camera at the centre)
    depth = renderer.depth(w, pose)
    assert depth.shape == (120, 160) and depth.dtype == np.float32
    centre = depth[60, 80]
    assert centre == pytest.approx(2.0, abs=0.02)
    # Bottom rows see the floor; what the guard keeps of the image is the wall, 2 m ahead.
    cam_h = w.scenario.robot.camera_height
    pts = depth_to_points(depth, renderer.focal, renderer.focal, renderer.cx, renderer.cy, 2)
    base = to_base_plane(pts, SensorPose.optical(CameraMount(height=cam_h)), 0.05, 1.0)
    ahead = base[np.abs(base[:, 1]) < 0.3]
    assert len(ahead) and ahead[:, 0] == pytest.approx(np.full(len(ahead), 2.0), abs=0.05)
    floor_z = (pts @ SensorPose.optical(CameraMount(height=cam_h)).rotation.T)[:, 2] + cam_h
    assert np.nanmin(floor_z) == pytest.approx(0.0, abs=0.02)


def test_depth_sees_a_landmark_in_front_of_the_wall():
    from vln_ros.sim.render import CameraRenderer
    w = world()
    renderer = CameraRenderer(160, 120, 90.0)
    depth = renderer.depth(w, Pose(3.0, 2.0, math.pi / 2))  # the green box 1.25 m ahead
    assert depth[70, 80] == pytest.approx(1.25, abs=0.02)  # below the box top (0.5 m)
