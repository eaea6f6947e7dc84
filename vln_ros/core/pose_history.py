"""A short, time-indexed history of base poses, and dead reckoning to fill one.

The planner needs the robot's pose at a keyframe's capture time, which is several
seconds in the past when the model's answer arrives; this buffer answers that by
interpolation. Time values are float seconds from the caller's clock (ROS stamps).
"""

import bisect
import math

from vln_ros.core.geometry import Pose2D, integrate_twist, interpolate_pose

__all__ = ['DeadReckoner', 'PoseHistory']


class PoseHistory:
    """Poses sorted by stamp, pruned to ``max_age`` seconds behind the newest one."""

    def __init__(self, max_age: float = 30.0, max_extrapolation: float = 0.2) -> None:
        if not max_age > 0.0:
            raise ValueError(f'max_age must be > 0, got {max_age}')
        if not max_extrapolation >= 0.0:
            raise ValueError(f'max_extrapolation must be >= 0, got {max_extrapolation}')
        self.max_age = float(max_age)
        self.max_extrapolation = float(max_extrapolation)
        self._stamps: list[float] = []
        self._poses: list[Pose2D] = []

    def add(self, stamp: float, pose: Pose2D) -> None:
        """Insert a pose; out-of-order stamps go to their place, an equal stamp replaces."""
        if not math.isfinite(stamp) or not all(
            math.isfinite(v) for v in (pose.x, pose.y, pose.yaw)
        ):
            return  # a NaN pose would poison every interpolation that touches it
        if self._stamps and stamp < self._stamps[-1] - self.max_age:
            return  # older than what we keep anyway
        i = bisect.bisect_left(self._stamps, stamp)
        if i < len(self._stamps) and self._stamps[i] == stamp:
            self._poses[i] = pose
        else:
            self._stamps.insert(i, stamp)
            self._poses.insert(i, pose)
        self._prune()

    def at(self, stamp: float) -> Pose2D | None:
        """Return the pose at ``stamp``, interpolated between its two neighbours.

        A stamp slightly after the newest (by at most ``max_extrapolation``) gets the
        newest pose; a stamp before the oldest or further in the future gets None.
        """
        if not self._stamps or not math.isfinite(stamp):
            return None
        newest = self._stamps[-1]
        if stamp >= newest:
            if stamp - newest <= self.max_extrapolation:
                return self._poses[-1]
            return None
        if stamp < self._stamps[0]:
            return None
        i = bisect.bisect_right(self._stamps, stamp)  # stamps[i-1] <= stamp < stamps[i]
        t0, t1 = self._stamps[i - 1], self._stamps[i]
        return interpolate_pose(self._poses[i - 1], self._poses[i], (stamp - t0) / (t1 - t0))

    def latest(self) -> tuple[float, Pose2D] | None:
        """Return (stamp, pose) of the newest entry, or None when empty."""
        if not self._stamps:
            return None
        return self._stamps[-1], self._poses[-1]

    def oldest_stamp(self) -> float | None:
        """Return the stamp of the oldest entry, or None when empty."""
        return self._stamps[0] if self._stamps else None

    def clear(self) -> None:
        """Forget every pose."""
        self._stamps.clear()
        self._poses.clear()

    def __len__(self) -> int:
        return len(self._stamps)

    def _prune(self) -> None:
        cutoff = self._stamps[-1] - self.max_age
        drop = bisect.bisect_left(self._stamps, cutoff)
        if drop:
            del self._stamps[:drop]
            del self._poses[:drop]


class DeadReckoner:
    """Integrate the velocity commands actually sent into a pose history.

    For robots without odometry: the pose estimate is what the commands would have
    done to an ideal base. Each ``step`` integrates the twist held since the previous
    stamp exactly along a circular arc.
    """

    def __init__(
        self,
        start: Pose2D | None = None,
        history: PoseHistory | None = None,
    ) -> None:
        self._pose = start if start is not None else Pose2D(0.0, 0.0, 0.0)
        self._history = history if history is not None else PoseHistory()
        self._stamp: float | None = None

    @property
    def pose(self) -> Pose2D:
        """Return the current pose estimate."""
        return self._pose

    @property
    def history(self) -> PoseHistory:
        """Return the history the estimates are written to."""
        return self._history

    @property
    def stamp(self) -> float | None:
        """Return the stamp of the last step, or None before the first."""
        return self._stamp

    def step(self, stamp: float, vx: float, vy: float, wz: float) -> Pose2D:
        """Advance to ``stamp`` with the body twist (vx, vy, wz) held since the last step.

        The first call only records the start pose at ``stamp``. A stamp that does not
        move forward integrates nothing (a clock jump back must not move the robot).
        """
        if self._stamp is None:
            self._stamp = stamp
        else:
            dt = stamp - self._stamp
            if dt <= 0.0:
                return self._pose
            if all(math.isfinite(v) for v in (vx, vy, wz)):
                self._pose = integrate_twist(self._pose, vx, vy, wz, dt)
            self._stamp = stamp
        self._history.add(stamp, self._pose)
        return self._pose

    def reset(self, pose: Pose2D | None = None) -> None:
        """Restart from ``pose`` (default: the origin) and forget the history."""
        self._pose = pose if pose is not None else Pose2D(0.0, 0.0, 0.0)
        self._stamp = None
        self._history.clear()
