"""Tests of scenario obstacles: parsing, collisions, motion, the scan, the camera, the oracle."""

import copy
import math

import numpy as np
import pytest

from test.unit.test_sim_world import BASE
from vln_ros.sim.range_sensor import ScanConfig, simulate_scan
from vln_ros.sim.render import CameraRenderer
from vln_ros.sim.sight import RouteField
from vln_ros.sim.sim_pose import Pose
from vln_ros.sim.world import Scenario, ScenarioError, World


def with_obstacles(*obstacles) -> Scenario:
    d = copy.deepcopy(BASE)
    d['world']['obstacles'] = list(obstacles)
    return Scenario.from_dict(d)


def test_obstacles_parse_with_defaults_and_named_errors():
    sc = with_obstacles({'position': [2.0, 2.0]},
                        {'kind': 'pillar', 'position': [4.0, 1.0], 'size': 0.3,
                         'seen_by_oracle': False, 'moves': {'at': 5.0, 'to': [4.0, 2.0]}})
    box, pillar = sc.obstacles
    assert box.shape.kind == 'box' and box.shape.size == 0.5 and box.seen_by_oracle
    assert pillar.shape.is_round and not pillar.seen_by_oracle and pillar.move_at == 5.0
    assert all(o.shape.name not in [m.name for m in sc.landmarks] for o in sc.obstacles)
    for bad, match in (({'kind': 'door', 'position': [1, 1]}, 'kind'),
                       ({'size': 0.5}, 'position'),
                       ({'position': [1, 1], 'seen_by_oracle': 'no'}, 'seen_by_oracle'),
                       ({'position': [1, 1], 'moves': {'at': 1.0}}, 'moves.to'),
                       ({'position': [1, 1], 'colour': [1, 2, 3]}, 'colour')):
        with pytest.raises(ScenarioError, match=match):
            with_obstacles(bad)


def test_an_obstacle_blocks_the_robot_and_counts_as_a_collision():
    w = World(with_obstacles({'position': [1.8, 2.0], 'size': 0.4}))  # robot starts at (1, 2)
    for _ in range(100):
        w.step(0.5, 0.0, 0.0, 0.02)
    assert w.collisions == 1 and w.ground_truth().x < 1.8 - 0.2 - 0.3 + 0.02


def test_the_scan_and_the_camera_see_an_obstacle():
    w = World(with_obstacles({'position': [2.5, 2.0], 'size': 0.4}))
    cfg = ScanConfig(noise=0.0)
    ranges = simulate_scan(w, Pose(1.0, 2.0, 0.0), cfg, np.random.default_rng(0))
    ahead = ranges[np.argmin(np.abs(cfg.angle_min + cfg.angle_increment * np.arange(cfg.beams)))]
    assert ahead == pytest.approx(2.5 - 0.2 - 1.0, abs=1e-6)
    renderer = CameraRenderer(160, 120, 90.0)
    assert renderer.depth(w, Pose(1.0, 2.0, 0.0))[70, 80] == pytest.approx(1.3, abs=0.02)
    plain = World(Scenario.from_dict(BASE))
    assert not np.array_equal(renderer.render(w, Pose(1.0, 2.0, 0.0)),
                              renderer.render(plain, Pose(1.0, 2.0, 0.0)))


def test_a_moving_obstacle_slides_to_its_place_and_stops_short_of_the_robot():
    w = World(with_obstacles({'position': [3.0, 3.5], 'size': 0.4,
                              'moves': {'at': 1.0, 'to': [3.0, 2.0], 'speed': 0.5}}))
    for _ in range(50):
        w.step(0.0, 0.0, 0.0, 0.02)
    assert w.obstacle_shapes[0].position == (3.0, 3.5)  # not yet
    version = w.layout_version
    for _ in range(250):
        w.step(0.0, 0.0, 0.0, 0.02)
    assert w.obstacle_shapes[0].position == pytest.approx((3.0, 2.0))
    assert w.layout_version > version
    assert w.clearance(3.0, 2.25) == pytest.approx(0.05)  # solid where it now stands
    # Onto the robot: it stops short.
    w2 = World(with_obstacles({'position': [1.0, 3.5], 'size': 0.4,
                               'moves': {'at': 0.0, 'to': [1.0, 2.0], 'speed': 1.0}}))
    for _ in range(200):
        w2.step(0.0, 0.0, 0.0, 0.02)
    assert w2.obstacle_shapes[0].distance(1.0, 2.0) >= w2.scenario.robot.radius - 1e-9


