"""FastAPI app of the bridge: the seed's REST API, the WebSocket stream, the OpenAI proxy, the UI.

ROS-free: everything that touches the graph goes through a :class:`RosPort` (implemented by
vln_ros.bridge.ros_side), so the request path is plain asyncio. Errors are always JSON:
``{"error": {"code": "...", "message": "...", "status": N}}``, except under ``/v1``, which
relays (or imitates) LMDeploy's flat OpenAI error object so OpenAI clients read it.
"""
from __future__ import annotations

import asyncio
import base64
from contextlib import asynccontextmanager
from dataclasses import dataclass
import json
import logging
import math
import os
import pathlib
import re
from typing import Any, Protocol

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response, StreamingResponse
import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import RedirectResponse
from starlette.staticfiles import StaticFiles

from vln_ros.bridge.limits import (
    ApiKeyMiddleware,
    BodySizeMiddleware,
    Frame,
    FrameError,
    RateLimiter,
    check_frame,
    error_body,
    is_openai_path,
)
from vln_ros.bridge.video import VideoError, decode_base64_video, sample_video
from vln_ros.bridge.video_source import VideoSource, save_upload

_LOG = logging.getLogger('vln_bridge')

# Task ids are vln_<seconds>_<hex>; anything outside this alphabet cannot name a task.
_TASK_ID = re.compile(r'^[A-Za-z0-9_.-]{1,128}$')
_STATUS_CODES = {400: 'bad_request', 401: 'unauthorized', 403: 'forbidden', 404: 'not_found',
                 405: 'method_not_allowed', 409: 'conflict', 413: 'body_too_large',
                 415: 'unsupported_media_type', 422: 'invalid_request',
                 429: 'rate_limited', 502: 'bad_gateway', 503: 'unavailable',
                 504: 'timeout'}
# The web UI's static files (package data); served under /ui, open even with an API key.
UI_DIR = pathlib.Path(__file__).resolve().with_name('ui')
# Video source errors that are not plain 400s.
_SOURCE_STATUS = {'no_such_file': 404, 'no_source': 409, 'invalid_url': 422,
                  'invalid_path': 422, 'invalid_fps': 422}


@dataclass
class BridgeSettings:
    """What the app needs to know; main.py fills it from the node's parameters."""

    api_key: str = ''  # empty: no key required
    vlm_base_url: str = 'http://127.0.0.1:23333/v1'
    vlm_api_key: str = ''
    vlm_timeout: float = 120.0  # s, per proxied request (per chunk when streaming)
    vlm_guided: str = 'regex'  # guided decoding of /analyze/video, as the perception node
    max_body_bytes: int = 10 * 1024 * 1024
    max_frame_bytes: int = 4 * 1024 * 1024
    max_frame_pixels: int = 4096 * 4096
    frame_rate_limit: float = 60.0  # frames/s per client; 0 turns the limit off
    frame_burst: float = 0.0  # frames a client may send at once; 0: one second's worth
    sync_timeout: float = 15.0  # s, POST /vln/frame/sync waits this long for its result
    service_timeout: float = 5.0  # s, task services
    max_video_frames: int = 32
    cors_origins: tuple[str, ...] = ()
    source_max_long_side: int = 1280  # px; the video source downscales larger frames
    source_open_timeout: float = 5.0  # s, opening a video URL


class BridgeError(Exception):
    """A failure with an HTTP status, a stable code and a message for the client."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


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
        """Publish as the camera: (stamp in ns, future of its result, anyone listening)."""

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
        """Nodes seen and which of the project's nodes are reachable."""

    async def set_estop(self, engaged: bool) -> dict:
        """Call the planner's vln/estop: {engaged, success, message, stamp}."""

    def estop_state(self) -> dict:
        """The e-stop state last set through this bridge: {engaged (None: never), ...}."""

    def cmd_vel_since(self, since: float) -> dict:
        """Commanded velocities received after ``since``: {now, samples}."""

    def publish_image(self, bgr) -> bool:
        """Publish a BGR image as the camera (any thread); True when someone listens."""


# --------------------------------------------------------------------------- models

class ErrorDetail(BaseModel):
    """What went wrong."""

    code: str = Field(description='stable snake_case reason, e.g. "unknown_task"')
    message: str = Field(description='human-readable explanation naming the problem')
    status: int = Field(description='the HTTP status code')


class ErrorResponse(BaseModel):
    """Error body of every endpoint except the /v1 proxy."""

    error: ErrorDetail


