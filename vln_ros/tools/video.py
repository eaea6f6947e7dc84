r"""vln_video: stream a video file or a bag through the stack and summarise the answers.

    vln_video walk.mp4 --instruction 'go to the red door'                  # REST bridge
    vln_video walk.mp4 --url http://robot:20000 --api-key KEY --fps 5 \
        --instruction 'follow the corridor' --switch 120 'turn left at the plant'
    vln_video test/data/corridor_short --topic camera/image_raw --instruction 'go to the door'
    vln_video walk.mp4 --preview --instruction 'find the exit'             # 's' switches

REST mode posts each frame to POST /vln/frame of the bridge (task made with /vln/task/create);
topic mode publishes the frames as the camera (sensor_msgs/Image or, with --compressed,
CompressedImage) and creates tasks with the vln/create_task service. `--switch FRAME
INSTRUCTION` (repeatable) makes a new task at that frame, as a user changing their mind.
At the end a summary: frames sent, results, actions histogram, latency p50/p95.
"""
from __future__ import annotations

import argparse
import base64
from collections import Counter
from dataclasses import dataclass, field
import math
from pathlib import Path
import sys
import time
from typing import Iterator

import cv2
import numpy as np

from vln_ros.tools.stop_signals import interrupt_once

DEFAULT_URL = 'http://127.0.0.1:20000'
PREVIEW_WINDOW = 'vln_video'


# ---------------------------------------------------------------------------------- planning