def test_the_oracle_view_leaves_out_unseen_obstacles():
    seen = World(with_obstacles({'position': [2.0, 2.0], 'size': 0.6}))
    unseen = World(with_obstacles({'position': [2.0, 2.0], 'size': 0.6,
                                   'seen_by_oracle': False}))
    assert seen.clearance(2.4, 2.0, oracle_view=True) == pytest.approx(0.1)
    assert unseen.clearance(2.4, 2.0, oracle_view=True) > 0.5
    assert unseen.clearance(2.4, 2.0) == pytest.approx(0.1)  # still solid for the robot
    mark = unseen.scenario.landmark('red door')
    straight = RouteField(unseen, mark, oracle_view=True).path_length(1.0, 2.0)
    around = RouteField(seen, mark, oracle_view=True).path_length(1.0, 2.0)
    assert around > straight + 0.2 and math.isfinite(straight)


@pytest.mark.parametrize('name', ['box_in_the_way', 'box_slides_in'])
def test_obstacle_scenarios_lead_the_oracle_through_an_obstacle_it_does_not_see(name):
    sc = Scenario.load(name)
    w = World(sc.ideal_world())
    obstacle = sc.obstacles[0]
    if obstacle.move_at is not None:  # let it slide into the way first
        while w.time < obstacle.move_at + 5.0:
            w.step(0.0, 0.0, 0.0, 0.05)
    door, start = sc.landmark('red door'), w.ground_truth()
    as_seen = RouteField(w, door, oracle_view=True).path_length(start.x, start.y)
    real = RouteField(w, door, keep_off=sc.robot.radius + 0.1).path_length(start.x, start.y)
    straight = door.distance(start.x, start.y)
    # The oracle's way to the door is the straight one, through the box it does not see ...
    assert as_seen < straight
    # ... and a real way round it exists, a little longer.
    assert real is not None and real > as_seen + 0.05


def test_told_it_was_blocked_against_an_unseen_box_the_oracle_turns_to_the_way_round():
    # The robot stands with its front 5 cm from the box the model did not see. The free way
    # round starts beside or behind it: the answer turns towards it rather than giving no
    # way at all (which left the robot in front of the box, answer after answer).
    from vln_ros.sim.oracle import Oracle
    from vln_ros.sim.oracle_profiles import OracleProfile
    sc = Scenario.load('box_in_the_way').ideal_world()
    w = World(sc)
    box = sc.obstacles[0].shape
    pose = Pose(box.position[0] - box.size / 2 - sc.robot.radius - 0.05, box.position[1] - 0.2,
                0.0)
    oracle = Oracle(lambda: (w, pose), hfov_deg=sc.robot.camera.hfov,
                    profile=OracleProfile('sight only, no errors', sight_only=True), seed=0)
    plain = oracle.answer('go to the red door', pose, w, [], False)
    told = oracle.answer('go to the red door', pose, w, [], True)
    assert plain['action'] == 'forward'  # it does not see the box: straight on
    assert 'blocked' in told['environment']
    assert told['action'] in ('turn_left', 'turn_right', 'forward')
    if told['action'] == 'forward':
        # Any way it gives leads out of the box's shadow, not into the box.
        end = pose.moved(told['waypoints'][-1]['dx'], told['waypoints'][-1]['dy'], 0.0)
        assert w.clearance(end.x, end.y) > sc.robot.radius
    else:
        assert told['action'] == 'turn_right'  # the box sits left of the robot's centre
    assert oracle.counts['blocked_replan'] == 1
