"""Planner node: cmd_vel at rate_hz from the latest model result, never from stale data.

A thin adapter around vln_ros.core.planner.Planner: odometry, results, task state and the
e-stop go in; cmd_vel (Twist or TwistStamped), vln/path and vln/markers come out. The control
timer runs in its own callback group on a multi-threaded executor, so a slow result or
service callback never delays a tick.
"""
from __future__ import annotations

import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, PoseStamped, Twist, TwistStamped
from nav_msgs.msg import Odometry, Path
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from std_msgs.msg import String
from std_srvs.srv import SetBool
from visualization_msgs.msg import Marker, MarkerArray
from vln_ros_interfaces.msg import NavigationResult, TaskState

from vln_ros.core.geometry import Pose2D, quaternion_from_yaw, yaw_from_quaternion
from vln_ros.core.planner import Planner, PlannerConfig, PlannerResult
from vln_ros.core.velocity_limits import Limits
from vln_ros.nodes.ros_common import (
    LATCHED_QOS,
    RELIABLE_QOS,
    TASK_ACK_QOS,
    TASK_ACK_TOPIC,
    declare,
    run_node,
    sec_to_stamp,
    stamp_to_sec,
    task_ack,
)

STATUS_NAMES = {
    NavigationResult.STATUS_OK: 'ok',
    NavigationResult.STATUS_FALLBACK: 'fallback',
    NavigationResult.STATUS_VLM_ERROR: 'vlm_error',
    NavigationResult.STATUS_STOP: 'stop',
}


