"""Stuck detection: the planner wants the robot to move, and odometry says it does not.

A legged robot pushing against glass, a step its sensors miss, or a guard that finds no way
round all look the same from here: the planner keeps asking for motion, and the pose stays
where it was. After ``timeout`` seconds of that the robot is ``blocked``: it stops, and the
next model prompt says so. Progress is counted in metres, a turn as the arc its footprint's
rim sweeps, so a robot that turns in place as asked is not stuck.
"""
from __future__ import annotations

import math

from vln_ros.core.geometry import Pose2D, normalize_angle

__all__ = ['StuckDetector']

# Asked-for motion below these (m/s, rad/s) is standing still, not an attempt to move.
_MOVING_LINEAR = 0.03
_MOVING_ANGULAR = 0.1


class StuckDetector:
    """Watch intended commands against the pose; ``update`` returns True once stuck."""

    def __init__(self, timeout: float = 3.0, min_progress: float = 0.05,
                 radius: float = 0.3) -> None:
        if not timeout > 0.0 or not min_progress > 0.0 or not radius > 0.0:
            raise ValueError('stuck detection needs timeout, min_progress and radius > 0, got '
                             f'{timeout!r}, {min_progress!r}, {radius!r}')
        self.timeout = float(timeout)
        self.min_progress = float(min_progress)
        self.radius = float(radius)
        self._since: float | None = None  # when the current attempt to move began
        self._start: Pose2D | None = None  # the pose then

    def reset(self) -> None:
        """Forget the current attempt (a new path, a task switch, an e-stop)."""
        self._since = None
        self._start = None

    def update(self, now: float, intended: tuple[float, float, float],
               pose: Pose2D | None) -> bool:
        """Take the command the planner wanted this tick and the current pose."""
        vx, vy, wz = intended
        wants = math.hypot(vx, vy) >= _MOVING_LINEAR or abs(wz) >= _MOVING_ANGULAR
        if not wants or pose is None:
            self.reset()
            return False
        if self._since is None:
            self._since, self._start = now, pose
            return False
        start = self._start
        progress = math.hypot(pose.x - start.x, pose.y - start.y) \
            + self.radius * abs(normalize_angle(pose.yaw - start.yaw))
        if progress >= self.min_progress:
            self._since, self._start = now, pose  # it moves: watch the next stretch
            return False
        return now - self._since >= self.timeout
