"""Where the camera sits on the robot: the pose image points are projected with (ROS-free).

REP-103 base frame (x forward, y left, z up). ``height`` is above the ground, not above the
base frame's origin, because the ground plane is what a pixel is cast onto; ``pitch`` is
positive when the camera looks down. Camera-height, tilt and field-of-view mistakes are the
first cause of poor real-world results in the research systems, so the values are checked
and logged at start-up.
"""
from __future__ import annotations

from dataclasses import dataclass
import math


@dataclass(frozen=True)
class CameraMount:
    """Camera pose in the base frame: x, y (m), height above the ground (m), pitch (rad)."""

    x: float = 0.0
    y: float = 0.0
    height: float = 0.5
    pitch: float = 0.0
    source: str = 'parameters'  # or 'tf <base> -> <camera frame>'

    def __post_init__(self) -> None:
        for name in ('x', 'y', 'height', 'pitch'):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f'camera.{name} must be finite, got {getattr(self, name)!r}')
        if not 0.0 < self.height <= 5.0:
            raise ValueError(f'camera.height must be in (0, 5] m above the ground, got '
                             f'{self.height!r}')
        if not abs(self.pitch) < math.pi / 2:
            raise ValueError(f'camera.pitch must be within (-pi/2, pi/2) rad (positive looks '
                             f'down), got {self.pitch!r}')

    def describe(self) -> str:
        """One line for logs: where the camera is and where that came from."""
        return (f'camera at x={self.x:.2f} y={self.y:.2f} m, {self.height:.2f} m above the '
                f'ground, pitched {math.degrees(self.pitch):.1f} deg down ({self.source})')


def mount_from_transform(translation: tuple[float, float, float],
                         rotation: tuple[float, float, float, float], base_height: float,
                         optical: bool, source: str) -> CameraMount:
    """A mount from a base -> camera transform (TF), for an optical or a body-style frame.

    ``rotation`` is the quaternion (x, y, z, w) of the camera frame in the base frame.
    ``base_height`` is the height of the base frame's origin above the ground. The viewing
    direction is the camera frame's +z for an optical frame (z forward, y down, as image
    headers use) and +x for a body-style frame; its elevation below the horizon is the pitch.
    """
    qx, qy, qz, qw = rotation
    # The viewing axis rotated into the base frame (columns of the rotation matrix).
    if optical:
        view = (2 * (qx * qz + qw * qy), 2 * (qy * qz - qw * qx), 1 - 2 * (qx * qx + qy * qy))
    else:
        view = (1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy + qw * qz), 2 * (qx * qz - qw * qy))
    horizontal = math.hypot(view[0], view[1])
    pitch = math.atan2(-view[2], horizontal)
    return CameraMount(x=float(translation[0]), y=float(translation[1]),
                       height=float(translation[2]) + float(base_height), pitch=pitch,
                       source=f'tf {source}')
