"""A fast closed loop without ROS: world, oracle, planner core and guard in one process.

A development tool, not a figure of record. It steps simulated time as fast as the CPU
allows: 5-8 s of model latency cost nothing, so a scenario that takes two minutes on the
real stack runs in seconds. That makes it easy to try a change of the planner or the guard
on many seeds first. What it leaves out: DDS, the model server's protocol and format faults,
perception's keyframe choice (a request goes out as soon as the previous answer is in, or
after a turn answer once the turn is driven, as perception's turn_hold does), the camera's
clock and delay, and the task node (arrival is two confident "stop" answers in a
row, as the task node's default rule). The closed-loop figures of record come from
bench/bench_closed_loop.py on the real nodes.

    python -m vln_ros.sim.fast_loop --scenario box_in_the_way --seeds 5 --guard
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from types import SimpleNamespace

import numpy as np

from vln_ros.core.collision.footprint import circle_footprint, parse_footprint
from vln_ros.core.collision.guard import CollisionGuard, GuardConfig
from vln_ros.core.collision.guarded_output import GuardedOutput
from vln_ros.core.collision.obstacle_memory import ObstacleMemory
from vln_ros.core.collision.sensor_points import SensorPose, scan_to_points, to_base_plane
from vln_ros.core.geometry import Pose2D
from vln_ros.core.planner import Planner, PlannerConfig, PlannerResult
from vln_ros.core.turn_chain import turn_direction
from vln_ros.core.turn_hold import TurnHold
from vln_ros.core.velocity_limits import Limits
from vln_ros.sim.evaluation import evaluate
from vln_ros.sim.oracle import Oracle
from vln_ros.sim.oracle_profiles import profile_named
from vln_ros.sim.range_sensor import ScanConfig, simulate_scan
from vln_ros.sim.world import Scenario, World

__all__ = ['run']

DT = 0.02  # planner and physics step (s): 50 Hz
SCAN_PERIOD = 0.1
COMPLETION_CONFIDENCE, COMPLETION_COUNT = 0.7, 2  # the task node's defaults


def run(name: str, seed: int = 0, profile: str | None = None, guard: bool = True,
        latency: tuple[float, float] = (5.0, 8.0), time_limit: float | None = None,
        turn_hold: float = 3.0) -> dict:
    """Run one scenario; return the evaluation's summary plus what the loop saw."""
    scenario = Scenario.load(name)
    world = World(scenario, seed=seed)
    profile = profile or scenario.oracle_profile
    oracle = Oracle(lambda: (world, world.ground_truth()),
                    hfov_deg=scenario.robot.camera.hfov, profile=profile_named(profile),
                    seed=seed)
    rng = random.Random(seed + 1)
    planner = Planner(PlannerConfig(limits=Limits(max_linear_vel=0.5, max_angular_vel=0.8,
                                                  max_linear_acc=0.5, max_angular_acc=1.5),
                                    result_timeout=max(12.0, 1.5 * latency[1]),
                                    expected_latency=sum(latency) / 2))
    scan_cfg = ScanConfig()
    scan_rng = np.random.default_rng(seed + 104729)
    if guard:
        footprint = parse_footprint(circle_footprint(scenario.robot.radius))
        planner.guard = GuardedOutput(CollisionGuard(GuardConfig(footprint=footprint)),
                                      ObstacleMemory(['scan'], 0.5))
    limit = time_limit or (scenario.success.time_limit if scenario.success else 90.0)
    schedule = sorted(scenario.instructions, key=lambda i: i.at)
    instruction, task, pending, history = None, 0, None, []
    stops, done, next_scan, blocked = 0, False, 0.0, False
    trajectory, commands, events, reasons = [], [], [], {}
    collisions = 0
    hold = TurnHold(turn_hold)
    while world.time < limit and not done:
        t = world.time
        while schedule and schedule[0].at <= t:
            instruction = schedule.pop(0).text
            task += 1
            planner.set_active_task(f't{task}')
            pending, history, stops = None, [], 0
            hold.clear()
        odom = world.odometry()
        planner.on_odometry(t, Pose2D(odom.x, odom.y, odom.yaw))
        if guard and t >= next_scan:
            next_scan = t + SCAN_PERIOD
            ranges = simulate_scan(world, world.ground_truth(), scan_cfg, scan_rng)
            pts = to_base_plane(scan_to_points(ranges, scan_cfg.angle_min,
                                               scan_cfg.angle_increment, scan_cfg.range_min,
                                               scan_cfg.range_max),
                                SensorPose.planar(0.0, 0.0, 0.3), 0.05, 1.0)
            planner.on_obstacles('scan', pts, t, t)
        if instruction is not None and pending is None and not hold.held:
            # One request in flight; its answer is about the pose at this capture.
            # The next request says so when the planner gave up a blocked attempt.
            answer = oracle.answer(instruction, world.ground_truth(), world, history, blocked)
            pending, blocked = (t + rng.uniform(*latency), t, answer, task), False
        if pending is not None and t >= pending[0]:
            _, captured, answer, of_task = pending
            pending = None
            if of_task == task:
                history.append((answer['environment'], answer['action']))
                waypoints = [SimpleNamespace(**w) for w in answer['waypoints']]
                status = 'stop' if answer['action'] == 'stop' else 'ok'
                planner.on_result(PlannerResult(captured, f't{task}', len(history), status,
                                                waypoints, t - captured), t)
                # The next request leaves once a turn is driven (perception's turn_hold).
                hold.on_answer(t, turn_direction(waypoints) if status == 'ok' else 0)
                confident = status == 'stop' and \
                    waypoints[0].confidence >= COMPLETION_CONFIDENCE
                stops = stops + 1 if confident else 0
                if stops >= COMPLETION_COUNT and not schedule:
                    planner.set_active_task(None)  # arrived: the task completes
        cmd = planner.step(t)
        reasons[cmd.reason] = reasons.get(cmd.reason, 0) + 1
        blocked = blocked or cmd.reason == 'blocked'
        hold.on_command_state(cmd.reason)
        hold.expired(t)
        world.step(cmd.vx, cmd.vy, cmd.wz, DT)
        truth = world.ground_truth()
        trajectory.append((world.time, truth.x, truth.y, truth.yaw))
        commands.append((t, cmd.vx, cmd.vy, cmd.wz))
        if world.collisions != collisions:
            collisions = world.collisions
            events.append((world.time, 'collision'))
        done = planner.active_task is None and not schedule and instruction is not None \
            and abs(cmd.vx) + abs(cmd.wz) == 0.0 and world.time > 1.0
    # A little standing time, so that "stopped and staying" can be judged.
    for _ in range(int(2.0 / DT)):
        world.step(0.0, 0.0, 0.0, DT)
        truth = world.ground_truth()
        trajectory.append((world.time, truth.x, truth.y, truth.yaw))
        commands.append((world.time, 0.0, 0.0, 0.0))
    summary = evaluate(scenario, trajectory, commands, events).to_dict()
    summary.update(seed=seed, profile=profile, guard=guard, reasons=reasons,
                   oracle=dict(oracle.counts))
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--scenario', required=True)
    ap.add_argument('--seeds', type=int, default=3)
    ap.add_argument('--profile', default=None)
    ap.add_argument('--guard', action='store_true', help='the obstacle guard on the scan')
    ap.add_argument('--turn-hold', type=float, default=3.0,
                    help="perception's turn_hold (s); 0: the next request leaves at once")
    args = ap.parse_args(argv)
    for seed in range(args.seeds):
        s = run(args.scenario, seed, args.profile, args.guard, turn_hold=args.turn_hold)
        print(json.dumps({k: s[k] for k in ('scenario', 'seed', 'profile', 'guard', 'success',
                                            'reason', 'collisions', 'time_to_goal',
                                            'reasons')}), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