class SwitchSchedule:
    """The instruction in force at each frame: the initial one, then the --switch entries."""

    def __init__(self, initial: str, switches: list[tuple[int, str]] = ()) -> None:
        if not initial.strip():
            raise ValueError('the instruction must not be empty')
        frames = [f for f, _ in switches]
        if len(set(frames)) != len(frames):
            raise ValueError(f'two switches at the same frame: {sorted(frames)}')
        for frame, text in switches:
            if frame < 0:
                raise ValueError(f'switch frame must be >= 0, got {frame}')
            if not text.strip():
                raise ValueError(f'switch at frame {frame} has an empty instruction')
        self.initial = initial
        self.switches = sorted(switches)
        self._at = dict(self.switches)

    def switch_at(self, frame: int) -> str | None:
        """Return the instruction that starts exactly at this frame (None: no switch)."""
        if frame == 0 and 0 not in self._at:
            return self.initial
        return self._at.get(frame)

    def instruction_at(self, frame: int) -> str:
        """Return the instruction in force at this frame."""
        text = self.initial
        for start, new in self.switches:
            if start > frame:
                break
            text = new
        return text


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of values; nan when empty."""
    if not values:
        return math.nan
    if not 0.0 <= q <= 100.0:
        raise ValueError(f'q must be within 0..100, got {q}')
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Summary:
    """What happened during a run; printed at the end."""

    frames_sent: int = 0
    frames_failed: int = 0
    tasks: int = 0
    results: int = 0
    actions: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    request_times: list[float] = field(default_factory=list)
    inference_times: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)

    def add_result(self, action: str, latency: float | None = None,
                   inference_time: float | None = None) -> None:
        """Count one new result of the model."""
        self.results += 1
        self.actions[action or '?'] += 1
        if latency is not None and math.isfinite(latency):
            self.latencies.append(latency)
        if inference_time is not None and math.isfinite(inference_time) and inference_time > 0:
            self.inference_times.append(inference_time)

    def as_dict(self) -> dict:
        """Return the summary figures as plain values."""
        return {'frames_sent': self.frames_sent, 'frames_failed': self.frames_failed,
                'tasks': self.tasks, 'results': self.results,
                'actions': dict(sorted(self.actions.items())),
                'latency_p50': percentile(self.latencies, 50),
                'latency_p95': percentile(self.latencies, 95),
                'request_p50': percentile(self.request_times, 50),
                'request_p95': percentile(self.request_times, 95),
                'inference_p50': percentile(self.inference_times, 50),
                'inference_p95': percentile(self.inference_times, 95),
                'errors': dict(self.errors)}

    def render(self) -> str:
        """Return the human-readable summary."""
        d = self.as_dict()

        def ms(value: float) -> str:
            return '-' if math.isnan(value) else f'{value * 1000:.0f} ms'

        lines = [f'frames sent: {d["frames_sent"]} ({d["frames_failed"]} failed), '
                 f'tasks: {d["tasks"]}, results: {d["results"]}',
                 'actions: ' + (', '.join(f'{a} {n}' for a, n in d['actions'].items()) or '-'),
                 f'result latency (capture to result) p50/p95: {ms(d["latency_p50"])} / '
                 f'{ms(d["latency_p95"])}',
                 f'inference time p50/p95: {ms(d["inference_p50"])} / '
                 f'{ms(d["inference_p95"])}']
        if self.request_times:
            lines.append(f'frame request p50/p95: {ms(d["request_p50"])} / '
                         f'{ms(d["request_p95"])}')
        if d['errors']:
            lines.append('errors: ' + ', '.join(f'{k} x{n}' for k, n in d['errors'].items()))
        return '\n'.join(lines)


# ---------------------------------------------------------------------------------- sources

def frame_stride(source_fps: float, target_fps: float) -> int:
    """Every how many source frames one is sent, to come close to target_fps (at least 1)."""
    if not source_fps > 0 or not target_fps > 0:
        return 1
    return max(1, int(round(source_fps / target_fps)))


def is_bag(path: Path) -> bool:
    """Return True for a rosbag2 folder or an .mcap/.db3 file."""
    return (path.is_dir() and (path / 'metadata.yaml').exists()) or \
        path.suffix in ('.mcap', '.db3')


def _decode_bag_image(typestore, msgtype: str, data: bytes) -> np.ndarray | None:
    msg = typestore.deserialize_cdr(data, msgtype)
    if msgtype.endswith('CompressedImage'):
        return cv2.imdecode(np.asarray(msg.data, np.uint8), cv2.IMREAD_COLOR)
    from vln_ros.core.images import image_to_bgr
    return image_to_bgr(msg.encoding, msg.width, msg.height, msg.step, bytes(msg.data),
                        msg.is_bigendian)


def bag_frames(path: Path, topic: str | None = None) -> tuple[float, Iterator[np.ndarray]]:
    """Return (frame rate, BGR frames) of the first image topic of a bag (or of topic)."""
    from vln_ros.tools.bag_store import bag_summary, make_typestore, read_bag

    summary = bag_summary(path)
    images = [t for t, e in summary['topics'].items()
              if e['type'] in ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage')]
    if topic:
        images = [t for t in images if t == topic or t == '/' + topic.lstrip('/')]
    if not images:
        raise ValueError(f'{path}: no image topic{" " + topic if topic else ""} in the bag')
    chosen = images[0]
    count = summary['topics'][chosen]['count']
    fps = (count - 1) / summary['duration_s'] if summary['duration_s'] > 0 and count > 1 \
        else 10.0

    def frames() -> Iterator[np.ndarray]:
        typestore = make_typestore()
        for msg in read_bag(path, [chosen]):
            img = _decode_bag_image(typestore, msg.msgtype, msg.data)
            if img is not None:
                yield img
    return fps, frames()


def video_frames(path: Path) -> tuple[float, Iterator[np.ndarray]]:
    """Return (frame rate, BGR frames) of a video file read with OpenCV."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f'{path}: OpenCV cannot open this video')
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0

    def frames() -> Iterator[np.ndarray]:
        try:
            while True:
                ok, img = cap.read()
                if not ok:
                    return
                yield img
        finally:
            cap.release()
    return (fps if fps > 0 else 30.0), frames()


def open_source(path: Path, bag_topic: str | None = None) -> tuple[float, Iterator[np.ndarray]]:
    """Open a video file or a bag; return (frame rate, frames)."""
    if not path.exists():
        raise ValueError(f'{path}: no such file or folder')
    return bag_frames(path, bag_topic) if is_bag(path) else video_frames(path)


def encode_jpeg(img: np.ndarray, long_side: int, quality: int = 85) -> bytes:
    """Resize so the long side is at most long_side (0: keep) and encode as JPEG."""
    h, w = img.shape[:2]
    if long_side and max(h, w) > long_side:
        scale = long_side / max(h, w)
        img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))),
                         interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError('JPEG encoding failed')
    return buf.tobytes()


