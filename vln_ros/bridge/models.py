"""Request and response models of the bridge's REST API (they make its OpenAPI document).

Field descriptions are the API's documentation: units, ranges and what a null means.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


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
    """Optional per-task settings; null (or omitted) and 0 take the perception node's defaults.

    The same rule as the CreateTask service and the Navigate goal: zero means "the node's
    default", never a literal 0.
    """

    model_config = ConfigDict(allow_inf_nan=False)

    output_fps: float | None = Field(
        None, ge=0.0, le=30.0,
        description="Hz the linear_vel/angular_vel fields assume; null or 0: the perception "
                    "node's default (its output_fps)")
    keyframe_threshold: float | None = Field(
        None, ge=0.0, le=1.0,
        description="frame difference that makes a keyframe; null or 0: the perception node's "
                    'default (its keyframe_threshold). No value makes every frame a keyframe: for '
                    '/vln/frame/sync use a small threshold (e.g. 0.001) with frames that differ, '
                    "sent no faster than the perception node's keyframe_min_interval")
    enable_visualization: bool = Field(False, description='return visualized_frame')


def check_text(value: str) -> str:
    """Return ``value`` when it can cross into a ROS string, else raise ValueError."""
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

    _text = field_validator('instruction')(check_text)


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
    """Configuration a task was created with."""

    output_fps: float = Field(description="0: the perception node's output_fps")
    keyframe_threshold: float = Field(description="0: the perception node's keyframe_threshold")
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
    command: str = Field('', description="the planner's command state while the task is "
                         'active: tracking, blocked, obstacle, stale_sensor, ...')
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
    timestamp: float | None = Field(
        None, description='any client value (e.g. its capture time), echoed back unchanged. It '
                          "is not the frame's stamp: the bridge stamps every frame with its own "
                          'ROS clock on arrival (frame_stamp), because perception and the '
                          'planner compare stamps with the ROS clock and a client clock is not '
                          'synchronised with it')


class FrameResponse(BaseModel):
    """The latest result of the task (or, for /vln/frame/sync, the result covering this frame).

    A sync frame is answered by the first result of its task whose keyframe was captured at or
    after it (result_stamp >= frame_stamp): perception may answer a newer frame than a waiting
    keyframe, and that answer is about a scene at least as new.
    """

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
    frame_stamp: float = Field(
        description="stamp the bridge gave this frame on arrival (s, the bridge's ROS clock)")
    result_stamp: float | None = Field(
        None, description='capture stamp of the keyframe the result answers (s, ROS clock); '
                          'null while the task has no result')
    timestamp: float | None = Field(None, description="the request's timestamp, unchanged")


class VideoRequest(BaseModel):
    """A short video and an instruction; frames are sampled evenly and sent together."""

    video: str = Field(min_length=1, description='base64 video (mp4, avi, ...) or data URL')
    instruction: str = Field(min_length=1, max_length=1000)
    max_frames: int = Field(8, ge=1, le=64, description='frames sampled evenly')

    _text = field_validator('instruction')(check_text)


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
    estop: bool | None = Field(None, description='the e-stop as the planner latches it on '
                                                 'vln/estop_state; null: no state received')


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
    """The planner's e-stop state, as it latches it on vln/estop_state (whoever set it)."""

    engaged: bool | None = Field(
        description='null when no state has been received from the planner')
    success: bool = Field(description='GET: a planner state is known; POST: the planner '
                                      'accepted the request')
    message: str
    stamp: float = Field(description='when the bridge received that state (s, ROS clock); 0 '
                                     'when never')


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

    path: str | None = Field(
        None, min_length=1, max_length=4096,
        description='a video file on the bridge machine under the directory of the bridge '
                    'parameter media_dir (relative paths are taken from there); a path that '
                    "resolves outside it, through '..' or a symlink, is refused with 403")
    url: str | None = Field(None, min_length=1, max_length=4096,
                            description='http:// or https:// video opened by OpenCV (FFmpeg); '
                                        'needs network access from the bridge. Other schemes '
                                        '(rtsp, rtmp, file, ...) are refused with 422')
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


# The error statuses most endpoints may answer, for the OpenAPI document.
ERRORS = {code: {'model': ErrorResponse}
          for code in (400, 401, 404, 409, 413, 415, 422, 429, 503, 504)}
