"""The camera mounting a node uses: TF when tf2_ros is importable and knows it, else parameters.

TF is the ROS way to know where a sensor sits (robot_state_publisher from the URDF); the
camera.* parameters are the fallback for robots without a camera frame in TF. The source
in use is logged whenever it changes, so a wrong mount is visible at once.
"""
from __future__ import annotations

import time

from vln_ros.core.camera_mount import CameraMount, mount_from_transform

# How often a TF mount is looked up again (s): mounts are static, lookups are not free.
TF_REFRESH_S = 5.0


class CameraMountSource:
    """Holds the current mount; ``update_from_frame`` refreshes it from TF when it can."""

    def __init__(self, node, params: CameraMount, use_tf: bool, base_height: float,
                 base_frame: str) -> None:
        self._node = node
        self._buffer = None
        self._listener = None
        self._tf_mount: CameraMount | None = None
        self._checked = 0.0
        self.configure(params, use_tf, base_height, base_frame)

    def configure(self, params: CameraMount, use_tf: bool, base_height: float,
                  base_frame: str) -> None:
        """Take new camera.* values; TF (if any) is looked up again at the next frame."""
        self._params = params
        self._base_height = float(base_height)
        self._base_frame = base_frame
        self._tf_mount = None
        self._checked = 0.0
        if use_tf and self._buffer is None:
            try:
                import tf2_ros
            except ImportError:  # no TF on this install: the parameters are the mount
                tf2_ros = None
            if tf2_ros is not None:
                self._buffer = tf2_ros.Buffer()
                self._listener = tf2_ros.TransformListener(self._buffer, self._node)
        self._use_tf = bool(use_tf) and self._buffer is not None

    @property
    def mount(self) -> CameraMount:
        """The mount in use: from TF when found, else from the parameters."""
        return self._tf_mount or self._params

    def update_from_frame(self, frame_id: str) -> None:
        """Look the camera frame (an image header's frame_id) up in TF, at most every 5 s."""
        now = time.monotonic()
        if not self._use_tf or not frame_id or now - self._checked < TF_REFRESH_S:
            return
        self._checked = now
        from rclpy.time import Time
        try:
            tf = self._buffer.lookup_transform(self._base_frame, frame_id, Time())
        except Exception:  # noqa: BLE001 - tf2 raises several kinds; the parameters stay
            return
        t, q = tf.transform.translation, tf.transform.rotation
        try:
            mount = mount_from_transform(
                (t.x, t.y, t.z), (q.x, q.y, q.z, q.w), self._base_height,
                optical='optical' in frame_id, source=f'{self._base_frame} -> {frame_id}')
        except ValueError as exc:
            self._node.get_logger().warn(f'TF camera mount ignored: {exc}',
                                         throttle_duration_sec=30.0)
            return
        if mount != self._tf_mount:
            self._node.get_logger().info(mount.describe())
        self._tf_mount = mount
