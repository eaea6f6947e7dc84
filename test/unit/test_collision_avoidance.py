"""Tests for stuck detection and the detour search, alone and inside the planner."""

import math

import numpy as np
import pytest

from test.unit.test_collision_guard import BOX, DECEL, wall_ahead, wall_beside
from test.unit.test_planner import Sim, active_planner, result, speed, wp
from test.unit.test_planner_guard import ScanningSim, guarded_planner
from vln_ros.core.collision.detour import choose_detour
from vln_ros.core.collision.footprint import Footprint, circle_footprint, parse_footprint
from vln_ros.core.collision.guard import CollisionGuard, GuardConfig
from vln_ros.core.collision.guarded_output import GuardedOutput
from vln_ros.core.collision.obstacle_memory import ObstacleMemory
from vln_ros.core.collision.stuck import StuckDetector
from vln_ros.core.geometry import Pose2D


def test_stuck_fires_after_the_timeout_without_progress_and_not_before():
    s = StuckDetector(timeout=3.0)
    pose = Pose2D(0.0, 0.0, 0.0)
    assert not s.update(0.0, (0.3, 0.0, 0.0), pose)
    assert not s.update(2.9, (0.3, 0.0, 0.0), pose)
    assert s.update(3.0, (0.3, 0.0, 0.0), Pose2D(0.02, 0.0, 0.0))


def test_progress_or_a_turn_as_asked_or_standing_still_is_not_stuck():
    s = StuckDetector(timeout=1.0)
    for i in range(50):  # moving 1 cm per 0.1 s: 5 cm every 0.5 s
        assert not s.update(0.1 * i, (0.1, 0.0, 0.0), Pose2D(0.01 * i, 0.0, 0.0))
    s = StuckDetector(timeout=1.0)
    for i in range(50):
        assert not s.update(0.1 * i, (0.0, 0.0, 0.8), Pose2D(0.0, 0.0, 0.08 * i))
    s = StuckDetector(timeout=1.0)
    for i in range(50):
        assert not s.update(0.1 * i, (0.0, 0.0, 0.0), Pose2D(0.0, 0.0, 0.0))


def test_planner_on_a_base_that_does_not_move_reports_blocked_and_stops():
    planner = active_planner(stuck_timeout=2.0)
    sim = Sim(planner)
    planner.on_result(result(0.0, [wp(0.5), wp(1.0)]), 0.0)
    sim.run(4.0, moving=False)
    reasons = [c.reason for _, c in sim.commands]
    first = reasons.index('blocked')
    assert 1.9 <= sim.commands[first][0] <= 2.2
    assert speed(sim.commands[-1][1]) == 0.0 and planner.reason == 'blocked'
    # A new answer is a new attempt.
    planner.on_result(result(sim.t, [wp(0.5)]), sim.t)
    assert planner.step(sim.t + 0.02).reason == 'tracking'


def test_stuck_detection_can_be_turned_off():
    planner = active_planner(stuck_timeout=0.0)
    sim = Sim(planner)
    planner.on_result(result(0.0, [wp(1.0)]), 0.0)
    sim.run(5.0, moving=False)
    assert 'blocked' not in {c.reason for _, c in sim.commands}


def _block(x0, x1, y0, y1, step=0.03):
    """A box's points, filled on a 3 cm grid (m, base frame)."""
    return np.array([[x, y] for x in np.arange(x0, x1, step) for y in np.arange(y0, y1, step)])


def guard():
    return CollisionGuard(GuardConfig(footprint=BOX))


def test_detour_goes_round_a_box_on_the_straight_line():
    # 0.55 m in front of the footprint: in the way, with room to turn.
    box = _block(0.9, 1.2, -0.3, 0.31)
    detour = choose_detour(guard(), box, (2.5, 0.0), 0.5, 0.8)
    assert detour is not None and detour.progress > 0.05
    assert abs(detour.wz) > 0.1  # it turns away from the straight line


def test_no_detour_through_a_wall():
    assert choose_detour(guard(), wall_ahead(0.5, half_width=3.0), (2.5, 0.0), 0.5, 0.8) \
        is None


