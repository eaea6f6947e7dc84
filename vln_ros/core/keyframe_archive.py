"""Keyframe JPEGs on disk per task, capped in total size (ROS-free)."""
from __future__ import annotations

import logging
import os
import threading

from vln_ros.core.task_records import SAFE_ID

_LOG = logging.getLogger(__name__)


class KeyframeArchive:
    """Keyframe JPEGs on disk as `<dir>/<task_id>/<sequence:06d>.jpg`, capped in total size."""

    def __init__(self, directory: str, max_bytes: int = 50_000_000) -> None:
        """Index the files already in `directory` (oldest first) and enforce the cap."""
        if max_bytes < 1:
            raise ValueError('max_bytes must be positive')
        self.directory = directory
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        # path -> size, kept in age order (dicts keep insertion order): the oldest go first.
        self._files: dict[str, int] = {}
        self._total = 0
        os.makedirs(directory, exist_ok=True)
        found = []
        for root, _dirs, names in os.walk(directory):
            for name in names:
                if name.endswith('.jpg.tmp'):  # left by a crash between write and rename
                    os.remove(os.path.join(root, name))
                elif name.endswith('.jpg'):
                    path = os.path.join(root, name)
                    stat = os.stat(path)
                    found.append((stat.st_mtime_ns, path, stat.st_size))
        for _mtime, path, size in sorted(found):
            self._files[path] = size
            self._total += size
        with self._lock:
            self._enforce_cap()

    def save(self, task_id: str, sequence: int, jpeg: bytes) -> str:
        """Write one keyframe and return its path; the oldest files go when over the cap."""
        if not SAFE_ID.match(task_id) or task_id in ('.', '..'):
            raise ValueError(f'task id {task_id!r} is not usable as a directory name')
        if sequence < 0:
            raise ValueError(f'sequence must be >= 0 (got {sequence})')
        if len(jpeg) > self.max_bytes:
            raise ValueError(f'keyframe of {len(jpeg)} bytes exceeds the archive cap')
        task_dir = os.path.join(self.directory, task_id)
        path = os.path.join(task_dir, f'{int(sequence):06d}.jpg')
        with self._lock:
            os.makedirs(task_dir, exist_ok=True)
            # Write then rename: a reader never sees half a JPEG.
            tmp = path + '.tmp'
            with open(tmp, 'wb') as handle:
                handle.write(jpeg)
            os.replace(tmp, path)
            self._total -= self._files.pop(path, 0)
            self._files[path] = len(jpeg)
            self._total += len(jpeg)
            self._enforce_cap()
        return path

    def list(self, task_id: str) -> list[str]:
        """Return the archived keyframe paths of a task, in sequence order."""
        task_dir = os.path.join(self.directory, task_id)
        if not SAFE_ID.match(task_id) or not os.path.isdir(task_dir):
            return []
        return sorted(os.path.join(task_dir, n) for n in os.listdir(task_dir)
                      if n.endswith('.jpg'))

    @property
    def total_bytes(self) -> int:
        """Bytes currently held by the archive."""
        return self._total

    def _enforce_cap(self) -> None:
        while self._total > self.max_bytes and self._files:
            path = next(iter(self._files))
            self._total -= self._files.pop(path)
            try:
                os.remove(path)
                parent = os.path.dirname(path)
                if parent != self.directory and not os.listdir(parent):
                    os.rmdir(parent)
            except OSError as exc:
                _LOG.warning('could not remove archived keyframe %s: %s', path, exc)
