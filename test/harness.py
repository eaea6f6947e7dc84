"""Test harness: nodes as real processes, a test node with deadline-based waits, cleanup.

Integration tests start the project's nodes exactly as `ros2 run` would (a Python process per
node, with a params file, remappings and parameter overrides) and talk to them over real DDS
topics, services and actions. Process management lives in vln_ros.tools.processes (the demo
and the benchmarks use it too).
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from vln_ros.tools.processes import ROOT, ManagedProcess, ProcessGroup, wait_until

__all__ = ['ManagedProcess', 'ProcessGroup', 'ROOT', 'RosTestNode', 'wait_until']


class RosTestNode:
    """An rclpy node in the test process, spun on demand with deadline-based waits."""

    def __init__(self, name: str = 'vln_test') -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self._rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._lock = threading.Lock()

    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self.executor.spin_once(timeout_sec=min(remaining, 0.05))

    def wait_until(self, predicate: Callable[[], object], timeout: float) -> object:
        return wait_until(predicate, timeout, period=0.02, spin=self.spin_for)

    def collect(self, msg_type, topic: str, qos=10) -> list:
        """Subscribe and return the list the messages are appended to (as they arrive)."""
        box: list = []
        self.node.create_subscription(msg_type, topic, box.append, qos)
        return box

    def task_acks(self) -> dict[str, str]:
        """Return a dict, kept current, of follower node -> task id it follows ('' = none)."""
        from std_msgs.msg import String

        from vln_ros.nodes.ros_common import TASK_ACK_QOS, TASK_ACK_TOPIC, parse_task_ack

        acks: dict[str, str] = {}

        def on_ack(msg):
            node, task_id = parse_task_ack(msg.data)
            acks[node] = task_id
        self.node.create_subscription(String, TASK_ACK_TOPIC, on_ack, TASK_ACK_QOS)
        return acks

    def call(self, client, request, timeout: float = 10.0):
        """Call a service, waiting for it first; return the response or raise TimeoutError."""
        self.wait_until(lambda: client.service_is_ready(), timeout)
        future = client.call_async(request)
        self.wait_until(future.done, timeout)
        return future.result()

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self._rclpy.try_shutdown(context=self.context)