def test_planner_drives_round_a_box_to_the_waypoint_beyond_it():
    box = _block(1.0, 1.3, -0.25, 0.26)
    planner = guarded_planner()
    sim = ScanningSim(planner, box)
    planner.on_result(result(0.0, [wp(1.0)]), 0.0)
    # A goal beyond the box (answers reach 1 m at most; a goal is what the next issue brings).
    planner._path = [Pose2D(2.2, 0.0, 0.0)]  # noqa: SLF001
    planner._tracker.set_path(planner._path, start=Pose2D(0.0, 0.0, 0.0))  # noqa: SLF001
    clearances = []
    fp = Footprint(BOX)

    def watch(cmd):
        clearances.append(fp.distance(_to_base(box, sim.pose)).min())
        return not planner.path
    sim.run(30.0, until=watch)
    states = {c.guard.state for _, c in sim.commands if c.guard is not None}
    assert 'detour' in states
    assert math.hypot(sim.pose.x - 2.2, sim.pose.y) < 0.3
    assert min(clearances) > 0.0  # never touched the box


def _to_base(points, pose):
    c, s = np.cos(pose.yaw), np.sin(pose.yaw)
    d = points - np.array([pose.x, pose.y])
    return np.stack((c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]), axis=1)


@pytest.mark.parametrize('y', [0.5, -0.5])
def test_detour_is_not_needed_along_a_wall(y):
    planner = guard()
    verdict = planner.check(0.5, 0.0, 0.0, wall_beside(y), DECEL)
    assert verdict.state == 'clear'


def test_the_way_field_goes_round_a_box_and_knows_a_room_wall_has_no_way_round():
    from vln_ros.core.collision.way_field import WayField
    box = _block(1.0, 1.3, -0.25, 0.26)
    field = WayField(box, (2.2, 0.0), 0.25)
    straight = 2.2
    assert field.start_cost() > straight + 0.1  # round the box, so longer than straight
    assert field.start_cost() < straight + 1.0
    assert field.cost(1.15, 0.0) == math.inf  # inside the grown box
    # Beside the box is nearer the goal, along the way, than straight in front of it.
    assert field.cost(0.9, 0.6) < field.cost(0.7, 0.0)
    wall = np.array([[1.0, y] for y in np.arange(-3.0, 3.0, 0.02)])
    assert WayField(wall, (2.0, 0.0), 0.25).start_cost() == math.inf
    # With nothing in the way the field is the straight distance (8-neighbour steps).
    empty = WayField(np.zeros((0, 2)), (1.5, 0.0), 0.25)
    assert empty.start_cost() == pytest.approx(1.5, abs=0.11)


def test_the_detour_goes_round_the_box_not_into_its_corner():
    # Straight-line progress picks the arc that hugs the corner until the robot stands in
    # it; progress along the way field keeps a way open past the box.
    g = CollisionGuard(GuardConfig(footprint=BOX))
    box = _block(0.8, 1.1, -0.4, 0.1)
    detour = choose_detour(g, box, (1.8, -0.1), 0.5, 0.8)
    assert detour is not None and detour.wz > 0.0  # left, past the box's free side




def _round_guard():
    # The simulator's round robot (radius 0.3 m): a 16-gon, whose corners sweep 6 mm past
    # its edges when it turns on the spot.
    return CollisionGuard(GuardConfig(footprint=parse_footprint(circle_footprint(0.3))))


