"""The bridge's rclpy node: task service clients, the camera publisher, result caches.

Callbacks run on the node's executor thread and only store what arrived; anything the web
side waits for (a sync frame's result, a WebSocket stream, a debug image) is handed to the
app's asyncio loop with ``loop.call_soon_threadsafe``, so neither side ever blocks the other.
The methods the app calls (see vln_ros.bridge.port.RosPort) run on that loop.
"""
from __future__ import annotations

import asyncio
import base64
from collections import OrderedDict, deque
import os
import threading
import time

import cv2
from geometry_msgs.msg import Twist, TwistStamped
from rcl_interfaces.msg import ParameterDescriptor, ParameterType
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Bool
from std_srvs.srv import SetBool
from vln_ros_interfaces.msg import NavigationResult, TaskConfig, TaskState
from vln_ros_interfaces.srv import CreateTask, GetTask, StopTask

from vln_ros.bridge.errors import BridgeError
from vln_ros.bridge.limits import Frame
from vln_ros.bridge.settings import DEFAULT_MEDIA_DIR, BridgeSettings
from vln_ros.core.images import ImageError, bgr_to_image_fields, image_to_bgr
from vln_ros.core.statuses import TASK_ACTIVE, result_name
from vln_ros.nodes.ros_common import (
    ESTOP_STATE_TOPIC,
    LATCHED_QOS,
    RELIABLE_QOS,
    SENSOR_QOS,
    declare,
    stamp_to_sec,
)

FRAME_TOPIC_TYPES = ('compressed', 'raw', 'both')
_MAX_TASKS_CACHED = 256
_DEBUG_IMAGES_KEPT = 8
_STREAM_QUEUE = 64
_SERVICE_WAIT_S = 2.0  # a just-started graph may need this long to discover the task node
_CMD_VEL_KEPT_S = 10.0  # GET /vln/cmd_vel serves this much history
_CMD_VEL_MAX_SAMPLES = 2000  # bounds memory whatever the command rate
# A 50 Hz Python subscription costs several % CPU: cmd_vel is followed only while someone
# polls GET /vln/cmd_vel, and dropped after this long without a poll.
_CMD_VEL_IDLE_S = 30.0
_SOURCE_JPEG_QUALITY = 90
# POST /vln/estop answers with the state the planner then latches; it waits this long for it.
_ESTOP_ECHO_S = 1.0
_NO_ESTOP_STATE = (f'no e-stop state received from the planner on {ESTOP_STATE_TOPIC} (is the '
                   'planner_node running?)')


def _stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _r(value: float) -> float:
    # float32 fields: 0.3 arrives as 0.30000001192092896; clients want 0.3.
    return round(float(value), 4)


def result_dict(msg: NavigationResult) -> dict:
    """NavigationResult to the JSON-ready dict the app serves."""
    stamp_ns = _stamp_ns(msg.header.stamp)
    return {
        'task_id': msg.task_id, 'sequence': int(msg.sequence), 'stamp': stamp_ns * 1e-9,
        'stamp_ns': stamp_ns, 'environment': msg.environment, 'action': msg.action,
        'waypoints': [{'dx': _r(w.dx), 'dy': _r(w.dy), 'dtheta': _r(w.dtheta),
                       'confidence': _r(w.confidence)} for w in msg.waypoints],
        'linear_vel': _r(msg.linear_vel), 'angular_vel': _r(msg.angular_vel),
        'inference_time': _r(msg.inference_time),
        'status': result_name(msg.status), 'error': msg.error,
    }


def state_dict(msg: TaskState) -> dict:
    """TaskState to a JSON-ready dict."""
    return {
        'task_id': msg.task_id, 'instruction': msg.instruction, 'status': msg.status,
        'created': stamp_to_sec(msg.created), 'updated': stamp_to_sec(msg.updated),
        'frames': int(msg.frames), 'keyframes': int(msg.keyframes),
        'inferences': int(msg.inferences), 'errors': int(msg.errors),
        'last_action': msg.last_action, 'last_environment': msg.last_environment,
        'message': msg.message, 'command': msg.command,
        'config': {'output_fps': _r(msg.config.output_fps),
                   'keyframe_threshold': _r(msg.config.keyframe_threshold),
                   'enable_visualization': bool(msg.config.enable_visualization)},
        'visualize': bool(msg.config.enable_visualization),
    }


