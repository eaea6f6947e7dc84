"""Small rclpy helpers shared by the nodes: QoS profiles, time, parameters, shutdown."""
from __future__ import annotations

import sys
from typing import Any, Callable

import rclpy
from rclpy.exceptions import NameValidationException, ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

from vln_ros.nodes.parameters import declare  # noqa: F401 - used by the bridge and sim
from vln_ros.tools.stop_signals import ignore_stop_signals, install_stop_handlers

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


# Results and paths: reliable, small queue.
RELIABLE_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# cmd_vel: reliable, depth 1. A queued command is older than the one behind it, and a stale
# command is worse than none.
CMD_VEL_QOS = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                         reliability=ReliabilityPolicy.RELIABLE)
# Odometry in: best effort matches reliable and best-effort publishers alike (many robot
# drivers publish best effort, and a reliable subscription never matches them).
ODOM_QOS = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST,
                      reliability=ReliabilityPolicy.BEST_EFFORT)
# The planner's e-stop state (std_msgs/Bool, latched): what the bridge and the UI show.
ESTOP_STATE_TOPIC = 'vln/estop_state'
# The planner's command state (std_msgs/String, latched), "<task id>|<reason>" on each change:
# the task node puts it into TaskState.command, perception tells the model about 'blocked'.
COMMAND_STATE_TOPIC = 'vln/command_state'


def command_state(task_id: str | None, reason: str) -> str:
    """The command state text: "<task id, empty for none>|<reason>"."""
    return f'{task_id or ""}|{reason}'


def parse_command_state(text: str) -> tuple[str, str]:
    """(task id, reason) of a command state text."""
    task_id, _, reason = text.partition('|')
    return task_id, reason


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


def run_node(factory: Callable[[], Any], args=None, multithreaded: bool = False,
             on_shutdown: Callable[[Any], None] | None = None) -> None:
    """Init, spin until SIGINT/SIGTERM or external shutdown, run on_shutdown, destroy, shut down.

    A node that cannot start (a parameter out of range, say) prints one error line and
    exits with status 1; a stop by signal exits with 0 and no traceback.
    """
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    # Our own signal handling: the context must still be valid in on_shutdown (the planner
    # publishes a final zero velocity there).
    stop = install_stop_handlers()
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except RuntimeError as exc:  # rcl refuses the arguments (a bad remap, say)
        print(f'[ERROR] cannot start: {exc}', file=sys.stderr, flush=True)
        sys.exit(1)
    node = None
    failed = None
    executor = MultiThreadedExecutor(num_threads=4) if multithreaded \
        else SingleThreadedExecutor()
    try:
        try:
            node = factory()
        except (ValueError, TypeError, OSError, RuntimeError, ParameterException,
                NameValidationException) as exc:
            failed = f'{type(exc).__name__}: {exc}' if not isinstance(exc, ValueError) \
                else str(exc)
        if node is not None:
            executor.add_node(node)
            # Bounded waits: the signal handler runs between them.
            while rclpy.ok() and not stop.is_set():
                executor.spin_once(timeout_sec=0.1)
    except ExternalShutdownException:
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
        ignore_stop_signals()
    if failed is not None:
        print(f'[ERROR] cannot start: {failed}', file=sys.stderr, flush=True)
        sys.exit(1)
