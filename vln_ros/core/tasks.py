"""Navigation task bookkeeping: records, SQLite persistence, keyframe archive, manager.

ROS-free core behind the task node (issue 5). Operators switch instructions mid-run by
creating a new task: the new task becomes the single active one and the previous one is
stopped. Everything here takes times as float seconds (from an injected clock) so it can be
tested without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
import json
import logging
import math
import os
import re
import secrets
import sqlite3
import threading
import time
from typing import Callable

_LOG = logging.getLogger(__name__)

MAX_INSTRUCTION_CHARS = 1000
MAX_OUTPUT_FPS = 30.0
SCHEMA_VERSION = 1

# Task ids end up in file names (keyframe archive), so only a safe alphabet is accepted there.
_SAFE_ID = re.compile(r'^[A-Za-z0-9_.-]{1,128}$')


class TaskStatus(str, Enum):
    """Life cycle of a task; only one task is ACTIVE at a time."""

    ACTIVE = 'active'
    STOPPED = 'stopped'
    COMPLETED = 'completed'
    FAILED = 'failed'


@dataclass
class TaskConfig:
    """Per-task perception settings chosen when the task is created."""

    output_fps: float = 2.0
    keyframe_threshold: float = 0.2
    enable_visualization: bool = False

    @classmethod
    def from_request(cls, output_fps: float = 0.0, keyframe_threshold: float = -1.0,
                     enable_visualization: bool = False) -> TaskConfig:
        """Build a config from service fields, where 0 / negative means "use the default"."""
        # ROS service fields cannot be optional, so a non-positive rate and a negative
        # threshold stand for "not given". NaN is passed through so validate() rejects it.
        config = cls(enable_visualization=bool(enable_visualization))
        if not output_fps <= 0.0:
            config.output_fps = float(output_fps)
        if not keyframe_threshold < 0.0:
            config.keyframe_threshold = float(keyframe_threshold)
        return config

    def validate(self) -> str:
        """Return an empty string when valid, else a message naming every bad field."""
        problems = []
        # Written as "not (inside)" so NaN fails too.
        if not (0.0 < self.output_fps <= MAX_OUTPUT_FPS):
            problems.append(
                f'output_fps must be in (0, {MAX_OUTPUT_FPS:g}] (got {self.output_fps!r})')
        if not (0.0 <= self.keyframe_threshold <= 1.0):
            problems.append(
                f'keyframe_threshold must be in [0, 1] (got {self.keyframe_threshold!r})')
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
    """One model result of a task; waypoints are (dx, dy, dtheta, confidence) tuples."""

    task_id: str
    sequence: int
    stamp: float
    action: str
    environment: str
    status: str
    confidence: float
    inference_time: float
    waypoints: list[tuple[float, float, float, float]] = field(default_factory=list)


def new_task_id(now: float, rng=secrets) -> str:
    """Return a task id `vln_<unix-seconds>_<6 hex>`; `rng` needs a `token_hex(n)` method."""
    return f'vln_{int(now)}_{rng.token_hex(3)}'


# --------------------------------------------------------------------------- persistence

_SCHEMA = (
    'CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)',
    # seq keeps creation order even if the wall clock jumps; task_id is the public key.
    'CREATE TABLE IF NOT EXISTS tasks ('
    ' seq INTEGER PRIMARY KEY AUTOINCREMENT, task_id TEXT NOT NULL UNIQUE,'
    ' instruction TEXT NOT NULL, status TEXT NOT NULL, created REAL NOT NULL,'
    ' updated REAL NOT NULL, config TEXT NOT NULL, frames INTEGER NOT NULL,'
    ' keyframes INTEGER NOT NULL, inferences INTEGER NOT NULL, errors INTEGER NOT NULL,'
    ' last_action TEXT NOT NULL, last_environment TEXT NOT NULL, message TEXT NOT NULL)',
    'CREATE TABLE IF NOT EXISTS history ('
    ' id INTEGER PRIMARY KEY AUTOINCREMENT, task_id TEXT NOT NULL, sequence INTEGER NOT NULL,'
    ' stamp REAL NOT NULL, action TEXT NOT NULL, environment TEXT NOT NULL,'
    ' status TEXT NOT NULL, confidence REAL NOT NULL, inference_time REAL NOT NULL,'
    ' waypoints TEXT NOT NULL)',
    'CREATE INDEX IF NOT EXISTS history_by_task ON history (task_id, id)',
)

_TASK_COLUMNS = ('task_id, instruction, status, created, updated, config, frames, keyframes,'
                 ' inferences, errors, last_action, last_environment, message')
_HISTORY_COLUMNS = ('task_id, sequence, stamp, action, environment, status, confidence,'
                    ' inference_time, waypoints')


class TaskStore:
    """SQLite persistence of task records and their result history, bounded in size.

    One connection shared by the node's executor threads, serialised by a lock. A file that
    cannot be read as our database is moved aside to `<path>.corrupt-<ts>` and replaced by a
    fresh one; the reason is kept in `warning` so the node can log it.
    """

    def __init__(self, path: str = ':memory:', max_tasks: int = 200,
                 max_history: int = 500) -> None:
        """Open (or create) the database at `path`; ':memory:' keeps nothing on disk."""
        if max_tasks < 1 or max_history < 1:
            raise ValueError('max_tasks and max_history must be at least 1')
        self.path = path
        self.max_tasks = int(max_tasks)
        self.max_history = int(max_history)
        self.warning = ''
        self._lock = threading.RLock()
        self._in_memory = path == ':memory:' or path.startswith('file::memory:')
        try:
            self._conn = self._open()
        except sqlite3.DatabaseError as exc:
            if self._in_memory:
                raise
            moved = self._move_aside()
            self.warning = (f'task database {path} was unreadable ({exc}); moved it to '
                            f'{moved} and started a fresh one')
            _LOG.warning(self.warning)
            self._conn = self._open()

    def _open(self) -> sqlite3.Connection:
        if not self._in_memory:
            parent = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(parent, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, timeout=5.0)
        try:
            # Read-only checks first: a file that is not ours must reach the corrupt copy
            # exactly as it was found.
            check = conn.execute('PRAGMA quick_check').fetchone()
            if check is None or check[0] != 'ok':
                raise sqlite3.DatabaseError(f'integrity check failed: {check}')
            tables = {row[0] for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            if 'schema_version' in tables:
                (version,) = conn.execute('SELECT MAX(version) FROM schema_version').fetchone()
                if version is not None and version > SCHEMA_VERSION:
                    raise sqlite3.DatabaseError(
                        f'schema version {version} is newer than {SCHEMA_VERSION}')
            # A same-named table written by something else fails here, not on first use.
            if 'tasks' in tables:
                conn.execute(f'SELECT seq, {_TASK_COLUMNS} FROM tasks LIMIT 1').fetchall()
            if 'history' in tables:
                conn.execute(f'SELECT id, {_HISTORY_COLUMNS} FROM history LIMIT 1').fetchall()
            if not self._in_memory:
                # WAL: readers never block the writer, and a crash mid-write keeps the old data.
                conn.execute('PRAGMA journal_mode=WAL')
                conn.execute('PRAGMA synchronous=NORMAL')
            with conn:
                for statement in _SCHEMA:
                    conn.execute(statement)
                if conn.execute('SELECT COUNT(*) FROM schema_version').fetchone()[0] == 0:
                    conn.execute('INSERT INTO schema_version (version) VALUES (?)',
                                 (SCHEMA_VERSION,))
        except BaseException:
            conn.close()
            raise
        return conn

    def _move_aside(self) -> str:
        base = f'{self.path}.corrupt-{int(time.time())}'
        target, n = base, 1
        while os.path.exists(target):
            target, n = f'{base}.{n}', n + 1
        os.replace(self.path, target)
        # Stale WAL/SHM files belong to the broken database; never replay them into the new one.
        for suffix in ('-wal', '-shm'):
            if os.path.exists(self.path + suffix):
                os.replace(self.path + suffix, target + suffix)
        return target

    def save_task(self, record: TaskRecord) -> list[str]:
        """Insert or update `record`; return the ids of old tasks pruned to respect max_tasks."""
        config = json.dumps({'output_fps': record.config.output_fps,
                             'keyframe_threshold': record.config.keyframe_threshold,
                             'enable_visualization': record.config.enable_visualization})
        values = (record.task_id, record.instruction, TaskStatus(record.status).value,
                  float(record.created), float(record.updated), config, int(record.frames),
                  int(record.keyframes), int(record.inferences), int(record.errors),
                  record.last_action, record.last_environment, record.message)
        updates = ', '.join(f'{c.strip()} = excluded.{c.strip()}'
                            for c in _TASK_COLUMNS.split(',')[1:])
        with self._lock, self._conn:
            self._conn.execute(
                f'INSERT INTO tasks ({_TASK_COLUMNS}) VALUES ({_placeholders(len(values))})'
                f' ON CONFLICT (task_id) DO UPDATE SET {updates}', values)
            return self._prune_tasks()

    def _prune_tasks(self) -> list[str]:
        (count,) = self._conn.execute('SELECT COUNT(*) FROM tasks').fetchone()
        excess = count - self.max_tasks
        if excess <= 0:
            return []
        rows = self._conn.execute(
            'SELECT task_id FROM tasks WHERE status != ? ORDER BY seq LIMIT ?',
            (TaskStatus.ACTIVE.value, excess)).fetchall()
        pruned = [row[0] for row in rows]
        self._conn.executemany('DELETE FROM history WHERE task_id = ?', rows)
        self._conn.executemany('DELETE FROM tasks WHERE task_id = ?', rows)
        return pruned

    def load_tasks(self) -> list[TaskRecord]:
        """Return all stored tasks, newest first; rows that cannot be decoded are skipped."""
        with self._lock:
            rows = self._conn.execute(
                f'SELECT {_TASK_COLUMNS} FROM tasks ORDER BY seq DESC').fetchall()
        records = []
        for row in rows:
            try:
                records.append(_task_from_row(row))
            except (ValueError, TypeError, KeyError) as exc:
                _LOG.warning('skipping unreadable task row %r: %s', row[0], exc)
        return records

    def append_history(self, entry: HistoryEntry) -> None:
        """Store one result, dropping the task's oldest entries beyond max_history."""
        values = (entry.task_id, int(entry.sequence), float(entry.stamp), entry.action,
                  entry.environment, entry.status, float(entry.confidence),
                  float(entry.inference_time),
                  json.dumps([[float(v) for v in wp] for wp in entry.waypoints]))
        with self._lock, self._conn:
            self._conn.execute(
                f'INSERT INTO history ({_HISTORY_COLUMNS}) VALUES ({_placeholders(len(values))})',
                values)
            self._conn.execute(
                'DELETE FROM history WHERE task_id = ? AND id <= (SELECT id FROM history'
                ' WHERE task_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)',
                (entry.task_id, entry.task_id, self.max_history))

    def history(self, task_id: str, limit: int | None = None) -> list[HistoryEntry]:
        """Return the task's latest `limit` entries (all when None), oldest first."""
        if limit is not None and limit <= 0:
            return []
        with self._lock:
            rows = self._conn.execute(
                f'SELECT {_HISTORY_COLUMNS} FROM history WHERE task_id = ?'
                ' ORDER BY id DESC LIMIT ?', (task_id, -1 if limit is None else int(limit)),
            ).fetchall()
        entries = []
        for row in reversed(rows):
            waypoints = [tuple(float(v) for v in wp) for wp in json.loads(row[8])]
            entries.append(HistoryEntry(row[0], row[1], row[2], row[3], row[4], row[5],
                                        row[6], row[7], waypoints))
        return entries

    def close(self) -> None:
        """Close the connection (later calls raise sqlite3.ProgrammingError)."""
        with self._lock:
            self._conn.close()


