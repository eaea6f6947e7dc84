"""collision_guard: the planner's obstacle guard as a node, for any cmd_vel stream.

cmd_vel_in (teleop, nav2, a script) goes through the same guard the planner uses, with the
same collision.* parameters, and comes out on cmd_vel_out: scaled in the slowdown and
approach zones, zero in the stop zone and while a configured source is stale. With no input
for ``input_timeout`` it sends a short burst of zeros and falls silent, like the planner,
so the base's own timeout and other publishers keep working. A stop is published at once,
not at the next input, when a new scan shows the stream heading into something.
"""
from __future__ import annotations

import threading

from geometry_msgs.msg import Twist, TwistStamped
from rclpy.node import Node

from vln_ros.nodes import collision_params
from vln_ros.nodes.obstacle_inputs import ObstacleInputs
from vln_ros.nodes.parameters import LiveParameters, ParamSpec, declare_all
from vln_ros.nodes.perception_params import CAMERA_SPECS, camera_mount
from vln_ros.nodes.ros_common import CMD_VEL_QOS, run_node, sec_to_stamp

NODE_SPECS = (
    ParamSpec('use_stamped_cmd_vel', False, 'cmd_vel_in and cmd_vel_out are TwistStamped',
              read_only=True),
    ParamSpec('base_frame', 'base_link', 'Robot base frame (TwistStamped frame_id, point '
              'clouds)'),
    ParamSpec('max_linear_acc', 0.5, 'Deceleration the base brakes with (m/s^2): the approach '
              'check slows the command so that it still stops in time', 0.01, 10.0),
    ParamSpec('input_timeout', 0.5, 'No cmd_vel_in for this long (s): a burst of zeros, then '
              'silence', 0.05, 10.0),
)
MOUNT_SPECS = tuple(s for s in CAMERA_SPECS if s.name != 'camera.use_tf')
SPECS = NODE_SPECS + collision_params.SPECS + MOUNT_SPECS
# Zeros sent when the input stops (s of input period), as the planner's idle burst.
_ZERO_BURST = 5


class CollisionGuardNode(Node):
    """Guard every command of cmd_vel_in against the obstacle sources."""

    def __init__(self) -> None:
        super().__init__('collision_guard')
        values = declare_all(self, SPECS)
        sources = collision_params.declare_sources(self)
        if not sources:
            raise ValueError('collision_guard needs collision.sources (scan, points and/or '
                             'depth): without a source it would guard nothing')
        self._output = collision_params.guard_output(sources, values)
        self._values = values
        self._stamped = values['use_stamped_cmd_vel']
        self._lock = threading.Lock()
        self._last_in: tuple[float, float, float] | None = None
        self._last_in_time: float | None = None
        self._zeros_left = 0
        msg_type = TwistStamped if self._stamped else Twist
        self._pub = self.create_publisher(msg_type, 'cmd_vel_out', CMD_VEL_QOS)
        self._sub = self.create_subscription(msg_type, 'cmd_vel_in', self._on_cmd, CMD_VEL_QOS)
        self._inputs = ObstacleInputs(self, sources, values, camera_mount(values),
                                      values['base_frame'], self._on_points)
        self.create_timer(0.05, self._on_timer)
        LiveParameters(self, [s.name for s in SPECS], self._reconfigure)
        self.get_logger().info(
            f'collision guard: {self._sub.topic_name} -> {self._pub.topic_name}, sources '
            + ', '.join(f'{n} from {t}' for n, t in self._inputs.topics.items())
            + f'; a source older than {values["collision.source_timeout"]} s means zero')

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _reconfigure(self, values: dict):
        output = collision_params.guard_output(list(self._output.memory.sources), values)
        mount = camera_mount(values)

        def apply() -> None:
            with self._lock:
                self._output.guard = output.guard
                self._output.memory.source_timeout = output.memory.source_timeout
                self._values = values
            self._inputs.configure(values, mount, values['base_frame'])
        return apply

    def _on_points(self, source: str, points, stamp: float) -> None:
        with self._lock:
            self._output.on_points(source, points, stamp, self._now(), None)

    def _on_cmd(self, msg) -> None:
        twist = msg.twist if isinstance(msg, TwistStamped) else msg
        cmd = (twist.linear.x, twist.linear.y, twist.angular.z)
        now = self._now()
        with self._lock:
            self._last_in, self._last_in_time = cmd, now
            self._zeros_left = _ZERO_BURST
        self._publish(self._guarded(cmd, now))

    def _on_timer(self) -> None:
        """Stop at once when new points or a stale source say so; zeros when input ends."""
        now = self._now()
        with self._lock:
            cmd, since = self._last_in, self._last_in_time
        if cmd is None:
            return
        if now - since > self._values['input_timeout']:
            if self._zeros_left > 0:
                self._zeros_left -= 1
                self._publish((0.0, 0.0, 0.0))
            return
        out = self._guarded(cmd, now)
        if out == (0.0, 0.0, 0.0) and cmd != out:
            self._publish(out)  # the stream is heading into something: do not wait for it

    def _guarded(self, cmd: tuple[float, float, float], now: float) -> tuple[float, ...]:
        output = self._output
        with self._lock:
            if output.memory.stale(now):
                output.verdict = output.guard.stale()
                return (0.0, 0.0, 0.0)
            output.verdict = output.guard.check(*cmd, output.memory.points(None),
                                                self._values['max_linear_acc'])
        return output.verdict.command

    def _publish(self, cmd) -> None:
        twist = Twist()
        twist.linear.x, twist.linear.y, twist.angular.z = (float(v) for v in cmd)
        if self._stamped:
            msg = TwistStamped()
            msg.header.stamp = sec_to_stamp(self._now())
            msg.header.frame_id = self._values['base_frame']
            msg.twist = twist
            self._pub.publish(msg)
        else:
            self._pub.publish(twist)

    def publish_final_zero(self) -> None:
        """A zero on shutdown: the base must not keep the last guarded command."""
        self._publish((0.0, 0.0, 0.0))


def main(args=None) -> None:
    """Run the collision_guard node."""
    run_node(CollisionGuardNode, args, on_shutdown=lambda node: node.publish_final_zero())


if __name__ == '__main__':
    main()