# ---------------------------------------------------------------------------------- sinks

class RestSink:
    """Sends frames to the bridge's REST API."""

    def __init__(self, url: str, api_key: str = '', timeout: float = 30.0,
                 sync: bool = False) -> None:
        import httpx

        headers = {'Authorization': f'Bearer {api_key}'} if api_key else {}
        self._http = httpx.Client(base_url=url.rstrip('/'), headers=headers, timeout=timeout)
        self._sync = sync
        self._endpoint = '/vln/frame/sync' if sync else '/vln/frame'
        self.task_id = ''
        self._last_seq = 0

    def create_task(self, instruction: str, output_fps: float) -> str:
        """Create a task with this instruction (stopping the previous one); return its id."""
        if self.task_id:
            self.stop_task()
        body = {'instruction': instruction, 'config': {'output_fps': min(30.0, output_fps)}}
        response = self._http.post('/vln/task/create', json=body)
        if response.status_code != 200 or not response.json().get('accepted', False):
            raise RuntimeError(f'task not created ({response.status_code}): {response.text}')
        self.task_id, self._last_seq = response.json()['task_id'], 0
        return self.task_id

    def send(self, jpeg: bytes, summary: Summary) -> None:
        """Send one JPEG frame and count what comes back."""
        body = {'task_id': self.task_id, 'frame': base64.b64encode(jpeg).decode('ascii'),
                'timestamp': time.time()}
        t0 = time.monotonic()
        try:
            response = self._http.post(self._endpoint, json=body)
        except Exception as exc:  # noqa: BLE001 - a network error is counted, not fatal
            summary.frames_failed += 1
            summary.errors[type(exc).__name__] += 1
            return
        request_time = time.monotonic() - t0
        summary.request_times.append(request_time)
        if response.status_code != 200:
            summary.frames_failed += 1
            summary.errors[f'HTTP {response.status_code}'] += 1
            return
        summary.frames_sent += 1
        data = response.json()
        seq = int(data.get('sequence', 0))
        if seq > self._last_seq:  # the non-blocking endpoint repeats the latest result
            self._last_seq = seq
            if self._sync:
                latency = request_time  # the result of this very frame
            elif data.get('result_stamp') is not None and data.get('frame_stamp') is not None:
                # First seen now: its age on the bridge's clock (capture to this frame).
                latency = float(data['frame_stamp']) - float(data['result_stamp'])
            else:
                latency = None
            summary.add_result(data.get('action', ''), latency, data.get('inference_time'))

    def wait(self, summary: Summary, seconds: float) -> None:
        """Pause; nothing arrives between requests (results come with the answers)."""
        time.sleep(seconds)

    def stop_task(self) -> None:
        """Stop the current task (best effort)."""
        if self.task_id:
            try:
                self._http.post(f'/vln/task/{self.task_id}/stop')
            except Exception:  # noqa: BLE001 - best effort at the end
                pass
            self.task_id = ''

    def close(self) -> None:
        """Stop the task and release the connection."""
        self.stop_task()
        self._http.close()


