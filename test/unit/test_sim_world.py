"""Tests of the simulator's scenarios and world: loading, validation, motion, look-up."""

import copy
import math
import os

from hypothesis import given, settings
from hypothesis import strategies as st
import pytest
import yaml

from vln_ros.sim.scenario import SCENARIO_DIR
from vln_ros.sim.sim_pose import Pose, wrap_angle
from vln_ros.sim.world import Landmark, Scenario, ScenarioError, World, colour_name

# Local settings (not a global profile) so that other test modules keep their own.
FUZZ = settings(max_examples=int(os.environ.get('VLN_FUZZ_EXAMPLES', '300')), deadline=None,
                derandomize=True)

BASE = {
    'name': 'unit',
    'world': {
        'size': [6.0, 4.0],
        'landmarks': [
            {'name': 'red door', 'kind': 'door', 'color': [220, 30, 30], 'position': [5.9, 2.0]},
            {'name': 'blue door', 'kind': 'door', 'color': [30, 60, 220],
             'position': [0.1, 2.0]},
            {'name': 'green box', 'kind': 'box', 'color': [30, 180, 50], 'position': [3.0, 3.5],
             'size': 0.5, 'height': 0.5},
            {'name': 'tall column', 'kind': 'pillar', 'color': [240, 240, 240],
             'position': [3.0, 0.5], 'size': 0.3},
        ],
    },
    'robot': {'start': [1.0, 2.0, 0.0]},
    'instructions': [{'at': 10.0, 'text': 'stop'}, {'at': 0.0, 'text': 'go to the red door'}],
    'success': {'landmark': 'red door'},
}


def scenario(**robot):
    d = copy.deepcopy(BASE)
    d['robot'].update(robot)
    return Scenario.from_dict(d)


@pytest.mark.parametrize('name', ['corridor_door', 'turn_to_landmark', 'switch_mid_way'])
def test_packaged_scenarios_load(name):
    by_name = Scenario.load(name)
    by_path = Scenario.load(SCENARIO_DIR / f'{name}.yaml')
    assert by_name == by_path and by_name.name == name
    world = World(by_name)
    assert not world.collides(world.robot.x, world.robot.y)
    assert max(by_name.size) < 8.0
    target = by_name.landmark(by_name.success.landmark)
    assert target is not None and world.distance_to(target) > by_name.success.tolerance
    assert by_name.instruction_at(0.0)


def test_switch_scenario_changes_instruction_at_12_s():
    sc = Scenario.load('switch_mid_way')
    assert 'red door' in sc.instruction_at(11.9)
    assert 'blue pillar' in sc.instruction_at(12.0)


def test_defaults_and_instruction_timeline():
    sc = scenario()
    assert sc.robot.kinematics == 'unicycle' and sc.robot.radius == 0.3
    assert sc.success.tolerance == 0.6 and sc.success.must_stop is True
    assert [i.at for i in sc.instructions] == [0.0, 10.0]
    assert sc.instruction_at(5.0) == 'go to the red door'
    assert sc.instruction_at(10.0) == 'stop'
    assert len(sc.all_walls()) == 4
    door = sc.landmark('Red Door')
    assert door.depth == 0.1 and door.bgr == (30, 30, 220)


@pytest.mark.parametrize('path, value, field', [
    (('world', 'landmarks', 0, 'kind'), 'window', 'world.landmarks[0].kind'),
    (('world', 'landmarks', 1, 'color'), [0, 300, 0], 'world.landmarks[1].color'),
    (('world', 'landmarks', 2, 'position'), [1.0], 'world.landmarks[2].position'),
    (('world', 'landmarks', 2, 'size'), -1.0, 'world.landmarks[2].size'),
    (('world', 'size'), [0.0, 3.0], 'world.size'),
    (('world', 'walls'), [[0, 0, 1]], 'world.walls[0]'),
    (('robot', 'start'), [1.0, 'a', 0.0], 'robot.start[1]'),
    (('robot', 'kinematics'), 'tracked', 'robot.kinematics'),
    (('robot', 'noise'), {'linear': -0.1}, 'robot.noise.linear'),
    (('robot', 'max_linear_vel'), 0.0, 'robot.max_linear_vel'),
    (('instructions', 0, 'text'), '', 'instructions[0].text'),
    (('success', 'landmark'), 'purple door', 'success.landmark'),
    (('success', 'must_stop'), 'yes', 'success.must_stop'),
    (('robot', 'colour'), 1, 'robot.colour'),
])
def test_validation_names_the_field(path, value, field):
    d = copy.deepcopy(BASE)
    target = d
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ScenarioError) as err:
        Scenario.from_dict(d)
    assert str(err.value).startswith(field), str(err.value)