class WaypointModel(BaseModel):
    """Pose relative to the robot base frame at the keyframe's capture time (REP-103)."""

    dx: float = Field(description='m forward, 0..1')
    dy: float = Field(description='m, left positive, -1..1')
    dtheta: float = Field(description='rad, counter-clockwise positive, -0.5..0.5')
    confidence: float = Field(description='0..1')


class TaskConfigModel(BaseModel):
    """Optional per-task settings; omitted fields take the node defaults."""

    model_config = ConfigDict(allow_inf_nan=False)

    output_fps: float | None = Field(None, gt=0.0, le=30.0,
                                     description='Hz the linear_vel/angular_vel fields assume')
    keyframe_threshold: float | None = Field(
        None, ge=0.0, le=1.0,
        description='frame difference that makes a keyframe; 0 makes every frame past the '
                    "perception node's keyframe_min_interval a keyframe (use it with "
                    '/vln/frame/sync)')
    enable_visualization: bool = Field(False, description='return visualized_frame')


def _check_text(value: str) -> str:
    # ROS strings are UTF-8 C strings: NUL and lone surrogates cannot cross into the graph.
    if '\x00' in value:
        raise ValueError('must not contain NUL characters')
    try:
        value.encode('utf-8')
    except UnicodeEncodeError:
        raise ValueError('must be valid Unicode text (no lone surrogates)') from None
    return value


class CreateTaskRequest(BaseModel):
    """A new instruction; it becomes the active task (the previous one is stopped)."""

    instruction: str = Field(min_length=1, max_length=1000,
                             description='natural-language instruction')
    config: TaskConfigModel | None = None

    _text = field_validator('instruction')(_check_text)


class CreateTaskResponse(BaseModel):
    """The created task."""

    task_id: str
    accepted: bool
    message: str
    status: str = Field(description='"active" once created')


class ResultModel(BaseModel):
    """One answer of the model for one keyframe."""

    task_id: str
    sequence: int = Field(description='keyframe number within the task, from 1')
    stamp: float = Field(description='capture time of the keyframe (s, ROS clock)')
    environment: str
    action: str = Field(description='forward | turn_left | turn_right | back | stop')
    waypoints: list[WaypointModel]
    linear_vel: float = Field(description='m/s')
    angular_vel: float = Field(description='rad/s')
    inference_time: float = Field(description='s')
    status: str = Field(description='ok | fallback | vlm_error | stop')
    error: str = ''


class TaskConfigOut(BaseModel):
    """Configuration a task runs with."""

    output_fps: float
    keyframe_threshold: float
    enable_visualization: bool


class TaskResponse(BaseModel):
    """State and recent results of one task."""

    task_id: str
    instruction: str
    status: str = Field(description='active | stopped | completed | failed')
    created: float = Field(description='s since the epoch')
    updated: float
    frames: int
    keyframes: int
    inferences: int
    errors: int
    last_action: str
    last_environment: str
    message: str
    config: TaskConfigOut
    history: list[ResultModel] = Field(description='recent results, oldest first')


class StopTaskResponse(BaseModel):
    """Outcome of a stop."""

    task_id: str
    success: bool
    message: str


class FrameRequest(BaseModel):
    """One camera frame for the active task."""

    model_config = ConfigDict(allow_inf_nan=False)

    task_id: str = Field(min_length=1, max_length=128)
    frame: str = Field(min_length=1,
                       description='base64 JPEG or PNG, or a data:image/...;base64 URL')
    timestamp: float | None = Field(None, description='client time of capture, echoed back')


class FrameResponse(BaseModel):
    """The latest result of the task (or, for /vln/frame/sync, the result of this frame)."""

    task_id: str
    sequence: int = Field(description='0 while the task has no result yet')
    environment: str
    action: str
    waypoints: list[WaypointModel]
    linear_vel: float
    angular_vel: float
    inference_time: float
    status: str = Field(description='ok | fallback | vlm_error | stop | pending (no result yet)')
    visualized_frame: str | None = Field(
        None, description='base64 JPEG of the debug view when the task enables visualization')
    frame_accepted: bool = Field(description='published and a perception node listens')
    frame_stamp: float = Field(description='stamp the bridge gave this frame (s, ROS clock)')
    result_stamp: float | None = Field(None, description='capture stamp of the result')
    timestamp: float | None = Field(None, description='the request timestamp, echoed')


class VideoRequest(BaseModel):
    """A short video and an instruction; frames are sampled evenly and sent together."""

    video: str = Field(min_length=1, description='base64 video (mp4, avi, ...) or data URL')
    instruction: str = Field(min_length=1, max_length=1000)
    max_frames: int = Field(8, ge=1, le=64, description='frames sampled evenly')

    _text = field_validator('instruction')(_check_text)


