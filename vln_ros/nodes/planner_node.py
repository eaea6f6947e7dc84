"""Planner node: cmd_vel at rate_hz from the latest model result, never from stale data.

A thin adapter around vln_ros.core.planner.Planner: odometry, results, task state and the
e-stop go in; cmd_vel (Twist or TwistStamped), vln/path, vln/markers and the latched
vln/estop_state come out. While no task is active it falls silent on cmd_vel after a short
burst of zeros, so teleop (or twist_mux) can drive the base.
"""
from __future__ import annotations

import os
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Twist, TwistStamped
from nav_msgs.msg import Odometry, Path
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from std_msgs.msg import Bool, String
from std_srvs.srv import SetBool
from visualization_msgs.msg import MarkerArray
from vln_ros_interfaces.msg import NavigationResult, TaskState

from vln_ros.core import estop_store
from vln_ros.core.geometry import Pose2D, yaw_from_quaternion
from vln_ros.core.planner import Planner, PlannerResult
from vln_ros.core.state_dir import state_dir
from vln_ros.core.statuses import result_name
from vln_ros.nodes import collision_params
from vln_ros.nodes.obstacle_inputs import ObstacleInputs
from vln_ros.nodes.parameters import LiveParameters, declare_all
from vln_ros.nodes.perception_params import CAMERA_SPECS, camera_mount
from vln_ros.nodes.planner_markers import command_markers, guard_markers, path_msg
from vln_ros.nodes.planner_params import SPECS, planner_config
from vln_ros.nodes.ros_common import (
    CMD_VEL_QOS,
    COMMAND_STATE_TOPIC,
    ESTOP_STATE_TOPIC,
    LATCHED_QOS,
    ODOM_QOS,
    RELIABLE_QOS,
    TASK_ACK_QOS,
    TASK_ACK_TOPIC,
    command_state,
    run_node,
    sec_to_stamp,
    stamp_to_sec,
    task_ack,
)

# Zeros sent after the last task ends (or an e-stop change while idle) before falling
# silent: enough for a base that missed one, short enough not to fight teleop.
IDLE_ZERO_BURST_S = 0.5
# How often the "no odometry" warning repeats while it holds.
INPUT_WARN_PERIOD_S = 10.0
# The camera mounting (shared with the perception node through /** in config/vln.yaml) places
# depth image points; TF is not read here.
MOUNT_SPECS = tuple(s for s in CAMERA_SPECS if s.name != 'camera.use_tf')
GUARD_SPECS = collision_params.SPECS + MOUNT_SPECS


