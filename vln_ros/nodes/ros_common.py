"""Small rclpy helpers shared by the nodes: QoS profiles, time, parameters, shutdown."""
from __future__ import annotations

import signal
from typing import Any, Callable

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

# Cameras: best effort, shallow; a stale frame is worthless.
SENSOR_QOS = qos_profile_sensor_data
# Latched state (vln/task_state): late joiners get the latest value at once.
LATCHED_QOS = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                         reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
# Nodes that follow the active task acknowledge each change here ("<node>|<task id>"); the task
# node answers a switch only once they have, so nothing of the old task follows the answer.
# Latched too: a task node (or a test) that joins late learns what each follower follows now.
# Deeper than LATCHED_QOS: a keyless topic has one history, so a reader of depth 1 would keep
# only one of the followers' latched acks.
TASK_ACK_TOPIC = 'vln/task_ack'
TASK_ACK_QOS = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST,
                          reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)


def task_ack(node_name: str, task_id: str | None) -> str:
    """The ack text: "<fully qualified node>|<task id it follows, empty for none>"."""
    return f'{node_name}|{task_id or ""}'


def parse_task_ack(text: str) -> tuple[str, str]:
    """(node, task id) of an ack text; the task id is '' when the node follows none."""
    node, _, task_id = text.partition('|')
    return node, task_id


# Results and commands: reliable, small queue.
RELIABLE_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def stamp_to_sec(stamp) -> float:
    """builtin_interfaces/Time to float seconds."""
    return stamp.sec + stamp.nanosec * 1e-9


def sec_to_stamp(t: float):
    """Float seconds to builtin_interfaces/Time."""
    from builtin_interfaces.msg import Time

    sec = int(t // 1)
    nanosec = int(round((t - sec) * 1e9))
    if nanosec >= 1_000_000_000:
        sec, nanosec = sec + 1, nanosec - 1_000_000_000
    return Time(sec=sec, nanosec=nanosec)


def declare(node, name: str, default: Any, description: str,
            lo: float | None = None, hi: float | None = None, read_only: bool = False) -> Any:
    """Declare a parameter with a descriptor (and range), return its value."""
    desc = ParameterDescriptor(description=description, read_only=read_only)
    if lo is not None and hi is not None:
        if isinstance(default, bool):
            pass
        elif isinstance(default, int):
            desc.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=0)]
        elif isinstance(default, float):
            desc.floating_point_range = [FloatingPointRange(from_value=float(lo),
                                                            to_value=float(hi), step=0.0)]
    return node.declare_parameter(name, default, desc).value


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def run_node(factory: Callable[[], Any], args=None, multithreaded: bool = False,
             on_shutdown: Callable[[Any], None] | None = None) -> None:
    """Init, spin until Ctrl-C or external shutdown, run on_shutdown, destroy, shut down."""
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    # We handle SIGINT/SIGTERM ourselves so that the context is still valid in on_shutdown
    # (the planner must be able to publish a final zero velocity).
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    node = None
    executor = MultiThreadedExecutor(num_threads=4) if multithreaded \
        else SingleThreadedExecutor()
    try:
        node = factory()
        executor.add_node(node)
        # Bounded waits give Python a chance to raise KeyboardInterrupt promptly: with our
        # own signal handling nothing else wakes the executor's wait set.
        while rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None and on_shutdown is not None:
            try:
                on_shutdown(node)
            except Exception as exc:  # noqa: BLE001 - shutdown must go on
                node.get_logger().error(f'shutdown hook failed: {exc}')
        executor.shutdown(timeout_sec=2.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
