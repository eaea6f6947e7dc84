"""State the routers share, passed to each explicitly, and the steps several of them take.

One :class:`BridgeContext` per app: the ROS port, the settings, the frame rate limiter, the
video source and the HTTP clients the app's lifespan opens (None outside it).
"""
from __future__ import annotations

from dataclasses import dataclass
import re
from typing import Any

from fastapi import Request, WebSocket

from vln_ros.bridge.errors import BridgeError
from vln_ros.bridge.limits import RateLimiter, check_frame
from vln_ros.bridge.port import RosPort
from vln_ros.bridge.settings import BridgeSettings
from vln_ros.bridge.video_source import VideoSource

# Task ids are vln_<seconds>_<hex>; anything outside this alphabet cannot name a task.
TASK_ID = re.compile(r'^[A-Za-z0-9_.-]{1,128}$')


@dataclass
class BridgeContext:
    """What the routers of one app share."""

    ros: RosPort
    settings: BridgeSettings
    limiter: RateLimiter
    source: VideoSource
    http: Any = None  # httpx.AsyncClient of the OpenAI proxy, opened by the lifespan
    vlm: Any = None  # VlmClient of /analyze/video and /health, opened by the lifespan

    @classmethod
    def create(cls, ros: RosPort, settings: BridgeSettings) -> BridgeContext:
        """A context with its limiter and video source built from the settings."""
        return cls(ros=ros, settings=settings,
                   limiter=RateLimiter(settings.frame_rate_limit, settings.frame_burst or None),
                   source=VideoSource(ros.publish_image, settings.source_max_long_side,
                                      settings.source_open_timeout))

    def rate_check(self, client: str) -> None:
        """Raise 429 when ``client`` sends frames faster than frame_rate_limit."""
        wait = self.limiter.take(client)
        if wait > 0.0:
            error = BridgeError(429, 'rate_limited',
                                f'more than {self.limiter.rate:g} frames/s from {client} '
                                f'(parameter frame_rate_limit); retry in {wait:.2f} s')
            error.retry_after = wait
            raise error

    async def require_active(self, task_id: str) -> dict:
        """The active task when it is ``task_id``; else 409 (known task) or 404 (unknown)."""
        active = self.ros.active_task()
        if active is not None and active['task_id'] == task_id:
            return active
        if TASK_ID.match(task_id) and (self.ros.known_task(task_id)
                                       or await self._task_exists(task_id)):
            current = f'the active task is {active["task_id"]}' if active \
                else 'no task is active'
            raise BridgeError(409, 'task_not_active',
                              f'task {task_id} is not active ({current}); create a task to '
                              'send frames for it')
        raise BridgeError(404, 'unknown_task', f'unknown task id "{task_id}"')

    async def _task_exists(self, task_id: str) -> bool:
        try:
            return await self.ros.get_task(task_id, 1) is not None
        except BridgeError:
            return False

    async def ingest(self, task_id: str, frame_text: str, client: str, want_result: bool):
        """Check and publish one frame: (active task, stamp ns, result future, accepted)."""
        self.rate_check(client)
        active = await self.require_active(task_id)
        frame = check_frame(frame_text, self.settings.max_frame_bytes,
                            self.settings.max_frame_pixels)
        stamp_ns, future, accepted = await self.ros.publish_frame(task_id, frame, want_result)
        return active, stamp_ns, future, accepted


def client_of(request: Request | WebSocket) -> str:
    """The client's address: the key of its frame rate bucket."""
    return request.client.host if request.client else 'unknown'
