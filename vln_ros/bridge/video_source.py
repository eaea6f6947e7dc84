"""Play a video file or stream into the camera at its frame rate (the web UI's video source).

ROS-free: frames go to a ``publish(bgr)`` callback (the bridge node publishes them on the
camera topic). One playback at a time runs on its own thread, paced by deadline (not by
sleeping a fixed period, so decoding time does not slow the rate) and never bursting to
catch up after a stall or a pause. Opening a URL may block for up to ``open_timeout`` s:
call :meth:`VideoSource.start` off the event loop.
"""
from __future__ import annotations

import math
import os
import tempfile
import threading
import time
from typing import Callable
from urllib.parse import urlsplit

import cv2
import numpy as np

from vln_ros.bridge.video import VideoError

# Schemes handed to OpenCV's FFmpeg backend. Anything else is refused: file: would bypass
# media_dir, and rtsp/rtmp give FFmpeg protocol handlers a client should not reach.
URL_SCHEMES = ('http', 'https')
DEFAULT_FPS = 30.0  # when the container does not say
MAX_FPS = 120.0
STATES = ('idle', 'playing', 'paused', 'ended', 'stopped', 'error')


def check_url(url: str) -> str:
    """Return ``url`` when OpenCV may open it: http(s) with a host, no spaces."""
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise VideoError('invalid_url', 'video URL must not contain spaces or control '
                         'characters')
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        raise VideoError('invalid_url', f'video URL cannot be parsed: {exc}') from None
    if parts.scheme.lower() not in URL_SCHEMES or not host:
        raise VideoError('invalid_url', 'video URL must be http:// or https:// with a host '
                         '(use "path" for a file in the bridge\'s media_dir, or "upload")')
    return url


def resolve_media_path(path: str, media_dir: str) -> str:
    """The real path of ``path`` when it lies under ``media_dir``; VideoError otherwise.

    Relative paths are taken from media_dir. '..' and symlinks are resolved before the check,
    so neither leads outside it; the resolved path is what gets opened.
    """
    if '\x00' in path:
        raise VideoError('invalid_path', 'video path must not contain NUL characters')
    if not media_dir:
        raise VideoError('outside_media_dir', 'playing files is off: the bridge parameter '
                         'media_dir is empty (upload the video instead)')
    root = os.path.realpath(os.path.expanduser(media_dir))
    real = os.path.realpath(os.path.join(root, os.path.expanduser(path)))
    if os.path.commonpath([root, real]) != root:
        raise VideoError('outside_media_dir', f'"{path}" is outside the media directory {root} '
                         '(bridge parameter media_dir): copy the video there, or upload it')
    return real


def check_path(path: str) -> str:
    """Return ``path`` when it names a regular file (no devices, FIFOs or directories)."""
    if '\x00' in path:
        raise VideoError('invalid_path', 'video path must not contain NUL characters')
    # A FIFO or a device would block the reader forever: only regular files are played.
    if not os.path.isfile(path):
        raise VideoError('no_such_file', f'no video file at "{path}" on the bridge machine')
    return path


def save_upload(data: bytes, suffix: str = '.bin') -> str:
    """Write uploaded video bytes to a temporary file; the caller removes it."""
    if not data:
        raise VideoError('missing_video', 'uploaded video is empty')
    fd, path = tempfile.mkstemp(prefix='vln_bridge_source_', suffix=suffix)
    with os.fdopen(fd, 'wb') as stream:
        stream.write(data)
    return path


def fit_long_side(frame: np.ndarray, long_side: int) -> np.ndarray:
    """Downscale ``frame`` so its longer side is at most ``long_side`` (0: unchanged)."""
    height, width = frame.shape[:2]
    scale = long_side / max(height, width) if long_side > 0 else 1.0
    if scale >= 1.0:
        return frame
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


