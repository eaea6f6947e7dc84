"""Tests of the debug image overlay."""

import cv2
import numpy as np
import pytest

from vln_ros.core.debug_view import draw_debug_image
from vln_ros.core.parser import Waypoint, waypoints_for_action

H, W = 480, 640


@pytest.fixture
def frame():
    img = np.full((H, W, 3), 90, np.uint8)
    img[300:] = (60, 100, 60)  # a floor
    return img


def _changed(a, b):
    """Mask of pixels that differ."""
    return np.any(a != b, axis=2)


def test_returns_a_new_image_and_leaves_the_input_alone(frame):
    original = frame.copy()
    out = draw_debug_image(frame, 'a hall', 'forward', waypoints_for_action('forward', 0.9),
                           0.3, 0.0)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert out is not frame and not np.shares_memory(out, frame)
    np.testing.assert_array_equal(frame, original)
    assert _changed(out, frame).any()


def test_environment_text_is_drawn_at_the_top_and_wraps(frame):
    short = draw_debug_image(frame, 'hall', 'forward', [], 0.0, 0.0)
    long = draw_debug_image(frame, 'a very long description of the corridor ' * 4, 'forward',
                            [], 0.0, 0.0)
    rows_short = np.where(_changed(short, frame)[:, W // 2:].any(axis=1))[0]
    rows_long = np.where(_changed(long, frame)[:, W // 2:].any(axis=1))[0]
    # The wrapped text uses more lines of the top box, and spans the right half.
    assert rows_long.min() < 20
    assert (rows_long < H // 3).sum() > (rows_short < H // 3).sum()


def test_non_ascii_text_does_not_fail(frame):
    out = draw_debug_image(frame, '走廊尽头有一扇门 door', '前进', [], 0.1, -0.1, 'ok')
    assert out.shape == frame.shape


def test_projected_path_of_a_pitched_camera_lands_on_the_floor(frame):
    points = [Waypoint(0.6, 0.0, 0.0, 1.0), Waypoint(1.0, 0.0, 0.0, 1.0)]
    empty = draw_debug_image(frame, 'x', 'forward', [], 0.0, 0.0, camera_pitch=0.6)
    path = draw_debug_image(frame, 'x', 'forward', points, 0.0, 0.0, camera_pitch=0.6)
    diff = _changed(path, empty)
    ys, xs = np.nonzero(diff[:, W // 4: 3 * W // 4])
    assert ys.size > 50
    # Straight ahead: the path sits around the vertical centre line, below the horizon.
    assert abs(np.median(xs) + W // 4 - W / 2) < 20
    assert ys.min() > H / 2 - 60


def test_left_waypoints_are_drawn_left_of_right_ones(frame):
    kwargs = {'camera_pitch': 0.6}
    base = draw_debug_image(frame, 'x', 'turn', [], 0.0, 0.0, **kwargs)
    left = draw_debug_image(frame, 'x', 'turn', [Waypoint(0.9, 0.5, 0.3, 0.8)], 0, 0, **kwargs)
    right = draw_debug_image(frame, 'x', 'turn', [Waypoint(0.9, -0.5, -0.3, 0.8)], 0, 0,
                             **kwargs)
    middle = slice(H // 4, 3 * H // 4)  # away from the text and the insets
    xl = np.nonzero(_changed(left, base)[middle])[1]
    xr = np.nonzero(_changed(right, base)[middle])[1]
    assert xl.size and xr.size
    assert np.median(xl) < W / 2 < np.median(xr)


def test_confidence_sets_the_dot_colour(frame):
    def dot_colour(conf):
        out = draw_debug_image(frame, 'x', 'f', [Waypoint(1.0, 0.0, 0.0, conf)], 0, 0,
                               camera_pitch=0.6)
        # Ground point 1 m ahead with pitch 0.6 rad: project it as the module does.
        f = (W / 2) / np.tan(np.radians(45))
        z = 1.0 * np.cos(0.6) + 0.5 * np.sin(0.6)
        v = H / 2 + f * (-1.0 * np.sin(0.6) + 0.5 * np.cos(0.6)) / z
        return out[int(v), W // 2].astype(int)
    low, high = dot_colour(0.0), dot_colour(1.0)
    assert high[1] > 200 and high[2] < 60  # green
    assert low[2] > 200 and low[1] < 60  # red


def test_velocity_indicator_follows_the_sign(frame):
    zero = draw_debug_image(frame, 'x', 'f', [], 0.0, 0.0)
    inset = slice(H - H * 28 // 100, H), slice(W - H * 28 // 100 - 6, W)

    def changed_cols(lin, ang):
        out = draw_debug_image(frame, 'x', 'f', [], lin, ang)
        return np.nonzero(_changed(out, zero)[inset])

    ys_fwd, _ = changed_cols(0.8, 0.0)
    ys_back, _ = changed_cols(-0.8, 0.0)
    assert np.median(ys_fwd) < np.median(ys_back)  # forward points up
    _, xs_ccw = changed_cols(0.0, 0.8)
    _, xs_cw = changed_cols(0.0, -0.8)
    assert np.median(xs_ccw) < np.median(xs_cw)  # counter-clockwise points left


def test_status_changes_the_action_box_colour(frame):
    ok = draw_debug_image(frame, 'x', 'forward', [], 0, 0, 'ok')
    err = draw_debug_image(frame, 'x', 'forward', [], 0, 0, 'vlm_error')
    box = (slice(20, 80), slice(0, 200))
    assert np.any(ok[box] != err[box])


@pytest.mark.parametrize('shape', [(120, 160, 3), (30, 40, 3), (720, 1280, 3), (48, 64)])
def test_odd_sizes_gray_input_and_bad_numbers(shape):
    img = np.zeros(shape, np.uint8)
    points = [Waypoint(float('nan'), 0.0, 0.0, 0.5), Waypoint(0.0, 0.0, 0.0, 0.5),
              Waypoint(1.0, 1.0, 0.5, 1.0)]
    out = draw_debug_image(img, '', '', points, float('inf'), float('nan'), status='')
    assert out.shape == shape[:2] + (3,)


def test_output_is_encodable(frame):
    out = draw_debug_image(frame, 'hall', 'stop', waypoints_for_action('stop'), 0, 0, 'stop')
    ok, _ = cv2.imencode('.png', out)
    assert ok
