"""Tests of the simulator's first-person camera and top-down map."""

import math
import time

import numpy as np
import pytest

from vln_ros.sim.render import CameraRenderer, render_topdown
from vln_ros.sim.sim_pose import Pose
from vln_ros.sim.world import Scenario, World


@pytest.fixture(scope='module')
def renderer():
    return CameraRenderer()


@pytest.fixture(scope='module')
def corridor():
    return World(Scenario.load('corridor_door'))


def is_colour(pixels, rgb, tol=0.25):
    """Return a mask of BGR pixels whose chromaticity matches an RGB colour."""
    target = np.asarray(rgb[::-1], float)
    target /= target.sum()
    px = pixels.astype(float)
    sums = px.sum(axis=-1, keepdims=True)
    chroma = px / np.maximum(sums, 1.0)
    return (np.abs(chroma - target).max(axis=-1) < tol * 0.4) & (sums[..., 0] > 60)


def test_shape_and_dtype(renderer, corridor):
    image = renderer.render(corridor)
    assert image.shape == (480, 640, 3) and image.dtype == np.uint8
    small = CameraRenderer(160, 120, 70.0).render(corridor, (1.2, 1.0, 0.0))
    assert small.shape == (120, 160, 3) and small.dtype == np.uint8
    assert image.std() > 20                      # textured, not a flat fill


def test_moving_changes_the_image(renderer, corridor):
    start = Pose(1.2, 1.0, 0.0)
    a = renderer.render(corridor, start).astype(int)
    b = renderer.render(corridor, start.moved(0.2, 0.0, 0.0)).astype(int)
    changed = (np.abs(a - b).max(axis=-1) > 20).mean()
    assert changed > 0.1, f'only {changed:.1%} of the pixels changed'
    c = renderer.render(corridor, start.moved(0.0, 0.0, 0.1)).astype(int)
    assert (np.abs(a - c).max(axis=-1) > 20).mean() > 0.1
    # The same pose renders the same image (no randomness).
    assert np.array_equal(a, renderer.render(corridor, start).astype(int))


def test_landmark_ahead_is_at_the_centre_column_in_its_colour(renderer, corridor):
    image = renderer.render(corridor, Pose(1.2, 1.0, 0.0))
    centre = image[:, 320]
    red = is_colour(centre, (220, 30, 30))
    assert red.sum() > 60, 'the red door must fill the centre column around the horizon'
    rows = np.nonzero(red)[0]
    assert rows.min() < 240 < rows.max()
    # Nothing red at the image borders, the door is only ahead.
    assert not is_colour(image[:, :60], (220, 30, 30)).any()
    # Turned 90 degrees left the door leaves the view.
    side = renderer.render(corridor, Pose(1.2, 1.0, math.pi / 2))
    assert not is_colour(side, (220, 30, 30)).any()


def test_landmark_on_the_left_appears_left_of_centre(renderer):
    world = World(Scenario.load('switch_mid_way'))
    pose = Pose(2.5, 2.5, 0.5)                    # blue pillar at about 40 deg left
    blue = is_colour(renderer.render(world, pose), (30, 60, 220))
    cols = np.nonzero(blue.any(axis=0))[0]
    assert len(cols) > 10 and cols.max() < 320
    bearing = math.atan2(*reversed(pose.to_local(4.0, 4.2)))
    expected = 320 - renderer.focal * math.tan(bearing)
    assert cols.min() - 5 <= expected <= cols.max() + 5


def test_walls_hide_landmarks_and_short_boxes_show_the_wall_above():
    d = {
        'name': 'occlusion',
        'world': {'size': [6, 4], 'walls': [[3, 1, 3, 3]], 'landmarks': [
            {'name': 'red box', 'kind': 'box', 'color': [220, 30, 30], 'position': [5, 2]},
            {'name': 'green box', 'kind': 'box', 'color': [30, 180, 50], 'position': [2, 0.6],
             'size': 0.4, 'height': 0.3}]},
        'robot': {'start': [1, 2, 0]},
    }
    world = World(Scenario.from_dict(d))
    renderer = CameraRenderer(320, 240)
    image = renderer.render(world)
    assert not is_colour(image, (220, 30, 30)).any()
    # Facing the low green box: green below the horizon only, since the camera is higher.
    towards = math.atan2(0.6 - 2.0, 2.0 - 1.0)
    image = renderer.render(world, Pose(1, 2, towards))
    green = is_colour(image, (30, 180, 50))
    rows = np.nonzero(green.any(axis=1))[0]
    assert len(rows) and rows.min() > 120


def test_render_time_is_printed(renderer, corridor):
    renderer.render(corridor)
    count = 30
    start = time.perf_counter()
    for i in range(count):
        renderer.render(corridor, Pose(1.2 + 0.01 * i, 1.0, 0.01 * i))
    per_frame = (time.perf_counter() - start) / count
    print(f'render 640x480: {per_frame * 1e3:.1f} ms per frame')


def test_topdown_map(corridor):
    trail = [(1.2, 1.0), Pose(2.0, 1.0, 0.0), (3.0, 1.1, 0.0)]
    image = render_topdown(corridor, trail, size=400)
    assert image.shape == (400, 400, 3) and image.dtype == np.uint8
    assert is_colour(image, (220, 30, 30)).sum() > 20          # the door
    assert is_colour(image, (230, 210, 30)).sum() > 20         # the yellow box
    trail_pixels = np.all(image == (200, 120, 0), axis=-1).sum()
    assert trail_pixels > 50
    empty = render_topdown(corridor, [], size=400)
    assert np.all(empty == (200, 120, 0), axis=-1).sum() < trail_pixels


def test_bad_camera_parameters():
    with pytest.raises(ValueError):
        CameraRenderer(1, 480)
    with pytest.raises(ValueError):
        CameraRenderer(hfov_deg=180.0)
