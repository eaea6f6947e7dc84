"""Perception node: camera frames -> keyframes -> the VLM (async) -> vln/result.

A thin adapter: image conversion, keyframe choice, prompts, the OpenAI client, answer parsing
and the newest-wins scheduling all live in vln_ros.core. The camera callback only converts
a frame and decides whether it is a keyframe; the model call runs on the scheduler's asyncio
loop in its own thread, so the executor never waits on the model.
"""
from __future__ import annotations

import asyncio
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
from vln_ros.core.prompts import BLOCKED_NOTE, build_messages
from vln_ros.core.statuses import answer_status, result_code, result_name
from vln_ros.core.task_records import task_setting
from vln_ros.core.turn_chain import turn_direction
from vln_ros.core.turn_hold import TurnHold
from vln_ros.core.vlm_client import VlmClient, VlmConfig, VlmError
from vln_ros.nodes.camera_mount_source import CameraMountSource
from vln_ros.nodes.parameters import LiveParameters, declare_all
from vln_ros.nodes.perception_params import (
    SPECS,
    camera_mount,
    check_intervals,
    result_limits,
    vlm_config,
)
from vln_ros.nodes.ros_common import (
    COMMAND_STATE_TOPIC,
    LATCHED_QOS,
    RELIABLE_QOS,
    SENSOR_QOS,
    TASK_ACK_QOS,
    TASK_ACK_TOPIC,
    parse_command_state,
    run_node,
    stamp_to_sec,
    task_ack,
)

# How often a "no camera" / "no model server" warning repeats while it holds (s).
INPUT_WARN_PERIOD_S = 10.0


@dataclass
class _Task:
    """What perception knows of the active task (changed only under the node's lock)."""

    task_id: str
    instruction: str
    output_fps: float
    visualize: bool
    threshold_given: float = 0.0  # as the task asked (0: the node's default)
    fps_given: float = 0.0
    frames: int = 0
    keyframes: int = 0
    sequence: int = 0
    history: deque = field(default_factory=lambda: deque(maxlen=20))
    blocked: bool = False  # the planner stopped a blocked attempt: tell the next request


@dataclass
class _Payload:
    image: object  # BGR numpy image of the keyframe
    instruction: str
    history: tuple
    header: object  # the camera header: its stamp is the capture time
    frames: int
    keyframes: int
    note: str = ''


def status_of(parsed: ParsedAnswer) -> int:
    """NavigationResult status of a parsed answer."""
    return result_code(answer_status(parsed.method, parsed.action))


