"""What a navigation task is: its status, its settings, its record and its result history.

ROS-free. Times are float seconds from the caller's clock.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
import re
import secrets

from vln_ros.core import statuses

MAX_INSTRUCTION_CHARS = 1000
MAX_OUTPUT_FPS = 30.0

# Task ids end up in file names (keyframe archive), so only a safe alphabet is accepted there.
SAFE_ID = re.compile(r'^[A-Za-z0-9_.-]{1,128}$')


class TaskStatus(str, Enum):
    """Life cycle of a task; only one task is ACTIVE at a time."""

    ACTIVE = statuses.TASK_ACTIVE
    STOPPED = statuses.TASK_STOPPED
    COMPLETED = statuses.TASK_COMPLETED
    FAILED = statuses.TASK_FAILED


def task_setting(value: float, node_default: float) -> float:
    """The one rule for a task's numeric settings: zero or negative means the node's default.

    ROS fields cannot be optional, so a plain `ros2 service call .../CreateTask "{instruction:
    ...}"` or a Navigate goal sends 0.0 for every setting it does not name; that call must get
    the defaults the node was configured with, never a literal 0.
    """
    return float(value) if value > 0.0 else float(node_default)


@dataclass
class TaskConfig:
    """Per-task perception settings chosen when the task is created.

    0.0 stands for "the perception node's default" (its `output_fps` and `keyframe_threshold`
    parameters); perception resolves it with :func:`task_setting`.
    """

    output_fps: float = 0.0
    keyframe_threshold: float = 0.0
    enable_visualization: bool = False

    @classmethod
    def from_request(cls, output_fps: float = 0.0, keyframe_threshold: float = 0.0,
                     enable_visualization: bool = False) -> TaskConfig:
        """Build a config from service or goal fields (CreateTask, Navigate, REST).

        Zero or negative means "not given" and is stored as 0.0 (the node's default). NaN is
        passed through so validate() rejects it.
        """
        def given(value: float) -> float:
            value = float(value)
            return 0.0 if value <= 0.0 else value
        return cls(output_fps=given(output_fps), keyframe_threshold=given(keyframe_threshold),
                   enable_visualization=bool(enable_visualization))

    def validate(self) -> str:
        """Return an empty string when valid, else a message naming every bad field."""
        problems = []
        # Written as "not (inside)" so NaN fails too.
        if not (0.0 <= self.output_fps <= MAX_OUTPUT_FPS):
            problems.append(f'output_fps must be in (0, {MAX_OUTPUT_FPS:g}], or 0 for the '
                            f'node default (got {self.output_fps!r})')
        if not (0.0 <= self.keyframe_threshold <= 1.0):
            problems.append(f'keyframe_threshold must be in (0, 1], or 0 for the node default '
                            f'(got {self.keyframe_threshold!r})')
        return '; '.join(problems)


@dataclass
class TaskRecord:
    """State of one task as published on vln/task_state."""

    task_id: str
    instruction: str
    status: TaskStatus
    created: float
    updated: float
    config: TaskConfig = field(default_factory=TaskConfig)
    frames: int = 0
    keyframes: int = 0
    inferences: int = 0
    errors: int = 0
    last_action: str = ''
    last_environment: str = ''
    message: str = ''

    def copy(self) -> TaskRecord:
        """Return an independent copy (callers must not mutate the manager's state)."""
        return replace(self, config=replace(self.config))


@dataclass
class HistoryEntry:
    """One model result of a task, with what the live result carried.

    ``waypoints`` are (dx, dy, dtheta, confidence) tuples; ``frames`` and ``keyframes`` are
    the task's counters when the result was published.
    """

    task_id: str
    sequence: int
    stamp: float
    action: str
    environment: str
    status: str
    confidence: float
    inference_time: float
    waypoints: list[tuple[float, float, float, float]] = field(default_factory=list)
    frame_id: str = ''
    linear_vel: float = 0.0
    angular_vel: float = 0.0
    raw_text: str = ''
    error: str = ''
    frames: int = 0
    keyframes: int = 0


def new_task_id(now: float, rng=secrets) -> str:
    """Return a task id `vln_<unix-seconds>_<6 hex>`; `rng` needs a `token_hex(n)` method."""
    return f'vln_{int(now)}_{rng.token_hex(3)}'
