"""The web UI's video source: URL/path checks, pacing, play/pause/resume/stop, cleanup."""
from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from vln_ros.bridge.video import VideoError
from vln_ros.bridge.video_source import (
    FramePacer,
    VideoSource,
    check_path,
    check_url,
    fit_long_side,
    resolve_media_path,
    save_upload,
)


def _write_video(path, frames: int = 12, fps: float = 25.0, size=(64, 48)) -> str:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), fps, size)
    assert writer.isOpened()
    for i in range(frames):
        # Frame i is a flat grey of level 20 * i: the reader can tell the order.
        writer.write(np.full((size[1], size[0], 3), 20 * i, np.uint8))
    writer.release()
    return str(path)


def _level(frame: np.ndarray) -> int:
    return int(round(float(frame.mean()) / 20.0))


class Sink:
    """Collects published frames with their arrival times."""

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []
        self.times: list[float] = []
        self.lock = threading.Lock()

    def __call__(self, frame: np.ndarray) -> None:
        with self.lock:
            self.frames.append(frame)
            self.times.append(time.monotonic())

    def count(self) -> int:
        with self.lock:
            return len(self.frames)


def _wait(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, 'condition not met in time'
        time.sleep(0.005)


@pytest.fixture
def video(tmp_path):
    return _write_video(tmp_path / 'clip.avi')


def test_media_paths_must_resolve_inside_the_media_dir(tmp_path):
    media = tmp_path / 'media'
    (media / 'sub').mkdir(parents=True)
    clip = media / 'sub' / 'clip.mp4'
    clip.write_bytes(b'x')
    secret = tmp_path / 'secret.mp4'
    secret.write_bytes(b'x')
    (media / 'link.mp4').symlink_to(secret)
    (media / 'outdir').symlink_to(tmp_path)
    (media / 'inner.mp4').symlink_to(clip)

    assert resolve_media_path(str(clip), str(media)) == str(clip)
    assert resolve_media_path('sub/clip.mp4', str(media)) == str(clip)  # relative: from media
    assert resolve_media_path('sub/../sub/clip.mp4', str(media)) == str(clip)
    assert resolve_media_path('inner.mp4', str(media)) == str(clip)  # a link that stays inside
    # Missing files inside are for check_path to report (404), not a refusal.
    assert resolve_media_path('none.mp4', str(media)) == str(media / 'none.mp4')
    for outside in (str(secret), '../secret.mp4', 'sub/../../secret.mp4', 'link.mp4',
                    'outdir/secret.mp4', '/etc/hostname', str(tmp_path / 'media2' / 'a.mp4')):
        with pytest.raises(VideoError) as err:
            resolve_media_path(outside, str(media))
        assert err.value.code == 'outside_media_dir', outside
        assert 'media_dir' in err.value.message
    with pytest.raises(VideoError) as err:
        resolve_media_path(str(clip), '')
    assert err.value.code == 'outside_media_dir' and 'media_dir' in err.value.message
    with pytest.raises(VideoError) as err:
        resolve_media_path('a\x00.mp4', str(media))
    assert err.value.code == 'invalid_path'


def test_urls_need_http_or_https_and_a_host():
    for good in ('http://cam.local/video.mjpg', 'https://example.com/a.mp4',
                 'HTTPS://example.com/b.mp4'):
        assert check_url(good) == good
    for bad in ('file:///etc/passwd', 'ftp://host/a.mp4', 'http://', '/tmp/a.mp4',
                'rtsp://10.0.0.2:554/stream', 'rtmp://host/live', 'concat:a.mp4|b.mp4',
                'http://host/a b.mp4', 'http://host/\x00', 'data:video/mp4;base64,AAAA',
                'http://[::1'):
        with pytest.raises(VideoError) as err:
            check_url(bad)
        assert err.value.code == 'invalid_url'


def test_paths_must_be_regular_files(tmp_path, video):
    assert check_path(video) == video
    for bad in (str(tmp_path), str(tmp_path / 'missing.mp4'), '/dev/zero'):
        with pytest.raises(VideoError) as err:
            check_path(bad)
        assert err.value.code == 'no_such_file'
    with pytest.raises(VideoError):
        check_path('/tmp/a\x00b')


def test_fit_long_side_downscales_only():
    frame = np.zeros((720, 1280, 3), np.uint8)
    assert fit_long_side(frame, 640).shape == (360, 640, 3)
    assert fit_long_side(frame, 2000) is frame
    assert fit_long_side(frame, 0) is frame


def test_pacer_keeps_the_rate_and_never_bursts():
    pacer = FramePacer(10.0, now=100.0)
    assert pacer.wait_time(100.0) == 0.0
    pacer.advance(100.0)
    assert pacer.wait_time(100.0) == pytest.approx(0.1)
    # A frame that took 0.05 s to decode does not delay the next deadline.
    pacer.advance(100.15)
    assert pacer.next == pytest.approx(100.2)
    # After a 2 s stall the schedule restarts instead of sending 20 frames at once.
    pacer.advance(102.3)
    assert pacer.next == pytest.approx(102.3)
    assert pacer.wait_time(102.3) == 0.0
    pacer.advance(102.3)
    assert pacer.wait_time(102.3) == pytest.approx(0.1)


def test_save_upload_writes_a_file_and_refuses_empty_data(tmp_path):
    path = save_upload(b'abc', '.mp4')
    try:
        assert path.endswith('.mp4')
        with open(path, 'rb') as f:
            assert f.read() == b'abc'
    finally:
        import os
        os.unlink(path)
    with pytest.raises(VideoError):
        save_upload(b'')


def test_plays_every_frame_in_order_at_the_requested_rate(video):
    sink = Sink()
    source = VideoSource(sink)
    status = source.start(video, fps=50.0, loop=False, label='clip.avi')
    assert status['state'] in ('playing', 'ended')
    assert status['fps'] == 50.0 and status['width'] == 64 and status['height'] == 48
    _wait(lambda: source.status()['state'] == 'ended')
    assert [_level(f) for f in sink.frames] == list(range(12))
    span = sink.times[-1] - sink.times[0]
    assert 11 / 50.0 * 0.8 <= span <= 11 / 50.0 + 1.0
    status = source.status()
    assert status['frames_published'] == 12 and status['source'] == 'clip.avi'
    assert status['frame_count'] == 12


def test_native_rate_is_used_without_an_override(tmp_path):
    path = _write_video(tmp_path / 'fast.avi', frames=4, fps=40.0)
    source = VideoSource(Sink())
    assert source.start(path, loop=False)['fps'] == pytest.approx(40.0)
    source.stop()


def test_loop_restarts_the_video(video):
    sink = Sink()
    source = VideoSource(sink)
    source.start(video, fps=120.0, loop=True)
    _wait(lambda: sink.count() >= 30)
    status = source.stop()
    assert status['state'] == 'stopped' and status['loops'] >= 1
    levels = [_level(f) for f in sink.frames[:30]]
    assert levels[:12] == list(range(12)) and levels[12:24] == list(range(12))


def test_pause_holds_and_resume_continues(video):
    sink = Sink()
    source = VideoSource(sink)
    source.start(video, fps=60.0, loop=True)
    _wait(lambda: sink.count() >= 3)
    assert source.pause()['state'] == 'paused'
    held = sink.count()
    time.sleep(0.15)  # asserting an absence: nothing may arrive while paused
    assert sink.count() <= held + 1  # a frame already being published may still land
    held = sink.count()
    time.sleep(0.1)
    assert sink.count() == held
    assert source.resume()['state'] == 'playing'
    _wait(lambda: sink.count() >= held + 3)
    # No burst after the pause: frames keep their spacing.
    after = sink.times[held:held + 3]
    assert after[2] - after[0] >= 2 / 60.0 * 0.7
    source.stop()


def test_pause_without_a_video_is_refused():
    source = VideoSource(Sink())
    assert source.status()['state'] == 'idle'
    for action in (source.pause, source.resume):
        with pytest.raises(VideoError) as err:
            action()
        assert err.value.code == 'no_source'
    assert source.stop()['state'] == 'idle'


def test_cleanup_runs_once_when_replaced_stopped_or_refused(tmp_path, video):
    calls: list[str] = []
    source = VideoSource(Sink())
    source.start(video, fps=30.0, cleanup=lambda: calls.append('first'))
    source.start(video, fps=30.0, cleanup=lambda: calls.append('second'))
    assert calls == ['first']
    source.stop()
    assert calls == ['first', 'second']
    garbage = tmp_path / 'garbage.mp4'
    garbage.write_bytes(b'not a video at all' * 100)
    with pytest.raises(VideoError) as err:
        source.start(str(garbage), cleanup=lambda: calls.append('garbage'))
    assert err.value.code == 'undecodable_video'
    assert calls == ['first', 'second', 'garbage']
    with pytest.raises(VideoError) as err:
        source.start(video, fps=0.0, cleanup=lambda: calls.append('bad fps'))
    assert err.value.code == 'invalid_fps' and calls[-1] == 'bad fps'


def test_a_failing_publisher_ends_the_playback_with_the_error(video):
    def publish(_frame):
        raise RuntimeError('publisher gone')

    source = VideoSource(publish)
    source.start(video, fps=100.0)
    _wait(lambda: source.status()['state'] == 'error')
    assert 'publisher gone' in source.status()['error']


def test_large_frames_are_downscaled(tmp_path):
    path = _write_video(tmp_path / 'big.avi', frames=2, size=(320, 240))
    sink = Sink()
    source = VideoSource(sink, max_long_side=160)
    source.start(path, fps=100.0, loop=False)
    _wait(lambda: source.status()['state'] == 'ended')
    assert {f.shape for f in sink.frames} == {(120, 160, 3)}
