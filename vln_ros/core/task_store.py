"""SQLite persistence of tasks and their result history, bounded in size (ROS-free)."""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time

from vln_ros.core.task_records import HistoryEntry, TaskConfig, TaskRecord, TaskStatus

_LOG = logging.getLogger(__name__)

SCHEMA_VERSION = 2

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
# Version 2: history entries keep what the live result carried. Added to a version 1 file
# with ALTER TABLE, so its history stays readable (old rows get the defaults).
_HISTORY_V2 = (('frame_id', "TEXT NOT NULL DEFAULT ''"), ('linear_vel', 'REAL NOT NULL DEFAULT 0'),
               ('angular_vel', 'REAL NOT NULL DEFAULT 0'),
               ('raw_text', "TEXT NOT NULL DEFAULT ''"), ('error', "TEXT NOT NULL DEFAULT ''"),
               ('frames', 'INTEGER NOT NULL DEFAULT 0'),
               ('keyframes', 'INTEGER NOT NULL DEFAULT 0'))

_TASK_COLUMNS = ('task_id, instruction, status, created, updated, config, frames, keyframes,'
                 ' inferences, errors, last_action, last_environment, message')
_HISTORY_V1_COLUMNS = ('task_id, sequence, stamp, action, environment, status, confidence,'
                       ' inference_time, waypoints')
_HISTORY_COLUMNS = _HISTORY_V1_COLUMNS + ''.join(f', {name}' for name, _ in _HISTORY_V2)


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
                conn.execute(f'SELECT id, {_HISTORY_V1_COLUMNS} FROM history LIMIT 1').fetchall()
            if not self._in_memory:
                # WAL: readers never block the writer, and a crash mid-write keeps the old data.
                conn.execute('PRAGMA journal_mode=WAL')
                conn.execute('PRAGMA synchronous=NORMAL')
            with conn:
                for statement in _SCHEMA:
                    conn.execute(statement)
                have = {row[1] for row in conn.execute('PRAGMA table_info(history)')}
                for name, kind in _HISTORY_V2:
                    if name not in have:
                        conn.execute(f'ALTER TABLE history ADD COLUMN {name} {kind}')
                conn.execute('DELETE FROM schema_version')
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
                  json.dumps([[float(v) for v in wp] for wp in entry.waypoints]),
                  entry.frame_id, float(entry.linear_vel), float(entry.angular_vel),
                  entry.raw_text, entry.error, int(entry.frames), int(entry.keyframes))
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
            entries.append(HistoryEntry(*row[:8], waypoints, *row[9:]))
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
