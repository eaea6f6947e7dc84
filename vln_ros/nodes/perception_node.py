"""Perception node: camera frames -> keyframes -> the VLM (async) -> vln/result.

A thin adapter: image conversion, keyframe choice, prompts, the OpenAI client, answer parsing
and the newest-wins scheduling all live in vln_ros.core. The camera callback only converts
a frame and decides whether it is a keyframe; the model call runs on the scheduler's asyncio
loop in its own thread, so the executor never waits on the model.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String
from vln_ros_interfaces.msg import NavigationResult, TaskState, Waypoint

from vln_ros.core.debug_view import draw_debug_image
from vln_ros.core.images import (
    ImageError,
    bgr_to_image_fields,
    compressed_to_bgr,
    image_to_bgr,
    jpeg_data_url,
)
from vln_ros.core.inference_scheduler import InferenceScheduler, Job
from vln_ros.core.keyframes import KeyframeSampler
from vln_ros.core.latency_stats import RollingStats
from vln_ros.core.parser import ParsedAnswer, parse_answer
from vln_ros.core.planner import result_velocity
from vln_ros.core.prompts import GUIDED_MODES, build_messages
from vln_ros.core.velocity_limits import Limits
from vln_ros.core.vlm_client import VlmClient, VlmConfig, VlmError
from vln_ros.nodes.ros_common import (
    LATCHED_QOS,
    RELIABLE_QOS,
    SENSOR_QOS,
    TASK_ACK_QOS,
    TASK_ACK_TOPIC,
    declare,
    run_node,
    stamp_to_sec,
    task_ack,
)


@dataclass
class _Task:
    """What perception knows of the active task (changed only under the node's lock)."""

    task_id: str
    instruction: str
    output_fps: float
    visualize: bool
    frames: int = 0
    keyframes: int = 0
    sequence: int = 0
    history: deque = field(default_factory=lambda: deque(maxlen=20))


@dataclass
class _Payload:
    image: object  # BGR numpy image of the keyframe
    instruction: str
    history: tuple
    header: object  # the camera header: its stamp is the capture time
    frames: int
    keyframes: int


def status_of(parsed: ParsedAnswer) -> int:
    """NavigationResult status of a parsed answer."""
    if parsed.method == 'failed':
        return NavigationResult.STATUS_VLM_ERROR
    if parsed.action == 'stop':
        return NavigationResult.STATUS_STOP
    if parsed.method == 'json':
        return NavigationResult.STATUS_OK
    return NavigationResult.STATUS_FALLBACK


class PerceptionNode(Node):
    """Samples keyframes of the active task and publishes the model's answers."""

    def __init__(self) -> None:
        super().__init__('perception_node')
        self._vlm_config = VlmConfig(
            base_url=declare(self, 'vlm.base_url', 'http://127.0.0.1:23333/v1',
                             'OpenAI-compatible base URL of the model server'),
            model=declare(self, 'vlm.model', '', 'Model name; empty: ask /v1/models'),
            api_key=declare(self, 'vlm.api_key', 'none', 'API key of the model server'),
            timeout=declare(self, 'vlm.timeout', 30.0, 'Request timeout (s)', 0.5, 600.0),
            max_retries=declare(self, 'vlm.max_retries', 3,
                                'Retries on connection errors, 429 and 503', 0, 20),
            guided=declare(self, 'vlm.guided', 'regex',
                           'Guided decoding: regex (LMDeploy), json_schema or none'),
            max_tokens=declare(self, 'vlm.max_tokens', 384, 'Answer token budget', 16, 8192),
            temperature=declare(self, 'vlm.temperature', 0.7, 'Sampling temperature', 0.0, 2.0),
            top_p=declare(self, 'vlm.top_p', 0.8, 'Nucleus sampling', 0.0, 1.0),
            top_k=declare(self, 'vlm.top_k', 20, 'Top-k sampling (LMDeploy extra)', 0, 1000),
            repetition_penalty=declare(self, 'vlm.repetition_penalty', 1.05,
                                       'Repetition penalty (LMDeploy extra)', 0.5, 2.0),
            max_pixels=declare(self, 'vlm.max_pixels', 0,
                               'Ask the server to shrink images to this many pixels (0: off)',
                               0, 100_000_000),
        )
        if self._vlm_config.guided not in GUIDED_MODES:
            raise ValueError(f'vlm.guided must be one of {GUIDED_MODES}, '
                             f'got {self._vlm_config.guided!r}')
        transport = declare(self, 'image_transport', 'raw',
                            'Camera input: raw (sensor_msgs/Image) or compressed')
        max_inflight = declare(self, 'max_inflight', 1, 'Model requests at once', 1, 16)
        self._default_threshold = declare(self, 'keyframe_threshold', 0.2,
                                          'Frame difference that makes a keyframe (default '
                                          'for tasks that set none)', 0.0, 1.0)
        min_interval = declare(self, 'keyframe_min_interval', 0.2,
                               'No keyframe sooner than this after the last one (s)', 0.0, 60.0)
        max_interval = declare(self, 'keyframe_max_interval', 10.0,
                               'A keyframe at least this often, changed or not (s)', 0.1, 600.0)
        self._long_side = declare(self, 'image_long_side', 640,
                                  'Long side of the JPEG sent to the model (px)', 64, 4096)
        self._jpeg_quality = declare(self, 'jpeg_quality', 85, 'JPEG quality', 10, 100)
        self._history_size = declare(self, 'history_size', 5,
                                     'Past (environment, action) pairs in the prompt', 0, 20)
        self._visualize_default = declare(self, 'enable_visualization', False,
                                          'Publish vln/debug_image for every result')
        self._base_frame = declare(self, 'base_frame', 'base_link', 'Robot base frame')
        self._limits = Limits(
            max_linear_vel=declare(self, 'max_linear_vel', 0.5,
                                   'Clamp of the result linear_vel field (m/s)', 0.01, 3.0),
            max_angular_vel=declare(self, 'max_angular_vel', 0.8,
                                    'Clamp of the result angular_vel field (rad/s)', 0.01, 5.0))

        self._lock = threading.Lock()
        self._task: _Task | None = None
        self._sampler = KeyframeSampler(self._default_threshold, min_interval, max_interval)
        self._latency = RollingStats(200)
        self._ingest = RollingStats(300)
        self._counts = dict.fromkeys(('frames', 'frames_no_task', 'bad_frames', 'keyframes',
                                      'results', 'errors', 'stale_discarded'), 0)
        self._warned: set[str] = set()
        self._last_error = ''

        self._result_pub = self.create_publisher(NavigationResult, 'vln/result', RELIABLE_QOS)
        self._debug_pub = self.create_publisher(Image, 'vln/debug_image', 2)
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._ack_pub = self.create_publisher(String, TASK_ACK_TOPIC, TASK_ACK_QOS)
        if transport == 'compressed':
            topic = 'camera/image_raw/compressed'
            self.create_subscription(CompressedImage, topic, self._on_compressed, SENSOR_QOS)
        elif transport == 'raw':
            topic = 'camera/image_raw'
            self.create_subscription(Image, topic, self._on_image, SENSOR_QOS)
        else:
            raise ValueError(f'image_transport must be raw or compressed, got {transport!r}')
        self.create_subscription(TaskState, 'vln/task_state', self._on_task_state, LATCHED_QOS)
        self.create_timer(1.0, self._publish_diagnostics)

        self._client = VlmClient(self._vlm_config)
        self._scheduler = InferenceScheduler(self._run_job, self._on_job_done, max_inflight)
        self._scheduler.start()
        self.get_logger().info(
            f'perception ready: {topic} ({transport}), model server '
            f'{self._vlm_config.base_url}, guided={self._vlm_config.guided}, '
            f'max_inflight={max_inflight}; waiting for an active task on vln/task_state')

    # ------------------------------------------------------------------ task switching

    def _on_task_state(self, msg: TaskState) -> None:
        with self._lock:
            current = self._task.task_id if self._task else None
            if msg.status == TaskState.STATUS_ACTIVE:
                if msg.task_id == current:
                    return
                threshold = msg.config.keyframe_threshold
                self._sampler.threshold = threshold if 0.0 <= threshold <= 1.0 \
                    else self._default_threshold
                self._sampler.reset()
                self._task = _Task(
                    task_id=msg.task_id, instruction=msg.instruction,
                    output_fps=msg.config.output_fps if msg.config.output_fps > 0 else 2.0,
                    visualize=msg.config.enable_visualization or self._visualize_default)
            elif msg.task_id == current or not msg.task_id:
                self._task = None
            else:
                return
            active = self._task.task_id if self._task else None
        # From here on no result of the old task is published: on_done checks the task under
        # the lock just released. The scheduler then cancels the old task's requests (outside
        # our lock: it waits for a result being delivered, which needs our lock).
        self._scheduler.set_active_task(active)
        self._ack_pub.publish(String(data=task_ack(self.get_fully_qualified_name(), active)))
        if active:
            self.get_logger().info(f'following task {active}: "{msg.instruction}"')
        else:
            ended = f' (task {msg.task_id} {msg.status})' if msg.task_id else ''
            self.get_logger().info(f'no active task{ended}')

    # ------------------------------------------------------------------ camera ingest

    def _on_image(self, msg: Image) -> None:
        self._ingest_frame(msg.header, lambda: image_to_bgr(
            msg.encoding, msg.width, msg.height, msg.step, msg.data, msg.is_bigendian))

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._ingest_frame(msg.header, lambda: compressed_to_bgr(msg.format, bytes(msg.data)))

    def _ingest_frame(self, header, convert) -> None:
        t0 = time.perf_counter()
        self._counts['frames'] += 1
        with self._lock:
            task = self._task
        if task is None:
            self._counts['frames_no_task'] += 1  # no instruction: nothing to ask the model
            return
        try:
            img = convert()
        except ImageError as exc:
            self._counts['bad_frames'] += 1
            if exc.cause not in self._warned:  # once per cause: a bad camera floods at 30 fps
                self._warned.add(exc.cause)
                self.get_logger().warn(f'dropping camera frames: {exc}')
            return
        with self._lock:
            if self._task is not task:
                return  # switched while converting
            decision = self._sampler.update(img, stamp_to_sec(header.stamp))
            task.frames += 1
            if decision.is_keyframe:
                task.keyframes += 1
                task.sequence += 1
            job = Job(task.task_id, task.sequence, stamp_to_sec(header.stamp), _Payload(
                img, task.instruction, tuple(task.history), header, task.frames,
                task.keyframes))
        if decision.is_keyframe:
            self._counts['keyframes'] += 1
            self._scheduler.submit(job)
        elif task.sequence:
            # A keyframe waiting for the model is sent as the newest frame when its turn comes.
            self._scheduler.refresh_queued(job)
        self._ingest.add((time.perf_counter() - t0) * 1000.0)

    # ------------------------------------------------------------------ model calls (loop thread)

    async def _run_job(self, job: Job):
        payload: _Payload = job.payload
        url = jpeg_data_url(payload.image, self._long_side, self._jpeg_quality)
        messages = build_messages(payload.instruction, [url], payload.history,
                                  self._history_size)
        return await self._client.complete(messages)

    def _on_job_done(self, job: Job, reply, error: BaseException | None) -> None:
        payload: _Payload = job.payload
        msg = NavigationResult(task_id=job.task_id, sequence=job.sequence,
                               frames=payload.frames, keyframes=payload.keyframes)
        msg.header.stamp = payload.header.stamp
        msg.header.frame_id = self._base_frame
        if error is not None:
            msg.status = NavigationResult.STATUS_VLM_ERROR
            msg.action = 'stop'
            msg.error = str(error) if isinstance(error, VlmError) \
                else f'{type(error).__name__}: {error}'
            msg.inference_time = float(getattr(error, 'latency', 0.0) or 0.0)
            parsed = None
        else:
            parsed = parse_answer(reply.text)
            msg.status = status_of(parsed)
            msg.environment, msg.action = parsed.environment, parsed.action
            msg.waypoints = [Waypoint(dx=w.dx, dy=w.dy, dtheta=w.dtheta, confidence=w.confidence)
                             for w in parsed.waypoints]
            msg.error = parsed.error
            msg.raw_text = reply.text
            msg.inference_time = float(reply.latency)
            self._latency.add(reply.latency)
        with self._lock:
            task = self._task
            if task is None or task.task_id != job.task_id:
                self._counts['stale_discarded'] += 1
                return
            msg.linear_vel, msg.angular_vel = result_velocity(msg.waypoints, task.output_fps,
                                                              self._limits)
            if parsed is not None and parsed.method != 'failed':
                task.history.append((parsed.environment, parsed.action))
            self._result_pub.publish(msg)
            visualize = task.visualize
        self._counts['results'] += 1
        if msg.status == NavigationResult.STATUS_VLM_ERROR:
            self._counts['errors'] += 1
            self._last_error = msg.error
            self.get_logger().warn(f'task {job.task_id} keyframe {job.sequence}: {msg.error}',
                                   throttle_duration_sec=5.0)
        else:
            self.get_logger().info(
                f'task {job.task_id} keyframe {job.sequence}: {msg.action} '
                f'({len(msg.waypoints)} waypoints, {msg.inference_time:.2f} s)')
        if visualize:
            self._publish_debug(payload, msg)

    def _publish_debug(self, payload: _Payload, result: NavigationResult) -> None:
        status = {NavigationResult.STATUS_OK: 'ok', NavigationResult.STATUS_STOP: 'stop',
                  NavigationResult.STATUS_FALLBACK: 'fallback'}.get(result.status, 'vlm_error')
        img = draw_debug_image(payload.image, result.environment or result.error,
                               result.action, result.waypoints, result.linear_vel,
                               result.angular_vel, status)
        fields = bgr_to_image_fields(img, 'bgr8')
        out = Image(header=payload.header, height=fields['height'], width=fields['width'],
                    encoding=fields['encoding'], step=fields['step'], data=fields['data'])
        self._debug_pub.publish(out)

    # ------------------------------------------------------------------ diagnostics

    def stats(self) -> dict:
        """Counters and latency figures (also published on /diagnostics)."""
        sched = self._scheduler.stats()
        frames = max(1, self._counts['frames'] - self._counts['frames_no_task'])
        return {
            **self._counts, 'dropped_keyframes': sched.get('dropped', 0),
            'cancelled': sched.get('cancelled', 0), 'inflight': sched.get('inflight', 0),
            'keyframe_ratio': self._counts['keyframes'] / frames,
            'latency_p50_s': self._latency.percentile(50),
            'latency_p95_s': self._latency.percentile(95),
            'ingest_p50_ms': self._ingest.percentile(50),
            'ingest_p99_ms': self._ingest.percentile(99),
            'model': self._client.model, 'last_error': self._last_error,
        }

    def _publish_diagnostics(self) -> None:
        stats = self.stats()
        status = DiagnosticStatus(name='vln_ros: perception', hardware_id='vln_ros')
        recent_error = stats['errors'] and stats['errors'] >= stats['results']
        status.level = DiagnosticStatus.WARN if recent_error else DiagnosticStatus.OK
        status.message = (f'model errors: {self._last_error}' if recent_error
                          else 'ok' if self._task else 'no active task')

        def fmt(v):
            return 'n/a' if v is None else f'{v:.3f}' if isinstance(v, float) else str(v)
        status.values = [KeyValue(key=k, value=fmt(v)) for k, v in stats.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(msg)

    def close(self) -> None:
        """Cancel requests in flight and close the HTTP client."""
        try:
            self._scheduler.run_sync(self._client.aclose(), timeout=2.0)
        except Exception:  # noqa: BLE001 - best effort at shutdown
            pass
        self._scheduler.stop()


def main(args=None) -> None:
    """Run the perception node."""
    run_node(PerceptionNode, args, on_shutdown=lambda node: node.close())


if __name__ == '__main__':
    main()
