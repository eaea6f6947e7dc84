"""Tests of the non-blocking inference scheduler with fake async jobs."""

import asyncio
import threading
import time

import pytest

from vln_ros.core.inference_scheduler import InferenceScheduler, Job


def wait_for(predicate, timeout=3.0):
    """Poll ``predicate`` until it is true or the deadline passes; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.002)
    return predicate()


class Recorder:
    """A fake model call: each job waits until released (or its delay ends)."""

    def __init__(self, delay=None):
        self.delay = delay
        self.started = []
        self.cancelled = []
        self.done = []  # (sequence, result, error) from on_done
        self.done_threads = set()
        self.release = {}  # sequence -> asyncio.Event
        self.loop = None

    async def run(self, job):
        self.loop = asyncio.get_running_loop()
        self.started.append(job.sequence)
        event = self.release.setdefault(job.sequence, asyncio.Event())
        try:
            if self.delay is not None:
                await asyncio.sleep(self.delay)
            else:
                await event.wait()
        except asyncio.CancelledError:
            self.cancelled.append(job.sequence)
            raise
        if job.payload == 'boom':
            raise RuntimeError('model failed')
        return f'result {job.sequence}'

    def on_done(self, job, result, error):
        self.done_threads.add(threading.current_thread().name)
        self.done.append((job.sequence, result, error))

    def finish(self, sequence):
        """Let job ``sequence`` complete (thread-safe)."""
        wait_for(lambda: sequence in self.release)
        self.loop.call_soon_threadsafe(self.release[sequence].set)


@pytest.fixture
def make():
    schedulers = []

    def factory(recorder, max_inflight=1, task='t1'):
        sched = InferenceScheduler(recorder.run, recorder.on_done, max_inflight=max_inflight)
        sched.start()
        sched.set_active_task(task)
        schedulers.append(sched)
        return sched
    yield factory
    for sched in schedulers:
        sched.stop()


def job(seq, task='t1', payload=None):
    return Job(task_id=task, sequence=seq, stamp=float(seq), payload=payload)


def test_submit_never_blocks_while_a_job_runs(make):
    rec = Recorder()
    sched = make(rec)
    assert sched.submit(job(1))
    assert wait_for(lambda: rec.started == [1])
    worst = 0.0
    for seq in range(2, 200):
        start = time.perf_counter()
        assert sched.submit(job(seq))
        worst = max(worst, time.perf_counter() - start)
    assert worst < 0.005
    assert sched.stats()['inflight'] == 1 and sched.stats()['queued'] == 1


def test_result_is_delivered_on_the_loop_thread(make):
    rec = Recorder(delay=0.01)
    sched = make(rec)
    sched.submit(job(1))
    assert wait_for(lambda: rec.done)
    assert rec.done == [(1, 'result 1', None)]
    assert rec.done_threads == {'vln-inference'}
    stats = sched.stats()
    assert (stats['submitted'], stats['started'], stats['completed']) == (1, 1, 1)
    assert (stats['inflight'], stats['queued']) == (0, 0)


def test_newest_job_replaces_the_queued_one(make):
    rec = Recorder()
    sched = make(rec)
    sched.submit(job(1))
    assert wait_for(lambda: rec.started == [1])
    for seq in (2, 3, 4):
        sched.submit(job(seq))
    assert sched.stats()['dropped'] == 2
    rec.finish(1)
    assert wait_for(lambda: rec.started == [1, 4])
    rec.finish(4)
    assert wait_for(lambda: len(rec.done) == 2)
    assert [d[0] for d in rec.done] == [1, 4]
    stats = sched.stats()
    assert (stats['submitted'], stats['started'], stats['completed'], stats['dropped']) == (
        4, 2, 2, 2)


def test_refresh_swaps_only_a_waiting_job_of_the_same_task(make):
    rec = Recorder()
    sched = make(rec)
    assert not sched.refresh_queued(job(9))  # nothing waits
    sched.submit(job(1))
    assert wait_for(lambda: rec.started == [1])
    assert not sched.refresh_queued(job(9))  # one runs, none waits
    sched.submit(job(2))
    assert sched.refresh_queued(job(3))
    assert not sched.refresh_queued(Job('other', 4, 4.0, None))
    rec.finish(1)
    assert wait_for(lambda: rec.started == [1, 3])  # the refreshed job ran, not 2
    stats = sched.stats()
    assert (stats['refreshed'], stats['dropped']) == (1, 0)


def test_two_jobs_in_flight(make):
    rec = Recorder()
    sched = make(rec, max_inflight=2)
    for seq in (1, 2, 3, 4):
        sched.submit(job(seq))
    assert wait_for(lambda: sorted(rec.started) == [1, 2])
    stats = sched.stats()
    assert (stats['inflight'], stats['queued'], stats['dropped']) == (2, 1, 1)
    rec.finish(2)
    assert wait_for(lambda: sorted(rec.started) == [1, 2, 4])
    assert sched.stats()['inflight'] == 2
    rec.finish(1)
    rec.finish(4)
    assert wait_for(lambda: len(rec.done) == 3)
    assert sched.stats()['inflight'] == 0


def test_failure_is_reported_to_on_done(make):
    rec = Recorder(delay=0.0)
    sched = make(rec)
    sched.submit(job(1, payload='boom'))
    assert wait_for(lambda: rec.done)
    (seq, result, error), = rec.done
    assert seq == 1 and result is None and isinstance(error, RuntimeError)
    assert sched.stats()['failed'] == 1


def test_task_switch_cancels_running_and_queued_jobs(make):
    rec = Recorder()
    sched = make(rec)
    sched.submit(job(1))
    assert wait_for(lambda: rec.started == [1])
    sched.submit(job(2))  # queued
    sched.set_active_task('t2')
    assert wait_for(lambda: rec.cancelled == [1])  # the coroutine saw CancelledError
    assert wait_for(lambda: sched.stats()['cancelled'] == 2)
    assert rec.started == [1] and rec.done == []
    assert not sched.submit(job(3, task='t1'))  # old task refused
    assert sched.submit(job(4, task='t2'))
    assert wait_for(lambda: 4 in rec.started)
    rec.finish(4)
    assert wait_for(lambda: rec.done)
    assert [d[0] for d in rec.done] == [4]
    stats = sched.stats()
    assert stats['refused'] == 1 and stats['completed'] == 1


def test_no_result_of_the_old_task_after_the_switch():
    rec = Recorder(delay=0.0)
    switched = threading.Event()
    late, delivered = [], []

    def on_done(job_, result, error):
        delivered.append(job_.sequence)
        if switched.is_set() and job_.task_id == 't1':
            late.append(job_.sequence)
    sched = InferenceScheduler(rec.run, on_done, max_inflight=2)
    sched.start()
    try:
        sched.set_active_task('t1')
        for seq in range(300):
            sched.submit(job(seq, task='t1' if seq <= 150 else 't2'))
            if seq == 150:
                sched.set_active_task('t2')
                switched.set()
        assert wait_for(lambda: sched.stats()['inflight'] == 0 and not sched.stats()['queued'])
        assert late == []
        assert delivered and any(seq > 150 for seq in delivered)
    finally:
        sched.stop()


def test_submit_is_refused_without_an_active_task_or_when_stopped():
    rec = Recorder(delay=0.0)
    sched = InferenceScheduler(rec.run, rec.on_done)
    assert not sched.submit(job(1))  # not started
    sched.start()
    assert not sched.submit(job(1))  # no active task
    sched.set_active_task('t1')
    assert sched.submit(job(2))
    assert wait_for(lambda: rec.done)
    sched.stop()
    assert not sched.submit(job(3))
    assert sched.stats()['refused'] == 3


def test_stop_cancels_jobs_and_leaves_no_thread():
    rec = Recorder()
    before = {t.name for t in threading.enumerate()}
    sched = InferenceScheduler(rec.run, rec.on_done)
    sched.start()
    sched.set_active_task('t1')
    sched.submit(job(1))
    sched.submit(job(2))
    assert wait_for(lambda: rec.started == [1])
    start = time.monotonic()
    sched.stop(timeout=2.0)
    assert time.monotonic() - start < 1.0
    assert rec.cancelled == [1] and rec.done == []
    assert sched.stats()['cancelled'] == 2
    assert not any(t.name == 'vln-inference' for t in threading.enumerate())
    assert {t.name for t in threading.enumerate()} <= before | {'MainThread'}
    sched.stop()  # idempotent


def test_restart_after_stop():
    rec = Recorder(delay=0.0)
    sched = InferenceScheduler(rec.run, rec.on_done)
    for round_ in range(2):
        sched.start()
        sched.set_active_task('t')
        assert sched.submit(job(round_, task='t'))
        assert wait_for(lambda n=round_: len(rec.done) == n + 1)
        sched.stop()


def test_on_done_exception_does_not_kill_the_loop():
    rec = Recorder(delay=0.0)
    calls = []

    def bad_on_done(job_, result, error):
        calls.append(job_.sequence)
        raise ValueError('bug in callback')
    sched = InferenceScheduler(rec.run, bad_on_done)
    sched.start()
    try:
        sched.set_active_task('t1')
        sched.submit(job(1))
        assert wait_for(lambda: calls == [1])
        sched.submit(job(2))
        assert wait_for(lambda: calls == [1, 2])
    finally:
        sched.stop()


def test_run_sync_runs_on_the_scheduler_loop(make):
    rec = Recorder()
    sched = make(rec)

    async def which_loop():
        return asyncio.get_running_loop()
    assert sched.run_sync(which_loop()) is sched.loop


def test_max_inflight_is_validated():
    with pytest.raises(ValueError):
        InferenceScheduler(Recorder().run, Recorder().on_done, max_inflight=0)


def test_a_hold_from_on_done_keeps_the_waiting_job_until_released(make):
    # Perception holds from on_done when the answer is a turn: the job that waited during
    # the request must not leave before the turn is driven, and must leave refreshed.
    rec = Recorder()
    holds = []

    def on_done(job, result, error):
        rec.on_done(job, result, error)
        if job.sequence == 1:
            sched.hold()
            holds.append(sched.held)
    sched = InferenceScheduler(rec.run, on_done)
    sched.start()
    try:
        sched.set_active_task('t1')
        sched.submit(job(1))
        assert wait_for(lambda: rec.started == [1])
        sched.submit(job(2))  # waits for job 1
        rec.finish(1)
        assert wait_for(lambda: rec.done)
        time.sleep(0.05)
        assert holds == [True] and rec.started == [1]  # held: job 2 did not start
        sched.submit(job(3))  # a new keyframe while held waits too, replacing job 2
        assert sched.refresh_queued(job(4))
        time.sleep(0.05)
        assert rec.started == [1] and sched.stats()['queued'] == 1
        sched.release()
        assert wait_for(lambda: rec.started == [1, 4])
        assert not sched.held and sched.stats()['held'] == 1
    finally:
        sched.stop()


def test_a_held_scheduler_starts_a_new_job_only_on_release(make):
    rec = Recorder()
    sched = make(rec)
    sched.hold()
    assert sched.submit(job(1))
    time.sleep(0.05)
    assert rec.started == []
    sched.release()
    assert wait_for(lambda: rec.started == [1])
    sched.release()  # releasing twice is harmless
    sched.submit(job(2))
    time.sleep(0.05)
    assert rec.started == [1]  # one in flight: job 2 waits as usual


def test_a_task_switch_ends_a_hold(make):
    rec = Recorder()
    sched = make(rec)
    sched.hold()
    sched.set_active_task('t2')
    assert not sched.held
    sched.submit(job(1, task='t2'))
    assert wait_for(lambda: rec.started == [1])