class TopicSink:
    """Publishes frames as the camera and reads vln/result (needs rclpy and the interfaces)."""

    def __init__(self, topic: str, compressed: bool, service_timeout: float = 10.0) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions
        from sensor_msgs.msg import CompressedImage, Image
        from vln_ros_interfaces.msg import NavigationResult
        from vln_ros_interfaces.srv import CreateTask, StopTask

        from vln_ros.nodes.ros_common import RELIABLE_QOS, SENSOR_QOS

        self._rclpy = rclpy
        rclpy.init(signal_handler_options=SignalHandlerOptions.NO)  # interrupt_once handles it
        self.node = rclpy.create_node('vln_video')
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self.node)
        self._compressed = compressed
        self._msg_type = CompressedImage if compressed else Image
        if compressed and not topic.endswith('/compressed'):
            topic = topic.rstrip('/') + '/compressed'
        self._pub = self.node.create_publisher(self._msg_type, topic, SENSOR_QOS)
        self._results: list = []
        self.node.create_subscription(NavigationResult, 'vln/result', self._results.append,
                                      RELIABLE_QOS)
        self._create = self.node.create_client(CreateTask, 'vln/create_task')
        self._stop = self.node.create_client(StopTask, 'vln/stop_task')
        self._srv_types = CreateTask, StopTask
        self._timeout = service_timeout
        self.task_id = ''

    def _call(self, client, request):
        deadline = time.monotonic() + self._timeout
        while not client.service_is_ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f'service {client.srv_name} not available')
            self._executor.spin_once(timeout_sec=0.05)
        future = client.call_async(request)
        while not future.done():
            if time.monotonic() > deadline:
                raise RuntimeError(f'service {client.srv_name} did not answer')
            self._executor.spin_once(timeout_sec=0.05)
        return future.result()

    def create_task(self, instruction: str, output_fps: float) -> str:
        """Create a task with this instruction (stopping the previous one); return its id."""
        request = self._srv_types[0].Request(instruction=instruction)
        request.config.output_fps = float(min(30.0, output_fps))
        request.config.keyframe_threshold = -1.0
        response = self._call(self._create, request)
        if not response.accepted:
            raise RuntimeError(f'task not created: {response.message}')
        self.task_id = response.task_id
        return self.task_id

    def send(self, jpeg: bytes, summary: Summary) -> None:
        """Send one JPEG frame and count what comes back."""
        now = self.node.get_clock().now().to_msg()
        if self._compressed:
            msg = self._msg_type(format='jpeg', data=jpeg)
        else:
            img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            msg = self._msg_type(height=img.shape[0], width=img.shape[1], encoding='bgr8',
                                 step=img.shape[1] * 3, data=img.tobytes())
        msg.header.stamp, msg.header.frame_id = now, 'camera'
        self._pub.publish(msg)
        summary.frames_sent += 1
        self.wait(summary, 0.0)

    def wait(self, summary: Summary, seconds: float) -> None:
        """Spin for a while and count the results of the current task."""
        deadline = time.monotonic() + seconds
        while True:
            self._executor.spin_once(timeout_sec=0.0 if seconds <= 0 else 0.02)
            if time.monotonic() >= deadline:
                break
        now = self.node.get_clock().now().nanoseconds * 1e-9
        for result in self._results:
            if result.task_id == self.task_id:
                stamp = result.header.stamp.sec + result.header.stamp.nanosec * 1e-9
                summary.add_result(result.action, now - stamp, result.inference_time)
        self._results.clear()

    def stop_task(self) -> None:
        """Stop the current task (best effort)."""
        if self.task_id:
            try:
                self._call(self._stop, self._srv_types[1].Request(task_id=self.task_id))
            except RuntimeError:
                pass
            self.task_id = ''

    def close(self) -> None:
        """Stop the task and release the connection."""
        self.stop_task()
        self._executor.shutdown()
        self.node.destroy_node()
        self._rclpy.try_shutdown()