def test_missing_and_duplicate_fields():
    for key in ('name', 'world', 'robot'):
        d = copy.deepcopy(BASE)
        del d[key]
        with pytest.raises(ScenarioError, match=f'^{key}: required'):
            Scenario.from_dict(d)
    d = copy.deepcopy(BASE)
    d['world']['landmarks'].append(dict(d['world']['landmarks'][0]))
    with pytest.raises(ScenarioError, match=r'world.landmarks\[4\].name: duplicate'):
        Scenario.from_dict(d)


def test_load_reports_the_file(tmp_path):
    path = tmp_path / 'bad.yaml'
    d = copy.deepcopy(BASE)
    d['robot']['radius'] = 'wide'
    path.write_text(yaml.safe_dump(d))
    with pytest.raises(ScenarioError, match=r'bad.yaml: robot.radius'):
        Scenario.load(path)
    path.write_text('name: [unclosed')
    with pytest.raises(ScenarioError, match='not valid YAML'):
        Scenario.load(path)


def test_unicycle_drives_and_turns_with_limits():
    world = World(scenario())
    for _ in range(50):
        world.step(1.0, 0.7, 0.0, 0.02)           # vy ignored, vx limited to 0.5
    pose = world.ground_truth()
    assert pose.x == pytest.approx(1.5) and pose.y == pytest.approx(2.0)
    assert world.time == pytest.approx(1.0)
    for _ in range(100):
        world.step(0.0, 0.0, 5.0, 0.01)           # wz limited to 0.8
    assert world.ground_truth().yaw == pytest.approx(0.8)
    assert world.odometry() == world.ground_truth()
    assert world.last_command == (0.0, 0.0, 0.8)


def test_unicycle_follows_an_arc():
    world = World(scenario())
    v, w = 0.4, 0.4                               # radius 1 m, a quarter circle in pi/0.8 s
    steps = 400
    for _ in range(steps):
        world.step(v, 0.0, w, (math.pi / 2 / w) / steps)
    pose = world.ground_truth()
    assert (pose.x, pose.y, pose.yaw) == pytest.approx((2.0, 3.0, math.pi / 2), abs=1e-3)


def test_holonomic_moves_sideways_with_norm_limit():
    world = World(scenario(kinematics='holonomic'))
    world.step(0.0, 0.4, 0.0, 1.0)
    assert world.ground_truth().y == pytest.approx(2.4)
    world.step(0.6, 0.8, 0.0, 1.0)                # |v| = 1.0 scaled to 0.5
    assert world.last_command == pytest.approx((0.3, 0.4, 0.0))


def test_collision_stops_motion_and_counts_contacts():
    world = World(scenario())
    world.robot = world._odom = Pose(5.0, 2.0, 0.0)   # 0.85 m from the red door's face
    blocked = [not world.step(0.5, 0.0, 0.0, 0.1) for _ in range(20)]
    assert any(blocked)
    assert world.ground_truth().x == pytest.approx(5.85 - 0.3, abs=0.26)
    assert world.ground_truth().x <= 5.85 - 0.3
    assert world.collisions == 1                 # one contact, however many blocked steps
    assert world.odometry() == world.ground_truth()
    world.step(-0.5, 0.0, 0.0, 1.0)              # backing out is allowed
    assert world.ground_truth().x < 5.1
    world.step(0.5, 0.0, 0.0, 4.0)               # a long step must not tunnel through
    assert world.collisions == 2 and 5.3 < world.ground_truth().x <= 5.55


def test_pillar_blocks_and_rotation_is_kept():
    world = World(scenario())
    world.robot = world._odom = Pose(3.0, 1.2, -math.pi / 2)   # pillar 0.7 m below
    for _ in range(40):
        world.step(0.5, 0.0, 0.1, 0.05)
    assert world.collisions == 1
    assert world.clearance(world.robot.x, world.robot.y) >= 0.3 - 1e-9
    assert world.ground_truth().yaw == pytest.approx(-math.pi / 2 + 0.2)