class FramePacer:
    """Deadline schedule of frame times at a fixed rate that never bursts to catch up."""

    def __init__(self, fps: float, now: float) -> None:
        self.period = 1.0 / fps
        self.next = now

    def wait_time(self, now: float) -> float:
        """Seconds until the next frame is due (0 when due now)."""
        return max(0.0, self.next - now)

    def advance(self, now: float) -> None:
        """Schedule the frame after the one just sent."""
        self.next += self.period
        if self.next < now - self.period:
            # More than a frame behind (slow decode, a stall): restart the schedule from now
            # rather than sending the missed frames back to back.
            self.next = now

    def restart(self, now: float) -> None:
        """Resume the schedule from ``now`` (after a pause)."""
        self.next = now


def open_capture(target: str, is_url: bool, open_timeout: float) -> cv2.VideoCapture:
    """Open a video with OpenCV; raise VideoError when it cannot be opened."""
    if is_url:
        timeout_ms = int(open_timeout * 1000)
        cap = cv2.VideoCapture(target, cv2.CAP_FFMPEG, [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms])
    else:
        cap = cv2.VideoCapture(target)
    if not cap.isOpened():
        cap.release()
        where = 'URL (unreachable, or no network)' if is_url else 'file'
        raise VideoError('undecodable_video', f'OpenCV cannot open the video {where}: '
                         'unsupported container or codec, or not a video')
    return cap


class _Playback:
    """One video being played: its capture, its thread and its counters."""

    def __init__(self, cap: cv2.VideoCapture, first: np.ndarray, target: str, is_url: bool,
                 label: str, fps: float, loop: bool, cleanup: Callable[[], None] | None
                 ) -> None:
        self.cap = cap
        self.first: np.ndarray | None = first
        self.target = target
        self.is_url = is_url
        self.label = label
        self.fps = fps
        self.loop = loop and not is_url  # a live stream has no start to return to
        self.cleanup = cleanup
        self.frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if not is_url else 0
        self.width, self.height = int(first.shape[1]), int(first.shape[0])
        self.state = 'playing'
        self.published = 0
        self.position = 0  # frames of the video read so far in this pass
        self.loops = 0
        self.error = ''
        self.thread: threading.Thread | None = None

    def status(self) -> dict:
        return {'state': self.state, 'kind': 'url' if self.is_url else 'file',
                'source': self.label, 'fps': round(self.fps, 3), 'loop': self.loop,
                'frames_published': self.published, 'position': self.position,
                'frame_count': max(self.frame_count, 0), 'loops': self.loops,
                'width': self.width, 'height': self.height, 'error': self.error}