class PlannerNode(Node):
    """Tracks the model's waypoints in the odom frame at a fixed rate, within limits."""

    def __init__(self) -> None:
        super().__init__('planner_node')
        values = declare_all(self, SPECS)
        self._config = planner_config(values)
        self._sources = collision_params.declare_sources(self)
        values.update(declare_all(self, GUARD_SPECS))
        guard = collision_params.guard_output(self._sources, values)
        self._stamped = values['use_stamped_cmd_vel']
        self._odom_frame = values['odom_frame']
        self._base_frame = values['base_frame']
        self._idle_zero = values['publish_idle_zero']
        self._input_warn_after = values['input_warn_after']
        self._estop_path = values['estop_path'] or os.path.join(
            state_dir(self.get_namespace()), 'estop.json')
        rate = self._config.rate_hz

        self._lock = threading.Lock()
        self._planner = Planner(self._config)
        self._planner.guard = guard
        persisted = estop_store.load(self._estop_path)
        self._estop = persisted.engaged
        self._planner.set_estop(self._estop)
        self._last_reason = 'no_result'
        self._ticks = 0
        self._last_tick = None
        self._tick_periods: list[float] = []
        self._results = 0
        self._last_unfollowed = ''
        self._idle_burst = int(round(IDLE_ZERO_BURST_S * rate))
        self._idle_sent = 0  # zeros sent since the robot last went idle
        self._odom_seen: float | None = None  # monotonic time of the last odometry
        self._started = time.monotonic()
        self._frames_warned = False

        io_group = MutuallyExclusiveCallbackGroup()
        cmd_type = TwistStamped if self._stamped else Twist
        self._cmd_pub = self.create_publisher(cmd_type, 'cmd_vel', CMD_VEL_QOS)
        self._path_pub = self.create_publisher(Path, 'vln/path', RELIABLE_QOS)
        self._marker_pub = self.create_publisher(MarkerArray, 'vln/markers', RELIABLE_QOS)
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._ack_pub = self.create_publisher(String, TASK_ACK_TOPIC, TASK_ACK_QOS)
        self._estop_pub = self.create_publisher(Bool, ESTOP_STATE_TOPIC, LATCHED_QOS)
        self._state_pub = self.create_publisher(String, COMMAND_STATE_TOPIC, LATCHED_QOS)
        self.create_subscription(NavigationResult, 'vln/result', self._on_result, RELIABLE_QOS,
                                 callback_group=io_group)
        self._odom_sub = self.create_subscription(Odometry, 'odom', self._on_odom, ODOM_QOS,
                                                  callback_group=io_group)
        self.create_subscription(TaskState, 'vln/task_state', self._on_task_state, LATCHED_QOS,
                                 callback_group=io_group)
        self.create_service(SetBool, 'vln/estop', self._on_estop, callback_group=io_group)
        self._obstacles = None
        if self._sources:
            self._obstacles = ObstacleInputs(self, self._sources, values, camera_mount(values),
                                             self._base_frame, self._on_obstacle_points,
                                             callback_group=io_group)
        # Own group: keeps the tick apart should the node run on a multi-threaded executor.
        self._timer = self.create_timer(1.0 / rate, self._on_tick,
                                        callback_group=MutuallyExclusiveCallbackGroup())
        self.create_timer(1.0, self._publish_diagnostics, callback_group=io_group)
        self.create_timer(1.0, self._check_inputs, callback_group=io_group)
        # rclpy refuses read_only ones itself; the rest are validated by _reconfigure.
        LiveParameters(self, [spec.name for spec in SPECS + GUARD_SPECS], self._reconfigure)
        self._estop_pub.publish(Bool(data=self._estop))
        limits = self._config.limits
        log = self.get_logger()
        log.info(f'planner ready: {rate:.0f} Hz, limits {limits.max_linear_vel} m/s '
                 f'{limits.max_angular_vel} rad/s, result_timeout '
                 f'{self._config.result_timeout} s, cmd_vel as {cmd_type.__name__} on '
                 f'{self._cmd_pub.topic_name}, odometry from {self._odom_sub.topic_name}')
        (log.warn if self._estop else log.info)(persisted.reason)
        if self._obstacles is None:
            log.warn('no obstacle source configured (collision.sources): the planner drives '
                     'WITHOUT an obstacle guard; set collision.sources to [scan], [points] '
                     'and/or [depth] in the params file')
        else:
            log.info('obstacle guard on: ' + ', '.join(
                f'{name} from {topic}' for name, topic in self._obstacles.topics.items())
                + f'; a source older than {values["collision.source_timeout"]} s stops the '
                'robot')

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # ------------------------------------------------------------------ parameters

    def _reconfigure(self, values: dict):
        config = planner_config(values)
        guard = collision_params.guard_output(self._sources, values)
        mount = camera_mount(values)

        def apply() -> None:
            with self._lock:
                self._planner.reconfigure(config)
                if guard is not None:
                    # Keep the readings: a new guard must not start blind.
                    self._planner.guard.guard = guard.guard
                    self._planner.guard.memory.source_timeout = guard.memory.source_timeout
                if self._obstacles is not None:
                    self._obstacles.configure(values, mount, values['base_frame'])
                self._config = config
                self._odom_frame = values['odom_frame']
                self._base_frame = values['base_frame']
                self._idle_zero = values['publish_idle_zero']
                self._input_warn_after = values['input_warn_after']
                self._frames_warned = False  # check the odometry against the new names
        # Fields that need a restart are read_only; reconfigure would refuse them anyway.
        return apply

    # ------------------------------------------------------------------ inputs

    def _on_odom(self, msg: Odometry) -> None:
        q = msg.pose.pose.orientation
        pose = Pose2D(msg.pose.pose.position.x, msg.pose.pose.position.y,
                      yaw_from_quaternion(q.x, q.y, q.z, q.w))
        self._odom_seen = time.monotonic()
        if not self._frames_warned:
            self._check_frames(msg.header.frame_id, msg.child_frame_id)
        with self._lock:
            self._planner.on_odometry(stamp_to_sec(msg.header.stamp), pose)

    def _check_frames(self, frame_id: str, child_frame_id: str) -> None:
        """Warn once when odometry names other frames than odom_frame / base_frame."""
        self._frames_warned = True
        wrong = []
        if frame_id != self._odom_frame:
            wrong.append(f'frame_id "{frame_id}" but odom_frame is "{self._odom_frame}"')
        if child_frame_id != self._base_frame:
            wrong.append(f'child_frame_id "{child_frame_id}" but base_frame is '
                         f'"{self._base_frame}"')
        if wrong:
            self.get_logger().warn(
                f'odometry on {self._odom_sub.topic_name} has {" and ".join(wrong)}: set the '
                'odom_frame / base_frame parameters to the names your robot uses (the path '
                'is published in odom_frame)')

    def _check_inputs(self) -> None:
        """Say what is missing when the robot stands still for want of an input."""
        self._check_sources()
        now = time.monotonic()
        since = now - (self._odom_seen if self._odom_seen is not None else self._started)
        if since < self._input_warn_after:
            return
        what = 'no odometry yet' if self._odom_seen is None \
            else f'no odometry for {since:.0f} s'
        self.get_logger().warn(
            f'{what} on {self._odom_sub.topic_name} (nav_msgs/Odometry): the planner holds '
            'the robot still; is the base driver running, or does it publish elsewhere '
            '(launch argument odom_topic)?', throttle_duration_sec=INPUT_WARN_PERIOD_S)

    def _on_obstacle_points(self, source: str, points, stamp: float) -> None:
        with self._lock:
            self._planner.on_obstacles(source, points, stamp, self._now())

    def _check_sources(self) -> None:
        guard = self._planner.guard
        if guard is None or self._last_reason != 'stale_sensor':
            return
        now = self._now()
        with self._lock:
            stale = [(s, guard.memory.age(s, now)) for s in guard.memory.stale(now)]
        what = '; '.join(f'{self._obstacles.topics[s]}: ' + ('nothing yet' if a is None
                                                             else f'{a:.1f} s old')
                         for s, a in stale)
        self.get_logger().warn(
            f'obstacle guard holds the robot still, a source is stale ({what}); is the sensor '
            'driver running, or does it publish elsewhere (remap the topic)?',
            throttle_duration_sec=INPUT_WARN_PERIOD_S)

    def _on_task_state(self, msg: TaskState) -> None:
        active = msg.task_id if msg.status == TaskState.STATUS_ACTIVE else None
        with self._lock:
            changed = active != self._planner.active_task
            self._planner.set_active_task(active)
            if changed and active is None:
                self._idle_sent = 0  # the zero burst that ends a task
        if changed:
            self.get_logger().info(f'following task {active}' if active else 'no active task')
        self._ack_pub.publish(String(data=task_ack(self.get_fully_qualified_name(), active)))

    def _on_result(self, msg: NavigationResult) -> None:
        result = PlannerResult(
            stamp=stamp_to_sec(msg.header.stamp), task_id=msg.task_id, sequence=msg.sequence,
            status=result_name(msg.status), waypoints=list(msg.waypoints),
            inference_time=float(msg.inference_time))
        with self._lock:
            path = self._planner.on_result(result, self._now())
            ignored = self._planner.last_ignored
        self._results += 1
        if path is not None:
            self._path_pub.publish(path_msg(path, self.get_clock().now().to_msg(),
                                            self._odom_frame))
        elif ignored != 'not_active_task':
            # Why the robot did not act on a result: the first question an operator asks.
            self.get_logger().info(
                f'result {result.task_id}#{result.sequence} ignored: {ignored}',
                throttle_duration_sec=2.0)
        elif result.task_id != self._last_unfollowed:
            self._last_unfollowed = result.task_id  # once per other task is enough
            self.get_logger().info(f'results of task {result.task_id} ignored: the planner '
                                   f'follows {self._planner.active_task or "no task"}')

    def _on_estop(self, request: SetBool.Request, response: SetBool.Response):
        engaged = bool(request.data)
        with self._lock:
            self._estop = engaged
            self._planner.set_estop(engaged)
            self._idle_sent = 0  # an e-stop change is always followed by zeros
        if engaged:
            self._publish_cmd(0.0, 0.0, 0.0)  # do not wait for the next tick
        try:
            estop_store.save(self._estop_path, engaged)
            kept = ''
        except OSError as exc:
            kept = f' (NOT persisted to {self._estop_path}: {exc})'
        self._estop_pub.publish(Bool(data=engaged))
        response.success = True
        response.message = ('e-stop engaged' if engaged else 'e-stop released') + kept
        self.get_logger().warn(response.message)
        return response

    # ------------------------------------------------------------------ output

    def _on_tick(self) -> None:
        now = self._now()
        with self._lock:
            cmd = self._planner.step(now)
            active = self._planner.active_task is not None
            idle_zero = self._idle_zero
        moving = cmd.vx != 0.0 or cmd.vy != 0.0 or cmd.wz != 0.0
        if active or moving:
            self._publish_cmd(cmd.vx, cmd.vy, cmd.wz, now)
            self._idle_sent = 0  # the next idle spell starts with a full burst of zeros
        elif idle_zero:
            self._publish_cmd(0.0, 0.0, 0.0, now)
        elif self._idle_sent < self._idle_burst:
            self._publish_cmd(0.0, 0.0, 0.0, now)
            self._idle_sent += 1
        mono = time.monotonic()
        if self._last_tick is not None:
            self._tick_periods.append(mono - self._last_tick)
            del self._tick_periods[:-500]
        self._last_tick = mono
        self._ticks += 1
        if cmd.reason != self._last_reason:
            self.get_logger().info(f'command state: {self._last_reason} -> {cmd.reason}')
            self._last_reason = cmd.reason
            with self._lock:
                task = self._planner.active_task
            self._state_pub.publish(String(data=command_state(task, cmd.reason)))
            self._publish_markers(cmd)
        elif self._ticks % 10 == 0:
            self._publish_markers(cmd)

    def _publish_cmd(self, vx: float, vy: float, wz: float, stamp: float | None = None) -> None:
        twist = Twist()
        twist.linear.x, twist.linear.y, twist.angular.z = float(vx), float(vy), float(wz)
        if self._stamped:
            msg = TwistStamped()
            # The tick's time: the stamps show the control periods the limits were applied over.
            msg.header.stamp = sec_to_stamp(stamp) if stamp is not None \
                else self.get_clock().now().to_msg()
            msg.header.frame_id = self._base_frame
            msg.twist = twist
            self._cmd_pub.publish(msg)
        else:
            self._cmd_pub.publish(twist)

    def _publish_markers(self, cmd) -> None:
        stamp = self.get_clock().now().to_msg()
        markers = command_markers(cmd.path, cmd.target, stamp, self._odom_frame)
        guard = self._planner.guard
        if guard is not None:
            markers.markers += guard_markers(guard.guard, cmd.guard, stamp,
                                             self._base_frame).markers
        self._marker_pub.publish(markers)

    def _publish_diagnostics(self) -> None:
        periods = sorted(self._tick_periods)
        status = DiagnosticStatus(name='vln_ros: planner', hardware_id='vln_ros')
        status.level = DiagnosticStatus.WARN if self._estop \
            or self._last_reason in ('stale_sensor', 'obstacle') else DiagnosticStatus.OK
        status.message = f'state: {self._last_reason}'
        p = (lambda q: f'{periods[int(q * (len(periods) - 1))] * 1000:.1f}') if periods \
            else (lambda q: 'n/a')
        with self._lock:
            latency = self._planner.latency_estimate
        odom_age = 'n/a' if self._odom_seen is None \
            else f'{time.monotonic() - self._odom_seen:.2f}'
        status.values = [
            KeyValue(key='rate_hz', value=f'{self._config.rate_hz:.0f}'),
            KeyValue(key='period_p50_ms', value=p(0.5)),
            KeyValue(key='period_p99_ms', value=p(0.99)),
            KeyValue(key='period_max_ms', value=p(1.0)),
            KeyValue(key='results', value=str(self._results)),
            KeyValue(key='estop', value=str(self._estop)),
            KeyValue(key='estop_file', value=self._estop_path),
            KeyValue(key='odom_age_s', value=odom_age),
            KeyValue(key='latency_estimate_s', value=f'{latency:.2f}'),
        ]
        status.values += self._guard_diagnostics()
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = sec_to_stamp(self._now())
        self._diag_pub.publish(msg)

    def _guard_diagnostics(self) -> list[KeyValue]:
        guard = self._planner.guard
        if guard is None:
            return [KeyValue(key='obstacle_guard', value='off (no collision.sources)')]
        now = self._now()
        with self._lock:
            verdict = guard.verdict
            ages = {s: guard.memory.age(s, now) for s in guard.memory.sources}
        values = [KeyValue(key='obstacle_guard', value=verdict.state if verdict else 'idle')]
        values += [KeyValue(key=f'{s}_age_s', value='never' if a is None else f'{a:.2f}')
                   for s, a in ages.items()]
        if verdict is not None and verdict.nearest_distance is not None:
            values.append(KeyValue(key='nearest_obstacle_m',
                                   value=f'{verdict.nearest_distance:.2f}'))
        return values

    def publish_final_zero(self) -> None:
        """Send zero velocity a few times on shutdown: the base must not keep the last command."""
        for _ in range(3):
            self._publish_cmd(0.0, 0.0, 0.0)
            time.sleep(0.02)


def main(args=None) -> None:
    """Run the planner node."""
    # Single-threaded: every callback here takes well under a millisecond, and rclpy's
    # MultiThreadedExecutor rescans its growing list of pending futures on each wake-up; in the
    # closed-loop demo that delayed 50 Hz ticks by up to 1.8 s (py-spy: Future.done).
    run_node(PlannerNode, args, on_shutdown=lambda node: node.publish_final_zero())


if __name__ == '__main__':
    main()
