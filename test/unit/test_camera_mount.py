"""Camera mounting: validation, and the pitch read off a TF transform."""
import math

import pytest

from vln_ros.core.camera_mount import CameraMount, mount_from_transform


def _quat_pitch(pitch):
    """Quaternion of a rotation about +y by pitch (positive pitch tilts +x down)."""
    return (0.0, math.sin(pitch / 2), 0.0, math.cos(pitch / 2))


def _optical(pitch):
    """Quaternion of an optical frame (z forward, x right, y down) pitched down by pitch."""
    # body -> optical is R_y(pitch) * R_fixed, with R_fixed mapping optical z to body x.
    fixed = (-0.5, 0.5, -0.5, 0.5)
    body = _quat_pitch(pitch)
    ax, ay, az, aw = body
    bx, by, bz, bw = fixed
    return (aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz)


def test_defaults_and_description():
    mount = CameraMount()
    assert (mount.x, mount.y, mount.height, mount.pitch) == (0.0, 0.0, 0.5, 0.0)
    assert 'above the ground' in mount.describe() and 'parameters' in mount.describe()


@pytest.mark.parametrize('kwargs, word', [
    ({'height': 0.0}, 'camera.height'), ({'height': -0.3}, 'camera.height'),
    ({'pitch': 1.6}, 'camera.pitch'), ({'x': float('nan')}, 'camera.x'),
])
def test_invalid_mounts_are_refused_with_the_parameter_name(kwargs, word):
    with pytest.raises(ValueError, match=word.replace('.', r'\.')):
        CameraMount(**kwargs)


@pytest.mark.parametrize('pitch', [0.0, 0.2, 0.5, -0.1])
def test_pitch_from_a_body_style_frame(pitch):
    mount = mount_from_transform((0.3, 0.0, 0.1), _quat_pitch(pitch), 0.3, False, 'a -> b')
    assert mount.pitch == pytest.approx(pitch, abs=1e-9)
    assert mount.height == pytest.approx(0.4) and mount.x == pytest.approx(0.3)
    assert mount.source == 'tf a -> b'


@pytest.mark.parametrize('pitch', [0.0, 0.3, -0.2])
def test_pitch_from_an_optical_frame(pitch):
    mount = mount_from_transform((0.2, 0.05, 0.5), _optical(pitch), 0.0, True, 'x')
    assert mount.pitch == pytest.approx(pitch, abs=1e-9)
    assert mount.y == pytest.approx(0.05)
