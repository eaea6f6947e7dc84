"""Planar rigid-body geometry: poses, angles, quaternions and twist integration.

Conventions follow REP-103: metres and radians, x forward, y left, yaw
counter-clockwise positive. All functions are pure and ROS-free.
"""

from dataclasses import dataclass
import math

__all__ = [
    'Pose2D',
    'integrate_twist',
    'interpolate_pose',
    'normalize_angle',
    'quaternion_from_yaw',
    'yaw_from_quaternion',
]

# Below this turn angle (rad) over one step the arc formulas lose precision; use a
# straight line instead (the error is second order in the angle).
_SMALL_ANGLE = 1e-9


def normalize_angle(a: float) -> float:
    """Wrap an angle to the interval (-pi, pi]."""
    wrapped = math.remainder(a, 2.0 * math.pi)  # in [-pi, pi]
    if wrapped <= -math.pi:
        wrapped += 2.0 * math.pi
    return wrapped


def yaw_from_quaternion(x: float, y: float, z: float, w: float) -> float:
    """Return the yaw (rotation about z) of a quaternion, in (-pi, pi]."""
    siny_cosp = 2.0 * (w * z + x * y)
    cosy_cosp = 1.0 - 2.0 * (y * y + z * z)
    return normalize_angle(math.atan2(siny_cosp, cosy_cosp))


def quaternion_from_yaw(yaw: float) -> tuple[float, float, float, float]:
    """Return the quaternion (x, y, z, w) of a pure rotation about z by ``yaw``."""
    half = 0.5 * yaw
    return (0.0, 0.0, math.sin(half), math.cos(half))


@dataclass(frozen=True)
class Pose2D:
    """A planar pose: position (m) and heading (rad) of a frame in its parent frame."""

    x: float
    y: float
    yaw: float

    def compose(self, other: 'Pose2D') -> 'Pose2D':
        """Return self ∘ other: ``other`` (given in self's frame) expressed in the parent frame."""
        c = math.cos(self.yaw)
        s = math.sin(self.yaw)
        return Pose2D(
            self.x + c * other.x - s * other.y,
            self.y + s * other.x + c * other.y,
            normalize_angle(self.yaw + other.yaw),
        )

    def inverse(self) -> 'Pose2D':
        """Return the pose of the parent frame expressed in this frame."""
        c = math.cos(self.yaw)
        s = math.sin(self.yaw)
        return Pose2D(
            -c * self.x - s * self.y,
            s * self.x - c * self.y,
            normalize_angle(-self.yaw),
        )

    def relative_to(self, base: 'Pose2D') -> 'Pose2D':
        """Return this pose expressed in the frame of ``base`` (both in the same parent)."""
        return base.inverse().compose(self)

    def distance_to(self, other: 'Pose2D') -> float:
        """Return the Euclidean distance between the two positions (m)."""
        return math.hypot(other.x - self.x, other.y - self.y)


def interpolate_pose(a: Pose2D, b: Pose2D, t: float) -> Pose2D:
    """Interpolate linearly from ``a`` (t=0) to ``b`` (t=1); yaw along the shortest arc."""
    t = min(1.0, max(0.0, t))
    dyaw = normalize_angle(b.yaw - a.yaw)
    return Pose2D(
        a.x + t * (b.x - a.x),
        a.y + t * (b.y - a.y),
        normalize_angle(a.yaw + t * dyaw),
    )


def integrate_twist(pose: Pose2D, vx: float, vy: float, wz: float, dt: float) -> Pose2D:
    """Move ``pose`` by a constant body twist (vx, vy, wz) held for ``dt`` seconds.

    Exact for a constant twist: the base follows a circular arc (a straight line when
    wz is zero), so the result does not depend on how finely time is sliced.
    """
    theta = wz * dt
    if abs(theta) < _SMALL_ANGLE:
        step = Pose2D(vx * dt, vy * dt, theta)
    else:
        sin_t = math.sin(theta)
        one_minus_cos = 1.0 - math.cos(theta)
        step = Pose2D(
            (vx * sin_t - vy * one_minus_cos) / wz,
            (vx * one_minus_cos + vy * sin_t) / wz,
            theta,
        )
    return pose.compose(step)