class VideoSource:
    """Plays one video at a time into ``publish``; start, pause, resume, stop (thread-safe)."""

    def __init__(self, publish: Callable[[np.ndarray], None], max_long_side: int = 1280,
                 open_timeout: float = 5.0, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self._publish = publish
        self._max_long_side = max_long_side
        self._open_timeout = open_timeout
        self._clock = clock
        self._cond = threading.Condition()
        self._start_lock = threading.Lock()  # one start at a time; opening may take seconds
        self._current: _Playback | None = None

    def start(self, target: str, is_url: bool = False, fps: float | None = None,
              loop: bool = True, label: str = '',
              cleanup: Callable[[], None] | None = None) -> dict:
        """Open ``target`` (a file path or a URL) and play it, replacing any current video.

        ``fps`` overrides the container's rate. ``cleanup`` runs once when the video is no
        longer needed (playback over, replaced, or failed to open). Blocks while opening.
        """
        try:
            if fps is not None and not (math.isfinite(fps) and 0.0 < fps <= MAX_FPS):
                raise VideoError('invalid_fps', f'fps must be in (0, {MAX_FPS:g}]')
            with self._start_lock:
                target = check_url(target) if is_url else check_path(target)
                cap = open_capture(target, is_url, self._open_timeout)
                ok, first = cap.read()
                if not ok or first is None or not first.size:
                    cap.release()
                    raise VideoError('undecodable_video',
                                     'no frame could be decoded from the video')
                native = cap.get(cv2.CAP_PROP_FPS) or 0.0
                rate = fps or (native if math.isfinite(native) and 0.0 < native <= MAX_FPS
                               else DEFAULT_FPS)
                playback = _Playback(cap, first, target, is_url, label or target, rate, loop,
                                     cleanup)
                cleanup = None  # the playback owns it now
                self.stop()
                with self._cond:
                    self._current = playback
                playback.thread = threading.Thread(target=self._run, args=(playback,),
                                                   name='vln-video-source', daemon=True)
                playback.thread.start()
                return self.status()
        finally:
            if cleanup is not None:
                cleanup()

    def pause(self) -> dict:
        """Hold the current frame position; VideoError 'no_source' when nothing plays."""
        with self._cond:
            playback = self._require('pause')
            if playback.state == 'playing':
                playback.state = 'paused'
                self._cond.notify_all()
            return playback.status()

    def resume(self) -> dict:
        """Continue a paused video at its rate (no burst for the paused time)."""
        with self._cond:
            playback = self._require('resume')
            if playback.state == 'paused':
                playback.state = 'playing'
                self._cond.notify_all()
            return playback.status()

    def stop(self, timeout: float = 2.0) -> dict:
        """Stop and forget the current video (a no-op when none plays)."""
        with self._cond:
            playback = self._current
            if playback is not None and playback.state in ('playing', 'paused'):
                playback.state = 'stopped'
                self._cond.notify_all()
        if playback is not None and playback.thread is not None and \
                playback.thread is not threading.current_thread():
            playback.thread.join(timeout)
        return self.status()

    def status(self) -> dict:
        """State of the current (or last) video; state 'idle' when none was started."""
        with self._cond:
            if self._current is None:
                return {'state': 'idle', 'kind': '', 'source': '', 'fps': 0.0, 'loop': False,
                        'frames_published': 0, 'position': 0, 'frame_count': 0, 'loops': 0,
                        'width': 0, 'height': 0, 'error': ''}
            return self._current.status()

    def _require(self, what: str) -> _Playback:
        playback = self._current
        if playback is None or playback.state not in ('playing', 'paused'):
            raise VideoError('no_source', f'nothing to {what}: no video is playing '
                             '(POST /vln/source starts one)')
        return playback

    # ------------------------------------------------------------------ playback thread

    def _next_frame(self, playback: _Playback) -> np.ndarray | None:
        if playback.first is not None:
            frame, playback.first = playback.first, None
            return frame
        ok, frame = playback.cap.read()
        if ok and frame is not None and frame.size:
            return frame
        if not playback.loop or playback.position == 0:
            return None
        # Reopen rather than seek: seeking to 0 is unreliable in some containers.
        playback.cap.release()
        playback.cap = open_capture(playback.target, False, self._open_timeout)
        playback.position = 0
        playback.loops += 1
        ok, frame = playback.cap.read()
        return frame if ok and frame is not None and frame.size else None

    def _run(self, playback: _Playback) -> None:
        pacer = FramePacer(playback.fps, self._clock())
        try:
            while True:
                with self._cond:
                    if playback.state == 'paused':
                        self._cond.wait()
                        pacer.restart(self._clock())
                        continue
                    if playback.state != 'playing':
                        return
                    delay = pacer.wait_time(self._clock())
                    if delay > 0.0:
                        self._cond.wait(delay)
                        continue
                frame = self._next_frame(playback)
                if frame is None:
                    with self._cond:
                        if playback.state == 'playing':
                            playback.state = 'ended'
                    return
                if frame.ndim == 2:
                    frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
                self._publish(fit_long_side(frame, self._max_long_side))
                with self._cond:
                    playback.position += 1
                    playback.published += 1
                pacer.advance(self._clock())
        except Exception as exc:  # noqa: BLE001 - a broken video or publisher ends the playback
            with self._cond:
                playback.state = 'error'
                playback.error = f'{type(exc).__name__}: {exc}'
        finally:
            playback.cap.release()
            if playback.cleanup is not None:
                playback.cleanup()
