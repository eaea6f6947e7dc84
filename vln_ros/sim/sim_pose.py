"""A tiny planar pose for the simulator (REP-103: x forward, y left, yaw counter-clockwise).

The simulator keeps its own pose type so that it stays independent of the rest of the
package; any object with ``x``, ``y`` and ``yaw`` attributes is accepted where a pose is read.
"""

from dataclasses import dataclass
import math
from typing import Any


def wrap_angle(angle: float) -> float:
    """Wrap an angle in radians to [-pi, pi)."""
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


@dataclass(frozen=True)
class Pose:
    """A pose in the plane: position in metres, heading in radians."""

    x: float = 0.0
    y: float = 0.0
    yaw: float = 0.0

    @classmethod
    def of(cls, pose: Any) -> 'Pose':
        """Build a Pose from a Pose-like object or an ``(x, y, yaw)`` sequence."""
        if isinstance(pose, Pose):
            return pose
        if hasattr(pose, 'x') and hasattr(pose, 'y'):
            return cls(float(pose.x), float(pose.y), float(getattr(pose, 'yaw', 0.0)))
        x, y, *rest = pose
        return cls(float(x), float(y), float(rest[0]) if rest else 0.0)

    def moved(self, dx: float, dy: float, dtheta: float) -> 'Pose':
        """Return this pose moved by a displacement given in its own body frame."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return Pose(self.x + c * dx - s * dy, self.y + s * dx + c * dy,
                    wrap_angle(self.yaw + dtheta))

    def to_local(self, x: float, y: float) -> tuple[float, float]:
        """Express a world point in this pose's body frame (forward, left)."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        ex, ey = x - self.x, y - self.y
        return c * ex + s * ey, -s * ex + c * ey

    def distance_to(self, x: float, y: float) -> float:
        """Return the Euclidean distance from this pose to a world point."""
        return math.hypot(x - self.x, y - self.y)