def _placeholders(count: int) -> str:
    return ', '.join(['?'] * count)


def _task_from_row(row: tuple) -> TaskRecord:
    config = json.loads(row[5])
    return TaskRecord(
        task_id=row[0], instruction=row[1], status=TaskStatus(row[2]), created=row[3],
        updated=row[4],
        config=TaskConfig(output_fps=float(config['output_fps']),
                          keyframe_threshold=float(config['keyframe_threshold']),
                          enable_visualization=bool(config['enable_visualization'])),
        frames=row[6], keyframes=row[7], inferences=row[8], errors=row[9], last_action=row[10],
        last_environment=row[11], message=row[12])


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
        if not _SAFE_ID.match(task_id) or task_id in ('.', '..'):
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
        if not _SAFE_ID.match(task_id) or not os.path.isdir(task_dir):
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


# --------------------------------------------------------------------------- manager

class TaskManager:
    """Creates, stops and completes tasks; at most one task is ACTIVE at any time.

    All methods are thread-safe (one re-entrant lock). `on_change` is called with a copy of
    the changed record after every state change, while the lock is held so that listeners see
    changes in the order they happened; it must be quick and must not wait on other threads.
    """

    def __init__(self, store: TaskStore, clock: Callable[[], float] = time.time,
                 history_size: int = 50, completion_confidence: float = 0.7,
                 completion_count: int = 2) -> None:
        """Load the stored tasks; any task left ACTIVE by a previous process is stopped."""
        self._store = store
        self._clock = clock
        self.history_size = int(history_size)
        self.completion_confidence = float(completion_confidence)
        self.completion_count = max(1, int(completion_count))
        self.on_change: Callable[[TaskRecord], None] | None = None
        self._lock = threading.RLock()
        self._tasks: dict[str, TaskRecord] = {}  # insertion order = creation order
        self._active_id: str | None = None
        self._stop_streak = 0
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
            if entry.status == 'vlm_error':
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