class VideoResponse(BaseModel):
    """The model's answer for the sampled frames."""

    environment: str
    action: str
    waypoints: list[WaypointModel]
    status: str = Field(description='ok | fallback | vlm_error | stop')
    error: str
    frames_used: int
    inference_time: float
    model: str
    raw_text: str


class RosHealth(BaseModel):
    """What the bridge sees of the ROS graph."""

    nodes: list[str]
    task_node: bool = Field(description='vln/create_task is served')
    perception_node: bool = Field(description='something subscribes to the frames published')
    planner_node: bool = Field(False, description='vln/estop is served')
    active_task: str | None


class ModelServerHealth(BaseModel):
    """The model server's own /health."""

    url: str
    status: str = Field(description='healthy | initializing | unhealthy | unreachable')


class HealthResponse(BaseModel):
    """Bridge, graph and model server status."""

    status: str = Field(description='ok when the task node and the model server are up')
    ros: RosHealth
    model_server: ModelServerHealth


class EstopRequest(BaseModel):
    """Engage or release the planner's emergency stop."""

    engaged: bool = Field(description='true: zero cmd_vel now and hold it; false: release')


class EstopResponse(BaseModel):
    """The e-stop state as last set through this bridge."""

    engaged: bool | None = Field(description='null when not set through this bridge yet')
    success: bool = Field(description='the planner accepted the last request')
    message: str
    stamp: float = Field(description='when it was set (s, ROS clock); 0 when never')


class CmdVelSample(BaseModel):
    """One velocity command the planner sent (REP-103 axes)."""

    t: float = Field(description='receive time (s, ROS clock)')
    linear_x: float = Field(description='m/s forward')
    linear_y: float = Field(description='m/s left')
    angular_z: float = Field(description='rad/s counter-clockwise')


class CmdVelResponse(BaseModel):
    """Recent commanded velocities (the last few seconds)."""

    now: float = Field(description='the bridge clock now (s, ROS clock); pass it as since')
    samples: list[CmdVelSample] = Field(description='oldest first, received after since')


class SourceRequest(BaseModel):
    """A video to play into the camera topic: exactly one of path, url and upload."""

    model_config = ConfigDict(allow_inf_nan=False)

    path: str | None = Field(None, min_length=1, max_length=4096,
                             description='a video file on the bridge machine')
    url: str | None = Field(None, min_length=1, max_length=4096,
                            description='http(s)/rtsp/rtmp stream opened by OpenCV (FFmpeg); '
                                        'needs network access from the bridge')
    upload: str | None = Field(None, min_length=1,
                               description='base64 video or data URL, up to max_body_bytes')
    filename: str | None = Field(None, max_length=255, description='name of the upload')
    fps: float | None = Field(None, gt=0.0, le=120.0,
                              description="publish rate (Hz); default: the video's own")
    loop: bool = Field(True, description='start over at the end (files only)')


class SourceStatus(BaseModel):
    """What the video source is doing."""

    state: str = Field(description='idle | playing | paused | ended | stopped | error')
    kind: str = Field(description='file | url ("" when idle)')
    source: str = Field(description='path, URL or upload name')
    fps: float
    loop: bool
    frames_published: int
    position: int = Field(description='frames read in the current pass')
    frame_count: int = Field(description='frames in the file (0: unknown)')
    loops: int
    width: int
    height: int
    error: str


_ERRORS = {code: {'model': ErrorResponse}
           for code in (400, 401, 404, 409, 413, 415, 422, 429, 503, 504)}

_CHAT_SCHEMA = {
    'type': 'object', 'required': ['model', 'messages'], 'additionalProperties': True,
    'properties': {
        'model': {'type': 'string'},
        'messages': {'type': 'array', 'items': {'type': 'object', 'properties': {
            'role': {'type': 'string'}, 'content': {}}, 'required': ['role']}},
        'stream': {'type': 'boolean'},
        'max_tokens': {'type': 'integer'},
        'temperature': {'type': 'number'},
        'top_p': {'type': 'number'},
        'response_format': {'type': 'object'},
    },
}
_OPENAI_ERROR = {'description': "model server error, relayed in LMDeploy's flat shape",
                 'content': {'application/json': {'schema': {'type': 'object', 'properties': {
                     'message': {'type': 'string'}, 'type': {'type': 'string'},
                     'code': {'type': 'integer'}, 'object': {'type': 'string'}}}}}}


# --------------------------------------------------------------------------- helpers

def _error_response(status: int, code: str, message: str, path: str = '',
                    headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, code, message, is_openai_path(path)),
                        status_code=status, headers=headers)


