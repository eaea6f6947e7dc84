"""Tests of the ROS-free task manager, its SQLite store and the keyframe archive."""

import glob
import os
import random
import re
import sqlite3
import threading

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
import pytest

from vln_ros.core.keyframe_archive import KeyframeArchive
from vln_ros.core.task_records import (
    HistoryEntry,
    TaskConfig,
    TaskRecord,
    TaskStatus,
    new_task_id,
    task_setting,
)
from vln_ros.core.task_store import TaskStore
from vln_ros.core.tasks import TaskManager

FUZZ_EXAMPLES = int(os.environ.get('VLN_FUZZ_EXAMPLES', '300'))


class FakeClock:
    """Deterministic clock advancing 0.5 s per reading."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            self.now += 0.5
            return self.now


class FixedRng:
    """Stand-in for `secrets` returning predictable hex."""

    def __init__(self, values):
        self._values = iter(values)

    def token_hex(self, nbytes):
        assert nbytes == 3
        return next(self._values)


def entry(task_id, action='forward', confidence=0.9, status='ok', sequence=0):
    return HistoryEntry(task_id=task_id, sequence=sequence, stamp=float(sequence),
                        action=action, environment=f'corridor {sequence}', status=status,
                        confidence=confidence, inference_time=0.25,
                        waypoints=[(0.3, 0.0, 0.0, confidence), (0.6, 0.1, 0.05, confidence)])


@pytest.fixture
def manager():
    return TaskManager(TaskStore(), clock=FakeClock())


def snapshot(mgr):
    """Everything observable about a manager, for before/after comparisons."""
    return ([(t, mgr.history(t.task_id, 1000)) for t in mgr.list()], mgr.active)


# ------------------------------------------------------------------ ids and config

def test_new_task_id_format():
    assert new_task_id(1_700_000_123.98, FixedRng(['a1b2c3'])) == 'vln_1700000123_a1b2c3'
    ids = {new_task_id(1_700_000_000.0) for _ in range(50)}
    assert all(re.fullmatch(r'vln_1700000000_[0-9a-f]{6}', i) for i in ids)
    assert len(ids) > 40  # random suffix, not a constant


def test_created_task_ids_are_unique_and_well_formed(manager):
    ids = [manager.create(f'go {i}')[1].task_id for i in range(20)]
    assert len(set(ids)) == 20
    assert all(re.fullmatch(r'vln_\d+_[0-9a-f]{6}', i) for i in ids)


def test_config_from_request_zero_or_negative_means_the_node_default():
    # What a plain `ros2 service call .../CreateTask "{instruction: ...}"` sends: zeros.
    assert TaskConfig.from_request() == TaskConfig()
    assert TaskConfig.from_request(0.0, 0.0, True) == TaskConfig(enable_visualization=True)
    assert TaskConfig.from_request(-3.0, -0.5) == TaskConfig()
    assert (TaskConfig().output_fps, TaskConfig().keyframe_threshold) == (0.0, 0.0)
    given = TaskConfig.from_request(5.0, 0.3, False)
    assert (given.output_fps, given.keyframe_threshold) == (5.0, 0.3)
    assert given.validate() == '' and TaskConfig().validate() == ''


@pytest.mark.parametrize('value, default, expected', [
    (0.0, 0.2, 0.2), (-1.0, 0.2, 0.2), (0.05, 0.2, 0.05), (1.0, 0.2, 1.0), (0.0, 2.0, 2.0),
])
def test_task_setting_rule(value, default, expected):
    assert task_setting(value, default) == expected


@pytest.mark.parametrize('config, field_name', [
    (TaskConfig(output_fps=-0.5), 'output_fps'),
    (TaskConfig(output_fps=30.5), 'output_fps'),
    (TaskConfig(output_fps=float('nan')), 'output_fps'),
    (TaskConfig(keyframe_threshold=-0.01), 'keyframe_threshold'),
    (TaskConfig(keyframe_threshold=1.01), 'keyframe_threshold'),
    (TaskConfig.from_request(float('nan'), 0.2), 'output_fps'),
    (TaskConfig.from_request(2.0, float('inf')), 'keyframe_threshold'),
])
def test_config_validate_names_the_bad_field(config, field_name):
    message = config.validate()
    assert field_name in message
    assert 'must be in' in message


def test_config_validate_accepts_bounds():
    assert TaskConfig(output_fps=30.0, keyframe_threshold=1.0).validate() == ''
    assert TaskConfig(output_fps=0.01, keyframe_threshold=0.001).validate() == ''
    both = TaskConfig(output_fps=100.0, keyframe_threshold=5.0).validate()
    assert 'output_fps' in both and 'keyframe_threshold' in both


# ------------------------------------------------------------------ create / stop

def test_create_makes_active_and_stops_previous(manager):
    changes = []
    manager.on_change = lambda record: changes.append((record.task_id, record.status))
    ok, first, message = manager.create('  go to the door \n')
    assert ok and message == 'created'
    assert first.instruction == 'go to the door'
    assert first.status == TaskStatus.ACTIVE
    assert manager.active.task_id == first.task_id

    ok, second, _ = manager.create('turn left', TaskConfig(output_fps=4.0))
    assert ok
    assert manager.active.task_id == second.task_id
    assert manager.active.config.output_fps == 4.0
    old = manager.get(first.task_id)
    assert old.status == TaskStatus.STOPPED
    assert old.message == f'superseded by {second.task_id}'
    assert [t.task_id for t in manager.list()] == [second.task_id, first.task_id]
    assert changes == [(first.task_id, TaskStatus.ACTIVE),
                       (first.task_id, TaskStatus.STOPPED),
                       (second.task_id, TaskStatus.ACTIVE)]


def test_returned_records_are_copies(manager):
    _, task, _ = manager.create('go')
    task.status = TaskStatus.FAILED
    task.config.output_fps = 99.0
    manager.get(task.task_id).instruction = 'changed'
    assert manager.active.status == TaskStatus.ACTIVE
    assert manager.active.config.output_fps == 0.0
    assert manager.active.instruction == 'go'


def test_stop_active_by_empty_id_and_by_id(manager):
    _, first, _ = manager.create('go')
    ok, message = manager.stop()
    assert ok and first.task_id in message
    assert manager.active is None
    assert manager.get(first.task_id).status == TaskStatus.STOPPED
    _, second, _ = manager.create('come back')
    assert manager.stop(second.task_id)[0]
    assert manager.get(second.task_id).status == TaskStatus.STOPPED


@pytest.mark.parametrize('operation, expected', [
    (lambda m, _stopped: m.create(''), 'instruction is empty'),
    (lambda m, _stopped: m.create(' \t\n '), 'instruction is empty'),
    (lambda m, _stopped: m.create('x' * 1001), 'too long'),
    (lambda m, _stopped: m.create(None), 'must be a string'),
    (lambda m, _stopped: m.create('go', TaskConfig(output_fps=45.0)), 'output_fps must be in'),
    (lambda m, _stopped: m.create('go', TaskConfig.from_request(2.0, 3.0)),
     'keyframe_threshold must be in'),
    (lambda m, _stopped: m.stop('vln_0_ffffff'), "unknown task id 'vln_0_ffffff'"),
    (lambda m, stopped: m.stop(stopped), 'is already stopped'),
])
def test_bad_input_gives_clear_message_and_changes_nothing(manager, operation, expected):
    _, stopped, _ = manager.create('walk')
    manager.stop()
    _, active, _ = manager.create('go to the door')
    manager.record_result(active.task_id, entry(active.task_id))
    changes = []
    manager.on_change = changes.append
    before = snapshot(manager)
    result = operation(manager, stopped.task_id)
    assert result[0] is False
    assert expected in result[-1]
    if len(result) == 3:
        assert result[1] is None
    assert snapshot(manager) == before
    assert changes == []


def test_stop_with_no_active_task_and_stop_completed_task(manager):
    assert manager.stop() == (False, 'no active task to stop')
    _, task, _ = manager.create('go', None)
    for i in range(2):
        manager.record_result(task.task_id, entry(task.task_id, 'stop', 0.95, sequence=i))
    before = snapshot(manager)
    ok, message = manager.stop(task.task_id)
    assert not ok and message == f'task {task.task_id} is already completed'
    assert snapshot(manager) == before


def test_instruction_of_exactly_max_length_is_accepted(manager):
    assert manager.create('y' * 1000)[0]
    assert manager.create('  ' + 'y' * 1000 + '  ')[0]  # length counted after stripping


def test_fail_only_affects_active_task(manager):
    _, task, _ = manager.create('go')
    assert manager.fail(task.task_id, 'VLM unreachable')
    failed = manager.get(task.task_id)
    assert (failed.status, failed.message) == (TaskStatus.FAILED, 'VLM unreachable')
    assert manager.active is None
    assert not manager.fail(task.task_id, 'again')
    assert not manager.fail('missing', 'x')
    assert manager.get(task.task_id).message == 'VLM unreachable'


def test_listener_exception_does_not_break_manager(manager):
    def broken(_record):
        raise RuntimeError('boom')
    manager.on_change = broken
    ok, task, _ = manager.create('go')
    assert ok and manager.active.task_id == task.task_id


# ------------------------------------------------------------------ results and completion

def test_record_result_updates_counters_and_history(manager):
    _, task, _ = manager.create('go')
    changes = []
    manager.on_change = changes.append
    assert not manager.record_result(task.task_id, entry(task.task_id, sequence=1),
                                     frames=30, keyframes=3)
    assert not manager.record_result(task.task_id,
                                     entry(task.task_id, 'turn_left', 0.0, 'vlm_error', 2),
                                     frames=60)
    record = manager.get(task.task_id)
    assert (record.inferences, record.errors) == (2, 1)
    assert (record.frames, record.keyframes) == (60, 3)  # running totals, None keeps
    assert (record.last_action, record.last_environment) == ('turn_left', 'corridor 2')
    assert record.updated > record.created
    assert [c.inferences for c in changes] == [1, 2]
    history = manager.history(task.task_id)
    assert [h.sequence for h in history] == [1, 2]
    assert history[0].waypoints == [(0.3, 0.0, 0.0, 0.9), (0.6, 0.1, 0.05, 0.9)]
    assert history[1] == entry(task.task_id, 'turn_left', 0.0, 'vlm_error', 2)


def test_results_for_inactive_unknown_or_mismatched_task_are_ignored(manager):
    _, old, _ = manager.create('go')
    _, new, _ = manager.create('turn')
    before = snapshot(manager)
    assert not manager.record_result(old.task_id, entry(old.task_id, 'stop', 1.0), frames=9)
    assert not manager.record_result('unknown', entry('unknown'))
    assert not manager.record_result(new.task_id, entry(old.task_id))
    assert snapshot(manager) == before


def test_a_search_that_only_turns_gives_up_after_search_limit_answers():
    mgr = TaskManager(TaskStore(), clock=FakeClock(), search_limit=4)
    _, task, _ = mgr.create('find the green box')
    tid = task.task_id
    # Any answer that moves on (forward, a stop) resets the count.
    for i, action in enumerate(['turn_left', 'turn_left', 'turn_right', 'forward',
                                'turn_left', 'turn_left', 'stop', 'turn_right', 'turn_left',
                                'turn_left']):
        mgr.record_result(tid, entry(tid, action, 0.6, sequence=i))
    assert mgr.get(tid).status == TaskStatus.ACTIVE
    mgr.record_result(tid, entry(tid, 'turn_right', 0.6, sequence=10))
    failed = mgr.get(tid)
    assert failed.status == TaskStatus.FAILED and 'not found' in failed.message
    assert 'search_limit' in failed.message and mgr.active is None
    # 0: never gives up; a new task starts counting afresh.
    patient = TaskManager(TaskStore(), clock=FakeClock(), search_limit=0)
    _, task, _ = patient.create('find the green box')
    for i in range(100):
        patient.record_result(task.task_id, entry(task.task_id, 'turn_left', 0.6, sequence=i))
    assert patient.get(task.task_id).status == TaskStatus.ACTIVE


def test_completion_after_consecutive_confident_stops():
    mgr = TaskManager(TaskStore(), clock=FakeClock(), completion_count=3,
                      completion_confidence=0.7)
    _, task, _ = mgr.create('go to the door')
    tid = task.task_id
    states = []
    mgr.on_change = lambda r: states.append(r.status)
    # Streak broken by a non-stop action and by a low-confidence stop.
    sequence = [('stop', 0.9), ('stop', 0.8), ('forward', 0.9), ('stop', 0.9), ('stop', 0.9),
                ('stop', 0.69), ('stop', 0.7), ('stop', float('nan')), ('stop', 0.75),
                ('stop', 0.99)]
    results = [mgr.record_result(tid, entry(tid, a, c, sequence=i))
               for i, (a, c) in enumerate(sequence)]
    assert results == [False] * 9 + [False]
    assert mgr.get(tid).status == TaskStatus.ACTIVE
    assert mgr.record_result(tid, entry(tid, 'stop', 0.8, sequence=10))
    done = mgr.get(tid)
    assert (done.status, done.message) == (TaskStatus.COMPLETED, 'arrived')
    assert mgr.active is None
    assert states[-1] == TaskStatus.COMPLETED
    assert not mgr.record_result(tid, entry(tid, 'stop', 0.9, sequence=11))
    assert mgr.get(tid).inferences == 11


def test_default_completion_needs_two_stops_and_resets_on_new_task(manager):
    _, first, _ = manager.create('go')
    assert not manager.record_result(first.task_id, entry(first.task_id, 'stop', 0.9))
    # A new instruction starts a fresh streak: one stop of the new task is not enough.
    _, second, _ = manager.create('go again')
    assert not manager.record_result(second.task_id, entry(second.task_id, 'stop', 0.9))
    assert manager.active.task_id == second.task_id
    assert manager.record_result(second.task_id, entry(second.task_id, 'stop', 0.9))


# ------------------------------------------------------------------ bounds

def test_history_is_bounded_per_task_newest_last():
    store = TaskStore(max_history=5)
    mgr = TaskManager(store, clock=FakeClock(), history_size=3)
    _, other, _ = mgr.create('other')
    mgr.record_result(other.task_id, entry(other.task_id, sequence=99))
    _, task, _ = mgr.create('go')
    for i in range(12):
        mgr.record_result(task.task_id, entry(task.task_id, sequence=i))
    assert [h.sequence for h in store.history(task.task_id)] == [7, 8, 9, 10, 11]
    assert [h.sequence for h in mgr.history(task.task_id)] == [9, 10, 11]
    assert [h.sequence for h in mgr.history(task.task_id, limit=100)] == [7, 8, 9, 10, 11]
    assert mgr.history(task.task_id, limit=0) == []
    # Another task's history is untouched by the pruning.
    assert [h.sequence for h in mgr.history(other.task_id)] == [99]
    assert mgr.get(task.task_id).inferences == 12


def test_task_count_bounded_pruning_oldest_inactive_with_history():
    store = TaskStore(max_tasks=3)
    mgr = TaskManager(store, clock=FakeClock())
    ids = []
    for i in range(5):
        _, task, _ = mgr.create(f'go {i}')
        mgr.record_result(task.task_id, entry(task.task_id, sequence=i))
        ids.append(task.task_id)
    assert [t.task_id for t in mgr.list()] == ids[:1:-1]
    assert [t.task_id for t in store.load_tasks()] == ids[:1:-1]
    assert mgr.get(ids[0]) is None
    assert store.history(ids[0]) == [] and store.history(ids[1]) == []
    assert mgr.active.task_id == ids[-1]


def test_store_never_prunes_the_active_task():
    store = TaskStore(max_tasks=1)
    mgr = TaskManager(store, clock=FakeClock())
    _, first, _ = mgr.create('one')
    _, second, _ = mgr.create('two')
    assert [t.task_id for t in mgr.list()] == [second.task_id]
    assert mgr.active.task_id == second.task_id


# ------------------------------------------------------------------ persistence

def test_restart_keeps_tasks_and_history_and_stops_the_active_one(tmp_path):
    path = str(tmp_path / 'db' / 'tasks.sqlite')
    clock = FakeClock()
    mgr = TaskManager(TaskStore(path), clock=clock)
    _, old, _ = mgr.create('go to the door', TaskConfig(output_fps=3.0))
    mgr.record_result(old.task_id, entry(old.task_id, sequence=1), frames=10, keyframes=2)
    _, running, _ = mgr.create('turn left', TaskConfig(enable_visualization=True))
    mgr.record_result(running.task_id, entry(running.task_id, 'turn_left', sequence=2))
    mgr._store.close()

    store = TaskStore(path)
    assert store.warning == ''
    again = TaskManager(store, clock=clock)
    assert again.active is None
    assert [t.task_id for t in again.list()] == [running.task_id, old.task_id]
    restored = again.get(running.task_id)
    assert (restored.status, restored.message) == (TaskStatus.STOPPED, 'interrupted by restart')
    assert restored.config == TaskConfig(enable_visualization=True)
    assert restored.last_action == 'turn_left' and restored.inferences == 1
    previous = again.get(old.task_id)
    assert previous.message == f'superseded by {running.task_id}'
    assert (previous.frames, previous.keyframes, previous.config.output_fps) == (10, 2, 3.0)
    assert again.history(old.task_id) == [entry(old.task_id, sequence=1)]
    assert again.history(running.task_id)[0].action == 'turn_left'
    # Results that arrive for the interrupted task after the restart are ignored.
    assert not again.record_result(running.task_id, entry(running.task_id, 'stop', 1.0))
    store.close()

    # The stop caused by the restart was itself persisted.
    third = TaskStore(path)
    status = {t.task_id: t.status for t in third.load_tasks()}
    assert status[running.task_id] == TaskStatus.STOPPED
    third.close()


def test_store_roundtrip_and_upsert(tmp_path):
    store = TaskStore(str(tmp_path / 't.db'))
    record = TaskRecord('vln_1_aaaaaa', 'go', TaskStatus.ACTIVE, 1.0, 1.0)
    assert store.save_task(record) == []
    record.status, record.frames, record.message = TaskStatus.COMPLETED, 7, 'arrived'
    store.save_task(record)
    assert store.load_tasks() == [record]
    store.close()
    with sqlite3.connect(str(tmp_path / 't.db')) as conn:
        assert conn.execute('SELECT version FROM schema_version').fetchall() == [(2,)]
        assert conn.execute('PRAGMA journal_mode').fetchone()[0] == 'wal'


def test_history_keeps_what_the_live_result_carried(tmp_path):
    path = str(tmp_path / 't.db')
    mgr = TaskManager(TaskStore(path), clock=FakeClock())
    _, task, _ = mgr.create('go')
    full = HistoryEntry(task.task_id, 1, 12.5, 'forward', 'a corridor', 'ok', 0.9, 5.5,
                        [(0.5, 0.0, 0.1, 0.9)], frame_id='body', linear_vel=0.4,
                        angular_vel=-0.1, raw_text='{"action": "forward"}', error='',
                        frames=30, keyframes=3)
    mgr.record_result(task.task_id, full, frames=30, keyframes=3)
    mgr._store.close()
    assert TaskManager(TaskStore(path), clock=FakeClock()).history(task.task_id) == [full]


def test_version_1_database_is_migrated_and_keeps_its_history(tmp_path):
    path = str(tmp_path / 'old.db')
    with sqlite3.connect(path) as conn:  # the version 1 layout, as shipped before
        conn.executescript(
            'CREATE TABLE schema_version (version INTEGER NOT NULL);'
            'INSERT INTO schema_version VALUES (1);'
            'CREATE TABLE tasks (seq INTEGER PRIMARY KEY AUTOINCREMENT, task_id TEXT NOT NULL'
            ' UNIQUE, instruction TEXT NOT NULL, status TEXT NOT NULL, created REAL NOT NULL,'
            ' updated REAL NOT NULL, config TEXT NOT NULL, frames INTEGER NOT NULL,'
            ' keyframes INTEGER NOT NULL, inferences INTEGER NOT NULL, errors INTEGER NOT NULL,'
            ' last_action TEXT NOT NULL, last_environment TEXT NOT NULL, message TEXT NOT NULL);'
            'CREATE TABLE history (id INTEGER PRIMARY KEY AUTOINCREMENT, task_id TEXT NOT NULL,'
            ' sequence INTEGER NOT NULL, stamp REAL NOT NULL, action TEXT NOT NULL,'
            ' environment TEXT NOT NULL, status TEXT NOT NULL, confidence REAL NOT NULL,'
            ' inference_time REAL NOT NULL, waypoints TEXT NOT NULL);'
            "INSERT INTO tasks VALUES (1, 'vln_1_aaaaaa', 'go', 'stopped', 1.0, 2.0,"
            ' \'{"output_fps": 2.0, "keyframe_threshold": 0.2, "enable_visualization": false}\','
            " 5, 1, 1, 0, 'forward', 'hall', 'stopped by request');"
            "INSERT INTO history VALUES (1, 'vln_1_aaaaaa', 1, 1.5, 'forward', 'hall', 'ok',"
            " 0.8, 6.0, '[[0.5, 0.0, 0.0, 0.8]]');")
    conn.close()
    store = TaskStore(path)
    assert store.warning == ''
    (old,) = store.history('vln_1_aaaaaa')
    assert (old.action, old.waypoints, old.raw_text, old.frames) == \
        ('forward', [(0.5, 0.0, 0.0, 0.8)], '', 0)
    store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute('SELECT version FROM schema_version').fetchall() == [(2,)]


@pytest.mark.parametrize('damage', ['garbage', 'truncated', 'foreign_schema', 'newer_schema'])
def test_corrupt_db_is_moved_aside_and_replaced(tmp_path, damage):
    path = str(tmp_path / 'tasks.db')
    if damage == 'garbage':
        with open(path, 'wb') as handle:
            handle.write(b'this is not an sqlite database\n' * 200)
    elif damage == 'foreign_schema':
        with sqlite3.connect(path) as conn:
            conn.execute('CREATE TABLE tasks (name TEXT)')
        conn.close()
    else:
        store = TaskStore(path)
        mgr = TaskManager(store, clock=FakeClock())
        for i in range(40):
            _, task, _ = mgr.create(f'instruction {i} ' + 'x' * 400)
            mgr.record_result(task.task_id, entry(task.task_id, sequence=i))
        if damage == 'newer_schema':
            store._conn.execute('UPDATE schema_version SET version = 99')
            store._conn.commit()
        store.close()
        if damage == 'truncated':
            size = os.path.getsize(path)
            with open(path, 'r+b') as handle:
                handle.seek(100)
                handle.write(os.urandom(4096))
                handle.truncate(size // 2)
    original = open(path, 'rb').read()

    store = TaskStore(path)
    assert 'unreadable' in store.warning and path in store.warning
    moved = glob.glob(path + '.corrupt-*')
    assert len(moved) == 1 and moved[0] in store.warning
    assert open(moved[0], 'rb').read() == original
    mgr = TaskManager(store, clock=FakeClock())
    assert mgr.list() == []
    ok, task, _ = mgr.create('fresh start')
    assert ok
    store.close()
    reopened = TaskStore(path)
    assert reopened.warning == ''
    assert [t.task_id for t in reopened.load_tasks()] == [task.task_id]
    reopened.close()


def test_persistence_failure_keeps_manager_running(manager):
    _, task, _ = manager.create('go')
    manager._store.close()  # any later write fails
    assert manager.record_result(task.task_id, entry(task.task_id, 'forward'), frames=3) is False
    assert manager.get(task.task_id).frames == 3
    assert manager.stop()[0]


# ------------------------------------------------------------------ keyframe archive

def test_keyframe_archive_layout_and_cap(tmp_path):
    archive = KeyframeArchive(str(tmp_path / 'kf'), max_bytes=1000)
    path = archive.save('vln_1_abcdef', 7, b'\xff\xd8' + b'a' * 298)
    assert path == str(tmp_path / 'kf' / 'vln_1_abcdef' / '000007.jpg')
    assert open(path, 'rb').read()[:2] == b'\xff\xd8'
    archive.save('vln_1_abcdef', 8, b'b' * 300)
    archive.save('vln_2_abcdef', 1, b'c' * 300)
    assert archive.total_bytes == 900
    archive.save('vln_2_abcdef', 2, b'd' * 300)  # 1200 > 1000: the oldest goes
    assert archive.list('vln_1_abcdef') == [str(tmp_path / 'kf' / 'vln_1_abcdef' / '000008.jpg')]
    assert [os.path.basename(p) for p in archive.list('vln_2_abcdef')] == ['000001.jpg',
                                                                         '000002.jpg']
    assert archive.total_bytes == 900
    archive.save('vln_2_abcdef', 3, b'e' * 700)
    assert archive.list('vln_1_abcdef') == []
    assert not os.path.exists(tmp_path / 'kf' / 'vln_1_abcdef')  # empty dir removed
    assert archive.total_bytes <= 1000
    on_disk = sum(os.path.getsize(p) for p in glob.glob(str(tmp_path / 'kf' / '*' / '*')))
    assert on_disk == archive.total_bytes
    assert archive.list('unknown') == []


def test_keyframe_archive_overwrite_and_reopen_enforces_cap(tmp_path):
    directory = str(tmp_path / 'kf')
    archive = KeyframeArchive(directory, max_bytes=10_000)
    for seq in range(5):
        path = archive.save('task', seq, b'x' * 1000)
        os.utime(path, ns=(seq * 10**9, seq * 10**9))  # deterministic age order
    archive.save('task', 4, b'y' * 500)  # overwrite counts once
    assert archive.total_bytes == 4500
    with open(os.path.join(directory, 'task', '000009.jpg.tmp'), 'wb') as handle:
        handle.write(b'partial')
    smaller = KeyframeArchive(directory, max_bytes=2000)
    assert [os.path.basename(p) for p in smaller.list('task')] == ['000003.jpg', '000004.jpg']
    assert smaller.total_bytes == 1500
    assert not os.path.exists(os.path.join(directory, 'task', '000009.jpg.tmp'))


@pytest.mark.parametrize('task_id, sequence, size', [
    ('../escape', 1, 10), ('a/b', 1, 10), ('..', 1, 10), ('', 1, 10), ('ok', -1, 10),
    ('ok', 1, 5000),
])
def test_keyframe_archive_rejects_bad_input(tmp_path, task_id, sequence, size):
    archive = KeyframeArchive(str(tmp_path / 'kf'), max_bytes=1000)
    with pytest.raises(ValueError):
        archive.save(task_id, sequence, b'z' * size)
    assert os.listdir(tmp_path / 'kf') == []
    assert os.listdir(tmp_path) == ['kf']


# ------------------------------------------------------------------ concurrency

def test_thread_safety_at_most_one_active(tmp_path):
    store = TaskStore(str(tmp_path / 'tasks.db'), max_tasks=50, max_history=20)
    mgr = TaskManager(store, clock=FakeClock())
    violations = []

    def check(_record):
        actives = [t for t in mgr.list() if t.status == TaskStatus.ACTIVE]
        if len(actives) > 1:
            violations.append(actives)
    mgr.on_change = check
    errors = []

    def worker(seed):
        rng = random.Random(seed)
        try:
            for i in range(60):
                choice = rng.random()
                if choice < 0.25:
                    mgr.create(f'worker {seed} step {i}')
                elif choice < 0.35:
                    mgr.stop()
                else:
                    active = mgr.active
                    if active is not None:
                        action = rng.choice(['forward', 'stop', 'turn_left'])
                        mgr.record_result(active.task_id,
                                          entry(active.task_id, action, 0.9, sequence=i),
                                          frames=i)
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30.0)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == [] and violations == []
    tasks = mgr.list()
    assert sum(t.status == TaskStatus.ACTIVE for t in tasks) <= 1
    stored = store.load_tasks()
    assert [(t.task_id, t.status, t.inferences) for t in stored] == \
        [(t.task_id, t.status, t.inferences) for t in tasks]
    for task in tasks:
        assert len(store.history(task.task_id)) == min(task.inferences, 20)
    store.close()


# ------------------------------------------------------------------ property test

class TaskManagerMachine(RuleBasedStateMachine):
    """Random operation sequences against a simple model of the manager."""

    def __init__(self):
        super().__init__()
        self.mgr = TaskManager(TaskStore(max_tasks=6, max_history=4), clock=FakeClock(),
                               completion_count=2)
        self.streak = 0
        self.known = []

    @rule(text=st.text(max_size=12))
    def create(self, text):
        previous = self.mgr.active
        ok, task, message = self.mgr.create(text)
        assert ok == bool(text.strip())
        if ok:
            self.known.append(task.task_id)
            self.streak = 0
            assert self.mgr.active.task_id == task.task_id
            if previous is not None:
                assert self.mgr.get(previous.task_id).status == TaskStatus.STOPPED
        else:
            assert message == 'instruction is empty'
            assert self.mgr.active == previous

    @rule(pick=st.integers(0, 20))
    def stop(self, pick):
        target = self.known[pick % len(self.known)] if self.known and pick else ''
        before = self.mgr.get(target) if target else self.mgr.active
        ok, _ = self.mgr.stop(target)
        assert ok == (before is not None and before.status == TaskStatus.ACTIVE)
        if ok:
            self.streak = 0
        assert self.mgr.active is None or not ok

    @rule(action=st.sampled_from(['stop', 'forward']), confidence=st.floats(0.0, 1.0))
    def result(self, action, confidence):
        active = self.mgr.active
        if active is None:
            return
        completed = self.mgr.record_result(active.task_id, entry(active.task_id, action,
                                                                 confidence))
        self.streak = self.streak + 1 if action == 'stop' and confidence >= 0.7 else 0
        assert completed == (self.streak >= 2)
        if completed:
            self.streak = 0
            assert self.mgr.get(active.task_id).status == TaskStatus.COMPLETED
        assert self.mgr.get(active.task_id).inferences == active.inferences + 1

    @invariant()
    def at_most_one_active(self):
        tasks = self.mgr.list()
        actives = [t.task_id for t in tasks if t.status == TaskStatus.ACTIVE]
        assert len(actives) <= 1
        assert actives == ([self.mgr.active.task_id] if self.mgr.active else [])
        assert len(tasks) <= 6
        assert [t.created for t in tasks] == sorted((t.created for t in tasks), reverse=True)


TaskManagerMachine.TestCase.settings = settings(
    max_examples=max(1, FUZZ_EXAMPLES // 3), stateful_step_count=20, deadline=None,
    derandomize=True, suppress_health_check=[HealthCheck.too_slow])
test_task_manager_state_machine = TaskManagerMachine.TestCase
