"""The e-stop's state on disk, so an engaged e-stop survives a restart of the planner.

ROS-free. One small JSON file per robot (namespace). An engagement is written before the
service answers; a file that exists but cannot be read counts as engaged: when in doubt,
the robot does not move.
"""
from __future__ import annotations

from dataclasses import dataclass
import json
import os
import tempfile
import time


@dataclass
class EstopState:
    """What the file says, and why, for the node's start-up log line."""

    engaged: bool
    reason: str
    stamp: float = 0.0


def load(path: str) -> EstopState:
    """Read the persisted state; missing means released, unreadable means engaged."""
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except FileNotFoundError:
        return EstopState(False, 'no persisted e-stop')
    except (OSError, ValueError) as exc:
        return EstopState(True, f'e-stop file {path} is unreadable ({exc}): engaged to be safe')
    engaged = data.get('engaged') if isinstance(data, dict) else None
    if not isinstance(engaged, bool):
        return EstopState(True, f'e-stop file {path} holds no engaged flag: engaged to be safe')
    stamp = data.get('stamp', 0.0)
    stamp = float(stamp) if isinstance(stamp, (int, float)) else 0.0
    return EstopState(engaged, f'e-stop {"engaged" if engaged else "released"} as persisted in '
                               f'{path}', stamp)


def save(path: str, engaged: bool, now: float | None = None) -> None:
    """Write the state atomically (temporary file, fsync, rename); raises OSError."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    payload = json.dumps({'engaged': bool(engaged),
                          'stamp': time.time() if now is None else float(now)})
    fd, tmp = tempfile.mkstemp(prefix='.estop-', dir=directory)
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
