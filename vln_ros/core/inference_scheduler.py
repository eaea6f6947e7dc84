"""Run model requests on an asyncio loop in a thread, so ROS callbacks never wait for them.

At most ``max_inflight`` jobs run at once; one more may wait, and a newer job replaces
the waiting one (a stale keyframe is worth nothing once a newer one exists). Jobs belong
to a task: switching the active task cancels the old task's jobs, and once
``set_active_task`` has returned no ``on_done`` of another task is called.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
import concurrent.futures
from dataclasses import dataclass
import logging
import threading
from typing import Any

_LOG = logging.getLogger(__name__)


@dataclass
class Job:
    """One unit of work: ``payload`` is opaque to the scheduler."""

    task_id: str
    sequence: int
    stamp: float
    payload: object


RunJob = Callable[[Job], Awaitable[object]]
OnDone = Callable[[Job, object | None, BaseException | None], None]


class InferenceScheduler:
    """Newest-wins job runner with task-scoped cancellation; ``submit`` never blocks.

    ``run_job`` coroutines run on the scheduler's own loop, so async clients used by
    them must be created and closed there (see ``run_sync``). ``on_done`` runs on the
    loop thread and must be quick (publish, no waiting): ``set_active_task`` waits for a
    delivery in progress.
    """

    def __init__(self, run_job: RunJob, on_done: OnDone, max_inflight: int = 1) -> None:
        if max_inflight < 1:
            raise ValueError(f'max_inflight must be >= 1, got {max_inflight}')
        self._run_job = run_job
        self._on_done = on_done
        self._max_inflight = int(max_inflight)
        # _lock guards the bookkeeping below; _done_lock is held while on_done runs so
        # set_active_task can wait for a result being delivered (re-entrant: on_done may
        # call back into the scheduler from the loop thread).
        self._lock = threading.Lock()
        self._done_lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._running: dict[int, tuple[Job, asyncio.Task | None]] = {}
        self._next_id = 0
        self._queued: Job | None = None
        self._active_task: str | None = None
        self._held = False
        self._counts = dict.fromkeys(
            ('submitted', 'refused', 'started', 'completed', 'failed', 'dropped', 'cancelled',
             'refreshed', 'held'), 0)

    # ------------------------------------------------------------------ lifecycle

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop jobs run on (None when stopped)."""
        return self._loop

    @property
    def active_task(self) -> str | None:
        """The task whose jobs are accepted."""
        return self._active_task

    def start(self) -> None:
        """Start the loop thread (no-op when already running)."""
        if self._thread is not None and self._thread.is_alive():
            return
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._thread = threading.Thread(target=run, name='vln-inference', daemon=True)
        self._loop = loop
        self._thread.start()
        ready.wait()

    def stop(self, timeout: float = 2.0) -> None:
        """Cancel every job, stop the loop and join its thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None:
                return
            self._loop = None  # from here on submit() refuses
            if self._queued is not None:
                self._queued = None
                self._counts['cancelled'] += 1
        if thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(self._shutdown(timeout), loop)
            try:
                future.result(timeout + 1.0)
            except (concurrent.futures.TimeoutError, RuntimeError):
                _LOG.warning('inference jobs did not stop within %.1f s', timeout)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
        if thread.is_alive():
            _LOG.warning('inference thread did not stop within %.1f s', timeout)
        else:
            loop.close()
        with self._lock:
            self._thread = None
            self._running.clear()

    async def _shutdown(self, timeout: float) -> None:
        with self._lock:
            tasks = [task for _, task in self._running.values() if task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    def run_sync(self, coro: Coroutine[Any, Any, Any], timeout: float | None = 5.0) -> Any:
        """Run ``coro`` on the scheduler's loop from another thread and return its result.

        For work that must happen on the loop the jobs use (e.g. closing an HTTP client).
        """
        loop = self._loop
        if loop is None or threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError('run_sync needs a running scheduler and another thread')
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    # ------------------------------------------------------------------ jobs

    def set_active_task(self, task_id: str | None) -> None:
        """Accept jobs of ``task_id`` only; cancel the running and queued jobs of others."""
        with self._done_lock, self._lock:
            self._active_task = task_id
            self._held = False  # a hold belongs to the old task's last answer
            if self._queued is not None and self._queued.task_id != task_id:
                self._queued = None
                self._counts['cancelled'] += 1
            stale = any(job.task_id != task_id for job, _ in self._running.values())
            loop = self._loop
        if stale and loop is not None:
            loop.call_soon_threadsafe(self._cancel_stale)

    def submit(self, job: Job) -> bool:
        """Start or queue ``job``; returns at once. False when the job's task is not active."""
        with self._lock:
            loop = self._loop
            if loop is None or job.task_id != self._active_task or loop.is_closed():
                self._counts['refused'] += 1
                return False
            self._counts['submitted'] += 1
            if self._held or len(self._running) >= self._max_inflight:
                if self._queued is not None:
                    self._counts['dropped'] += 1
                self._queued = job
                return True
            job_id = self._reserve(job)
        loop.call_soon_threadsafe(self._start, job_id)
        return True

    def hold(self) -> None:
        """Start no job until ``release`` (or a task switch); running jobs go on."""
        with self._lock:
            if not self._held:
                self._held = True
                self._counts['held'] += 1

    def release(self) -> None:
        """End a hold: the waiting job, if any, starts when a slot is free."""
        with self._lock:
            if not self._held:
                return
            self._held = False
            loop = self._loop
            next_id = self._take_queued() \
                if loop is not None and len(self._running) < self._max_inflight else None
        if next_id is not None:
            loop.call_soon_threadsafe(self._start, next_id)

    @property
    def held(self) -> bool:
        """True while a hold keeps the waiting job from starting."""
        return self._held

    def refresh_queued(self, job: Job) -> bool:
        """Swap the waiting job for a newer one of the same task; False when none waits.

        The waiting keyframe was chosen up to a whole model latency ago; sending the newest
        camera frame instead makes the answer refer to where the robot is when the request
        leaves, not to where it was seconds earlier.
        """
        with self._lock:
            if self._queued is None or self._queued.task_id != job.task_id:
                return False
            self._queued = job
            self._counts['refreshed'] += 1
            return True

    def stats(self) -> dict:
        """Return counters and the current inflight/queued numbers."""
        with self._lock:
            out = dict(self._counts)
            out['inflight'] = len(self._running)
            out['queued'] = 1 if self._queued is not None else 0
        return out

    def _reserve(self, job: Job) -> int:
        """Take a running slot for ``job`` (caller holds the lock)."""
        job_id = self._next_id
        self._next_id += 1
        self._running[job_id] = (job, None)
        return job_id

    def _start(self, job_id: int) -> None:
        """Create the asyncio task of a reserved job (loop thread)."""
        with self._lock:
            entry = self._running.get(job_id)
            if entry is None:
                return
            job = entry[0]
            if job.task_id != self._active_task or self._loop is None:
                # The task changed (or stop() began) between submit and now.
                del self._running[job_id]
                self._counts['cancelled'] += 1
                next_id = self._take_queued()
            else:
                task = asyncio.ensure_future(self._run(job_id, job))
                self._running[job_id] = (job, task)
                self._counts['started'] += 1
                return
        if next_id is not None:
            self._start(next_id)

    def _take_queued(self) -> int | None:
        """Move the queued job into a running slot, unless held (caller holds the lock)."""
        if self._held:
            return None
        job, self._queued = self._queued, None
        return self._reserve(job) if job is not None else None

    def _cancel_stale(self) -> None:
        with self._lock:
            tasks = [task for job, task in self._running.values()
                     if task is not None and job.task_id != self._active_task]
        for task in tasks:
            task.cancel()

    async def _run(self, job_id: int, job: Job) -> None:
        result: object | None = None
        error: BaseException | None = None
        cancelled = False
        try:
            result = await self._run_job(job)
        except asyncio.CancelledError:
            cancelled = True
        except Exception as exc:  # noqa: BLE001 - handed to on_done
            error = exc
        # Holding _done_lock from the check to the end of on_done is what lets
        # set_active_task promise that no result of the old task follows it.
        with self._done_lock:
            with self._lock:
                self._running.pop(job_id, None)
                if not cancelled and job.task_id != self._active_task:
                    cancelled = True  # finished just as the task switched: never deliver
                self._counts['cancelled' if cancelled else
                             'failed' if error is not None else 'completed'] += 1
            # on_done first: it may hold the next job (the answer is about to move the robot).
            if not cancelled:
                try:
                    self._on_done(job, result, error)
                except Exception:  # noqa: BLE001 - a callback bug must not kill the loop
                    _LOG.exception('on_done failed for job %s/%d', job.task_id, job.sequence)
            with self._lock:
                next_id = self._take_queued()
            if next_id is not None:
                self._start(next_id)