def _validation_message(errors: list[dict]) -> tuple[int, str, str]:
    for err in errors:
        if err.get('type') == 'json_invalid':
            ctx = err.get('ctx') or {}
            return 400, 'invalid_json', \
                f'request body is not valid JSON: {ctx.get("error", err.get("msg"))}'
    for err in errors:
        if tuple(err.get('loc', ())) == ('body',) and err.get('type') in (
                'model_attributes_type', 'dict_type', 'missing'):
            return 400, 'invalid_body', ('request body must be a JSON object (and sent with '
                                         'Content-Type: application/json)')
    parts = []
    for err in errors[:5]:
        loc = '.'.join(str(p) for p in err.get('loc', ()) if p != 'body') or 'body'
        parts.append(f'{loc}: {err.get("msg", "invalid")}')
    more = f' (and {len(errors) - 5} more)' if len(errors) > 5 else ''
    return 422, 'invalid_request', '; '.join(parts) + more


def pending_result(task_id: str) -> dict:
    """A result placeholder while a task has none: stop, no waypoints."""
    return {'task_id': task_id, 'sequence': 0, 'stamp': 0.0, 'stamp_ns': 0, 'environment': '',
            'action': 'stop', 'waypoints': [], 'linear_vel': 0.0, 'angular_vel': 0.0,
            'inference_time': 0.0, 'status': 'pending', 'error': ''}


def _frame_response(result: dict, stamp_ns: int, accepted: bool, timestamp: float | None,
                    visualized: str | None) -> dict:
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


def ui_paths() -> tuple[str, ...]:
    """Paths open without the API key: /health and the UI's static files (no secrets)."""
    files = sorted(f'/ui/{p.name}' for p in UI_DIR.iterdir() if p.is_file()) \
        if UI_DIR.is_dir() else []
    return ('/health', '/', '/ui', '/ui/', *files)


def _model_root(base_url: str) -> str:
    base = base_url.rstrip('/')
    return base[:-3] if base.endswith('/v1') else base


# --------------------------------------------------------------------------- the app