# ---------------------------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser of vln_video."""
    parser = argparse.ArgumentParser(
        prog='vln_video', description='Stream a video file or a bag through the vln_ros stack '
                                      '(REST bridge or camera topic) and summarise the answers.')
    parser.add_argument('source', type=Path, help='video file, or rosbag2 folder / .mcap file')
    parser.add_argument('-i', '--instruction', required=True, help='first instruction')
    parser.add_argument('--switch', nargs=2, action='append', default=[],
                        metavar=('FRAME', 'INSTRUCTION'),
                        help='switch to INSTRUCTION at sent frame FRAME (repeatable)')
    sink = parser.add_mutually_exclusive_group()
    sink.add_argument('--url', default=DEFAULT_URL,
                      help=f'REST bridge base URL (default {DEFAULT_URL})')
    sink.add_argument('--topic', help='publish on this camera topic instead of using REST')
    parser.add_argument('--compressed', action='store_true',
                        help='topic mode: publish sensor_msgs/CompressedImage on TOPIC/compressed')
    parser.add_argument('--api-key', default='', help='bearer key of the bridge')
    parser.add_argument('--sync', action='store_true',
                        help='REST mode: POST /vln/frame/sync (wait for the result of each frame)')
    parser.add_argument('--fps', type=float, default=0.0,
                        help='frames sent per second (0: the source rate)')
    parser.add_argument('--max-frames', type=int, default=0, help='stop after N frames (0: all)')
    parser.add_argument('--long-side', type=int, default=640,
                        help='resize frames so the long side is at most this (0: keep)')
    parser.add_argument('--bag-topic', help='image topic to read from a bag (default: first)')
    parser.add_argument('--wait', type=float, default=0.0,
                        help='after the last frame, wait this long for pending results (s)')
    parser.add_argument('--preview', action='store_true',
                        help='show the frames in an OpenCV window; s: switch to the next '
                             'instruction now, q: quit')
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check the command line; the switch schedule is args.schedule."""
    parser = build_parser()
    args = parser.parse_args(argv)
    switches = []
    for frame, text in args.switch:
        try:
            switches.append((int(frame), text))
        except ValueError:
            parser.error(f'--switch FRAME must be an integer, got {frame!r}')
    try:
        args.schedule = SwitchSchedule(args.instruction, switches)
    except ValueError as exc:
        parser.error(str(exc))
    if args.fps < 0:
        parser.error('--fps must be >= 0')
    if args.compressed and not args.topic:
        parser.error('--compressed applies to --topic mode')
    return args


def _preview(img: np.ndarray, instruction: str, summary: Summary) -> str:
    """Show the frame; return the key pressed ('' for none)."""
    view = img.copy()
    last = max(summary.actions, key=summary.actions.get) if summary.actions else '-'
    cv2.putText(view, instruction[:60], (10, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                (0, 255, 255), 2)
    cv2.putText(view, f'results {summary.results}, most {last}', (10, 50),
                cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 0), 2)
    cv2.imshow(PREVIEW_WINDOW, view)
    key = cv2.waitKey(1) & 0xFF
    return chr(key) if key != 0xFF else ''


def run(args: argparse.Namespace, sink=None) -> Summary:
    """Stream the source through the sink following the schedule; return the summary."""
    source_fps, frames = open_source(args.source, args.bag_topic)
    fps = args.fps or source_fps
    stride = frame_stride(source_fps, fps)
    if sink is None:
        sink = TopicSink(args.topic, args.compressed) if args.topic \
            else RestSink(args.url, args.api_key, sync=args.sync)
    summary = Summary()
    schedule = args.schedule
    manual = [text for _, text in schedule.switches]  # what 's' switches to, in order
    period = 1.0 / fps if fps > 0 else 0.0
    sent = 0
    instruction = None
    next_due = time.monotonic()
    try:
        for index, img in enumerate(frames):
            if index % stride:
                continue
            if args.max_frames and sent >= args.max_frames:
                break
            new = schedule.switch_at(sent)
            if new is not None and new != instruction:
                instruction = new
                sink.create_task(instruction, fps)
                summary.tasks += 1
                print(f'[frame {sent}] task {sink.task_id}: {instruction}', flush=True)
            delay = next_due - time.monotonic()
            if delay > 0:
                sink.wait(summary, delay)
            next_due = max(next_due + period, time.monotonic())
            sink.send(encode_jpeg(img, args.long_side), summary)
            sent += 1
            if args.preview:
                key = _preview(img, instruction, summary)
                if key == 'q':
                    break
                if key == 's' and manual:
                    instruction = manual.pop(0)
                    sink.create_task(instruction, fps)
                    summary.tasks += 1
                    print(f'[frame {sent}] manual switch, task {sink.task_id}: {instruction}',
                          flush=True)
        if args.wait > 0:
            sink.wait(summary, args.wait)
    except KeyboardInterrupt:
        print('interrupted', flush=True)
    finally:
        sink.close()
        if args.preview:
            cv2.destroyAllWindows()
    return summary


def main(argv: list[str] | None = None) -> int:
    """Entry point of the vln_video console script."""
    args = parse_args(argv)
    interrupt_once()  # Ctrl-C ends the stream; the task is still stopped and the summary shown
    try:
        summary = run(args)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f'vln_video: {exc}', file=sys.stderr)
        return 1
    print(summary.render(), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
