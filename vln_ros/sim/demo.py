"""Closed-loop run of the whole stack on the built-in simulator: the main job of `make demo`.

Starts the simulator (with its oracle model server), the task, perception and planner nodes as
processes, drives the scenario's instruction schedule through the task service, and records
ground truth, commands and results. Writes a JSON summary, a trajectory plot (PNG) and a video
of the annotated debug image; exits non-zero when the scenario's success criteria are not met.

    python -m vln_ros.sim.demo --scenario corridor_door --out out/demo
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import sys
import time
import urllib.request

import cv2
import numpy as np

from vln_ros.core.collision.footprint import circle_footprint
from vln_ros.sim.evaluation import evaluate
from vln_ros.sim.oracle_profiles import PROFILE_NAMES
from vln_ros.sim.render import render_topdown
from vln_ros.sim.scenario import Scenario
from vln_ros.sim.world import World
from vln_ros.tools.processes import ProcessGroup, clean_shm_zombies, reserve_domain_id, wait_until

# s before the run's time limit at which the stack itself gives up the task (Navigate timeout).
GIVE_UP_MARGIN = 5.0
PLANNER_LIMITS = {'max_linear_vel': 0.5, 'max_angular_vel': 0.8, 'max_linear_acc': 0.5,
                  'max_angular_acc': 1.5}


class Recorder:
    """An rclpy node in this process that records the run and calls the task service."""

    def __init__(self) -> None:
        from geometry_msgs.msg import TwistStamped
        from nav_msgs.msg import Odometry
        import rclpy
        from rclpy.action import ActionClient
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from std_msgs.msg import UInt32
        from vln_ros_interfaces.action import Navigate
        from vln_ros_interfaces.msg import NavigationResult, TaskState

        from vln_ros.nodes.ros_common import LATCHED_QOS

        self._rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('vln_demo', context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.trajectory: list[tuple[float, float, float, float]] = []
        self.commands: list[tuple[float, float, float]] = []
        # (planner publish stamp, vx, wz): the stamps give the true control periods.
        self.stamped_commands: list[tuple[float, float, float]] = []
        self.results: list = []
        self.states: list = []
        self.frames: list[np.ndarray] = []
        self.collisions = 0
        self.t0 = time.monotonic()
        n = self.node
        # Best effort: an observer in a busy process must never hold back the reliable
        # writers of the control loop (measured: planner tick p99 1.1 s when reliable here,
        # 0.15-0.2 s best effort, on 2 cores).
        observe = QoSProfile(depth=200, reliability=ReliabilityPolicy.BEST_EFFORT)
        n.create_subscription(Odometry, 'sim/ground_truth', self._on_truth, observe)
        n.create_subscription(TwistStamped, 'cmd_vel', self._on_cmd, observe)
        n.create_subscription(NavigationResult, 'vln/result', self._on_result, 10)
        n.create_subscription(TaskState, 'vln/task_state', self.states.append, LATCHED_QOS)
        n.create_subscription(Image, 'vln/debug_image', self._on_debug, 2)
        n.create_subscription(UInt32, 'sim/collisions', self._on_collision, 10)
        # Goals as a user's mission script would send them: a new goal is a new instruction.
        self.navigate = ActionClient(n, Navigate, 'vln/navigate')
        self._navigate_type = Navigate

    def now(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self.t0

    def _on_truth(self, msg) -> None:
        q = msg.pose.pose.orientation
        yaw = math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))
        self.trajectory.append((self.now(), msg.pose.pose.position.x,
                                msg.pose.pose.position.y, yaw))

    def _on_cmd(self, msg) -> None:
        v, w = msg.twist.linear.x, msg.twist.angular.z
        self.commands.append((self.now(), v, w))
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        self.stamped_commands.append((stamp, v, w))

    def _on_result(self, msg) -> None:
        self.results.append((self.now(), msg))

    def _on_debug(self, msg) -> None:
        img = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
        self.frames.append(img[:, :msg.width * 3].reshape(msg.height, msg.width, 3).copy())

    def _on_collision(self, msg) -> None:
        self.collisions = msg.data

    def spin_for(self, seconds: float) -> None:
        """Process callbacks for a while."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.executor.spin_once(timeout_sec=min(left, 0.05))

    def navigate_to(self, instruction: str, limit: float, timeout: float = 20.0):
        """Send a Navigate goal (visualization on) that gives up after ``limit`` s.

        Returns the goal handle; a later goal supersedes this one's task.
        """
        goal = self._navigate_type.Goal(instruction=instruction, timeout=float(limit))
        goal.config.enable_visualization = True
        wait_until(lambda: self.navigate.server_is_ready(), timeout, spin=self.spin_for)
        future = self.navigate.send_goal_async(goal)
        wait_until(future.done, timeout, spin=self.spin_for)
        return future.result()

    def close(self) -> None:
        """Shut the node and its context down."""
        self.executor.shutdown()
        self.node.destroy_node()
        self._rclpy.try_shutdown(context=self.context)