class PlannerNode(Node):
    """Tracks the model's waypoints in the odom frame at a fixed rate, within limits."""

    def __init__(self) -> None:
        super().__init__('planner_node')
        rate = declare(self, 'rate_hz', 50.0, 'Control rate of cmd_vel (Hz)', 10.0, 100.0)
        limits = Limits(
            max_linear_vel=declare(self, 'max_linear_vel', 0.5, 'Forward speed limit (m/s)',
                                   0.01, 3.0),
            max_lateral_vel=declare(self, 'max_lateral_vel', 0.3,
                                    'Lateral speed limit when holonomic (m/s)', 0.01, 3.0),
            max_angular_vel=declare(self, 'max_angular_vel', 0.8, 'Yaw rate limit (rad/s)',
                                    0.01, 5.0),
            max_linear_acc=declare(self, 'max_linear_acc', 0.5,
                                   'Forward acceleration limit (m/s^2)', 0.01, 10.0),
            max_lateral_acc=declare(self, 'max_lateral_acc', 0.5,
                                    'Lateral acceleration limit (m/s^2)', 0.01, 10.0),
            max_angular_acc=declare(self, 'max_angular_acc', 1.5,
                                    'Yaw acceleration limit (rad/s^2)', 0.01, 20.0),
        )
        self._config = PlannerConfig(
            rate_hz=rate,
            result_timeout=declare(self, 'result_timeout', 12.0,
                                   'Zero velocity when the newest result is older (s); keep it '
                                   'above the model latency', 0.1, 120.0),
            min_confidence=declare(self, 'min_confidence', 0.3,
                                   'Zero velocity below this waypoint confidence', 0.0, 1.0),
            error_streak_limit=declare(self, 'error_streak_limit', 3,
                                       'Zero velocity after this many error results in a row',
                                       1, 100),
            holonomic=declare(self, 'holonomic', False, 'Allow lateral velocity (vy)'),
            schedule_speed=declare(self, 'schedule_speed', True,
                                   'Slow down so the path lasts until the next expected result'),
            min_speed=declare(self, 'min_speed', 0.1, 'Lowest scheduled forward speed (m/s)',
                              0.0, 1.0),
            expected_latency=declare(self, 'expected_latency', 6.5,
                                     'Model latency assumed before the first results (s)',
                                     0.0, 60.0),
            lookahead=declare(self, 'lookahead', 0.35, 'Pure pursuit lookahead (m)', 0.05, 3.0),
            goal_tolerance=declare(self, 'goal_tolerance', 0.05, 'Position tolerance (m)',
                                   0.005, 1.0),
            yaw_tolerance=declare(self, 'yaw_tolerance', 0.05, 'Final heading tolerance (rad)',
                                  0.005, 1.0),
            use_odometry=declare(self, 'use_odometry', True,
                                 'Use odom for the pose; false: dead-reckon from the commands'),
            predict_pose=declare(self, 'predict_pose', True,
                                 'Carry the newest odometry pose on to the control time with '
                                 'the commands sent since its stamp'),
            limits=limits,
        )
        self._stamped = declare(self, 'use_stamped_cmd_vel', False,
                                'Publish geometry_msgs/TwistStamped instead of Twist')
        self._odom_frame = declare(self, 'odom_frame', 'odom', 'Fixed frame of path and markers')
        self._base_frame = declare(self, 'base_frame', 'base_link', 'Robot base frame')

        self._lock = threading.Lock()
        self._planner = Planner(self._config)
        self._estop = False
        self._last_reason = 'no_result'
        self._ticks = 0
        self._last_tick = None
        self._tick_periods: list[float] = []
        self._results = 0
        self._last_unfollowed = ''

        io_group = MutuallyExclusiveCallbackGroup()
        cmd_type = TwistStamped if self._stamped else Twist
        self._cmd_pub = self.create_publisher(cmd_type, 'cmd_vel', RELIABLE_QOS)
        self._path_pub = self.create_publisher(Path, 'vln/path', RELIABLE_QOS)
        self._marker_pub = self.create_publisher(MarkerArray, 'vln/markers', RELIABLE_QOS)
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._ack_pub = self.create_publisher(String, TASK_ACK_TOPIC, TASK_ACK_QOS)
        self.create_subscription(NavigationResult, 'vln/result', self._on_result, RELIABLE_QOS,
                                 callback_group=io_group)
        self.create_subscription(Odometry, 'odom', self._on_odom, RELIABLE_QOS,
                                 callback_group=io_group)
        self.create_subscription(TaskState, 'vln/task_state', self._on_task_state, LATCHED_QOS,
                                 callback_group=io_group)
        self.create_service(SetBool, 'vln/estop', self._on_estop, callback_group=io_group)
        # Own group: keeps the tick apart should the node run on a multi-threaded executor.
        self._timer = self.create_timer(1.0 / rate, self._on_tick,
                                        callback_group=MutuallyExclusiveCallbackGroup())
        self.create_timer(1.0, self._publish_diagnostics, callback_group=io_group)
        self.get_logger().info(
            f'planner ready: {rate:.0f} Hz, limits {limits.max_linear_vel} m/s '
            f'{limits.max_angular_vel} rad/s, result_timeout {self._config.result_timeout} s, '
            f'cmd_vel as {cmd_type.__name__}')

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_odom(self, msg: Odometry) -> None:
        q = msg.pose.pose.orientation
        pose = Pose2D(msg.pose.pose.position.x, msg.pose.pose.position.y,
                      yaw_from_quaternion(q.x, q.y, q.z, q.w))
        with self._lock:
            self._planner.on_odometry(stamp_to_sec(msg.header.stamp), pose)

    def _on_task_state(self, msg: TaskState) -> None:
        active = msg.task_id if msg.status == TaskState.STATUS_ACTIVE else None
        with self._lock:
            changed = active != self._planner.active_task
            self._planner.set_active_task(active)
        if changed:
            self.get_logger().info(f'following task {active}' if active else 'no active task')
        self._ack_pub.publish(String(data=task_ack(self.get_fully_qualified_name(), active)))

    def _on_result(self, msg: NavigationResult) -> None:
        result = PlannerResult(
            stamp=stamp_to_sec(msg.header.stamp), task_id=msg.task_id, sequence=msg.sequence,
            status=STATUS_NAMES.get(msg.status, 'vlm_error'), waypoints=list(msg.waypoints),
            inference_time=float(msg.inference_time))
        with self._lock:
            path = self._planner.on_result(result, self._now())
            ignored = self._planner.last_ignored
        self._results += 1
        if path is not None:
            self._publish_path(path)
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
        with self._lock:
            self._estop = bool(request.data)
            self._planner.set_estop(self._estop)
        if self._estop:
            self._publish_cmd(0.0, 0.0, 0.0)  # do not wait for the next tick
        response.success = True
        response.message = 'e-stop engaged' if self._estop else 'e-stop released'
        self.get_logger().warn(response.message)
        return response

    def _on_tick(self) -> None:
        now = self._now()
        with self._lock:
            cmd = self._planner.step(now)
        self._publish_cmd(cmd.vx, cmd.vy, cmd.wz, now)
        mono = time.monotonic()
        if self._last_tick is not None:
            self._tick_periods.append(mono - self._last_tick)
            del self._tick_periods[:-500]
        self._last_tick = mono
        self._ticks += 1
        if cmd.reason != self._last_reason:
            self.get_logger().info(f'command state: {self._last_reason} -> {cmd.reason}')
            self._last_reason = cmd.reason
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

    def _pose_msg(self, pose: Pose2D, stamp) -> PoseStamped:
        msg = PoseStamped()
        msg.header.stamp = stamp
        msg.header.frame_id = self._odom_frame
        msg.pose.position.x, msg.pose.position.y = pose.x, pose.y
        q = quaternion_from_yaw(pose.yaw)
        o = msg.pose.orientation
        o.x, o.y, o.z, o.w = q
        return msg

    def _publish_path(self, poses: list[Pose2D]) -> None:
        path = Path()
        path.header.stamp = self.get_clock().now().to_msg()
        path.header.frame_id = self._odom_frame
        path.poses = [self._pose_msg(p, path.header.stamp) for p in poses]
        self._path_pub.publish(path)

    def _publish_markers(self, cmd) -> None:
        stamp = self.get_clock().now().to_msg()
        line = Marker(ns='vln_path', id=0, type=Marker.LINE_STRIP, action=Marker.ADD)
        line.header.frame_id, line.header.stamp = self._odom_frame, stamp
        line.scale.x = 0.03
        line.color.g, line.color.a = 0.8, 1.0
        line.points = [Point(x=p.x, y=p.y, z=0.05) for p in cmd.path]
        dots = Marker(ns='vln_waypoints', id=1, type=Marker.SPHERE_LIST, action=Marker.ADD)
        dots.header = line.header
        dots.scale.x = dots.scale.y = dots.scale.z = 0.08
        dots.color.b, dots.color.a = 1.0, 1.0
        dots.points = list(line.points)
        target = Marker(ns='vln_target', id=2, type=Marker.ARROW, action=Marker.ADD)
        target.header = line.header
        if cmd.target is not None:
            target.pose = self._pose_msg(cmd.target, stamp).pose
            target.scale.x, target.scale.y, target.scale.z = 0.3, 0.05, 0.05
            target.color.r, target.color.a = 1.0, 1.0
        else:
            target.action = Marker.DELETE
        if not cmd.path:
            line.action = dots.action = Marker.DELETE
        self._marker_pub.publish(MarkerArray(markers=[line, dots, target]))

    def _publish_diagnostics(self) -> None:
        periods = sorted(self._tick_periods)
        status = DiagnosticStatus(name='vln_ros: planner', hardware_id='vln_ros')
        status.level = DiagnosticStatus.WARN if self._estop else DiagnosticStatus.OK
        status.message = f'state: {self._last_reason}'
        p = (lambda q: f'{periods[int(q * (len(periods) - 1))] * 1000:.1f}') if periods \
            else (lambda q: 'n/a')
        with self._lock:
            latency = self._planner.latency_estimate
        status.values = [
            KeyValue(key='rate_hz', value=f'{self._config.rate_hz:.0f}'),
            KeyValue(key='period_p50_ms', value=p(0.5)),
            KeyValue(key='period_p99_ms', value=p(0.99)),
            KeyValue(key='period_max_ms', value=p(1.0)),
            KeyValue(key='results', value=str(self._results)),
            KeyValue(key='estop', value=str(self._estop)),
            KeyValue(key='latency_estimate_s', value=f'{latency:.2f}'),
        ]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = sec_to_stamp(self._now())
        self._diag_pub.publish(msg)

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
