"""Obstacle points from a laser scan, a depth image or a point cloud, in the base frame.

ROS-free: the node hands over the message's arrays and the sensor's pose in the base frame.
Heights are measured above the ground, like ``camera.height``, so that ``min_height`` /
``max_height`` drop the floor and the ceiling whatever the base frame's own height is. The
result is N x 2 (x, y) in the base frame (m, REP-103), what the guard works on.
"""
from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np

from vln_ros.core.camera_mount import CameraMount

__all__ = ['SensorPose', 'depth_to_points', 'scan_to_points', 'to_base_plane']


@dataclass(frozen=True)
class SensorPose:
    """A sensor frame in the base frame; the translation's z is above the ground (m)."""

    rotation: np.ndarray  # 3 x 3, columns: the sensor axes in the base frame
    translation: tuple[float, float, float]

    @staticmethod
    def planar(x: float, y: float, height: float, yaw: float = 0.0) -> SensorPose:
        """A level sensor (a laser scanner) at (x, y, height), turned by ``yaw``."""
        c, s = math.cos(yaw), math.sin(yaw)
        return SensorPose(np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]),
                          (x, y, height))

    @staticmethod
    def from_quaternion(translation: tuple[float, float, float],
                        rotation: tuple[float, float, float, float],
                        base_height: float) -> SensorPose:
        """From a base -> sensor transform (TF); ``base_height`` lifts it to ground heights."""
        qx, qy, qz, qw = rotation
        matrix = np.array([
            [1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qz * qw), 2 * (qx * qz + qy * qw)],
            [2 * (qx * qy + qz * qw), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qx * qw)],
            [2 * (qx * qz - qy * qw), 2 * (qy * qz + qx * qw), 1 - 2 * (qx * qx + qy * qy)],
        ])
        x, y, z = translation
        return SensorPose(matrix, (float(x), float(y), float(z) + float(base_height)))

    @staticmethod
    def optical(mount: CameraMount) -> SensorPose:
        """The optical frame (z forward, x right, y down) of a camera on ``mount``."""
        cp, sp = math.cos(mount.pitch), math.sin(mount.pitch)
        forward = (cp, 0.0, -sp)  # pitched down by ``pitch``
        right = (0.0, -1.0, 0.0)
        down = (-sp, 0.0, -cp)
        return SensorPose(np.array([right, down, forward]).T, (mount.x, mount.y, mount.height))


def scan_to_points(ranges, angle_min: float, angle_increment: float, range_min: float,
                   range_max: float) -> np.ndarray:
    """Return the valid returns of a LaserScan as N x 3 points in the scanner's frame.

    A return outside [range_min, range_max], or NaN/inf, is no obstacle (REP-117).
    """
    r = np.asarray(ranges, dtype=float)
    angles = angle_min + angle_increment * np.arange(len(r))
    with np.errstate(invalid='ignore'):
        ok = np.isfinite(r) & (r >= range_min) & (r <= range_max)
    r, angles = r[ok], angles[ok]
    return np.stack((r * np.cos(angles), r * np.sin(angles), np.zeros_like(r)), axis=1)


def depth_to_points(depth: np.ndarray, fx: float, fy: float, cx: float, cy: float,
                    stride: int = 1, max_range: float = 8.0) -> np.ndarray:
    """Return a depth image's pixels as N x 3 points in the optical frame.

    ``depth`` is in metres (convert 16UC1 millimetres first); every ``stride``-th pixel in
    both directions is used. Zero, NaN and values beyond ``max_range`` are no return.
    """
    if fx <= 0.0 or fy <= 0.0:
        raise ValueError(f'camera intrinsics must have fx, fy > 0, got {fx!r}, {fy!r}')
    stride = max(1, int(stride))
    z = np.asarray(depth, dtype=float)[::stride, ::stride]
    rows, cols = np.mgrid[0:depth.shape[0]:stride, 0:depth.shape[1]:stride]
    with np.errstate(invalid='ignore'):
        ok = np.isfinite(z) & (z > 0.0) & (z <= max_range)
    z, u, v = z[ok], cols[ok].astype(float), rows[ok].astype(float)
    return np.stack(((u - cx) * z / fx, (v - cy) * z / fy, z), axis=1)


def to_base_plane(points: np.ndarray, pose: SensorPose, min_height: float,
                  max_height: float) -> np.ndarray:
    """Move sensor-frame points (N x 3) into the base frame, as N x 2 (x, y).

    Only points between ``min_height`` and ``max_height`` above the ground are kept.
    """
    points = np.asarray(points, dtype=float).reshape(-1, 3)
    base = points @ pose.rotation.T + np.asarray(pose.translation)
    keep = (base[:, 2] >= min_height) & (base[:, 2] <= max_height)
    return base[keep, :2]