def create_app(ros: RosPort, settings: BridgeSettings) -> FastAPI:
    """Build the bridge's FastAPI app on top of a RosPort."""
    from vln_ros.core.vlm_client import VlmClient, VlmConfig, VlmError

    limiter = RateLimiter(settings.frame_rate_limit, settings.frame_burst or None)
    state: dict[str, Any] = {}
    source = VideoSource(ros.publish_image, settings.source_max_long_side,
                         settings.source_open_timeout)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        ros.bind_loop(asyncio.get_running_loop())
        state['http'] = httpx.AsyncClient(timeout=httpx.Timeout(
            settings.vlm_timeout, connect=3.0), limits=httpx.Limits(max_connections=64))
        state['vlm'] = VlmClient(VlmConfig(
            base_url=settings.vlm_base_url, api_key=settings.vlm_api_key or 'none',
            timeout=settings.vlm_timeout, max_retries=1, guided=settings.vlm_guided))
        try:
            yield
        finally:
            await asyncio.to_thread(source.stop)
            await state['http'].aclose()
            await state['vlm'].aclose()

    app = FastAPI(
        title='vln_ros bridge',
        version='0.1.0',
        description='REST and WebSocket access to the vln_ros graph (tasks, camera frames, '
                    'results) and an OpenAI-compatible proxy to the model server.',
        lifespan=lifespan)

    # ------------------------------------------------------------------ error handlers

    @app.exception_handler(BridgeError)
    async def _bridge_error(request: Request, exc: BridgeError) -> JSONResponse:
        headers = None
        if exc.status == 429:
            headers = {'Retry-After': str(max(1, round(getattr(exc, 'retry_after', 1.0))))}
        return _error_response(exc.status, exc.code, exc.message, request.url.path, headers)

    @app.exception_handler(FrameError)
    async def _frame_error(request: Request, exc: FrameError) -> JSONResponse:
        return _error_response(exc.status, exc.code, exc.message, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, code, message = _validation_message(list(exc.errors()))
        return _error_response(status, code, message, request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, f'http_{exc.status_code}')
        message = str(exc.detail)
        if exc.status_code == 404 and message == 'Not Found':
            message = f'no endpoint {request.method} {request.url.path}'
        elif exc.status_code == 405:
            message = f'method {request.method} is not allowed on {request.url.path}'
        return _error_response(exc.status_code, code, message, request.url.path,
                               getattr(exc, 'headers', None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        _LOG.exception('unexpected error on %s %s', request.method, request.url.path)
        return _error_response(500, 'internal_error',
                               f'internal error: {type(exc).__name__}: {exc}', request.url.path)

    # ------------------------------------------------------------------ shared steps

    def rate_check(client: str) -> None:
        wait = limiter.take(client)
        if wait > 0.0:
            error = BridgeError(429, 'rate_limited',
                                f'more than {limiter.rate:g} frames/s from {client} '
                                f'(parameter frame_rate_limit); retry in {wait:.2f} s')
            error.retry_after = wait
            raise error

    async def require_active(task_id: str) -> dict:
        active = ros.active_task()
        if active is not None and active['task_id'] == task_id:
            return active
        if _TASK_ID.match(task_id) and (ros.known_task(task_id)
                                        or await _task_exists(task_id)):
            current = f'the active task is {active["task_id"]}' if active \
                else 'no task is active'
            raise BridgeError(409, 'task_not_active',
                              f'task {task_id} is not active ({current}); create a task to '
                              'send frames for it')
        raise BridgeError(404, 'unknown_task', f'unknown task id "{task_id}"')

    async def _task_exists(task_id: str) -> bool:
        try:
            return await ros.get_task(task_id, 1) is not None
        except BridgeError:
            return False

    async def ingest(task_id: str, frame_text: str, client: str, want_result: bool):
        rate_check(client)
        active = await require_active(task_id)
        frame = check_frame(frame_text, settings.max_frame_bytes, settings.max_frame_pixels)
        stamp_ns, future, accepted = await ros.publish_frame(task_id, frame, want_result)
        return active, stamp_ns, future, accepted

    def client_of(request: Request | WebSocket) -> str:
        return request.client.host if request.client else 'unknown'

    # ------------------------------------------------------------------ health

    @app.get('/health', response_model=HealthResponse, tags=['bridge'])
    async def health() -> dict:
        """Bridge, ROS graph and model server status (open even when an API key is set)."""
        graph = ros.graph_health()
        model = await state['vlm'].health()
        ok = graph['task_node'] and model == 'healthy'
        return {'status': 'ok' if ok else 'degraded', 'ros': graph,
                'model_server': {'url': _model_root(settings.vlm_base_url) + '/health',
                                 'status': model}}

    # ------------------------------------------------------------------ tasks

    @app.post('/vln/task/create', response_model=CreateTaskResponse, responses=_ERRORS,
              tags=['tasks'])
    async def create_task(body: CreateTaskRequest) -> dict:
        """Create a task and make it the active one (this is how instructions are switched)."""
        config = body.config or TaskConfigModel()
        reply = await ros.create_task(
            body.instruction,
            config.output_fps if config.output_fps is not None else 0.0,
            config.keyframe_threshold if config.keyframe_threshold is not None else -1.0,
            config.enable_visualization)
        if not reply['accepted']:
            raise BridgeError(422, 'task_refused', reply['message'] or 'task refused')
        return {'task_id': reply['task_id'], 'accepted': True, 'message': reply['message'],
                'status': 'active'}

    @app.get('/vln/task/{task_id}', response_model=TaskResponse, responses=_ERRORS,
             tags=['tasks'])
    async def get_task(task_id: str, history_limit: int = 0) -> dict:
        """State and recent results of a task (history_limit 0: the node's default)."""
        if not _TASK_ID.match(task_id):
            raise BridgeError(404, 'unknown_task', f'unknown task id "{task_id}"')
        if not 0 <= history_limit <= 10000:
            raise BridgeError(422, 'invalid_request', 'history_limit must be in 0..10000')
        task = await ros.get_task(task_id, history_limit)
        if task is None:
            raise BridgeError(404, 'unknown_task', f'unknown task id "{task_id}"')
        return task

    @app.post('/vln/task/{task_id}/stop', response_model=StopTaskResponse, responses=_ERRORS,
              tags=['tasks'])
    async def stop_task(task_id: str) -> dict:
        """Stop a task (the robot stops); 409 when it is not active."""
        if not _TASK_ID.match(task_id):
            raise BridgeError(404, 'unknown_task', f'unknown task id "{task_id}"')
        reply = await ros.stop_task(task_id)
        if not reply['success']:
            if await ros.get_task(task_id, 1) is None:
                raise BridgeError(404, 'unknown_task', f'unknown task id "{task_id}"')
            raise BridgeError(409, 'task_not_active', reply['message']
                              or f'task {task_id} is not active')
        return {'task_id': task_id, 'success': True, 'message': reply['message']}

    # ------------------------------------------------------------------ frames

    @app.post('/vln/frame', response_model=FrameResponse, responses=_ERRORS, tags=['frames'])
    async def frame(body: FrameRequest, request: Request) -> dict:
        """Publish a frame as the camera and return the task's latest result at once."""
        active, stamp_ns, _, accepted = await ingest(body.task_id, body.frame,
                                                     client_of(request), False)
        result = ros.latest_result(body.task_id) or pending_result(body.task_id)
        visual = ros.debug_image(result['stamp_ns']) \
            if active.get('visualize') and result['sequence'] else None
        return _frame_response(result, stamp_ns, accepted, body.timestamp, visual)

    @app.post('/vln/frame/sync', response_model=FrameResponse,
              responses={**_ERRORS, 504: {'model': ErrorResponse}}, tags=['frames'])
    async def frame_sync(body: FrameRequest, request: Request) -> dict:
        """Publish a frame and wait for the result computed from it (up to sync_timeout).

        Only keyframes get results: create the task with keyframe_threshold 0 and send sync
        frames no faster than the perception node's keyframe_min_interval. A frame that
        gets no result in time is answered 504.
        """
        active, stamp_ns, future, accepted = await ingest(body.task_id, body.frame,
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
                '(too similar to the last keyframe or sooner than keyframe_min_interval '
                'after it: create the task with keyframe_threshold 0 for sync use) or the '
                'model did not answer in time') from None
        visual = await ros.wait_debug_image(stamp_ns, 1.0) if active.get('visualize') \
            else None
        return _frame_response(result, stamp_ns, accepted, body.timestamp, visual)

    @app.websocket('/vln/stream/{task_id}')
    async def stream(websocket: WebSocket, task_id: str, debug_images: bool = False) -> None:
        """Frames in ({frame, timestamp?} JSON or binary JPEG/PNG), results out as produced.

        With ``?debug_images=true`` the stream also carries the task's annotated debug
        images as {type: 'debug_image', task_id, sequence, stamp, jpeg (base64)}, the
        newest one first on connect (the web UI's live view).
        """
        await websocket.accept()
        client = client_of(websocket)

        async def send_error(status: int, code: str, message: str) -> None:
            await websocket.send_text(json.dumps({'type': 'error',
                                                  **error_body(status, code, message)}))

        try:
            await require_active(task_id)
        except BridgeError as exc:
            await send_error(exc.status, exc.code, exc.message)
            await websocket.close(code=4000 + exc.status, reason=exc.code)
            return
        queue = ros.subscribe(task_id, debug_images)
        if debug_images and (latest := ros.latest_debug_image(task_id)) is not None:
            queue.put_nowait(latest)

        async def reader() -> None:
            while True:
                message = await websocket.receive()
                if message['type'] == 'websocket.disconnect':
                    return
                try:
                    if message.get('bytes') is not None:
                        text = base64.b64encode(message['bytes']).decode('ascii')
                    else:
                        try:
                            payload = json.loads(message.get('text') or '')
                        except ValueError as exc:
                            raise BridgeError(400, 'invalid_json',
                                              f'message is not valid JSON: {exc}') from None
                        if not isinstance(payload, dict) or \
                                not isinstance(payload.get('frame'), str):
                            raise BridgeError(422, 'invalid_request',
                                              'message must be a JSON object with a string '
                                              '"frame" (base64 JPEG or PNG)')
                        text = payload['frame']
                    await ingest(task_id, text, client, False)
                except (BridgeError, FrameError) as exc:
                    await send_error(exc.status, exc.code, exc.message)

        async def writer() -> None:
            while True:
                item = await queue.get()
                await websocket.send_text(json.dumps(item))

        tasks = [asyncio.ensure_future(reader()), asyncio.ensure_future(writer())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except WebSocketDisconnect:
            pass
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            ros.unsubscribe(task_id, queue)

    # ------------------------------------------------------------------ safety, commands

    @app.post('/vln/estop', response_model=EstopResponse,
              responses={**_ERRORS, 502: {'model': ErrorResponse},
                         504: {'model': ErrorResponse}}, tags=['safety'])
    async def estop(body: EstopRequest) -> dict:
        """Engage (cmd_vel zero at once and held) or release the planner's e-stop.

        409 no_planner when no node serves vln/estop: the graph, not the server, is in a
        state where an e-stop cannot be delivered (and nothing of vln_ros drives the robot).
        """
        return await ros.set_estop(body.engaged)

    @app.get('/vln/estop', response_model=EstopResponse, tags=['safety'])
    async def estop_state() -> dict:
        """The e-stop state last set through this bridge (engaged null: never set)."""
        return ros.estop_state()

    @app.get('/vln/cmd_vel', response_model=CmdVelResponse, responses=_ERRORS,
             tags=['safety'])
    async def cmd_vel(since: float = 0.0) -> dict:
        """Velocity commands on cmd_vel received after ``since`` (the last 10 s at most).

        The bridge follows cmd_vel only while this is polled: the first poll starts the
        subscription (so it returns no samples yet); 30 s without a poll ends it.
        """
        if not math.isfinite(since):
            raise BridgeError(422, 'invalid_request', 'since must be a finite number')
        return ros.cmd_vel_since(since)

    # ------------------------------------------------------------------ video source

    def source_error(exc: VideoError) -> BridgeError:
        return BridgeError(_SOURCE_STATUS.get(exc.code, 400), exc.code, exc.message)

    @app.post('/vln/source', response_model=SourceStatus,
              responses={**_ERRORS, 404: {'model': ErrorResponse}}, tags=['video source'])
    async def source_start(body: SourceRequest) -> dict:
        """Play a video into the camera topic at its frame rate (replaces the current one).

        The bridge publishes the decoded frames as it publishes /vln/frame frames (parameter
        frame_topic_type), so the perception node sees them as its camera. Do not use it
        while another camera (the simulator, a robot) publishes on the same topic.
        """
        given = [name for name in ('path', 'url', 'upload') if getattr(body, name)]
        if len(given) != 1:
            raise BridgeError(422, 'invalid_request',
                              'give exactly one of "path", "url" and "upload"')
        cleanup = None
        try:
            if body.upload:
                suffix = os.path.splitext(body.filename or '')[1][:8] or '.bin'
                data = decode_base64_video(body.upload)
                target = await asyncio.to_thread(save_upload, data, suffix)
                label = f'upload: {body.filename or "video"}'

                def cleanup() -> None:
                    try:
                        os.unlink(target)
                    except OSError:
                        pass
            else:
                target = body.path or body.url or ''
                _check_text(target)
                label = target
            return await asyncio.to_thread(source.start, target, bool(body.url), body.fps,
                                           body.loop, label, cleanup)
        except VideoError as exc:
            raise source_error(exc) from None
        except ValueError as exc:
            raise BridgeError(422, 'invalid_request', f'{given[0]}: {exc}') from None

    @app.get('/vln/source', response_model=SourceStatus, tags=['video source'])
    async def source_status() -> dict:
        """What the video source is doing."""
        return source.status()

    @app.post('/vln/source/pause', response_model=SourceStatus, responses=_ERRORS,
              tags=['video source'])
    async def source_pause() -> dict:
        """Pause the video (409 no_source when nothing plays)."""
        try:
            return source.pause()
        except VideoError as exc:
            raise source_error(exc) from None

    @app.post('/vln/source/resume', response_model=SourceStatus, responses=_ERRORS,
              tags=['video source'])
    async def source_resume() -> dict:
        """Resume a paused video (409 no_source when nothing plays)."""
        try:
            return source.resume()
        except VideoError as exc:
            raise source_error(exc) from None

    @app.post('/vln/source/stop', response_model=SourceStatus, tags=['video source'])
    async def source_stop() -> dict:
        """Stop the video (nothing else publishes on the camera topic through the bridge)."""
        return await asyncio.to_thread(source.stop)

    # ------------------------------------------------------------------ web UI

    if UI_DIR.is_dir():
        app.mount('/ui', StaticFiles(directory=UI_DIR, html=True), name='ui')

        @app.get('/', include_in_schema=False)
        async def root() -> RedirectResponse:
            return RedirectResponse('/ui/')

    # ------------------------------------------------------------------ video

    @app.post('/analyze/video', response_model=VideoResponse,
              responses={**_ERRORS, 502: {'model': ErrorResponse},
                         504: {'model': ErrorResponse}}, tags=['model'])
    async def analyze_video(body: VideoRequest) -> dict:
        """Sample frames evenly from a video and ask the model once with all of them."""
        from vln_ros.core.images import jpeg_data_url
        from vln_ros.core.parser import parse_answer
        from vln_ros.core.prompts import build_messages

        if body.max_frames > settings.max_video_frames:
            raise BridgeError(422, 'too_many_frames', f'max_frames must be at most '
                              f'{settings.max_video_frames} (parameter max_video_frames)')

        def frames_to_urls() -> list[str]:
            frames = sample_video(decode_base64_video(body.video), body.max_frames)
            return [jpeg_data_url(f, 640, 85) for f in frames]

        try:
            urls = await asyncio.to_thread(frames_to_urls)
        except VideoError as exc:
            raise BridgeError(400, exc.code, exc.message) from None
        messages = build_messages(body.instruction, urls, (), 0)
        client = state['vlm']
        try:
            reply = await client.complete(messages)
        except VlmError as exc:
            if exc.kind == 'timeout':
                raise BridgeError(504, 'model_timeout', str(exc)) from None
            status = exc.status_code if exc.status_code in (400, 413, 422) else 502
            raise BridgeError(status, 'model_server_error', str(exc)) from None
        parsed = parse_answer(reply.text)
        status = ('vlm_error' if parsed.method == 'failed' else 'stop'
                  if parsed.action == 'stop' else 'ok' if parsed.method == 'json'
                  else 'fallback')
        return {'environment': parsed.environment, 'action': parsed.action,
                'waypoints': [{'dx': w.dx, 'dy': w.dy, 'dtheta': w.dtheta,
                               'confidence': w.confidence} for w in parsed.waypoints],
                'status': status, 'error': parsed.error, 'frames_used': len(urls),
                'inference_time': reply.latency, 'model': reply.model, 'raw_text': reply.text}

    # ------------------------------------------------------------------ OpenAI proxy

    def upstream_headers(request: Request) -> dict:
        headers = {'content-type': 'application/json', 'accept': '*/*'}
        if settings.vlm_api_key:
            headers['authorization'] = f'Bearer {settings.vlm_api_key}'
        elif not settings.api_key and request.headers.get('authorization'):
            # No bridge key: the caller's own key is meant for the model server.
            headers['authorization'] = request.headers['authorization']
        return headers

    async def relay(request: Request, method: str, path: str, body: bytes | None,
                    stream: bool) -> Response:
        url = settings.vlm_base_url.rstrip('/') + path
        http: httpx.AsyncClient = state['http']
        upstream = http.build_request(method, url, content=body,
                                      headers=upstream_headers(request))
        try:
            response = await http.send(upstream, stream=True)
        except httpx.TimeoutException as exc:
            return _error_response(504, 'timeout', f'model server timed out: {exc!r}', path)
        except httpx.HTTPError as exc:
            return _error_response(502, 'bad_gateway',
                                   f'cannot reach the model server at {url}: {exc!r}', path)
        content_type = response.headers.get('content-type', 'application/json')
        if stream and response.status_code == 200:
            async def chunks():
                try:
                    async for chunk in response.aiter_raw():
                        yield chunk
                except httpx.HTTPError as exc:
                    # Headers are gone: report in-band, as LMDeploy does after a stream began.
                    error = error_body(502, 'bad_gateway', f'model server stream broke: {exc!r}',
                                       True)
                    yield f'data: {json.dumps(error)}\n\n'.encode()
                finally:
                    await response.aclose()
            return StreamingResponse(chunks(), status_code=200, media_type=content_type,
                                     headers={'cache-control': 'no-cache',
                                              'x-accel-buffering': 'no'})
        try:
            content = await response.aread()
        except httpx.HTTPError as exc:
            return _error_response(502, 'bad_gateway', f'model server answer broke: {exc!r}',
                                   path)
        finally:
            await response.aclose()
        if response.status_code >= 400 and 'json' not in content_type:
            message = content.decode('utf-8', 'replace')[:300] or response.reason_phrase
            return _error_response(response.status_code, 'upstream',
                                   f'model server: {message}', path)
        return Response(content, status_code=response.status_code, media_type=content_type)

    @app.get('/v1/models', tags=['openai'], responses={502: _OPENAI_ERROR})
    async def models(request: Request) -> Response:
        """List the model server's models (proxied)."""
        return await relay(request, 'GET', '/models', None, False)

    @app.post('/v1/chat/completions', tags=['openai'],
              openapi_extra={'requestBody': {'required': True, 'content': {
                  'application/json': {'schema': _CHAT_SCHEMA}}}},
              responses={200: {'description': 'chat completion, or SSE chunks when stream is '
                                              'true', 'content': {'text/event-stream': {}}},
                         400: _OPENAI_ERROR, 502: _OPENAI_ERROR})
    async def chat_completions(request: Request) -> Response:
        """OpenAI chat completions, proxied to the model server; SSE passed through."""
        body = await request.body()
        try:
            payload = json.loads(body)
        except ValueError as exc:
            return _error_response(400, 'invalid_json', f'request body is not valid JSON: {exc}',
                                   '/v1')
        if not isinstance(payload, dict):
            return _error_response(400, 'invalid_request',
                                   'request body must be a JSON object', '/v1')
        return await relay(request, 'POST', '/chat/completions', body,
                           payload.get('stream') is True)

    # ------------------------------------------------------------------ middleware
    # Each add wraps the previous: CORS outermost (preflights carry no key), then the key
    # check, then the body count, so an unauthorized upload is refused before it is read.
    app.add_middleware(BodySizeMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key, open_paths=ui_paths())
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=['GET', 'POST'],
                           allow_headers=['authorization', 'content-type'])
    return app
