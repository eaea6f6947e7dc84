"""A simulated planar laser scanner: ranges from the true pose by ray casting, with noise.

It sees what the camera sees (walls, boxes, pillars) from the robot's true pose, as a real
scanner would, while the robot's odometry drifts. The defaults are a typical 270-degree
indoor scanner (0.5-degree steps, 0.05-8 m, about 1 cm of noise, 10 Hz).
"""
from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np

from vln_ros.sim.rays import ray_circle, ray_segment
from vln_ros.sim.sim_pose import Pose

__all__ = ['ScanConfig', 'cast_ranges', 'simulate_scan']


@dataclass(frozen=True)
class ScanConfig:
    """The scanner: field of view (rad), beams, range limits (m), noise (m), rate (Hz)."""

    fov: float = math.radians(270.0)
    beams: int = 541
    range_min: float = 0.05
    range_max: float = 8.0
    noise: float = 0.01
    rate: float = 10.0

    @property
    def angle_min(self) -> float:
        """Angle of the first beam (rad, base frame: the scan is centred ahead)."""
        return -0.5 * self.fov

    @property
    def angle_increment(self) -> float:
        """Angle between beams (rad)."""
        return self.fov / (self.beams - 1)


def cast_ranges(world, x: float, y: float, angles: np.ndarray) -> np.ndarray:
    """Return the distance along each world-frame ray angle from (x, y) (inf: no hit)."""
    dx, dy = np.cos(angles), np.sin(angles)
    best = np.full(len(angles), np.inf)
    if len(world.solid_segments):
        best, _, _ = ray_segment(x, y, dx, dy, world.solid_segments)
    for cx, cy, r in world.pillars:
        t, _ = ray_circle(x, y, dx, dy, float(cx), float(cy), float(r))
        best = np.minimum(best, t)
    return best


def simulate_scan(world, pose: Pose, cfg: ScanConfig, rng: np.random.Generator,
                  mount: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """Return a scan's ranges (inf beyond range_max) from the robot at ``pose``.

    ``mount`` is the scanner's (x, y, yaw) in the base frame.
    """
    c, s = math.cos(pose.yaw), math.sin(pose.yaw)
    ox, oy = pose.x + c * mount[0] - s * mount[1], pose.y + s * mount[0] + c * mount[1]
    beam = cfg.angle_min + cfg.angle_increment * np.arange(cfg.beams)
    ranges = cast_ranges(world, ox, oy, pose.yaw + mount[2] + beam)
    if cfg.noise > 0.0:
        ranges = ranges + rng.normal(0.0, cfg.noise, len(ranges))
    # Past the maximum range a scanner reports no return (REP-117: +inf).
    return np.where(ranges > cfg.range_max, np.inf, np.maximum(ranges, cfg.range_min))