class PerceptionNode(Node):
    """Samples keyframes of the active task and publishes the model's answers."""

    def __init__(self) -> None:
        super().__init__('perception_node')
        values = declare_all(self, SPECS)
        check_intervals(values)
        self._vlm_config = vlm_config(values)
        self._mount_params = camera_mount(values)
        self._default_threshold = values['keyframe_threshold']
        self._default_fps = values['output_fps']
        self._long_side = values['image_long_side']
        self._jpeg_quality = values['jpeg_quality']
        self._history_size = values['history_size']
        self._visualize_default = values['enable_visualization']
        self._base_frame = values['base_frame']
        self._limits = result_limits(values)
        self._input_warn_after = values['input_warn_after']
        self._window = values['diagnostics_window']
        transport = values['image_transport']
        max_inflight = values['max_inflight']

        self._lock = threading.Lock()
        self._task: _Task | None = None
        self._turn_hold = TurnHold(values['turn_hold'])  # under _lock
        self._sampler = KeyframeSampler(self._default_threshold,
                                        values['keyframe_min_interval'],
                                        values['keyframe_max_interval'])
        self._latency = RollingStats(200)
        self._ingest = RollingStats(300)
        self._counts = dict.fromkeys(('frames', 'frames_no_task', 'bad_frames', 'keyframes',
                                      'results', 'errors', 'stale_discarded',
                                      'turn_holds'), 0)
        self._outcomes: deque = deque(maxlen=200)  # (monotonic time, was an error) per result
        self._warned: set[str] = set()
        self._last_error = ''
        self._started = time.monotonic()
        self._last_frame: float | None = None  # monotonic time of the last camera frame
        self._server_state = 'unknown'  # of the last health probe
        self._probing = False
        self._server_since = time.monotonic()  # when the probe last found it healthy

        self._result_pub = self.create_publisher(NavigationResult, 'vln/result', RELIABLE_QOS)
        self._debug_pub = self.create_publisher(Image, 'vln/debug_image', 2)
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._ack_pub = self.create_publisher(String, TASK_ACK_TOPIC, TASK_ACK_QOS)
        if transport == 'compressed':
            sub = self.create_subscription(CompressedImage, 'camera/image_raw/compressed',
                                           self._on_compressed, SENSOR_QOS)
        elif transport == 'raw':
            sub = self.create_subscription(Image, 'camera/image_raw', self._on_image,
                                           SENSOR_QOS)
        else:
            raise ValueError(f'image_transport must be raw or compressed, got {transport!r}')
        self._camera_topic = sub.topic_name
        self.create_subscription(TaskState, 'vln/task_state', self._on_task_state, LATCHED_QOS)
        self.create_subscription(String, COMMAND_STATE_TOPIC, self._on_command_state,
                                 LATCHED_QOS)
        self._mount = CameraMountSource(self, self._mount_params, values['camera.use_tf'],
                                        values['camera.base_height'], self._base_frame)
        self.create_timer(1.0, self._publish_diagnostics)
        self.create_timer(1.0, self._check_inputs)

        self._client = VlmClient(self._vlm_config)
        self._scheduler = InferenceScheduler(self._run_job, self._on_job_done, max_inflight)
        self._scheduler.start()
        LiveParameters(self, [spec.name for spec in SPECS], self._reconfigure)
        self.get_logger().info(
            f'perception ready: {self._camera_topic} ({transport}), model server '
            f'{self._vlm_config.base_url}, guided={self._vlm_config.guided}, '
            f'max_inflight={max_inflight}, {self._mount.mount.describe()}; waiting for an '
            'active task on vln/task_state')

    # ------------------------------------------------------------------ parameters

    def _reconfigure(self, values: dict):
        check_intervals(values)
        config = vlm_config(values)
        mount = camera_mount(values)
        limits = result_limits(values)
        new_client = config != self._vlm_config

        def apply() -> None:
            with self._lock:
                self._default_threshold = values['keyframe_threshold']
                self._default_fps = values['output_fps']
                self._sampler.set_intervals(values['keyframe_min_interval'],
                                            values['keyframe_max_interval'])
                task = self._task
                if task is not None:
                    # A task that named no setting follows the node's default as it changes.
                    self._sampler.threshold = task_setting(task.threshold_given,
                                                           self._default_threshold)
                    task.output_fps = task_setting(task.fps_given, self._default_fps)
                self._long_side = values['image_long_side']
                self._jpeg_quality = values['jpeg_quality']
                self._history_size = values['history_size']
                self._visualize_default = values['enable_visualization']
                self._base_frame = values['base_frame']
                self._limits = limits
                self._input_warn_after = values['input_warn_after']
                self._window = values['diagnostics_window']
                self._turn_hold.limit = values['turn_hold']
            self._mount.configure(mount, values['camera.use_tf'], values['camera.base_height'],
                                  values['base_frame'])
            if new_client:
                self._swap_client(config)
        return apply

    def _swap_client(self, config: VlmConfig) -> None:
        """Send the next requests with the new model settings; retire the old client."""
        old, self._client, self._vlm_config = self._client, VlmClient(config), config
        self._server_state = 'unknown'
        loop = self._scheduler.loop
        if loop is not None:
            # Requests in flight finish on the old client; close it once they are done.
            loop.call_soon_threadsafe(lambda: loop.call_later(
                old.config.timeout + 1.0, lambda: loop.create_task(old.aclose())))

    # ------------------------------------------------------------------ task switching

    def _on_command_state(self, msg: String) -> None:
        task_id, reason = parse_command_state(msg.data)
        with self._lock:
            released = self._turn_hold.on_command_state(reason)
        if released:
            self._scheduler.release()  # the turn is over: the next keyframe sees its end
        if reason != 'blocked':
            return
        with self._lock:
            if self._task is not None and self._task.task_id == task_id:
                self._task.blocked = True
        self.get_logger().info(f'planner reports task {task_id} blocked: the next request says '
                               'so')

    def _on_task_state(self, msg: TaskState) -> None:
        with self._lock:
            current = self._task.task_id if self._task else None
            if msg.status == TaskState.STATUS_ACTIVE:
                if msg.task_id == current:
                    return
                # Zero or negative: the node's default (one rule, core.task_records).
                threshold = msg.config.keyframe_threshold
                self._sampler.threshold = min(1.0, task_setting(threshold,
                                                                self._default_threshold))
                self._sampler.reset()
                self._turn_hold.clear()
                self._task = _Task(
                    task_id=msg.task_id, instruction=msg.instruction,
                    output_fps=task_setting(msg.config.output_fps, self._default_fps),
                    visualize=msg.config.enable_visualization or self._visualize_default,
                    threshold_given=float(threshold), fps_given=float(msg.config.output_fps))
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
        self._last_frame = time.monotonic()
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
        self._mount.update_from_frame(header.frame_id)
        with self._lock:
            if self._task is not task:
                return  # switched while converting
            expired = self._turn_hold.expired(time.monotonic())
            decision = self._sampler.update(img, stamp_to_sec(header.stamp))
            task.frames += 1
            note = ''
            if decision.is_keyframe:
                task.keyframes += 1
                task.sequence += 1
                note, task.blocked = (BLOCKED_NOTE if task.blocked else ''), False
            job = Job(task.task_id, task.sequence, stamp_to_sec(header.stamp), _Payload(
                img, task.instruction, tuple(task.history), header, task.frames,
                task.keyframes, note))
        if expired:
            self._scheduler.release()  # no word of the turn's end: send what we have
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
                                  self._history_size, payload.note)
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
            usable = msg.status in (NavigationResult.STATUS_OK, NavigationResult.STATUS_FALLBACK)
            hold = self._turn_hold.on_answer(
                time.monotonic(), turn_direction(msg.waypoints) if usable else 0)
        if hold:
            # The robot is about to turn: the next keyframe leaves when the turn is over.
            self._scheduler.hold()
            self._counts['turn_holds'] += 1
        self._counts['results'] += 1
        failed = msg.status == NavigationResult.STATUS_VLM_ERROR
        self._outcomes.append((time.monotonic(), failed))
        if failed:
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
        status = result_name(result.status)
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

    def _recent_errors(self) -> tuple[int, int]:
        """(errors, results) within the diagnostics window: an outage after a success shows."""
        since = time.monotonic() - self._window
        recent = [failed for t, failed in list(self._outcomes) if t >= since]
        return sum(recent), len(recent)

    def _publish_diagnostics(self) -> None:
        stats = self.stats()
        status = DiagnosticStatus(name='vln_ros: perception', hardware_id='vln_ros')
        errors, results = self._recent_errors()
        problems = []
        if errors:
            problems.append(f'model errors: {errors} of {results} results in the last '
                            f'{self._window:.0f} s ({self._last_error})')
        if self._server_state not in ('healthy', 'unknown'):
            problems.append(f'model server {self._vlm_config.base_url} {self._server_state}')
        if self._camera_silent() is not None:
            problems.append(f'no camera frames on {self._camera_topic}')
        status.level = DiagnosticStatus.WARN if problems else DiagnosticStatus.OK
        status.message = '; '.join(problems) or ('ok' if self._task else 'no active task')
        stats.update(recent_errors=errors, recent_results=results,
                     model_server=self._server_state, camera_topic=self._camera_topic,
                     camera_mount=self._mount.mount.describe())

        def fmt(v):
            return 'n/a' if v is None else f'{v:.3f}' if isinstance(v, float) else str(v)
        status.values = [KeyValue(key=k, value=fmt(v)) for k, v in stats.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(msg)

    # ------------------------------------------------------------------ missing inputs

    def _camera_silent(self) -> float | None:
        """Seconds without a camera frame when past input_warn_after, else None."""
        last = self._last_frame if self._last_frame is not None else self._started
        silent = time.monotonic() - last
        return silent if silent >= self._input_warn_after else None

    def _check_inputs(self) -> None:
        """Say what is missing when a plain launch stands still: the camera, the model."""
        silent = self._camera_silent()
        if silent is not None:
            what = 'no camera frames yet' if self._last_frame is None \
                else f'no camera frames for {silent:.0f} s'
            self.get_logger().warn(
                f'{what} on {self._camera_topic}: is the camera driver running, or does it '
                'publish elsewhere (launch arguments camera_topic, use_compressed)?',
                throttle_duration_sec=INPUT_WARN_PERIOD_S)
        loop = self._scheduler.loop
        if loop is not None and not self._probing:
            self._probing = True
            future = asyncio.run_coroutine_threadsafe(self._client.health(), loop)
            future.add_done_callback(self._on_health)
        down = time.monotonic() - self._server_since
        if self._server_state not in ('healthy', 'unknown') and down >= self._input_warn_after:
            hint = ('it is still loading the model' if self._server_state == 'initializing'
                    else 'is LMDeploy running there (launch argument vlm_base_url, or '
                         'start_lmdeploy:=true)?')
            self.get_logger().warn(
                f'model server {self._vlm_config.base_url} {self._server_state} for '
                f'{down:.0f} s: {hint}', throttle_duration_sec=INPUT_WARN_PERIOD_S)

    def _on_health(self, future) -> None:
        self._probing = False
        try:
            state = future.result()
        except Exception as exc:  # noqa: BLE001 - a probe must never take the node down
            state = f'unreachable ({type(exc).__name__})'
        if state == 'healthy' or self._server_state == 'healthy' or \
                self._server_state == 'unknown':
            self._server_since = time.monotonic()
        self._server_state = state

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
