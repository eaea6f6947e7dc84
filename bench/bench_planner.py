"""Planner timing, measured by a subscriber in another process (this one).

Prints the achieved cmd_vel rate and period error p50/p99/max at 50 Hz and 100 Hz, alone and
with the perception node ingesting 30 fps 640x480 frames from the simulator on the same
machine, and the time from a result's arrival to the first command that reflects it. Rates
and period errors come from the command stamps (the planner's own tick times, TwistStamped);
the rate at which this process received them is printed beside them.

    python bench/bench_planner.py --mode short   # CI: 4 s per setting
"""
import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from vln_ros.tools.processes import reserve_domain_id  # noqa: E402

os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
reserve_domain_id()

from geometry_msgs.msg import Twist, TwistStamped  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from vln_ros_interfaces.msg import NavigationResult, TaskState, Waypoint  # noqa: E402

from test.harness import RosTestNode  # noqa: E402
from vln_ros.nodes.ros_common import LATCHED_QOS, sec_to_stamp, stamp_to_sec  # noqa: E402
from vln_ros.tools.processes import ProcessGroup  # noqa: E402


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * (len(values) - 1) + 0.5))] if values else None


def periods_of(times):
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--mode', choices=('short', 'long'), default='short')
    args = ap.parse_args()
    seconds = 4.0 if args.mode == 'short' else 30.0
    rows = []
    ros = RosTestNode('bench_planner')
    log_dir = pathlib.Path(tempfile.mkdtemp(prefix='bench_planner_'))
    try:
        cmds = []
        ros.node.create_subscription(Twist, 'cmd_vel',
                                     lambda m: cmds.append((time.monotonic(), m.linear.x)), 50)
        ticks = []  # (stamp = the planner's tick time, received at)
        ros.node.create_subscription(
            TwistStamped, 'stamped/cmd_vel',
            lambda m: ticks.append((stamp_to_sec(m.header.stamp), time.monotonic())), 50)
        state_pub = ros.node.create_publisher(TaskState, 'vln/task_state', LATCHED_QOS)
        result_pub = ros.node.create_publisher(NavigationResult, 'vln/result', 10)
        odom_pub = ros.node.create_publisher(Odometry, 'odom', 10)
        for load in (False, True):
            load_procs = ProcessGroup(log_dir)
            if load:
                sim = load_procs.start_node('sim_node', module='vln_ros.sim.sim_node',
                                            params={'oracle_port': 0,
                                                    'oracle_latency': [5.0, 8.0]},
                                            remap={'cmd_vel': 'sim_cmd_vel'})
                out = sim.wait_for_output('oracle listening on', 60)
                url = out.split('oracle listening on ')[1].split()[0]
                perception = load_procs.start_node('perception_node',
                                                   params={'vlm.base_url': url})
                perception.wait_for_output('perception ready', 60)
                state_pub.publish(TaskState(task_id='vln_9_bench0', status='active',
                                            instruction='go forward'))
                # Measure in the steady state, not while the load is still starting up.
                perception.wait_for_output('following task', 30)
                ros.spin_for(2.0)
            for rate in (50.0, 100.0):
                procs = ProcessGroup(log_dir)
                # publish_idle_zero: no task is active here, and an idle planner falls silent.
                procs.start_node('planner_node',
                                 params={'rate_hz': rate, 'use_stamped_cmd_vel': True,
                                         'publish_idle_zero': True},
                                 remap={'cmd_vel': 'stamped/cmd_vel'})
                ros.wait_until(lambda: len(ticks) > 10, 30)
                ros.spin_for(1.0)
                ticks.clear()
                ros.spin_for(seconds)
                nominal = 1.0 / rate
                stamp_periods = periods_of([t for t, _ in ticks])
                recv_periods = periods_of([r for _, r in ticks])
                errs = [abs(p - nominal) * 1000 for p in stamp_periods]
                rows.append({'rate_hz': rate, 'load': 'perception 30 fps' if load else 'none',
                             'achieved_hz': round(len(stamp_periods) / sum(stamp_periods), 2),
                             'period_err_p50_ms': round(pct(errs, 0.5), 3),
                             'period_err_p99_ms': round(pct(errs, 0.99), 3),
                             'period_err_max_ms': round(max(errs), 3),
                             'received_hz': round(len(recv_periods) / sum(recv_periods), 2)})
                print(json.dumps(rows[-1]), flush=True)
                procs.stop_all()
                cmds.clear()
            load_procs.stop_all()

        # Result arrival -> first command that reflects it (odometry published by us).
        procs = ProcessGroup(log_dir)
        procs.start_node('planner_node', params={'rate_hz': 50.0, 'schedule_speed': False,
                                                 'publish_idle_zero': True})
        ros.wait_until(lambda: len(cmds) > 10, 30)
        state_pub.publish(TaskState(task_id='vln_9_bench1', status='active'))
        delays = []

        def publish_odom(seconds, until=lambda: False):
            # Odometry keeps flowing, as on a robot: stale odometry (> 1 s) stops the planner.
            end = time.monotonic() + seconds
            while not until():
                if time.monotonic() > end:
                    raise TimeoutError('the planner did not react within the time limit')
                odom = Odometry()
                odom.header.stamp = sec_to_stamp(time.time())
                odom.pose.pose.orientation.w = 1.0
                odom_pub.publish(odom)
                ros.spin_for(0.005)

        for i in range(5 if args.mode == 'short' else 20):
            try:
                publish_odom(0.4, until=lambda: False)
            except TimeoutError:
                pass  # 0.4 s of odometry before the result
            cmds.clear()
            res = NavigationResult(task_id='vln_9_bench1', sequence=i + 1, status=0,
                                   waypoints=[Waypoint(dx=1.0, confidence=0.9)])
            res.header.stamp = sec_to_stamp(time.time())
            t0 = time.monotonic()
            result_pub.publish(res)
            publish_odom(10, until=lambda: any(v > 0 for _, v in cmds))
            delays.append((next(t for t, v in cmds if v > 0) - t0) * 1000)
            # Stop it again: an error streak zeroes the command.
            for _ in range(3):
                result_pub.publish(NavigationResult(task_id='vln_9_bench1', status=2))
            publish_odom(10, until=lambda: cmds and cmds[-1][1] == 0.0)
        row = {'result_to_command_p50_ms': round(pct(delays, 0.5), 2),
               'result_to_command_max_ms': round(max(delays), 2), 'samples': len(delays)}
        print(json.dumps(row), flush=True)
        procs.stop_all()
    finally:
        ros.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
