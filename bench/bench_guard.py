"""The obstacle guard's cost: per planner tick in process, and the planner node's period error.

Part 1 (in this process, ROS-free): the time of one guarded tick (GuardedOutput.tracking:
points moved into the current base frame, thinned, the stop/slowdown/approach rules and,
where the way is blocked, the detour search), p50/p99, with a 720-beam scan and with a
640x480 depth image subsampled to 160x120, both of a corridor with a box ahead; and the time
to turn one such message into base-frame points.

Part 2 (real nodes): planner_node tracking a path at 50 Hz with and without the guard, side
by side in one run, with this process publishing odometry (100 Hz) and a 720-beam scan
(10 Hz). Period errors come from the command stamps (TwistStamped: the planner's tick times).

    python bench/bench_guard.py --mode short   # CI: 300 ticks, 4 s per node setting
"""
import argparse
import json
import math
import os
import pathlib
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from vln_ros.tools.processes import reserve_domain_id  # noqa: E402

os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
reserve_domain_id()

from vln_ros.core.camera_mount import CameraMount  # noqa: E402
from vln_ros.core.collision.footprint import parse_footprint  # noqa: E402
from vln_ros.core.collision.guard import CollisionGuard, GuardConfig  # noqa: E402
from vln_ros.core.collision.guarded_output import GuardedOutput  # noqa: E402
from vln_ros.core.collision.obstacle_memory import ObstacleMemory  # noqa: E402
from vln_ros.core.collision.sensor_points import (  # noqa: E402
    SensorPose,
    depth_to_points,
    scan_to_points,
    to_base_plane,
)
from vln_ros.core.geometry import Pose2D  # noqa: E402
from vln_ros.core.velocity_limits import Limits, VelocityLimiter  # noqa: E402

FOOTPRINT = '[[0.35, 0.2], [0.35, -0.2], [-0.35, -0.2], [-0.35, 0.2]]'
BEAMS = 720


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * (len(values) - 1) + 0.5))] if values else None


def corridor_ranges(beams: int = BEAMS) -> tuple[np.ndarray, float, float]:
    """A 270-degree scan in a 1.6 m corridor with a 0.4 m box 1.2 m ahead."""
    angles = np.linspace(-0.75 * math.pi, 0.75 * math.pi, beams)
    with np.errstate(divide='ignore'):
        side = np.where(np.sin(angles) != 0, 0.8 / np.abs(np.sin(angles)), np.inf)
        box = np.where((np.cos(angles) > 0) & (np.abs(np.tan(angles) * 1.2) < 0.2),
                       1.2 / np.cos(angles), np.inf)
    ranges = np.minimum(np.minimum(side, box), 8.0)
    return ranges, float(angles[0]), float(angles[1] - angles[0])


def corridor_depth(width=640, height=480, stride=4) -> tuple[np.ndarray, float]:
    """Depth (m) of a level camera 0.5 m up facing a wall 1.2 m ahead, subsampled."""
    f = 0.5 * width  # 90 degrees horizontal field of view
    depth = np.full((height, width), 1.2)
    return depth[::stride, ::stride], f / stride


