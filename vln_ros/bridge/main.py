"""``ros2 run vln_ros vln_bridge``: the bridge node, its executor thread and uvicorn.

The rclpy executor spins in its own thread; uvicorn runs the FastAPI app in the main thread
(where signal handlers live). Once the socket accepts connections the node logs
``vln bridge listening on http://HOST:PORT`` (tests read the port from it). SIGINT and
SIGTERM stop uvicorn gracefully, then the executor, the node and rclpy.
"""
from __future__ import annotations

import asyncio
import signal
import socket
import threading

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.signals import SignalHandlerOptions
import uvicorn

from vln_ros.bridge.app import create_app
from vln_ros.tools.net import bind_socket, url_of


async def _serve(server: uvicorn.Server, sock: socket.socket, announce) -> None:
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if server.started:
        announce()
    await task


def main(args=None) -> None:
    """Run the bridge until SIGINT/SIGTERM."""
    from vln_ros.bridge.ros_side import BridgeNode

    # Our own signal handling: uvicorn drains connections first, then rclpy shuts down.
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    executor = None
    spinning = threading.Event()
    spinner = None
    sock = None
    try:
        node = BridgeNode()
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
        sock = bind_socket(node.host, node.port)
        settings = node.settings
        server = uvicorn.Server(uvicorn.Config(
            create_app(node, settings), log_level='warning', access_log=False,
            ws_max_size=settings.max_body_bytes, ws_ping_interval=20.0,
            timeout_graceful_shutdown=2, lifespan='on'))

        def request_exit(_signum, _frame) -> None:
            server.should_exit = True

        # uvicorn re-raises the signal it caught after its shutdown; these handlers absorb
        # it, so the node is destroyed cleanly below instead of the process dying mid-way.
        signal.signal(signal.SIGINT, request_exit)
        signal.signal(signal.SIGTERM, request_exit)
        url = url_of(sock)
        asyncio.run(_serve(server, sock, lambda: node.get_logger().info(
            f'vln bridge listening on {url}')))
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


if __name__ == '__main__':
    main()