def test_noise_separates_odometry_from_truth_and_is_seeded():
    def run(seed):
        world = World(scenario(noise={'linear': 0.1, 'angular': 0.05}), seed=seed)
        for _ in range(100):
            world.step(0.3, 0.0, 0.0, 0.02)
        return world

    a, b, c = run(1), run(1), run(2)
    assert a.ground_truth() == b.ground_truth()
    assert a.ground_truth() != c.ground_truth()
    odom, truth = a.odometry(), a.ground_truth()
    assert (odom.x, odom.y, odom.yaw) == pytest.approx((1.6, 2.0, 0.0))   # what was commanded
    assert math.hypot(truth.x - odom.x, truth.y - odom.y) > 1e-3
    assert truth.yaw != 0.0
    a.reset()
    assert a.time == 0 and a.ground_truth() == a.scenario.robot.start


def test_step_rejects_bad_input():
    world = World(scenario())
    with pytest.raises(ValueError):
        world.step(0.1, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        world.step(float('nan'), 0.0, 0.0, 0.1)


@pytest.mark.parametrize('phrase, name', [
    ('red door', 'red door'), ('the red door', 'red door'), ('The Red Door!', 'red door'),
    ('go to the red doorway', 'red door'), ('红色的门', 'red door'), ('the blue door', 'blue door'),
    ('green box', 'green box'), ('the green crate', 'green box'), ('a box', 'green box'),
    ('the white pillar', 'tall column'), ('the column', 'tall column'),
    ('tall column', 'tall column'),
    ('the door', None), ('the purple door', None), ('the green door', None), ('kitchen', None),
    ('', None),
])
def test_find_landmark(phrase, name):
    found = World(scenario()).find_landmark(phrase)
    assert (found.name if found else None) == name


def test_colour_name():
    assert colour_name((200, 20, 30)) == 'red' and colour_name((20, 40, 200)) == 'blue'


def test_landmark_distance_is_to_the_footprint():
    door = Landmark('d', 'door', (1, 2, 3), (0.0, 0.0), size=1.0)
    assert door.distance(0.55, 0.0) == pytest.approx(0.5)
    assert door.distance(0.0, 1.5) == pytest.approx(1.0)
    assert door.distance(0.0, 0.0) == 0.0
    turned = Landmark('b', 'box', (1, 2, 3), (0.0, 0.0), size=1.0, yaw=math.pi / 4)
    assert turned.distance(1.0, 0.0) == pytest.approx(1.0 - math.sqrt(0.5))
    pillar = Landmark('p', 'pillar', (1, 2, 3), (1.0, 1.0), size=0.4)
    assert pillar.distance(1.0, 2.0) == pytest.approx(0.8)


@FUZZ
@given(x=st.floats(-10, 10), y=st.floats(-10, 10), yaw=st.floats(-10, 10),
       dx=st.floats(-2, 2), dy=st.floats(-2, 2), dth=st.floats(-3, 3))
def test_pose_moved_and_to_local_are_inverse(x, y, yaw, dx, dy, dth):
    pose = Pose(x, y, yaw)
    moved = pose.moved(dx, dy, dth)
    assert pose.to_local(moved.x, moved.y) == pytest.approx((dx, dy), abs=1e-9)
    assert -math.pi <= moved.yaw < math.pi
    assert math.isclose(math.cos(moved.yaw - yaw - dth), 1.0, abs_tol=1e-9)
    assert -math.pi <= wrap_angle(yaw) < math.pi


@FUZZ
@given(cmds=st.lists(st.tuples(st.floats(-2, 2), st.floats(-2, 2), st.floats(-3, 3),
                               st.floats(0.001, 0.5)), max_size=30))
def test_robot_never_enters_an_obstacle(cmds):
    world = World(scenario(kinematics='holonomic'))
    for vx, vy, wz, dt in cmds:
        world.step(vx, vy, wz, dt)
        assert world.clearance(world.robot.x, world.robot.y) >= 0.3 - 1e-9
        assert world.odometry() == world.ground_truth()