def _oracle_in_flight(url: str) -> int:
    try:
        with urllib.request.urlopen(url.replace('/v1', '/_test/stats'), timeout=0.5) as resp:
            return int(json.load(resp).get('in_flight', 0))
    except (OSError, ValueError):
        return 0


def _limit_violations(commands) -> int:
    """Commands above a speed limit or changing faster than the acceleration limits allow."""
    bad = 0
    slack = 1e-6
    for i, (t, v, w) in enumerate(commands):
        if abs(v) > PLANNER_LIMITS['max_linear_vel'] + slack or \
                abs(w) > PLANNER_LIMITS['max_angular_vel'] + slack:
            bad += 1
        if i:
            t0, v0, w0 = commands[i - 1]
            dt = max(t - t0, 0.0)
            if abs(v - v0) > PLANNER_LIMITS['max_linear_acc'] * dt + 0.01 or \
                    abs(w - w0) > PLANNER_LIMITS['max_angular_acc'] * dt + 0.01:
                if not (v == 0.0 and w == 0.0):  # an e-stop may zero at once
                    bad += 1
    return bad


def _guard_params(scenario: Scenario) -> dict:
    """Planner parameters of the obstacle guard on sim_node's scan (at the base, 0.3 m up)."""
    return {'collision.sources': ['scan'],
            'collision.footprint': circle_footprint(scenario.robot.radius),
            'collision.scan.height': 0.3}


def _wait_ready(procs: ProcessGroup, proc, name: str, params: dict) -> None:
    """Wait for a node's ready line; restart it once if it hangs at start-up."""
    for attempt in (1, 2):
        try:
            proc.wait_for_output(' ready', 60)
            return
        except TimeoutError:
            if attempt == 2:
                raise RuntimeError(f'{name} did not start:\n{proc.output()[-2000:]}') from None
            print(f'[demo] {name} not ready after 60 s: restarting it', flush=True)
            proc.stop()
            proc = procs.start_node(name, params=params)


