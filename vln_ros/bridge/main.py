"""``ros2 run vln_ros vln_bridge``: the bridge node, its executor thread and uvicorn.

The rclpy executor spins in its own thread; uvicorn runs the FastAPI app in the main thread
(where signal handlers live). Once the socket accepts connections the node logs
``vln bridge listening on http://HOST:PORT`` (tests read the port from it). The first SIGINT
or SIGTERM stops uvicorn gracefully, then the executor, the node and rclpy, with exit status 0
and no traceback; later ones (a terminal's Ctrl-C reaches the whole process group, then launch
sends its own) change nothing. A bridge that cannot start prints one error line and exits 1.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import threading

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.signals import SignalHandlerOptions
import uvicorn

from vln_ros.bridge.app import create_app
from vln_ros.bridge.exposure import exposure_check
from vln_ros.tools.net import bind_socket, url_of
from vln_ros.tools.stop_signals import ignore_stop_signals


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: main() owns SIGINT and SIGTERM.

    uvicorn turns a second SIGINT into a forced exit that skips the app's lifespan shutdown
    and cancels requests mid-way (CancelledError tracebacks), then re-raises the signal.
    """

    @contextlib.contextmanager
    def capture_signals(self):
        yield


class _CancelledByShutdown(logging.Filter):
    """A request still running when the graceful shutdown times out is cancelled by uvicorn.

    That is the intended end of a long request (a sync frame, a proxied stream), not a bug:
    one warning line instead of uvicorn's "Exception in ASGI application" traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, asyncio.CancelledError):
            record.msg, record.args, record.exc_info, record.exc_text = (
                'a request still running at shutdown was cancelled', (), None, None)
            record.levelno, record.levelname = logging.WARNING, 'WARNING'
        return True


async def _serve(server: uvicorn.Server, sock: socket.socket, announce) -> None:
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if server.started:
        announce()
    await task


class _CannotStart(Exception):
    """The bridge cannot start: its message is the one line printed."""


def _fail(message: str) -> None:
    print(f'[ERROR] cannot start: {message}', file=sys.stderr, flush=True)


def main(args=None) -> None:
    """Run the bridge until SIGINT/SIGTERM."""
    from vln_ros.bridge.ros_side import BridgeNode

    stop = threading.Event()
    server: uvicorn.Server | None = None

    def request_exit(_signum, _frame) -> None:
        stop.set()
        if server is not None:
            server.should_exit = True  # graceful, however many signals come

    # Installed first: a signal during start-up must not raise KeyboardInterrupt in rclpy.
    signal.signal(signal.SIGINT, request_exit)
    signal.signal(signal.SIGTERM, request_exit)
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except RuntimeError as exc:  # rcl refuses the arguments (a bad remap, say)
        _fail(str(exc))
        sys.exit(1)
    node = None
    executor = None
    spinning = threading.Event()
    spinner = None
    sock = None
    failed = ''
    try:
        try:
            node = BridgeNode()
        except ValueError as exc:
            raise _CannotStart(str(exc)) from None
        except ParameterException as exc:
            raise _CannotStart(f'{type(exc).__name__}: {exc}') from None
        error, warning = exposure_check(node.host, node.settings.api_key, node.allow_insecure)
        if error:
            raise _CannotStart(error)
        if warning:
            node.get_logger().warn(warning)
        executor = MultiThreadedExecutor(num_threads=2)
        executor.add_node(node)

        def spin() -> None:
            try:
                while spinning.is_set() and rclpy.ok():
                    executor.spin_once(timeout_sec=0.1)
            except ExternalShutdownException:
                pass

        spinning.set()
        spinner = threading.Thread(target=spin, name='vln-bridge-executor', daemon=True)
        spinner.start()
        try:
            sock = bind_socket(node.host, node.port)
        except OSError as exc:
            raise _CannotStart(f'cannot listen on {node.host}:{node.port}: '
                               f'{exc.strerror or exc}') from None
        settings = node.settings
        logging.getLogger('uvicorn.error').addFilter(_CancelledByShutdown())
        server = _Server(uvicorn.Config(
            create_app(node, settings), log_level='warning', access_log=False,
            ws_max_size=settings.max_body_bytes, ws_ping_interval=20.0,
            timeout_graceful_shutdown=2, lifespan='on'))
        if stop.is_set():
            return
        url = url_of(sock)
        asyncio.run(_serve(server, sock, lambda: node.get_logger().info(
            f'vln bridge listening on {url}')))
    except _CannotStart as exc:
        failed = str(exc)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        spinning.clear()
        if spinner is not None:
            spinner.join(timeout=2.0)
        if sock is not None:
            sock.close()
        if executor is not None:
            executor.shutdown(timeout_sec=2.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        # Python restores default handlers while finalising: a late Ctrl-C must not turn
        # exit status 0 into death by signal.
        ignore_stop_signals()
    if failed:
        _fail(failed)
        sys.exit(1)


if __name__ == '__main__':
    main()
