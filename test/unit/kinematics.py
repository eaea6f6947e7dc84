"""A reference unicycle integrator for tests, independent of the code under test."""
import math

from vln_ros.core.geometry import Pose2D, normalize_angle


def unicycle(pose, vx, vy, wz, dt, substeps=10):
    """Integrate a body twist with small midpoint steps."""
    x, y, th = pose.x, pose.y, pose.yaw
    h = dt / substeps
    for _ in range(substeps):
        mid = th + 0.5 * wz * h
        x += (vx * math.cos(mid) - vy * math.sin(mid)) * h
        y += (vx * math.sin(mid) + vy * math.cos(mid)) * h
        th += wz * h
    return Pose2D(x, y, normalize_angle(th))
