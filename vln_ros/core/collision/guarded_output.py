"""The guard between the planner's tracking command and the velocity limiter.

The planner hands over what it wants to send; this decides what may be sent, given the
newest obstacle points and their ages. The approach rule runs before the limiter, so that
the limiter's own ramp-down is what stops the robot short of an obstacle; the stop rule runs
again on the limiter's output, because a ramp that is still moving is a command too.
"""
from __future__ import annotations

import numpy as np

from vln_ros.core.collision.guard import CollisionGuard, GuardVerdict
from vln_ros.core.collision.obstacle_memory import ObstacleMemory
from vln_ros.core.geometry import Pose2D
from vln_ros.core.velocity_limits import VelocityLimiter

__all__ = ['GuardedOutput']

Twist3 = tuple[float, float, float]


class GuardedOutput:
    """Apply a CollisionGuard to each command, with the points of an ObstacleMemory."""

    def __init__(self, guard: CollisionGuard, memory: ObstacleMemory) -> None:
        self.guard = guard
        self.memory = memory
        self.verdict: GuardVerdict | None = None  # of the last tick, for markers and logs
        self.stale_sources: list[str] = []

    def on_points(self, source: str, points: np.ndarray, stamp: float, now: float,
                  pose: Pose2D | None) -> None:
        """Take a source's points (N x 2, base frame at ``stamp``; ``pose``: odometry then)."""
        self.memory.update(source, points, stamp, now, pose)

    def tracking(self, target: Twist3, limiter: VelocityLimiter, dt: float, now: float,
                 pose: Pose2D | None) -> tuple[Twist3, str | None]:
        """Return the command to send for a tracking ``target``, and a stop reason.

        The reason is 'stale_sensor' or 'obstacle' when the guard stopped the robot, None when
        the command went through (maybe scaled).
        """
        self.stale_sources = self.memory.stale(now)
        points = self.memory.points(pose)
        if self.stale_sources:
            self.verdict = self.guard.stale()
            return limiter.hard_stop(), 'stale_sensor'
        self.verdict = self.guard.check(*target, points, limiter.limits.max_linear_acc)
        if self.verdict.state == 'stop':
            return limiter.hard_stop(), 'obstacle'
        out = limiter.apply(*self.verdict.command, dt)
        if self.guard.must_stop(*out, points):
            return limiter.hard_stop(), 'obstacle'
        return out, None

    def ramp(self, out: Twist3, limiter: VelocityLimiter, now: float,
             pose: Pose2D | None) -> tuple[Twist3, str | None]:
        """Check a ramp-down output of the limiter; the reason as for ``tracking``.

        The ramp is cut at once when a source is stale or the stop rule holds.
        """
        self.stale_sources = self.memory.stale(now)
        if out == (0.0, 0.0, 0.0):
            self.verdict = None
            return out, None
        if self.stale_sources:
            self.verdict = self.guard.stale()
            return limiter.hard_stop(), 'stale_sensor'
        points = self.memory.points(pose)
        if self.guard.must_stop(*out, points):
            self.verdict = GuardVerdict((0.0, 0.0, 0.0), 'stop', 0.0)
            return limiter.hard_stop(), 'obstacle'
        self.verdict = None
        return out, None
