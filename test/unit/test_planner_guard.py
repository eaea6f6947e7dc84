"""Tests for the obstacle guard inside the planner: stop, approach, stale sources, ramps."""

import numpy as np

from test.unit.test_collision_guard import BOX
from test.unit.test_planner import DT, PATH, Sim, active_planner, result, speed, wp
from vln_ros.core.collision.guard import CollisionGuard, GuardConfig
from vln_ros.core.collision.guarded_output import GuardedOutput
from vln_ros.core.collision.obstacle_memory import ObstacleMemory
from vln_ros.core.geometry import Pose2D


def guarded_planner(sources=('scan',), timeout=0.5):
    planner = active_planner()
    guard = CollisionGuard(GuardConfig(footprint=BOX))
    planner.guard = GuardedOutput(guard, ObstacleMemory(list(sources), timeout))
    return planner


def wall_in_odom(x: float, half_length: float = 3.0) -> np.ndarray:
    # A room's wall: longer than the detour's field, so there is no way round it.
    ys = np.arange(-half_length, half_length, 0.02)
    return np.stack((np.full_like(ys, x), ys), axis=1)


class ScanningSim(Sim):
    """The base of test_planner, plus a scanner that sees fixed obstacles at 10 Hz.

    ``obstacles`` are points in the odom frame (None: nothing in sight); ``scan_until`` ends
    the scans at that time.
    """

    def __init__(self, planner, obstacles=None, scan_until=None):
        super().__init__(planner)
        self.obstacles = obstacles
        self.scan_until = scan_until
        self._next_scan = 0.0

    def run(self, seconds, until=None, moving=True):
        cmd = None
        for _ in range(int(round(seconds / DT))):
            if self.t >= self._next_scan and (self.scan_until is None or self.t < self.scan_until):
                self._next_scan = self.t + 0.1
                pts = np.zeros((0, 2)) if self.obstacles is None else self.obstacles
                self.planner.on_obstacles('scan', _to_base(pts, self.pose), self.t, self.t)
            cmd = super().run(DT, until, moving)
            if until is not None and until(cmd):
                break
        return cmd


def _to_base(points, pose: Pose2D) -> np.ndarray:
    c, s = np.cos(pose.yaw), np.sin(pose.yaw)
    d = points - np.array([pose.x, pose.y])
    return np.stack((c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]), axis=1)


def test_a_forward_path_stops_short_of_a_wall_and_reports_it():
    planner = guarded_planner()
    sim = ScanningSim(planner, wall_in_odom(0.8))
    planner.on_result(result(0.0, [wp(1.0), wp(1.0)] * 1 + PATH[-1:]), 0.0)
    sim.run(6.0)
    front_gap = 0.8 - sim.pose.x - 0.35
    assert 0.0 < front_gap <= 0.08
    assert speed(sim.commands[-1][1]) == 0.0
    # It slowed down ahead of the wall instead of braking at the last moment.
    states = {c.guard.state for _, c in sim.commands if c.guard is not None}
    assert 'approach' in states or 'slowdown' in states


def test_a_far_wall_leaves_the_path_alone():
    free = active_planner()
    fsim = Sim(free)
    free.on_result(result(0.0, PATH), 0.0)
    fsim.run(3.0)
    planner = guarded_planner()
    sim = ScanningSim(planner, wall_in_odom(6.0))
    planner.on_result(result(0.0, PATH), 0.0)
    sim.run(3.0)
    assert sim.pose.x == fsim.pose.x and sim.pose.y == fsim.pose.y


def test_no_scan_means_no_motion_and_a_reason():
    planner = guarded_planner()
    sim = ScanningSim(planner, scan_until=-1.0)  # never scans
    planner.on_result(result(0.0, PATH), 0.0)
    cmd = sim.run(1.0)
    assert cmd.reason == 'stale_sensor' and all(speed(c) == 0.0 for _, c in sim.commands)


def test_a_scan_that_stops_arriving_stops_the_robot_within_the_timeout_and_one_period():
    planner = guarded_planner()
    sim = ScanningSim(planner, scan_until=1.0)
    planner.on_result(result(0.0, [wp(1.0)]), 0.0)
    sim.run(2.0)
    moving = [t for t, c in sim.commands if speed(c) > 0.0]
    assert moving and max(moving) <= 0.9 + 0.5 + DT + 1e-9  # last scan at 0.9 s
    stopped = [c for t, c in sim.commands if t > 0.9 + 0.5 + DT]
    assert stopped and all(c.reason == 'stale_sensor' and speed(c) == 0.0 for c in stopped)


def test_a_ramp_down_into_an_obstacle_is_cut_at_once():
    planner = guarded_planner()
    sim = ScanningSim(planner, wall_in_odom(5.0))
    planner.on_result(result(0.0, [wp(1.0)]), 0.0)
    sim.run(1.2)
    assert speed(sim.commands[-1][1]) > 0.1
    planner.set_active_task(None)  # the ramp-down begins
    sim.obstacles = wall_in_odom(sim.pose.x + 0.35 + 0.03)  # and something appears ahead
    sim._next_scan = sim.t
    n = len(sim.commands)
    sim.run(DT * 3)
    after = [c for _, c in sim.commands[n:]]
    assert after[0].reason == 'obstacle' and all(speed(c) == 0.0 for c in after)
