"""Messages the planner shows in rviz2: the path and its markers, in the odom frame."""
from __future__ import annotations

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
