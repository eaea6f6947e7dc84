"""The guard between the planner's tracking command and the velocity limiter.

The planner hands over what it wants to send; this decides what may be sent, given the
newest obstacle points and their ages. The approach rule runs before the limiter, so that
the limiter's own ramp-down is what stops the robot short of an obstacle; the stop rule runs
again on the limiter's output, because a ramp that is still moving is a command too. When
the straight way is blocked before the goal, a detour arc (detour.py) replaces the command.
"""
from __future__ import annotations

import math

import numpy as np

from vln_ros.core.collision.detour import Detour, arc_is_clear, choose_detour, thin_points
from vln_ros.core.collision.guard import CollisionGuard, GuardVerdict, supported
from vln_ros.core.collision.obstacle_memory import ObstacleMemory
from vln_ros.core.geometry import Pose2D
from vln_ros.core.velocity_limits import VelocityLimiter

__all__ = ['GuardedOutput']

Twist3 = tuple[float, float, float]

# An obstacle this much (m) short of the goal is in the way; nearer the goal it is the goal
# itself (the door the robot was sent to), which the approach rule stops short of.
_IN_THE_WAY = 0.3
# The way ahead is judged over this length (m); a detour is searched again this often (s),
# and held, still guarded, in between (a 50 Hz search would not fit in a tick).
_LOOK_AHEAD = 1.0
_REPLAN_S = 0.1
# Forward speed (m/s) below which the command is a turn, not a way to check.
_FORWARD = 0.05


class GuardedOutput:
    """Apply a CollisionGuard to each command, with the points of an ObstacleMemory."""

    def __init__(self, guard: CollisionGuard, memory: ObstacleMemory) -> None:
        self.guard = guard
        self.memory = memory
        self.verdict: GuardVerdict | None = None  # of the last tick, for markers and logs
        self.stale_sources: list[str] = []
        self._detour: Detour | None = None
        self._detour_at = -1e9

    def on_points(self, source: str, points: np.ndarray, stamp: float, now: float,
                  pose: Pose2D | None) -> None:
        """Take a source's points (N x 2, base frame at ``stamp``; ``pose``: odometry then).

        Thinned to one point per 5 cm cell once here, not at every tick: a depth image gives
        thousands of points, and the rules need only where obstacles are. Lone points (noise)
        are dropped here too (guard.supported).
        """
        points = thin_points(np.asarray(points, dtype=float).reshape(-1, 2))
        self.memory.update(source, supported(points, self.guard.config.min_points), stamp, now,
                           pose)

    def tracking(self, target: Twist3, limiter: VelocityLimiter, dt: float, now: float,
                 pose: Pose2D | None, goal: tuple[float, float] | None = None,
                 heading: float | None = None) -> tuple[Twist3, str | None]:
        """Return the command to send for a tracking ``target``, and a stop reason.

        The reason is 'stale_sensor' or 'obstacle' when the guard stopped the robot, None when
        the command went through (maybe scaled, or replaced by a detour towards ``goal``, the
        path's end in the base frame, where the path heads ``heading``).
        """
        self.stale_sources = self.memory.stale(now)
        points = self.memory.points(pose)
        if self.stale_sources:
            self.verdict = self.guard.stale()
            return limiter.hard_stop(), 'stale_sensor'
        decel = limiter.limits.max_linear_acc
        self.verdict = self.guard.check(*target, points, decel)
        detour = self._detour_for(target, goal, heading, points, limiter, now)
        if detour is not None:
            verdict = self.guard.check(detour.vx, 0.0, detour.wz, points, decel)
            if verdict.state != 'stop':
                verdict.state = 'detour'
                self.verdict = verdict
        if self.verdict.state == 'stop':
            return limiter.hard_stop(), 'obstacle'
        out = limiter.apply(*self.verdict.command, dt)
        if self.guard.must_stop(*out, points):
            return limiter.hard_stop(), 'obstacle'
        return out, None

    def _detour_for(self, target: Twist3, goal: tuple[float, float] | None,
                    heading: float | None, points: np.ndarray, limiter: VelocityLimiter,
                    now: float) -> Detour | None:
        """The arc to drive instead of ``target`` when its way to the goal is blocked."""
        if goal is None:
            self._detour = None
            return None
        length = min(_LOOK_AHEAD, math.hypot(*goal) - _IN_THE_WAY)
        if length <= _FORWARD:
            self._detour = None  # what lies ahead is the goal itself
            return None
        if self._detour is None:
            if target[0] < _FORWARD or arc_is_clear(self.guard, points, target[0], target[2],
                                                    length):
                return None
        elif self._way_is_clear(points, goal, length):
            # Hysteresis: the detour ends only once the straight way to the goal keeps the
            # slowdown margin, or the turn back onto it cuts the corner it just went round.
            self._detour = None
            return None
        if self._detour is None or now - self._detour_at >= _REPLAN_S:
            lim = limiter.limits
            last = self._detour  # a turn on the spot (not a hold) keeps its side
            turning = last is not None and last.vx == 0.0 and last.wz != 0.0
            side = math.copysign(1.0, last.wz) if turning else 0.0
            self._detour = choose_detour(self.guard, points, goal, lim.max_linear_vel,
                                         lim.max_angular_vel, side=side, heading=heading)
            self._detour_at = now
        return self._detour

    def _way_is_clear(self, points: np.ndarray, goal: tuple[float, float],
                      length: float) -> bool:
        """True when turning to the goal and driving straight at it keep the slowdown margin."""
        bearing = math.atan2(goal[1], goal[0])
        c, s = math.cos(bearing), math.sin(bearing)
        facing = np.stack((c * points[:, 0] + s * points[:, 1],
                           -s * points[:, 0] + c * points[:, 1]), axis=1)
        margin = self.guard.config.slowdown_margin
        radius = self.guard.footprint.radius + margin
        turn_clear = abs(bearing) < 0.2 or not np.any(
            np.hypot(points[:, 0], points[:, 1]) <= radius)
        return turn_clear and arc_is_clear(self.guard, facing, 0.3, 0.0, length, margin)

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
