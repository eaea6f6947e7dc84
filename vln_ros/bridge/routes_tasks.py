"""Tasks and frames: create, get and stop tasks; POST /vln/frame and /vln/frame/sync."""
from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

from vln_ros.bridge.context import TASK_ID, BridgeContext, client_of
from vln_ros.bridge.errors import BridgeError
from vln_ros.bridge.models import (
    ERRORS,
    CreateTaskRequest,
    CreateTaskResponse,
    ErrorResponse,
    FrameRequest,
    FrameResponse,
    StopTaskResponse,
    TaskConfigModel,
    TaskResponse,
)
from vln_ros.core.statuses import RESULT_PENDING


def pending_result(task_id: str) -> dict:
    """A result placeholder while a task has none: stop, no waypoints."""
    return {'task_id': task_id, 'sequence': 0, 'stamp': 0.0, 'stamp_ns': 0, 'environment': '',
            'action': 'stop', 'waypoints': [], 'linear_vel': 0.0, 'angular_vel': 0.0,
            'inference_time': 0.0, 'status': RESULT_PENDING, 'error': ''}


def frame_response(result: dict, stamp_ns: int, accepted: bool, timestamp: float | None,
                   visualized: str | None) -> dict:
    """The FrameResponse of a frame stamped ``stamp_ns`` answered with ``result``."""
    return {
        'task_id': result['task_id'], 'sequence': result['sequence'],
        'environment': result['environment'], 'action': result['action'],
        'waypoints': result['waypoints'], 'linear_vel': result['linear_vel'],
        'angular_vel': result['angular_vel'], 'inference_time': result['inference_time'],
        'status': result['status'], 'visualized_frame': visualized,
        'frame_accepted': accepted, 'frame_stamp': stamp_ns * 1e-9,
        'result_stamp': result['stamp'] if result['sequence'] else None,
        'timestamp': timestamp,
    }


def build_router(ctx: BridgeContext) -> APIRouter:
    """Task and frame endpoints on the task node's services and the camera topic."""
    router = APIRouter()
    ros, settings = ctx.ros, ctx.settings

    @router.post('/vln/task/create', response_model=CreateTaskResponse, responses=ERRORS,
                 tags=['tasks'])
    async def create_task(body: CreateTaskRequest) -> dict:
        """Create a task and make it the active one (this is how instructions are switched)."""
        config = body.config or TaskConfigModel()
        # null and 0 both go out as 0.0: the services' "node default" (core task_setting).
        reply = await ros.create_task(body.instruction, config.output_fps or 0.0,
                                      config.keyframe_threshold or 0.0,
                                      config.enable_visualization)
        if not reply['accepted']:
            raise BridgeError(422, 'task_refused', reply['message'] or 'task refused')
        return {'task_id': reply['task_id'], 'accepted': True, 'message': reply['message'],
                'status': 'active'}

    @router.get('/vln/task/{task_id}', response_model=TaskResponse, responses=ERRORS,
                tags=['tasks'])
    async def get_task(task_id: str, history_limit: int = 0) -> dict:
        """State and recent results of a task (history_limit 0: the node's default)."""
        if not TASK_ID.match(task_id):
            raise BridgeError(404, 'unknown_task', f'unknown task id "{task_id}"')
        if not 0 <= history_limit <= 10000:
            raise BridgeError(422, 'invalid_request', 'history_limit must be in 0..10000')
        task = await ros.get_task(task_id, history_limit)
        if task is None:
            raise BridgeError(404, 'unknown_task', f'unknown task id "{task_id}"')
        return task

    @router.post('/vln/task/{task_id}/stop', response_model=StopTaskResponse,
                 responses=ERRORS, tags=['tasks'])
    async def stop_task(task_id: str) -> dict:
        """Stop a task (the robot stops); 409 when it is not active."""
        if not TASK_ID.match(task_id):
            raise BridgeError(404, 'unknown_task', f'unknown task id "{task_id}"')
        reply = await ros.stop_task(task_id)
        if not reply['success']:
            if await ros.get_task(task_id, 1) is None:
                raise BridgeError(404, 'unknown_task', f'unknown task id "{task_id}"')
            raise BridgeError(409, 'task_not_active', reply['message']
                              or f'task {task_id} is not active')
        return {'task_id': task_id, 'success': True, 'message': reply['message']}

    @router.post('/vln/frame', response_model=FrameResponse, responses=ERRORS,
                 tags=['frames'])
    async def frame(body: FrameRequest, request: Request) -> dict:
        """Publish a frame as the camera and return the task's latest result at once."""
        active, stamp_ns, _, accepted = await ctx.ingest(body.task_id, body.frame,
                                                         client_of(request), False)
        result = ros.latest_result(body.task_id) or pending_result(body.task_id)
        visual = ros.debug_image(result['stamp_ns']) \
            if active.get('visualize') and result['sequence'] else None
        return frame_response(result, stamp_ns, accepted, body.timestamp, visual)

    @router.post('/vln/frame/sync', response_model=FrameResponse,
                 responses={**ERRORS, 504: {'model': ErrorResponse}}, tags=['frames'])
    async def frame_sync(body: FrameRequest, request: Request) -> dict:
        """Publish a frame and wait for the result that covers it (up to sync_timeout).

        That is the first result of the task whose keyframe was captured at or after this
        frame: this frame's own, or a newer frame's when perception sent the newest frame in
        its place (result_stamp says which). Only keyframes get results: create the task with
        a small keyframe_threshold (e.g. 0.001), send frames that differ, no faster than the
        perception node's keyframe_min_interval. A frame with no result in time gets 504.
        """
        active, stamp_ns, future, accepted = await ctx.ingest(body.task_id, body.frame,
                                                              client_of(request), True)
        if not accepted:
            future.cancel()
            raise BridgeError(503, 'no_perception',
                              'no perception node subscribes to the frames the bridge '
                              'publishes: nothing can answer this frame')
        try:
            result = await asyncio.wait_for(future, settings.sync_timeout)
        except asyncio.TimeoutError:
            raise BridgeError(
                504, 'no_result',
                f'no result for this frame within {settings.sync_timeout:g} s (parameter '
                'sync_timeout): either the perception node did not take it as a keyframe '
                '(too similar to the last keyframe, or sooner than keyframe_min_interval '
                'after it: for sync use, create the task with a small keyframe_threshold '
                'such as 0.001 and send frames that differ) or the model did not answer in '
                'time') from None
        visual = await ros.wait_debug_image(result['stamp_ns'], 1.0) \
            if active.get('visualize') else None
        return frame_response(result, stamp_ns, accepted, body.timestamp, visual)

    return router
