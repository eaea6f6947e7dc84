"""vln_video: argument parsing, the switch schedule, summary maths, sources (no ROS, no bridge)."""
from __future__ import annotations

import math
import pathlib

import cv2
import numpy as np
import pytest

from vln_ros.tools import video
from vln_ros.tools.video import Summary, SwitchSchedule, frame_stride, parse_args, percentile

BAG = pathlib.Path(__file__).resolve().parents[1] / 'data' / 'corridor_short'


def test_parse_args_defaults_and_switches():
    args = parse_args(['clip.mp4', '-i', 'go to the door', '--switch', '30', 'turn left',
                       '--switch', '10', 'stop here', '--fps', '5'])
    assert args.url == video.DEFAULT_URL and args.topic is None
    assert args.fps == 5.0 and not args.preview and not args.sync
    assert args.schedule.switches == [(10, 'stop here'), (30, 'turn left')]


@pytest.mark.parametrize('argv', [
    ['clip.mp4'],                                                   # no instruction
    ['clip.mp4', '-i', 'x', '--switch', 'ten', 'y'],                # frame not a number
    ['clip.mp4', '-i', 'x', '--switch', '-1', 'y'],                 # negative frame
    ['clip.mp4', '-i', 'x', '--switch', '3', 'a', '--switch', '3', 'b'],  # same frame twice
    ['clip.mp4', '-i', 'x', '--switch', '3', ' '],                  # empty instruction
    ['clip.mp4', '-i', ' '],
    ['clip.mp4', '-i', 'x', '--fps', '-2'],
    ['clip.mp4', '-i', 'x', '--url', 'http://a', '--topic', 'camera/image_raw'],
    ['clip.mp4', '-i', 'x', '--compressed'],                        # only for topic mode
])
def test_parse_args_rejects_bad_input(argv):
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2


def test_switch_schedule():
    schedule = SwitchSchedule('a', [(5, 'b'), (0, 'z'), (9, 'c')])
    assert schedule.switch_at(0) == 'z'  # a switch at 0 replaces the initial instruction
    assert [schedule.switch_at(i) for i in (1, 4, 5, 6, 9, 10)] == \
        [None, None, 'b', None, 'c', None]
    assert [schedule.instruction_at(i) for i in (0, 4, 5, 8, 9, 100)] == \
        ['z', 'z', 'b', 'b', 'c', 'c']
    plain = SwitchSchedule('a')
    assert plain.switch_at(0) == 'a' and plain.switch_at(1) is None
    assert plain.instruction_at(50) == 'a'


def test_percentile_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile(values, 100) == 100.0 and percentile(values, 0) == 1.0
    assert percentile([0.3], 95) == 0.3
    assert math.isnan(percentile([], 50))
    assert percentile([5.0, 1.0, 3.0], 50) == 3.0  # order does not matter
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_summary_histogram_and_latencies():
    summary = Summary(frames_sent=20, frames_failed=1, tasks=2)
    for i, action in enumerate(['forward'] * 5 + ['turn_left'] * 2 + ['stop']):
        summary.add_result(action, latency=0.1 * (i + 1), inference_time=1.0 + i)
    summary.add_result('forward', latency=float('nan'), inference_time=0.0)  # not measured
    summary.request_times += [0.01, 0.02, 0.03, 0.04]
    d = summary.as_dict()
    assert d['results'] == 9
    assert d['actions'] == {'forward': 6, 'stop': 1, 'turn_left': 2}
    assert d['latency_p50'] == pytest.approx(0.4) and d['latency_p95'] == pytest.approx(0.8)
    assert d['inference_p50'] == 4.0 and d['inference_p95'] == 8.0
    assert d['request_p50'] == 0.02 and d['request_p95'] == 0.04
    text = summary.render()
    assert 'frames sent: 20 (1 failed), tasks: 2, results: 9' in text
    assert 'forward 6, stop 1, turn_left 2' in text
    assert '400 ms / 800 ms' in text and 'frame request p50/p95: 20 ms / 40 ms' in text
    assert 'actions: -' in Summary().render()


def test_frame_stride():
    assert frame_stride(30.0, 10.0) == 3
    assert frame_stride(30.0, 30.0) == 1
    assert frame_stride(10.0, 30.0) == 1  # cannot send faster than the source
    assert frame_stride(25.0, 0.0) == 1 and frame_stride(0.0, 5.0) == 1


def test_bag_source_decodes_the_committed_bag():
    assert video.is_bag(BAG)
    fps, frames = video.open_source(BAG)
    frames = list(frames)
    assert fps == pytest.approx(10.0, rel=0.05)
    assert len(frames) == 31 and frames[0].shape == (240, 320, 3)
    assert not np.array_equal(frames[0], frames[-1])  # the robot moves


def test_video_source_and_jpeg(tmp_path):
    path = tmp_path / 'clip.avi'
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), 20.0, (160, 120))
    if not writer.isOpened():
        pytest.skip('OpenCV build cannot write MJPG')
    for i in range(12):
        writer.write(np.full((120, 160, 3), i * 20, np.uint8))
    writer.release()
    fps, frames = video.open_source(path)
    frames = list(frames)
    assert fps == pytest.approx(20.0) and len(frames) == 12
    jpeg = video.encode_jpeg(np.zeros((480, 1280, 3), np.uint8), long_side=640)
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert jpeg[:2] == b'\xff\xd8' and img.shape == (240, 640, 3)
    with pytest.raises(ValueError):
        video.open_source(tmp_path / 'missing.mp4')


class _FakeSink:
    """Records what run() does; answers every 3rd frame with a result."""

    def __init__(self):
        self.tasks, self.frames, self.task_id = [], 0, ''

    def create_task(self, instruction, output_fps):
        self.tasks.append((self.frames, instruction))
        self.task_id = f'task{len(self.tasks)}'
        return self.task_id

    def send(self, jpeg, summary):
        assert jpeg[:2] == b'\xff\xd8'
        self.frames += 1
        summary.frames_sent += 1
        if self.frames % 3 == 0:
            summary.add_result('forward', 0.5, 0.4)

    def wait(self, summary, seconds):
        pass

    def close(self):
        self.closed = True


def test_run_follows_the_switch_schedule_over_the_bag():
    args = parse_args([str(BAG), '-i', 'go to the red door', '--switch', '10', 'stop',
                       '--switch', '20', 'turn around', '--fps', '1000', '--max-frames', '25'])
    sink = _FakeSink()
    summary = video.run(args, sink)
    assert sink.tasks == [(0, 'go to the red door'), (10, 'stop'), (20, 'turn around')]
    assert sink.frames == 25 and sink.closed
    assert summary.tasks == 3 and summary.results == 8
    assert summary.actions == {'forward': 8}