def tick_cost(ticks: int) -> list[dict]:
    rows = []
    guard = CollisionGuard(GuardConfig(footprint=parse_footprint(FOOTPRINT)))
    limiter = VelocityLimiter(Limits())
    ranges, a0, inc = corridor_ranges()
    depth, f = corridor_depth()
    mount = CameraMount(height=0.5)
    h, w = depth.shape

    def scan_points():
        return to_base_plane(scan_to_points(ranges, a0, inc, 0.05, 8.0),
                             SensorPose.planar(0.0, 0.0, 0.3), 0.05, 1.0)

    def depth_points():
        return to_base_plane(depth_to_points(depth, f, f, w / 2, h / 2, 1, 8.0),
                             SensorPose.optical(mount), 0.05, 1.0)

    for name, convert in (('scan 720 beams', scan_points), ('depth 160x120', depth_points)):
        times = []
        for _ in range(50):
            t0 = time.perf_counter()
            points = convert()
            times.append((time.perf_counter() - t0) * 1000)
        convert_p50 = pct(times, 0.5)
        output = GuardedOutput(guard, ObstacleMemory(['scan'], 1e9))
        output.on_points('scan', points, 0.0, 0.0, Pose2D(0.0, 0.0, 0.0))
        tick = []
        states = {}
        for i in range(ticks):
            limiter.reset()
            t0 = time.perf_counter()
            output.tracking((0.5, 0.0, 0.0), limiter, 0.02, 0.02 * i, Pose2D(0.0, 0.0, 0.0),
                            (3.0, 0.0))
            tick.append((time.perf_counter() - t0) * 1000)
            states[output.verdict.state] = states.get(output.verdict.state, 0) + 1
        rows.append({'part': 'tick', 'source': name, 'points': int(len(points)),
                     'to_points_p50_ms': round(convert_p50, 3),
                     'tick_p50_ms': round(pct(tick, 0.5), 3),
                     'tick_p99_ms': round(pct(tick, 0.99), 3),
                     'tick_budget_ms': 20.0, 'states': states})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def node_period_error(seconds: float) -> list[dict]:
    from geometry_msgs.msg import TwistStamped
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import LaserScan
    from vln_ros_interfaces.msg import NavigationResult, TaskState, Waypoint

    from test.harness import RosTestNode
    from vln_ros.nodes.ros_common import LATCHED_QOS, SENSOR_QOS, sec_to_stamp, stamp_to_sec
    from vln_ros.tools.processes import ProcessGroup

    rows = []
    ros = RosTestNode('bench_guard')
    log_dir = pathlib.Path(tempfile.mkdtemp(prefix='bench_guard_'))
    ranges, a0, inc = corridor_ranges()
    try:
        ticks = []
        ros.node.create_subscription(
            TwistStamped, 'cmd_vel', lambda m: ticks.append(
                (stamp_to_sec(m.header.stamp), m.twist.linear.x)), 50)
        state_pub = ros.node.create_publisher(TaskState, 'vln/task_state', LATCHED_QOS)
        result_pub = ros.node.create_publisher(NavigationResult, 'vln/result', 10)
        odom_pub = ros.node.create_publisher(Odometry, 'odom', 10)
        scan_pub = ros.node.create_publisher(LaserScan, 'scan', SENSOR_QOS)
        for guarded in (False, True):
            procs = ProcessGroup(log_dir)
            params = {'use_stamped_cmd_vel': True, 'result_timeout': 25.0,
                      'schedule_speed': False, 'stuck_timeout': 0.0}
            if guarded:
                params['collision.sources'] = ['scan']
            procs.start_node('planner_node', params=params).wait_for_output('planner ready',
                                                                            60)
            task = f'vln_9_guard{int(guarded)}'
            state_pub.publish(TaskState(task_id=task, status='active'))
            ros.wait_until(lambda: result_pub.get_subscription_count() > 0, 30)
            next_scan = 0.0

            def feed(duration):
                nonlocal next_scan
                end = time.monotonic() + duration
                while time.monotonic() < end:
                    now = time.time()
                    odom = Odometry()
                    odom.header.stamp = sec_to_stamp(now)
                    odom.pose.pose.orientation.w = 1.0  # standing still: the box stays ahead
                    odom_pub.publish(odom)
                    if time.monotonic() >= next_scan:
                        next_scan = time.monotonic() + 0.1
                        scan = LaserScan(angle_min=a0, angle_max=-a0, angle_increment=inc,
                                         range_min=0.05, range_max=8.0,
                                         ranges=ranges.astype(np.float32).tolist())
                        scan.header.stamp = sec_to_stamp(now)
                        scan.header.frame_id = 'base_link'
                        scan_pub.publish(scan)
                    ros.spin_for(0.01)

            feed(1.0)
            res = NavigationResult(task_id=task, sequence=1, status=0,
                                   waypoints=[Waypoint(dx=1.0, confidence=0.9)])
            res.header.stamp = sec_to_stamp(time.time())
            result_pub.publish(res)
            feed(1.0)
            ticks.clear()
            feed(seconds)
            stamps = [t for t, _ in ticks]
            periods = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
            errs = [abs(p - 0.02) * 1000 for p in periods]
            rows.append({'part': 'node', 'guard': 'on (scan 720 beams, 10 Hz)' if guarded
                         else 'off', 'achieved_hz': round(len(periods) / sum(periods), 2),
                         'period_err_p50_ms': round(pct(errs, 0.5), 3),
                         'period_err_p99_ms': round(pct(errs, 0.99), 3),
                         'moving_commands': sum(1 for _, v in ticks if v > 0)})
            print(json.dumps(rows[-1]), flush=True)
            procs.stop_all()
    finally:
        ros.close()
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--mode', choices=('short', 'long'), default='short')
    args = ap.parse_args()
    short = args.mode == 'short'
    tick_cost(300 if short else 3000)
    node_period_error(4.0 if short else 30.0)
    return 0


if __name__ == '__main__':
    sys.exit(main())