class _Bounded(OrderedDict):
    """Dict that forgets its oldest entries beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


class BridgeNode(Node):
    """ROS side of the bridge; implements vln_ros.bridge.port.RosPort."""

    def __init__(self) -> None:
        super().__init__('vln_bridge')
        self.host = declare(self, 'host', '127.0.0.1',
                            'Address to bind; 0.0.0.0 exposes the API to the network',
                            read_only=True)
        self.port = declare(self, 'port', 20000, 'TCP port; 0 picks a free one', 0, 65535,
                            read_only=True)
        self.allow_insecure = declare(
            self, 'allow_insecure', False, 'Serve a non-loopback host without an api_key (the '
            'API, e-stop included, is then open to anyone on the network)', read_only=True)
        self.settings = BridgeSettings(
            api_key=declare(self, 'api_key', '', 'Bearer key required on every endpoint but '
                            '/health; empty: none', read_only=True),
            vlm_base_url=declare(self, 'vlm.base_url', 'http://127.0.0.1:23333/v1',
                                 'OpenAI-compatible base URL of the model server',
                                 read_only=True),
            vlm_api_key=declare(self, 'vlm.api_key', '', 'API key of the model server',
                                read_only=True),
            vlm_timeout=declare(self, 'vlm.timeout', 120.0,
                                'Timeout of proxied model requests (s)', 1.0, 3600.0),
            vlm_guided=declare(self, 'vlm.guided', 'regex',
                               'Guided decoding of /analyze/video: regex, json_schema, none'),
            max_body_bytes=declare(self, 'max_body_bytes', 10 * 1024 * 1024,
                                   'Largest request body (bytes); larger gets 413',
                                   1024, 1 << 31),
            max_frame_bytes=declare(self, 'max_frame_bytes', 4 * 1024 * 1024,
                                    'Largest encoded frame (bytes); larger gets 413',
                                    1024, 1 << 31),
            max_frame_pixels=declare(self, 'max_frame_pixels', 4096 * 4096,
                                     'Largest frame (pixels, from its header)', 1, 1 << 31),
            frame_rate_limit=declare(self, 'frame_rate_limit', 60.0,
                                     'Frames/s per client (token bucket); 0: no limit',
                                     0.0, 100000.0),
            frame_burst=declare(self, 'frame_burst', 0.0,
                                'Frames a client may send at once; 0: one second worth',
                                0.0, 100000.0),
            sync_timeout=declare(self, 'sync_timeout', 15.0,
                                 'POST /vln/frame/sync waits this long for its result (s)',
                                 0.1, 600.0),
            service_timeout=declare(self, 'service_timeout', 5.0,
                                    'Timeout of the task service calls (s)', 0.1, 120.0),
            max_video_frames=declare(self, 'max_video_frames', 32,
                                     'Most frames /analyze/video may sample', 1, 64),
            cors_origins=tuple(self._string_array(
                'cors_origins', 'Origins allowed by CORS; empty: CORS off')),
            source_max_long_side=declare(self, 'source.max_long_side', 1280,
                                         'The video source downscales frames to this long '
                                         'side (px); 0: never', 0, 8192, read_only=True),
            source_open_timeout=declare(self, 'source.open_timeout', 5.0,
                                        'Timeout of opening a video source URL (s)', 0.1,
                                        60.0, read_only=True),
            media_dir=os.path.expanduser(declare(
                self, 'media_dir', DEFAULT_MEDIA_DIR, 'POST /vln/source plays video files '
                'under this directory only (symlinks resolved)', read_only=True)),
        )
        stamped = declare(self, 'use_stamped_cmd_vel', False,
                          'cmd_vel is TwistStamped (as the planner parameter)', read_only=True)
        # raw by default: what the perception node subscribes to by default.
        topic_type = declare(self, 'frame_topic_type', 'raw',
                             'Publish frames as raw (Image on camera/image_raw, decoded off '
                             'the request path), compressed (CompressedImage on '
                             'camera/image_raw/compressed, no decode) or both', read_only=True)
        if topic_type not in FRAME_TOPIC_TYPES:
            raise ValueError(f'frame_topic_type must be one of {FRAME_TOPIC_TYPES}, '
                             f'got {topic_type!r}')
        self._frame_id = declare(self, 'frame_id', 'camera', 'frame_id of published frames')

        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._active: dict | None = None
        self._states: _Bounded = _Bounded(_MAX_TASKS_CACHED)
        self._latest: _Bounded = _Bounded(_MAX_TASKS_CACHED)
        self._debug: deque[tuple[int, str]] = deque(maxlen=_DEBUG_IMAGES_KEPT)
        self._last_stamp_ns = 0
        # Loop-thread only: waiters of sync frames and debug images, stream queues.
        self._waiters: dict[int, tuple[str, asyncio.Future]] = {}
        self._debug_waiters: dict[int, list[asyncio.Future]] = {}
        self._streams: dict[str, set[asyncio.Queue]] = {}
        self._debug_streams: set[asyncio.Queue] = set()
        # Keyframe stamp -> (task id, sequence): a debug image carries the stamp of its result.
        self._result_keys: _Bounded = _Bounded(64)
        self._latest_debug: _Bounded = _Bounded(16)  # task id -> debug_image stream item
        # Debug images that overtook their result (two topics, two callback groups), by stamp.
        self._debug_pending: _Bounded = _Bounded(16)
        self._cmd_vel: deque[tuple[float, float, float, float]] = deque(
            maxlen=_CMD_VEL_MAX_SAMPLES)
        # The planner's e-stop as it latches it on vln/estop_state (None: nothing received).
        self._estop = {'engaged': None, 'success': False, 'message': _NO_ESTOP_STATE,
                       'stamp': 0.0}
        self._estop_seq = 0  # messages received on vln/estop_state
        self._estop_waiters: list[tuple[int, bool, asyncio.Future]] = []  # loop thread only

        self._compressed_pub = self._raw_pub = None
        if topic_type in ('compressed', 'both'):
            self._compressed_pub = self.create_publisher(
                CompressedImage, 'camera/image_raw/compressed', SENSOR_QOS)
        if topic_type in ('raw', 'both'):
            self._raw_pub = self.create_publisher(Image, 'camera/image_raw', SENSOR_QOS)
        self.create_subscription(NavigationResult, 'vln/result', self._on_result, RELIABLE_QOS)
        self.create_subscription(TaskState, 'vln/task_state', self._on_task_state, LATCHED_QOS)
        self.create_subscription(Bool, ESTOP_STATE_TOPIC, self._on_estop_state, LATCHED_QOS)
        # JPEG-encoding a debug image takes milliseconds: keep it off the result callbacks.
        self.create_subscription(Image, 'vln/debug_image', self._on_debug_image, 2,
                                 callback_group=MutuallyExclusiveCallbackGroup())
        self._cmd_type = TwistStamped if stamped else Twist
        self._cmd_sub = None
        self._cmd_polled = 0.0  # monotonic time of the last GET /vln/cmd_vel
        self.create_timer(5.0, self._drop_idle_cmd_vel)
        self._create_cli = self.create_client(CreateTask, 'vln/create_task')
        self._estop_cli = self.create_client(SetBool, 'vln/estop')
        self._stop_cli = self.create_client(StopTask, 'vln/stop_task')
        self._get_cli = self.create_client(GetTask, 'vln/get_task')
        self.get_logger().info(
            f'bridge node ready: frames on {topic_type} camera topics, model server '
            f'{self.settings.vlm_base_url}, api key {"on" if self.settings.api_key else "off"}, '
            f'video files from {self.settings.media_dir}')

    def _string_array(self, name: str, description: str) -> list[str]:
        desc = ParameterDescriptor(description=description,
                                   type=ParameterType.PARAMETER_STRING_ARRAY, read_only=True)
        self.declare_parameter(name, Parameter.Type.STRING_ARRAY, desc)
        try:
            return [str(v) for v in self.get_parameter(name).value or [] if str(v)]
        except ParameterUninitializedException:
            return []

    # ------------------------------------------------------------------ executor thread

    def _hand_over(self, callback, *args) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(callback, *args)
            except RuntimeError:
                pass  # the loop closed meanwhile (shutdown)

    def _on_result(self, msg: NavigationResult) -> None:
        result = result_dict(msg)
        stamp_ns = result['stamp_ns']
        with self._lock:
            self._latest[msg.task_id] = result
            self._result_keys[stamp_ns] = (msg.task_id, result['sequence'])
            encoded = self._debug_pending.pop(stamp_ns, None)
            item = None if encoded is None else self._debug_item(
                stamp_ns, encoded, msg.task_id, result['sequence'])
        self._hand_over(self._dispatch_result, result)
        if item is not None:
            self._hand_over(self._dispatch_debug, stamp_ns, encoded, item)

    def _debug_item(self, stamp_ns: int, encoded: str, task_id: str, sequence: int) -> dict:
        """The stream item of a debug image, remembered as its task's latest (lock held)."""
        item = {'type': 'debug_image', 'task_id': task_id, 'sequence': sequence,
                'stamp': stamp_ns * 1e-9, 'jpeg': encoded}
        self._latest_debug[task_id] = item
        return item

    def _on_task_state(self, msg: TaskState) -> None:
        if not msg.task_id:
            return
        state = state_dict(msg)
        with self._lock:
            self._states[msg.task_id] = state
            if msg.status == TASK_ACTIVE:
                self._active = state
            elif self._active is not None and self._active['task_id'] == msg.task_id:
                self._active = None
        self._hand_over(self._dispatch_state, state)

    def _on_debug_image(self, msg: Image) -> None:
        try:
            img = image_to_bgr(msg.encoding, msg.width, msg.height, msg.step, msg.data)
        except ImageError as exc:
            self.get_logger().warn(f'cannot convert debug image: {exc}',
                                   throttle_duration_sec=10.0)
            return
        ok, jpeg = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, 80])
        if not ok:
            return
        stamp_ns = _stamp_ns(msg.header.stamp)
        encoded = base64.b64encode(jpeg.tobytes()).decode('ascii')
        with self._lock:
            self._debug.append((stamp_ns, encoded))
            key = self._result_keys.get(stamp_ns)
            if key is None:  # streamed when its result names the task and sequence
                self._debug_pending[stamp_ns] = encoded
                item = None
            else:
                item = self._debug_item(stamp_ns, encoded, *key)
        self._hand_over(self._dispatch_debug, stamp_ns, encoded, item)

    def _on_estop_state(self, msg: Bool) -> None:
        engaged = bool(msg.data)
        word = 'engaged' if engaged else 'released'
        state = {'engaged': engaged, 'success': True,
                 'message': f'the planner reports the e-stop {word}',
                 'stamp': self.get_clock().now().nanoseconds * 1e-9}
        with self._lock:
            self._estop = state
            self._estop_seq += 1
            seq = self._estop_seq
        self._hand_over(self._dispatch_estop, seq, dict(state))

    def _drop_idle_cmd_vel(self) -> None:
        with self._lock:
            sub = self._cmd_sub
            if sub is None or time.monotonic() - self._cmd_polled < _CMD_VEL_IDLE_S:
                return
            self._cmd_sub = None
            self._cmd_vel.clear()
        self.destroy_subscription(sub)

    def _on_cmd_vel(self, msg) -> None:
        twist = msg.twist if isinstance(msg, TwistStamped) else msg
        now = self.get_clock().now().nanoseconds * 1e-9
        with self._lock:
            self._cmd_vel.append((now, twist.linear.x, twist.linear.y, twist.angular.z))

    # ------------------------------------------------------------------ loop thread

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hand results to ``loop`` from now on."""
        self._loop = loop

    def _feed(self, task_id: str, item: dict) -> None:
        for queue in self._streams.get(task_id, ()):
            if queue.full():  # a slow client loses the oldest item, not the newest
                queue.get_nowait()
            queue.put_nowait(item)

    def _dispatch_result(self, result: dict) -> None:
        # A result covers every waiting frame of its task captured at or before its keyframe:
        # perception answers the newest frame when a queued keyframe gets its turn, so a
        # waiter's own stamp may never come back, but the scene answered is at least as new.
        stamp_ns = result['stamp_ns']
        for waiter_ns, (task_id, future) in list(self._waiters.items()):
            if waiter_ns <= stamp_ns and task_id == result['task_id']:
                del self._waiters[waiter_ns]
                if not future.done():
                    future.set_result(result)
        self._feed(result['task_id'], {'type': 'result', **result})

    def _dispatch_estop(self, seq: int, state: dict) -> None:
        for entry in list(self._estop_waiters):
            after, engaged, future = entry
            if seq > after and state['engaged'] == engaged:
                self._estop_waiters.remove(entry)
                if not future.done():
                    future.set_result(state)

    def _dispatch_state(self, state: dict) -> None:
        if state['status'] != TASK_ACTIVE:
            for stamp_ns, (task_id, future) in list(self._waiters.items()):
                if task_id == state['task_id'] and not future.done():
                    future.set_exception(BridgeError(
                        409, 'task_not_active', f'task {task_id} became {state["status"]} '
                        f'before the result of this frame arrived ({state["message"]})'))
                    self._waiters.pop(stamp_ns, None)
        item = {k: v for k, v in state.items() if k != 'visualize'}
        self._feed(state['task_id'], {'type': 'task_state', **item})

    def _dispatch_debug(self, stamp_ns: int, encoded: str, item: dict | None) -> None:
        for future in self._debug_waiters.pop(stamp_ns, ()):
            if not future.done():
                future.set_result(encoded)
        if item is None:
            return
        for queue in self._streams.get(item['task_id'], ()):
            if queue in self._debug_streams:
                if queue.full():
                    queue.get_nowait()
                queue.put_nowait(item)

    def active_task(self) -> dict | None:
        """The active task as last seen on vln/task_state (or created through the bridge)."""
        with self._lock:
            return self._active

    def known_task(self, task_id: str) -> bool:
        """True when the task was seen on vln/task_state."""
        with self._lock:
            return task_id in self._states

    def _next_stamp_ns(self) -> int:
        # Unique, increasing stamps: a sync frame is matched to its result by stamp alone.
        now = self.get_clock().now().nanoseconds
        with self._lock:
            self._last_stamp_ns = max(now, self._last_stamp_ns + 1)
            return self._last_stamp_ns

    async def publish_frame(self, task_id: str, frame: Frame, want_result: bool = False
                            ) -> tuple[int, asyncio.Future | None, bool]:
        """Publish a checked frame as the camera; optionally register for its result.

        The result future gets the first result of the task whose keyframe was captured at or
        after this frame (see _dispatch_result).
        """
        stamp_ns = self._next_stamp_ns()
        future = None
        if want_result:
            future = asyncio.get_running_loop().create_future()
            self._waiters[stamp_ns] = (task_id, future)
            future.add_done_callback(lambda _f: self._waiters.pop(stamp_ns, None))
        listeners = 0
        if self._compressed_pub is not None:
            msg = CompressedImage(format=frame.kind)
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
            msg.header.frame_id = self._frame_id
            msg.data = frame.data
            self._compressed_pub.publish(msg)
            listeners += self._compressed_pub.get_subscription_count()
        if self._raw_pub is not None:
            try:
                # Decoding takes milliseconds: a worker thread, not the event loop.
                await asyncio.to_thread(self._publish_raw, frame, stamp_ns)
            except ImageError as exc:
                if future is not None:
                    future.cancel()
                raise BridgeError(400, f'corrupt_{frame.kind}',
                                  f'frame could not be decoded: {exc}') from None
            listeners += self._raw_pub.get_subscription_count()
        return stamp_ns, future, listeners > 0

    def _publish_raw(self, frame: Frame, stamp_ns: int) -> None:
        from vln_ros.core.images import compressed_to_bgr

        fields = bgr_to_image_fields(compressed_to_bgr(frame.kind, frame.data), 'bgr8')
        msg = Image(height=fields['height'], width=fields['width'],
                    encoding=fields['encoding'], step=fields['step'], data=fields['data'])
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        msg.header.frame_id = self._frame_id
        self._raw_pub.publish(msg)

    def latest_result(self, task_id: str) -> dict | None:
        """The newest result of a task."""
        with self._lock:
            return self._latest.get(task_id)

    def debug_image(self, stamp_ns: int) -> str | None:
        """Base64 JPEG of the debug image of the keyframe stamped ``stamp_ns``."""
        with self._lock:
            for stamp, encoded in reversed(self._debug):
                if stamp == stamp_ns:
                    return encoded
        return None

    async def wait_debug_image(self, stamp_ns: int, timeout: float) -> str | None:
        """Wait up to ``timeout`` for the debug image of a keyframe (it follows the result)."""
        found = self.debug_image(stamp_ns)
        if found is not None:
            return found
        future = asyncio.get_running_loop().create_future()
        self._debug_waiters.setdefault(stamp_ns, []).append(future)
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            return self.debug_image(stamp_ns)
        finally:
            waiters = self._debug_waiters.get(stamp_ns)
            if waiters and future in waiters:
                waiters.remove(future)
                if not waiters:
                    del self._debug_waiters[stamp_ns]

    def subscribe(self, task_id: str, debug_images: bool = False) -> asyncio.Queue:
        """A queue fed with the task's results and state changes (and debug images)."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=_STREAM_QUEUE)
        self._streams.setdefault(task_id, set()).add(queue)
        if debug_images:
            self._debug_streams.add(queue)
        return queue

    def latest_debug_image(self, task_id: str) -> dict | None:
        """The newest debug image stream item of a task."""
        with self._lock:
            return self._latest_debug.get(task_id)

    def unsubscribe(self, task_id: str, queue: asyncio.Queue) -> None:
        """Stop feeding ``queue``."""
        self._debug_streams.discard(queue)
        queues = self._streams.get(task_id)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self._streams[task_id]

    # ------------------------------------------------------------------ services

    async def _call(self, client, request, what: str, unavailable: BridgeError | None = None):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _SERVICE_WAIT_S
        while not client.service_is_ready():
            if loop.time() > deadline:
                raise unavailable or BridgeError(
                    503, 'task_node_unavailable',
                    f'service {client.srv_name} is not available: is the task_node running?')
            await asyncio.sleep(0.05)
        result = loop.create_future()

        def transfer(ros_future) -> None:
            if result.done():
                return
            error = ros_future.exception()
            if error is not None:
                result.set_exception(BridgeError(502, 'task_node_error',
                                                 f'{what} failed: {error}'))
            else:
                result.set_result(ros_future.result())

        ros_future = client.call_async(request)
        ros_future.add_done_callback(lambda f: self._hand_over_to(loop, transfer, f))
        try:
            return await asyncio.wait_for(result, self.settings.service_timeout)
        except asyncio.TimeoutError:
            client.remove_pending_request(ros_future)
            raise BridgeError(504, 'task_node_timeout',
                              f'{what}: no answer from {client.srv_name} within '
                              f'{self.settings.service_timeout:g} s') from None

    @staticmethod
    def _hand_over_to(loop: asyncio.AbstractEventLoop, callback, *args) -> None:
        if not loop.is_closed():
            try:
                loop.call_soon_threadsafe(callback, *args)
            except RuntimeError:
                pass

    async def create_task(self, instruction: str, output_fps: float,
                          keyframe_threshold: float, visualize: bool) -> dict:
        """Call vln/create_task; an accepted task becomes the active one here at once."""
        request = CreateTask.Request(instruction=instruction, config=TaskConfig(
            output_fps=float(output_fps), keyframe_threshold=float(keyframe_threshold),
            enable_visualization=bool(visualize)))
        response = await self._call(self._create_cli, request, 'create_task')
        if response.accepted:
            # The task node latches the new state before answering, but our subscription
            # may see it a moment after this response: do not 409 the first frames.
            with self._lock:
                if self._active is None or self._active['task_id'] != response.task_id:
                    self._active = {'task_id': response.task_id, 'instruction': instruction,
                                    'status': TASK_ACTIVE, 'visualize': visualize}
        return {'accepted': bool(response.accepted), 'task_id': response.task_id,
                'message': response.message}

    async def stop_task(self, task_id: str) -> dict:
        """Call vln/stop_task."""
        response = await self._call(self._stop_cli, StopTask.Request(task_id=task_id),
                                    'stop_task')
        return {'success': bool(response.success), 'message': response.message}

    async def get_task(self, task_id: str, history_limit: int = 0) -> dict | None:
        """Call vln/get_task: state and history, or None when the id is unknown."""
        response = await self._call(
            self._get_cli, GetTask.Request(task_id=task_id, history_limit=int(history_limit)),
            'get_task')
        if not response.found:
            return None
        task = state_dict(response.state)
        task.pop('visualize')
        task['history'] = [result_dict(r) for r in response.history]
        return task

    async def set_estop(self, engaged: bool) -> dict:
        """Call the planner's vln/estop; answer with the state it then latches.

        409 no_planner when nothing serves vln/estop. When vln/estop_state lags behind the
        service answer (more than a second), the answer says what was requested.
        """
        unavailable = BridgeError(
            409, 'no_planner', f'no node serves {self._estop_cli.srv_name} (is the '
            'planner_node running?): the e-stop cannot be delivered, and no vln_ros planner '
            'commands the robot')
        if not self._estop_cli.service_is_ready() and not self._service_in_graph(
                self._estop_cli.srv_name):
            raise unavailable  # at once: waiting only helps a service being discovered
        loop = asyncio.get_running_loop()
        with self._lock:
            seq = self._estop_seq
        echo = loop.create_future()
        entry = (seq, bool(engaged), echo)
        self._estop_waiters.append(entry)
        try:
            response = await self._call(self._estop_cli, SetBool.Request(data=bool(engaged)),
                                        'estop', unavailable)
            if not response.success:
                return {**self.estop_state(), 'success': False, 'message': response.message}
            try:
                state = await asyncio.wait_for(echo, _ESTOP_ECHO_S)
            except asyncio.TimeoutError:
                return {'engaged': bool(engaged), 'success': True,
                        'message': f'{response.message} (not yet confirmed on '
                                   f'{ESTOP_STATE_TOPIC})',
                        'stamp': self.get_clock().now().nanoseconds * 1e-9}
            return {**state, 'message': response.message}
        finally:
            if entry in self._estop_waiters:
                self._estop_waiters.remove(entry)

    def _service_in_graph(self, name: str) -> bool:
        return any(service == name for service, _ in self.get_service_names_and_types())

    def estop_state(self) -> dict:
        """The planner's e-stop as last received on vln/estop_state (engaged None: never)."""
        with self._lock:
            return dict(self._estop)

    def cmd_vel_since(self, since: float) -> dict:
        """cmd_vel samples received after ``since`` within the last few seconds."""
        now = self.get_clock().now().nanoseconds * 1e-9
        start = max(since, now - _CMD_VEL_KEPT_S)
        with self._lock:
            self._cmd_polled = time.monotonic()
            subscribe = self._cmd_sub is None
            samples = [s for s in self._cmd_vel if s[0] > start]
        if subscribe:
            # First poll (or first after an idle spell): start following cmd_vel now.
            sub = self.create_subscription(self._cmd_type, 'cmd_vel', self._on_cmd_vel,
                                           RELIABLE_QOS)
            with self._lock:
                if self._cmd_sub is None:
                    self._cmd_sub, sub = sub, None
            if sub is not None:
                self.destroy_subscription(sub)
        return {'now': now, 'samples': [
            {'t': t, 'linear_x': _r(vx), 'linear_y': _r(vy), 'angular_z': _r(wz)}
            for t, vx, vy, wz in samples]}

    def publish_image(self, bgr) -> bool:
        """Publish a BGR image as the camera (thread-safe: the video source's thread)."""
        stamp_ns = self._next_stamp_ns()
        sec, nanosec = divmod(stamp_ns, 1_000_000_000)
        listeners = 0
        if self._compressed_pub is not None:
            ok, jpeg = cv2.imencode('.jpg', bgr, [cv2.IMWRITE_JPEG_QUALITY, _SOURCE_JPEG_QUALITY])
            if ok:
                msg = CompressedImage(format='jpeg', data=jpeg.tobytes())
                msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
                msg.header.frame_id = self._frame_id
                self._compressed_pub.publish(msg)
                listeners += self._compressed_pub.get_subscription_count()
        if self._raw_pub is not None:
            fields = bgr_to_image_fields(bgr, 'bgr8')
            msg = Image(height=fields['height'], width=fields['width'],
                        encoding=fields['encoding'], step=fields['step'], data=fields['data'])
            msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
            msg.header.frame_id = self._frame_id
            self._raw_pub.publish(msg)
            listeners += self._raw_pub.get_subscription_count()
        return listeners > 0

    # ------------------------------------------------------------------ health

    def graph_health(self) -> dict:
        """Nodes seen, whether the task node serves, whether anything takes our frames."""
        nodes = sorted(f'{ns.rstrip("/")}/{name}'
                       for name, ns in self.get_node_names_and_namespaces())
        listeners = sum(pub.get_subscription_count()
                        for pub in (self._compressed_pub, self._raw_pub) if pub is not None)
        active = self.active_task()
        return {'nodes': nodes, 'task_node': self._create_cli.service_is_ready(),
                'perception_node': listeners > 0,
                'planner_node': self._estop_cli.service_is_ready(),
                'active_task': active['task_id'] if active else None,
                'estop': self.estop_state()['engaged']}
