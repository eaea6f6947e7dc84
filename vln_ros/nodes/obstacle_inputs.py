"""Subscriptions of the obstacle guard's sources, turned into base-frame points.

Shared by planner_node and collision_guard. Each message becomes N x 2 points in the base
frame at its stamp and goes to ``on_points(source, points, stamp)``. A message that cannot
be used (an unknown encoding, a cloud in a frame with no known pose, no camera_info yet) is
warned about and dropped, so its source ages and the guard holds the robot still: a sensor
the guard cannot read is a sensor it does not have.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, LaserScan, PointCloud2

from vln_ros.core.camera_mount import CameraMount
from vln_ros.core.collision.cloud import cloud_xyz
from vln_ros.core.collision.sensor_points import (
    SensorPose,
    depth_to_points,
    scan_to_points,
    to_base_plane,
)
from vln_ros.nodes.collision_params import scan_pose
from vln_ros.nodes.ros_common import SENSOR_QOS, stamp_to_sec

DEPTH_TOPIC = 'camera/depth/image_raw'
# Depth encodings and their scale to metres (REP-118: 32FC1 in m, 16UC1 in mm).
_DEPTH_SCALE = {'32FC1': 1.0, '16UC1': 0.001}


class ObstacleInputs:
    """Subscribe to the configured sources; hand their points on in the base frame."""

    def __init__(self, node, sources: list[str], values: dict[str, Any], mount: CameraMount,
                 base_frame: str, on_points: Callable[[str, np.ndarray, float], None],
                 callback_group=None) -> None:
        self._node = node
        self._on_points = on_points
        self._warned: set[str] = set()
        self._info: CameraInfo | None = None
        self.configure(values, mount, base_frame)
        self.topics: dict[str, str] = {}
        if 'scan' in sources:
            sub = node.create_subscription(LaserScan, 'scan', self._on_scan, SENSOR_QOS,
                                           callback_group=callback_group)
            self.topics['scan'] = sub.topic_name
        if 'points' in sources:
            sub = node.create_subscription(PointCloud2, 'points', self._on_cloud, SENSOR_QOS,
                                           callback_group=callback_group)
            self.topics['points'] = sub.topic_name
        if 'depth' in sources:
            sub = node.create_subscription(Image, DEPTH_TOPIC, self._on_depth, SENSOR_QOS,
                                           callback_group=callback_group)
            self.topics['depth'] = sub.topic_name
            # camera_info: reliable and best-effort publishers both match a best-effort
            # reader; the newest is kept.
            node.create_subscription(CameraInfo, 'camera/camera_info', self._on_info,
                                     SENSOR_QOS, callback_group=callback_group)

    def configure(self, values: dict[str, Any], mount: CameraMount, base_frame: str) -> None:
        """Take new heights, stride, range and sensor poses (live parameters)."""
        self._min_h = values['collision.min_height']
        self._max_h = values['collision.max_height']
        self._stride = values['collision.depth_stride']
        self._max_range = values['collision.max_range']
        self._scan_pose = scan_pose(values)
        self._camera_pose = SensorPose.optical(mount)
        self._base_height = values.get('camera.base_height', 0.0)
        self._base_frame = base_frame

    def _warn_once(self, key: str, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self._node.get_logger().warn(text)

    def _on_scan(self, msg: LaserScan) -> None:
        pts = scan_to_points(msg.ranges, msg.angle_min, msg.angle_increment, msg.range_min,
                             msg.range_max)
        # A 2D scan: every return is an obstacle at the scanner's height.
        pose = self._scan_pose
        base = pts @ pose.rotation.T + np.asarray(pose.translation)
        self._on_points('scan', base[:, :2], stamp_to_sec(msg.header.stamp))

    def _on_cloud(self, msg: PointCloud2) -> None:
        if msg.header.frame_id not in (self._base_frame, ''):
            self._warn_once('cloud_frame', f'point cloud on {self.topics["points"]} is in '
                            f'frame "{msg.header.frame_id}", not base_frame '
                            f'"{self._base_frame}": dropped (the guard holds the robot '
                            'still); publish it in the base frame')
            return
        try:
            xyz = cloud_xyz(msg.data, [(f.name, f.offset, f.datatype) for f in msg.fields],
                            msg.point_step, msg.is_bigendian)
        except ValueError as exc:
            self._warn_once('cloud_layout', f'point cloud on {self.topics["points"]} dropped: '
                            f'{exc}')
            return
        pose = SensorPose.planar(0.0, 0.0, self._base_height)
        self._on_points('points', to_base_plane(xyz, pose, self._min_h, self._max_h),
                        stamp_to_sec(msg.header.stamp))

    def _on_info(self, msg: CameraInfo) -> None:
        self._info = msg

    def _on_depth(self, msg: Image) -> None:
        scale = _DEPTH_SCALE.get(msg.encoding)
        if scale is None:
            self._warn_once('depth_encoding', f'depth image on {self.topics["depth"]} has '
                            f'encoding {msg.encoding!r}; only 32FC1 (m) and 16UC1 (mm) are '
                            'read: dropped')
            return
        info = self._info
        if info is None or info.k[0] <= 0.0:
            self._warn_once('depth_info', 'depth image without camera/camera_info yet: '
                            'dropped until the intrinsics arrive')
            return
        dtype = np.dtype('<f4' if msg.encoding == '32FC1' else '<u2')
        if msg.is_bigendian:
            dtype = dtype.newbyteorder('>')
        row = msg.step // dtype.itemsize
        if msg.step < msg.width * dtype.itemsize or len(msg.data) < msg.step * msg.height:
            self._warn_once('depth_size', f'depth image on {self.topics["depth"]} is smaller '
                            'than its width, height and step say: dropped')
            return
        raw = np.frombuffer(bytes(msg.data), dtype=dtype, count=row * msg.height)
        depth = raw.reshape(msg.height, row)[:, :msg.width].astype(float) * scale
        # Intrinsics scale with the image when the depth image is smaller than camera_info.
        sx = msg.width / info.width if info.width else 1.0
        sy = msg.height / info.height if info.height else 1.0
        pts = depth_to_points(depth, info.k[0] * sx, info.k[4] * sy, info.k[2] * sx,
                              info.k[5] * sy, self._stride, self._max_range)
        self._on_points('depth', to_base_plane(pts, self._camera_pose, self._min_h,
                                                 self._max_h), stamp_to_sec(msg.header.stamp))