def run_scenario(scenario_name: str, out_dir: pathlib.Path, latency=(5.0, 8.0), seed: int = 0,
                 write_media: bool = True, quiet: bool = False, time_limit: float | None = None,
                 outage_at: float | None = None, perception_params: dict | None = None,
                 profile: str | None = None, realism: bool = True,
                 planner_params: dict | None = None, guard: bool = True) -> dict:
    """Run one scenario closed loop; return the summary dict (also written as summary.json).

    ``profile`` is the oracle profile (None: the scenario's); ``realism`` False runs the
    scenario's ideal world (exact odometry, centred camera, one clock). ``guard`` runs the
    planner's obstacle guard on the simulator's laser scan, with the robot's round footprint.
    perception_params and planner_params override the nodes' parameters (for experiments).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    clean_shm_zombies()
    loaded = Scenario.load(scenario_name)
    scenario = loaded if realism else loaded.ideal_world()
    profile = profile or scenario.oracle_profile
    camera = scenario.robot.camera
    limit = time_limit or (scenario.success.time_limit if scenario.success else 90.0)
    procs = ProcessGroup(out_dir)
    recorder = None
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    try:
        sim = procs.start_node('sim_node', module='vln_ros.sim.sim_node', params={
            'scenario': scenario_name, 'seed': seed, 'oracle_port': 0,
            'use_stamped_cmd_vel': True, 'oracle_profile': profile, 'world_realism': realism,
            'oracle_latency': [float(latency[0]), float(latency[1])]})
        out = sim.wait_for_output('oracle listening on', 60)
        url = out.split('oracle listening on ')[1].split()[0]
        nodes = {
            'task_node': {'db_path': str(out_dir / 'tasks.db'), 'expected_followers': 2},
            # The stack knows the camera mount from its parameters, as on a robot.
            'perception_node': {'vlm.base_url': url, 'vlm.timeout': max(30.0, 3 * latency[1]),
                                'enable_visualization': True, 'keyframe_threshold': 0.1,
                                'camera.x': camera.x, 'camera.y': camera.y,
                                'camera.height': camera.height, 'camera.use_tf': False,
                                **(perception_params or {})},
            'planner_node': {**PLANNER_LIMITS, 'use_stamped_cmd_vel': True,
                             'result_timeout': max(12.0, 1.5 * latency[1]),
                             'expected_latency': (latency[0] + latency[1]) / 2,
                             **(_guard_params(scenario) if guard else {}),
                             **(planner_params or {})},
        }
        started = {name: procs.start_node(name, params=params) for name, params in nodes.items()}
        for name, proc in started.items():
            _wait_ready(procs, proc, name, nodes[name])
        recorder = Recorder()
        wait_until(lambda: recorder.trajectory, 60, spin=recorder.spin_for)
        recorder.t0 = time.monotonic()
        schedule = list(scenario.instructions)
        say(f'[demo] {scenario.name}: {len(schedule)} instruction(s), model latency '
            f'{latency[0]:.1f}-{latency[1]:.1f} s, oracle profile {profile}, '
            f'{"realistic" if realism else "ideal"} world, time limit {limit:.0f} s')
        switched = []  # (t, true pose) when each instruction was given
        inflight_samples = []
        last_print = -10.0
        done_at = None
        outage_done = False
        while recorder.now() < limit:
            t = recorder.now()
            while schedule and schedule[0].at <= t:
                instr = schedule.pop(0)
                switched.append((t, recorder.trajectory[-1][1:]))
                # The stack's own bound, inside the run's: a run that cannot succeed ends
                # with a failed task that says why, and the robot at rest.
                handle = recorder.navigate_to(instr.text, max(limit - t - GIVE_UP_MARGIN, 5.0))
                say(f'[demo] t={t:5.1f}s navigate "{instr.text}" '
                    f'({"accepted" if handle.accepted else "refused"})')
            if outage_at is not None and not outage_done and t >= outage_at:
                # Model outage: every request now fails; the planner must stop the robot.
                req = urllib.request.Request(
                    url.replace('/v1', '/_test/config'), method='POST',
                    data=json.dumps({'error_rate': 1.0, 'latency_min': 0.0,
                                     'latency_max': 0.0}).encode(),
                    headers={'Content-Type': 'application/json'})
                urllib.request.urlopen(req, timeout=2).read()
                outage_done = True
                say(f'[demo] t={t:5.1f}s model outage injected')
            recorder.spin_for(0.1)
            moving = bool(recorder.commands) and (abs(recorder.commands[-1][1]) > 0.02 or
                                                  abs(recorder.commands[-1][2]) > 0.02)
            inflight_samples.append((_oracle_in_flight(url) > 0, moving))
            if t - last_print >= 3.0 and recorder.trajectory:
                _, x, y, yaw = recorder.trajectory[-1]
                action = recorder.results[-1][1].action if recorder.results else '-'
                say(f'[demo] t={t:5.1f}s pose=({x:5.2f}, {y:5.2f}, {yaw:+.2f}) '
                    f'results={len(recorder.results)} last action={action}')
                last_print = t
            if not schedule and done_at is None and recorder.states and \
                    recorder.states[-1].status in ('completed', 'failed'):
                done_at = t
            if done_at is not None and t - done_at > 2.0:
                break
        summary = evaluate(scenario, recorder.trajectory, recorder.commands,
                           [(0.0, 'collision')] * recorder.collisions).to_dict()
        in_flight = [m for f, m in inflight_samples if f]
        bound = time_lower_bound(scenario, switched, latency, PLANNER_LIMITS['max_linear_vel'])
        goal_time = summary['time_to_goal']
        summary.update({
            'profile': profile, 'world': 'realistic' if realism else 'ideal',
            'time_lower_bound': round(bound, 2) if bound is not None else None,
            'time_ratio': round(goal_time / bound, 2) if goal_time and bound else None,
            'final_task_message': recorder.states[-1].message if recorder.states else '',
            'latency': list(latency), 'seed': seed, 'results': len(recorder.results),
            'error_results': sum(1 for _, r in recorder.results if r.status == 2),
            'moving_while_inferring': (sum(in_flight) / len(in_flight)) if in_flight else 0.0,
            'limit_violations': _limit_violations(recorder.stamped_commands),
            'final_task_status': recorder.states[-1].status if recorder.states else '',
        })
        if outage_at is not None:
            stopped = [t for t, v, w in recorder.commands
                       if t >= outage_at and v == 0.0 and w == 0.0]
            summary['stop_after_outage_s'] = (stopped[0] - outage_at) if stopped else None
        if write_media:
            summary['files'] = _write_media(out_dir, scenario, recorder)
        (out_dir / 'summary.json').write_text(json.dumps(summary, indent=2))
        return summary
    finally:
        if recorder is not None:
            recorder.close()
        procs.stop_all()


def time_lower_bound(scenario: Scenario, switched, latency, max_speed: float) -> float | None:
    """A time to goal no run can beat.

    The last instruction's time, one model answer at the shortest latency, and the shortest
    free path to the goal at the speed limit. It leaves out turning and acceleration, so it
    is below what is physically possible.
    ``switched`` holds (t, (x, y, yaw)) for each instruction given.
    """
    from vln_ros.sim.sight import RouteField

    if not scenario.success or not scenario.success.landmark or not switched:
        return None  # no goal to reach (stop_short): no lower bound either
    mark = scenario.landmark(scenario.success.landmark)
    t, (x, y, _) = switched[-1]
    field = RouteField(World(scenario), mark, keep_off=scenario.robot.radius)
    length = field.path_length(x, y)
    if length is None:
        return None
    # The path ends goal_margin from the footprint; success starts at the tolerance.
    drive = max(length + field.goal_margin - scenario.success.tolerance, 0.0) / max_speed
    return t + latency[0] + drive


def _write_media(out_dir: pathlib.Path, scenario: Scenario, recorder: Recorder) -> list[str]:
    files = []
    world = World(scenario)
    trail = [(x, y, yaw) for _, x, y, yaw in recorder.trajectory]
    plot = render_topdown(world, trail, size=640, pose=trail[-1] if trail else None)
    cv2.imwrite(str(out_dir / 'trajectory.png'), plot)
    files.append('trajectory.png')
    if recorder.frames:
        h, w = recorder.frames[0].shape[:2]
        path = out_dir / 'debug.mp4'
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), 2.0, (w, h))
        for frame in recorder.frames:
            writer.write(frame)
        writer.release()
        cv2.imwrite(str(out_dir / 'debug_last.png'), recorder.frames[-1])
        files += ['debug.mp4', 'debug_last.png']
    return files


def main(argv=None) -> int:
    """Run a scenario (default corridor_door) and print where the results are."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--scenario', default='corridor_door',
                        help='scenario name (vln_ros/sim/scenarios) or YAML path')
    parser.add_argument('--out', default='out/demo', help='output directory')
    parser.add_argument('--latency', nargs=2, type=float, default=(5.0, 8.0),
                        metavar=('MIN', 'MAX'), help='oracle model latency range (s)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--no-media', action='store_true', help='skip video and plot')
    parser.add_argument('--profile', choices=PROFILE_NAMES, default=None,
                        help="oracle error profile (default: the scenario's)")
    parser.add_argument('--ideal-world', action='store_true',
                        help='exact odometry, a centred camera and one clock')
    parser.add_argument('--no-guard', action='store_true',
                        help='drive without the obstacle guard (for comparison)')
    args = parser.parse_args(argv)
    # A domain of its own, so a demo never drives someone else's robot or run on this host.
    reserve_domain_id()
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    out = pathlib.Path(args.out)
    t0 = time.monotonic()
    summary = run_scenario(args.scenario, out, tuple(args.latency), args.seed,
                           write_media=not args.no_media, profile=args.profile,
                           realism=not args.ideal_world, guard=not args.no_guard)
    print(json.dumps({k: v for k, v in summary.items() if k != 'files'}, indent=2))
    print(f'[demo] {"SUCCESS" if summary["success"] else "FAILED"}: {summary["reason"]} '
          f'in {time.monotonic() - t0:.0f} s; wrote {", ".join(summary.get("files", []))} '
          f'and summary.json to {out}/')
    return 0 if summary['success'] else 1


if __name__ == '__main__':
    sys.exit(main())
