"""Navigation tasks: create, switch, stop, complete; at most one active (ROS-free).

The core behind the task node. Operators switch instructions mid-run by creating a new task:
the new task becomes the single active one and the previous one is stopped. Times are float
seconds from an injected clock, so this is tested without sleeping. Records and settings
live in task_records, persistence in task_store.
"""
from __future__ import annotations

from dataclasses import replace
import logging
import math
import sqlite3
import threading
import time
from typing import Callable

from vln_ros.core.statuses import RESULT_NAMES, RESULT_VLM_ERROR
from vln_ros.core.task_records import (
    MAX_INSTRUCTION_CHARS,
    HistoryEntry,
    TaskConfig,
    TaskRecord,
    TaskStatus,
    new_task_id,
)
from vln_ros.core.task_store import TaskStore

_LOG = logging.getLogger(__name__)


class TaskManager:
    """Creates, stops and completes tasks; at most one task is ACTIVE at any time.

    All methods are thread-safe (one re-entrant lock). `on_change` is called with a copy of
    the changed record after every state change, while the lock is held so that listeners see
    changes in the order they happened; it must be quick and must not wait on other threads.
    """

    def __init__(self, store: TaskStore, clock: Callable[[], float] = time.time,
                 history_size: int = 50, completion_confidence: float = 0.7,
                 completion_count: int = 2, search_limit: int = 0) -> None:
        """Load the stored tasks; any task left ACTIVE by a previous process is stopped.

        ``search_limit`` > 0 fails a task after that many answers in a row that only turn in
        place (the model is looking for something it does not find); 0 never gives up.
        """
        self._store = store
        self._clock = clock
        self.history_size = int(history_size)
        self.completion_confidence = float(completion_confidence)
        self.completion_count = max(1, int(completion_count))
        self.search_limit = max(0, int(search_limit))
        self.on_change: Callable[[TaskRecord], None] | None = None
        self._lock = threading.RLock()
        self._tasks: dict[str, TaskRecord] = {}  # insertion order = creation order
        self._active_id: str | None = None
        self._stop_streak = 0
        self._turn_streak = 0
        for record in reversed(store.load_tasks()):
            self._tasks[record.task_id] = record
            if record.status == TaskStatus.ACTIVE:
                # A robot must never start moving again on its own after a crash or reboot:
                # the instruction may be stale and nobody may be watching. An operator has to
                # create a task again.
                record.status = TaskStatus.STOPPED
                record.message = 'interrupted by restart'
                record.updated = clock()
                self._persist(record)

    @property
    def active(self) -> TaskRecord | None:
        """Return a copy of the active task, or None."""
        with self._lock:
            return self._tasks[self._active_id].copy() if self._active_id else None

    def create(self, instruction: str, config: TaskConfig | None = None,
               ) -> tuple[bool, TaskRecord | None, str]:
        """Make a new ACTIVE task, stopping the previous one; return (ok, task, message)."""
        if not isinstance(instruction, str):
            return False, None, 'instruction must be a string'
        instruction = instruction.strip()
        if not instruction:
            return False, None, 'instruction is empty'
        if len(instruction) > MAX_INSTRUCTION_CHARS:
            return False, None, (f'instruction is too long ({len(instruction)} characters, '
                                 f'max {MAX_INSTRUCTION_CHARS})')
        config = replace(config) if config is not None else TaskConfig()
        problem = config.validate()
        if problem:
            return False, None, f'invalid config: {problem}'
        with self._lock:
            now = self._clock()
            task_id = new_task_id(now)
            while task_id in self._tasks:
                task_id = new_task_id(now)
            if self._active_id is not None:
                self._finish(self._tasks[self._active_id], TaskStatus.STOPPED,
                             f'superseded by {task_id}')
            record = TaskRecord(task_id=task_id, instruction=instruction,
                                status=TaskStatus.ACTIVE, created=now, updated=now,
                                config=config, message='created')
            self._tasks[task_id] = record
            self._active_id = task_id
            self._stop_streak = 0
            self._turn_streak = 0
            self._persist(record)
            self._notify(record)
            return True, record.copy(), 'created'

    def stop(self, task_id: str = '') -> tuple[bool, str]:
        """Stop a task (the active one when `task_id` is empty); return (ok, message)."""
        with self._lock:
            if not task_id:
                if self._active_id is None:
                    return False, 'no active task to stop'
                task_id = self._active_id
            record = self._tasks.get(task_id)
            if record is None:
                return False, f'unknown task id {task_id!r}'
            if record.status != TaskStatus.ACTIVE:
                return False, f'task {task_id} is already {record.status.value}'
            self._finish(record, TaskStatus.STOPPED, 'stopped by request')
            return True, f'task {task_id} stopped'

    def fail(self, task_id: str, message: str) -> bool:
        """Mark an active task FAILED with `message`; return False if it was not active."""
        with self._lock:
            record = self._tasks.get(task_id)
            if record is None or record.status != TaskStatus.ACTIVE:
                return False
            self._finish(record, TaskStatus.FAILED, message)
            return True

    def get(self, task_id: str) -> TaskRecord | None:
        """Return a copy of the task, or None when unknown."""
        with self._lock:
            record = self._tasks.get(task_id)
            return record.copy() if record else None

    def history(self, task_id: str, limit: int | None = None) -> list[HistoryEntry]:
        """Return the task's latest results, oldest first (at most `history_size` by default)."""
        return self._store.history(task_id, self.history_size if limit is None else limit)

    def list(self) -> list[TaskRecord]:
        """Return copies of all known tasks, newest first."""
        with self._lock:
            return [record.copy() for record in reversed(self._tasks.values())]

    def record_result(self, task_id: str, entry: HistoryEntry, frames: int | None = None,
                      keyframes: int | None = None) -> bool:
        """Account one model result; return True when it completed the task.

        Results for an unknown or no longer active task are ignored, so a late answer to an
        old instruction can never change the current task.
        """
        with self._lock:
            record = self._tasks.get(task_id)
            if (record is None or record.status != TaskStatus.ACTIVE
                    or entry.task_id != task_id):
                return False
            record.inferences += 1
            if entry.status == RESULT_NAMES[RESULT_VLM_ERROR]:
                record.errors += 1
            record.last_action = entry.action
            record.last_environment = entry.environment
            if frames is not None:
                record.frames = int(frames)
            if keyframes is not None:
                record.keyframes = int(keyframes)
            record.updated = self._clock()
            self._persist_history(entry)
            # One confident "stop" may be a glitch; require several in a row to call it arrived.
            confident_stop = (entry.action == 'stop'
                              and math.isfinite(entry.confidence)
                              and entry.confidence >= self.completion_confidence)
            self._stop_streak = self._stop_streak + 1 if confident_stop else 0
            if self._stop_streak >= self.completion_count:
                self._finish(record, TaskStatus.COMPLETED, 'arrived')
                return True
            # A bounded search: wandering on forever is worse than saying it was not found.
            turning = entry.action in ('turn_left', 'turn_right')
            self._turn_streak = self._turn_streak + 1 if turning else 0
            if self.search_limit and self._turn_streak >= self.search_limit:
                self._finish(record, TaskStatus.FAILED,
                             f'not found: {self._turn_streak} answers in a row only turned in '
                             'place (search_limit)')
                return False
            self._persist(record)
            self._notify(record)
            return False

    def _finish(self, record: TaskRecord, status: TaskStatus, message: str) -> None:
        record.status = status
        record.message = message
        record.updated = self._clock()
        if self._active_id == record.task_id:
            self._active_id = None
            self._stop_streak = 0
            self._turn_streak = 0
        self._persist(record)
        self._notify(record)

    def _persist(self, record: TaskRecord) -> None:
        # A full disk must not take navigation down with it: keep running from memory.
        try:
            pruned = self._store.save_task(record)
        except sqlite3.Error as exc:
            _LOG.error('could not save task %s: %s', record.task_id, exc)
            return
        for task_id in pruned:
            self._tasks.pop(task_id, None)

    def _persist_history(self, entry: HistoryEntry) -> None:
        try:
            self._store.append_history(entry)
        except sqlite3.Error as exc:
            _LOG.error('could not save history of task %s: %s', entry.task_id, exc)

    def _notify(self, record: TaskRecord) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change(record.copy())
        except Exception:  # a broken listener must not corrupt task state
            _LOG.exception('task change listener failed')
