"""SIGINT and SIGTERM for long-running executables: stop once, cleanly, exit status 0.

ROS-free, shared by the nodes, the bridge and the test model server.
"""
from __future__ import annotations

import contextlib
import signal
import threading


class _StopRequest:
    """Set by SIGINT/SIGTERM; the spin loop checks it. Later signals change nothing.

    A terminal's Ctrl-C reaches every process of the group, and launch then sends its own
    SIGINT: raising KeyboardInterrupt on each would cut the planner's final zero burst short
    and print tracebacks.
    """

    def __init__(self) -> None:
        self.event = threading.Event()

    def __call__(self, signum, frame) -> None:
        self.event.set()


def install_stop_handlers() -> threading.Event:
    """Route SIGINT and SIGTERM to an event (set once, then ignored); return it."""
    stop = _StopRequest()
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    return stop.event


def ignore_stop_signals() -> None:
    """Ignore SIGINT/SIGTERM from here on: the process is already on its way out.

    Python restores the default handlers while the interpreter finalises (threads joined,
    DDS torn down), and a second Ctrl-C landing then would kill the process with a signal
    status instead of 0. An ignored signal stays ignored through finalisation.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def interrupt_once() -> None:
    """SIGINT/SIGTERM raise KeyboardInterrupt once; later ones are ignored.

    For command-line tools whose main loop blocks (sleeps, HTTP calls): the first signal
    breaks out of it, and the cleanup after it (closing a bag, stopping a task) runs to the
    end instead of dying halfway with a traceback when launch or a terminal sends another.
    """
    def handler(signum, frame):
        ignore_stop_signals()
        raise KeyboardInterrupt
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


@contextlib.contextmanager
def interrupting_once():
    """interrupt_once() for a block; the previous handlers come back after it."""
    previous = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    interrupt_once()
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])
