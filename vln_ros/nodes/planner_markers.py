"""Messages the planner shows in rviz2: the path, its markers and the guard's zones.

The path and its markers are in the odom frame; the obstacle guard's footprint, zones and
nearest point in the base frame.
"""
from __future__ import annotations

import math

from geometry_msgs.msg import Point, PoseStamped
from nav_msgs.msg import Path
from visualization_msgs.msg import Marker, MarkerArray

from vln_ros.core.geometry import Pose2D, quaternion_from_yaw


def pose_msg(pose: Pose2D, stamp, frame_id: str) -> PoseStamped:
    """A planar pose as geometry_msgs/PoseStamped."""
    msg = PoseStamped()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.pose.position.x, msg.pose.position.y = pose.x, pose.y
    o = msg.pose.orientation
    o.x, o.y, o.z, o.w = quaternion_from_yaw(pose.yaw)
    return msg


def path_msg(poses: list[Pose2D], stamp, frame_id: str) -> Path:
    """The tracked path as nav_msgs/Path."""
    path = Path()
    path.header.stamp = stamp
    path.header.frame_id = frame_id
    path.poses = [pose_msg(p, stamp, frame_id) for p in poses]
    return path


def command_markers(path: list[Pose2D], target: Pose2D | None, stamp,
                    frame_id: str) -> MarkerArray:
    """The path as a line and dots, and the pursuit target as an arrow (deleted when none)."""
    line = Marker(ns='vln_path', id=0, type=Marker.LINE_STRIP, action=Marker.ADD)
    line.header.frame_id, line.header.stamp = frame_id, stamp
    line.scale.x = 0.03
    line.color.g, line.color.a = 0.8, 1.0
    line.points = [Point(x=p.x, y=p.y, z=0.05) for p in path]
    dots = Marker(ns='vln_waypoints', id=1, type=Marker.SPHERE_LIST, action=Marker.ADD)
    dots.header = line.header
    dots.scale.x = dots.scale.y = dots.scale.z = 0.08
    dots.color.b, dots.color.a = 1.0, 1.0
    dots.points = list(line.points)
    arrow = Marker(ns='vln_target', id=2, type=Marker.ARROW, action=Marker.ADD)
    arrow.header = line.header
    if target is not None:
        arrow.pose = pose_msg(target, stamp, frame_id).pose
        arrow.scale.x, arrow.scale.y, arrow.scale.z = 0.3, 0.05, 0.05
        arrow.color.r, arrow.color.a = 1.0, 1.0
    else:
        arrow.action = Marker.DELETE
    if not path:
        line.action = dots.action = Marker.DELETE
    return MarkerArray(markers=[line, dots, arrow])


# Zone colours by guard state (r, g, b): clear, scaled, stopped.
_STATE_COLOURS = {'clear': (0.1, 0.8, 0.1), 'slowdown': (1.0, 0.8, 0.0),
                  'approach': (1.0, 0.5, 0.0), 'stop': (1.0, 0.0, 0.0), 'stale': (0.6, 0.0, 0.6),
                  'detour': (0.0, 0.6, 1.0)}


def zone_outline(vertices, margin: float, arc_steps: int = 6) -> list[tuple[float, float]]:
    """The outline of a convex footprint grown by ``margin``: edges pushed out, round corners."""
    pts = [tuple(map(float, v)) for v in vertices]
    area = sum(a[0] * b[1] - b[0] * a[1] for a, b in zip(pts, pts[1:] + pts[:1], strict=True))
    if area < 0:
        pts.reverse()  # counter-clockwise, so that (dy, -dx) points outwards
    out = []
    n = len(pts)
    for i, (x, y) in enumerate(pts):
        prev, nxt = pts[i - 1], pts[(i + 1) % n]
        a0 = math.atan2(-(x - prev[0]), y - prev[1])  # outward normal of the edge before
        a1 = math.atan2(-(nxt[0] - x), nxt[1] - y)  # and of the edge after
        sweep = (a1 - a0) % (2 * math.pi)
        for k in range(arc_steps + 1):
            a = a0 + sweep * k / arc_steps
            out.append((x + margin * math.cos(a), y + margin * math.sin(a)))
    return out + out[:1]


def guard_markers(guard, verdict, stamp, base_frame: str) -> MarkerArray:
    """The footprint, its stop and slowdown zones and the nearest obstacle (base frame).

    Coloured by the guard's state.
    """
    state = verdict.state if verdict is not None else 'clear'
    r, g, b = _STATE_COLOURS.get(state, _STATE_COLOURS['clear'])
    cfg = guard.config
    markers = []
    for i, (ns, margin, alpha) in enumerate((('vln_footprint', 0.0, 1.0),
                                             ('vln_stop_zone', cfg.stop_margin, 0.8),
                                             ('vln_slowdown_zone', cfg.slowdown_margin, 0.4))):
        m = Marker(ns=ns, id=10 + i, type=Marker.LINE_STRIP, action=Marker.ADD)
        m.header.frame_id, m.header.stamp = base_frame, stamp
        m.scale.x = 0.02
        m.color.r, m.color.g, m.color.b, m.color.a = r, g, b, alpha
        m.points = [Point(x=x, y=y, z=0.02) for x, y in
                    zone_outline(guard.footprint.vertices, margin)]
        markers.append(m)
    near = Marker(ns='vln_nearest_obstacle', id=13, type=Marker.SPHERE, action=Marker.ADD)
    near.header.frame_id, near.header.stamp = base_frame, stamp
    if verdict is not None and verdict.nearest is not None:
        near.pose.position.x, near.pose.position.y = verdict.nearest
        near.pose.position.z = 0.1
        near.scale.x = near.scale.y = near.scale.z = 0.1
        near.color.r, near.color.g, near.color.b, near.color.a = r, g, b, 1.0
    else:
        near.action = Marker.DELETE
    markers.append(near)
    return MarkerArray(markers=markers)
