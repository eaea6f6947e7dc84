"""What the web side asks of the ROS side: the :class:`RosPort` protocol.

The app never imports rclpy: vln_ros.bridge.ros_side implements this protocol, and tests or
tools may hand the app anything else that does.
"""
from __future__ import annotations

import asyncio
from typing import Protocol

from vln_ros.bridge.limits import Frame


class RosPort(Protocol):
    """What the app asks of the ROS side; every method is called on the app's event loop."""

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hand results to this loop from now on."""

    def active_task(self) -> dict | None:
        """The active task (task_id, instruction, status, visualize), or None."""

    def known_task(self, task_id: str) -> bool:
        """True when the task was seen on vln/task_state."""

    async def create_task(self, instruction: str, output_fps: float,
                          keyframe_threshold: float, visualize: bool) -> dict:
        """Call vln/create_task: {accepted, task_id, message}."""

    async def stop_task(self, task_id: str) -> dict:
        """Call vln/stop_task: {success, message}."""

    async def get_task(self, task_id: str, history_limit: int = 0) -> dict | None:
        """Call vln/get_task: the task with its history, or None when unknown."""

    async def publish_frame(self, task_id: str, frame: Frame, want_result: bool = False
                            ) -> tuple[int, asyncio.Future | None, bool]:
        """Publish as the camera: (stamp in ns, future of its result, anyone listening).

        The future resolves with the first result of the task whose capture stamp is at or
        after this frame's stamp (the scene it answers is at least as new as this frame).
        """

    def latest_result(self, task_id: str) -> dict | None:
        """The newest result of a task."""

    def debug_image(self, stamp_ns: int) -> str | None:
        """Base64 JPEG of the debug image of the keyframe stamped stamp_ns."""

    async def wait_debug_image(self, stamp_ns: int, timeout: float) -> str | None:
        """Wait a little for the debug image of a keyframe."""

    def subscribe(self, task_id: str, debug_images: bool = False) -> asyncio.Queue:
        """A queue of the task's results and state changes (dicts with a 'type').

        With ``debug_images`` the queue also gets the task's annotated debug images.
        """

    def latest_debug_image(self, task_id: str) -> dict | None:
        """The newest debug image item of a task ({type: 'debug_image', ...}), or None."""

    def unsubscribe(self, task_id: str, queue: asyncio.Queue) -> None:
        """Stop feeding the queue."""

    def graph_health(self) -> dict:
        """Nodes seen, which of the project's nodes are reachable, the planner's e-stop."""

    async def set_estop(self, engaged: bool) -> dict:
        """Call the planner's vln/estop: {engaged, success, message, stamp}."""

    def estop_state(self) -> dict:
        """The planner's e-stop state from vln/estop_state: {engaged (None: none yet), ...}."""

    def cmd_vel_since(self, since: float) -> dict:
        """Commanded velocities received after ``since``: {now, samples}."""

    def publish_image(self, bgr) -> bool:
        """Publish a BGR image as the camera (any thread); True when someone listens."""