def test_a_goal_just_past_a_box_face_leads_round_it_and_one_inside_a_room_wall_does_not():
    from vln_ros.core.collision.way_field import WayField
    # The scan sees the box's near face; the model's 1 m waypoint ends 0.2 m past it, in the
    # grown face. The nearest free cells lie behind the face, so the way goes round it.
    face = np.array([[0.5, y] for y in np.arange(-0.3, 0.31, 0.02)])
    field = WayField(face, (0.7, 0.0), 0.25)
    assert math.isfinite(field.start_cost())
    assert field.cost(0.5, 0.7) < field.cost(0.2, 0.0)  # beside the box is on the way
    # A goal deep in a box the scan sees whole: the way leads past it along the path's
    # heading, round the box, not to the face in front.
    box = _block(0.5, 1.2, -0.3, 0.31)
    field = WayField(box, (0.9, 0.0), 0.25, heading=0.0)
    assert field.cost(0.9, 0.7) < field.cost(0.2, 0.0)
    # A goal inside a wall that spans the field: past it lies nothing reachable, so there is
    # no way round (the robot stops short); without the path's heading, the way ends at the
    # wall's near side, straight ahead.
    wall = np.array([[1.0 + dx, y] for dx in (0.0, 0.02) for y in np.arange(-3.0, 3.0, 0.02)])
    assert WayField(wall, (1.0, 0.0), 0.25, heading=0.0).start_cost() == math.inf
    field = WayField(wall, (1.0, 0.0), 0.25)
    assert field.start_cost() == pytest.approx(1.0, abs=0.15)
    assert field.cost(0.4, 0.0) < field.start_cost() < field.cost(0.0, 0.5)


def test_a_robot_facing_a_box_turns_on_the_spot_towards_the_way_round():
    # The box's face is 3 cm off the footprint's front edge, and the box reaches farther
    # right: no arc fits without driving at it first, so the detour is a turn on the spot,
    # to the left, and the guard lets it through.
    g = _round_guard()
    face = np.array([[0.33, y] for y in np.arange(-1.0, 0.2, 0.02)])
    detour = choose_detour(g, face, (0.5, 0.0), 0.5, 0.8)
    assert detour is not None and detour.vx == 0.0 and detour.wz > 0.0
    assert g.check(detour.vx, 0.0, detour.wz, face, DECEL).state == 'clear'
    # A face as wide on both sides: the side of the last turn is kept, so that the choice
    # does not flip with the scan's noise.
    face = np.array([[0.33, y] for y in np.arange(-0.4, 0.41, 0.02)])
    for side in (1.0, -1.0):
        kept = choose_detour(g, face, (0.5, 0.0), 0.5, 0.8, side=side)
        assert kept is not None and kept.vx == 0.0 and kept.wz * side > 0.0


def test_a_turn_on_the_spot_that_takes_a_corner_away_from_a_point_is_allowed():
    g = _round_guard()
    # A point just off an edge of the 16-gon, 3 degrees past its corner at 11.25 degrees:
    # inside the circle the corners sweep. Turning left brings that corner onto it; turning
    # right takes the corner away.
    a = math.radians(11.25 + 3.0)
    point = np.array([[0.3045 * math.cos(a), 0.3045 * math.sin(a)]])
    assert g.footprint.distance(point)[0] > 0.0
    assert math.hypot(*point[0]) < g.footprint.radius
    assert g.check(0.0, 0.0, 0.5, point, DECEL).state == 'stop'
    assert g.check(0.0, 0.0, -0.5, point, DECEL).state == 'clear'


def test_planner_drives_round_a_box_its_path_ends_just_behind():
    # The model does not see the box; its 1 m waypoint ends 0.1 m past the box's near face,
    # inside the face as the guard grows it. The planner drives round the box instead of
    # stopping in front of it.
    box = _block(0.9, 1.3, -0.5, 0.2)
    planner = active_planner()
    g = _round_guard()
    planner.guard = GuardedOutput(g, ObstacleMemory(['scan'], 0.5))
    sim = ScanningSim(planner, box)
    planner.on_result(result(0.0, [wp(0.5), wp(1.0)]), 0.0)
    clearances = []

    def watch(cmd):
        clearances.append(g.footprint.distance(_to_base(box, sim.pose)).min())
        return sim.pose.x > 1.0
    sim.run(20.0, until=watch)
    states = {c.guard.state for _, c in sim.commands if c.guard is not None}
    assert 'detour' in states
    assert sim.pose.x > 1.0 and sim.pose.y > 0.4  # level with the box, on its free side
    assert min(clearances) > 0.0
