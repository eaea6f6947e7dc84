"""Decode a base64 video and sample frames evenly (for POST /analyze/video); ROS-free.

OpenCV reads videos from files only, so the bytes go to a temporary file that is removed
at once. Frames are grabbed (no colour conversion) and only the chosen ones retrieved.
"""
from __future__ import annotations

import base64
import binascii
import os
import tempfile

import cv2
import numpy as np

# A decode bomb guard: a short upload must not make the bridge walk millions of frames.
MAX_SCANNED_FRAMES = 20_000


class VideoError(ValueError):
    """A video that cannot be used: ``code`` is stable, the message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def decode_base64_video(text: str) -> bytes:
    """Return the bytes of a base64 video (a ``data:video/...;base64,`` URL is accepted)."""
    if not isinstance(text, str) or not text:
        raise VideoError('missing_video', 'video must be a non-empty base64 string')
    if text.startswith('data:'):
        header, sep, text = text.partition(',')
        if not sep or not header.endswith(';base64'):
            raise VideoError('invalid_data_url',
                             'video data URL must look like "data:video/mp4;base64,<data>"')
    try:
        return base64.b64decode(''.join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VideoError('invalid_base64', f'video is not valid base64 ({exc})') from None


def even_indices(count: int, wanted: int) -> list[int]:
    """Return up to ``wanted`` frame indices spread evenly over ``count`` (ends included)."""
    if count <= 0 or wanted <= 0:
        return []
    if wanted >= count:
        return list(range(count))
    if wanted == 1:
        return [count // 2]
    return sorted({round(i * (count - 1) / (wanted - 1)) for i in range(wanted)})


def _count_frames(path: str) -> int:
    cap = cv2.VideoCapture(path)
    try:
        count = 0
        while count < MAX_SCANNED_FRAMES and cap.grab():
            count += 1
        return count
    finally:
        cap.release()


def sample_frames(path: str, max_frames: int) -> list[np.ndarray]:
    """Read ``max_frames`` BGR frames spread evenly over the video file at ``path``."""
    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            raise VideoError('undecodable_video', 'video could not be opened by OpenCV '
                             '(unsupported container or codec, or not a video)')
        declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    finally:
        cap.release()
    # Container frame counts can be missing or wrong: count by grabbing when it is absent.
    count = declared if 0 < declared <= MAX_SCANNED_FRAMES else _count_frames(path)
    wanted = set(even_indices(count, max_frames))
    frames: list[np.ndarray] = []
    cap = cv2.VideoCapture(path)
    try:
        index = 0
        while len(frames) < len(wanted) and index < MAX_SCANNED_FRAMES and cap.grab():
            if index in wanted:
                ok, frame = cap.retrieve()
                if ok and frame is not None and frame.size:
                    frames.append(frame if frame.ndim == 3 else
                                  cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
            index += 1
    finally:
        cap.release()
    if not frames:
        raise VideoError('undecodable_video', 'no frame could be decoded from the video')
    return frames


def sample_video(data: bytes, max_frames: int) -> list[np.ndarray]:
    """Sample ``max_frames`` evenly spread BGR frames from encoded video bytes."""
    if not data:
        raise VideoError('missing_video', 'video is empty')
    fd, path = tempfile.mkstemp(prefix='vln_bridge_video_', suffix='.bin')
    try:
        with os.fdopen(fd, 'wb') as stream:
            stream.write(data)
        return sample_frames(path, max_frames)
    finally:
        os.unlink(path)
