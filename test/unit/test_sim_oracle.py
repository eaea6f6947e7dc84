"""Tests of the oracle answer policy, including a closed loop without ROS."""

import json
import math
import os
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st
import pytest

from vln_ros.sim.evaluation import evaluate
from vln_ros.sim.oracle import Oracle, make_oracle_policy, request_instruction, target_phrase
from vln_ros.sim.sim_pose import Pose, wrap_angle
from vln_ros.sim.world import Scenario, World

ACTIONS = {'forward', 'turn_left', 'turn_right', 'back', 'stop'}


def make(name='corridor_door', pose=None):
    world = World(Scenario.load(name))
    if pose is not None:
        world.robot = pose
    oracle = Oracle(lambda: (world, world.ground_truth()))
    return world, oracle


def check_contract(answer):
    """Assert an answer follows the shared JSON contract."""
    assert list(answer) == ['environment', 'action', 'waypoints']
    env = answer['environment']
    assert isinstance(env, str) and 1 <= len(env) <= 80 and env.isascii()
    assert answer['action'] in ACTIONS
    assert 1 <= len(answer['waypoints']) <= 4
    for wp in answer['waypoints']:
        assert list(wp) == ['dx', 'dy', 'dtheta', 'confidence']
        assert 0.0 <= wp['dx'] <= 1.0 and -1.0 <= wp['dy'] <= 1.0
        assert -0.5 <= wp['dtheta'] <= 0.5 and 0.0 <= wp['confidence'] <= 1.0
        for v in wp.values():
            assert round(v, 2) == v
    if answer['action'] == 'stop':
        wp = answer['waypoints']
        assert len(wp) == 1 and wp[0]['dx'] == wp[0]['dy'] == wp[0]['dtheta'] == 0.0
    json.dumps(answer)


def test_landmark_ahead_gives_forward_waypoints_pointing_at_it():
    world, oracle = make()
    answer = oracle.answer('go to the red door')
    check_contract(answer)
    assert answer['action'] == 'forward'
    assert 'red door' in answer['environment'] and 'ahead' in answer['environment']
    wps = answer['waypoints']
    assert len(wps) == 4
    assert wps[-1]['dx'] == pytest.approx(1.0, abs=0.01)
    assert [w['dx'] for w in wps] == sorted(w['dx'] for w in wps)
    assert all(abs(w['dy']) < 0.01 and abs(w['dtheta']) < 0.01 for w in wps)


def test_waypoints_aim_at_an_offset_landmark():
    # Door at (5.5, 1.0); robot at (2.5, 0.5) facing +x: the door is 9.5 deg to the left.
    world, oracle = make(pose=Pose(2.5, 0.5, 0.0))
    answer = oracle.answer('walk to the red door')
    check_contract(answer)
    assert answer['action'] == 'forward'
    bearing = math.atan2(0.5, 3.0)
    for wp in answer['waypoints']:
        assert wp['dy'] > 0.0
        assert math.atan2(wp['dy'], wp['dx']) == pytest.approx(bearing, abs=0.03)
        assert wp['dtheta'] == pytest.approx(bearing, abs=0.01)
    assert 'left' in answer['environment']


def test_out_of_view_turns_towards_the_landmark():
    world, oracle = make('turn_to_landmark')
    answer = oracle.answer('find the green box')
    check_contract(answer)
    assert answer['action'] == 'turn_left'
    assert answer['waypoints'] == [{'dx': 0.05, 'dy': 0.0, 'dtheta': 0.5, 'confidence': 0.8}]
    assert 'not in view' in answer['environment']
    # Mirrored: facing +y the red pillar at (5.2, 1.0) is behind on the right.
    answer = oracle.answer('go to the red pillar', Pose(3.5, 2.0, math.pi / 2))
    assert answer['action'] == 'turn_right' and answer['waypoints'][0]['dtheta'] == -0.5


def test_within_tolerance_stops():
    # Door front face at x = 5.45: 0.4 m away is within the 0.6 m tolerance.
    world, oracle = make(pose=Pose(5.05, 1.0, 0.0))
    answer = oracle.answer('go to the red door')
    check_contract(answer)
    assert answer['action'] == 'stop'
    assert answer['waypoints'][0]['confidence'] == 0.9
    assert 'arrived' in answer['environment']


def test_near_but_outside_tolerance_moves_only_a_little():
    world, oracle = make(pose=Pose(4.6, 1.0, 0.0))    # 0.85 m from the door face
    answer = oracle.answer('go to the red door')
    assert answer['action'] == 'forward'
    assert answer['waypoints'][-1]['dx'] < 0.6        # stops short of the door


@pytest.mark.parametrize('text, action, dtheta', [
    ('stop', 'stop', 0.0), ('Stop now.', 'stop', 0.0), ('停', 'stop', 0.0),
    ('turn left', 'turn_left', 0.5), ('左转', 'turn_left', 0.5),
    ('turn right', 'turn_right', -0.5), ('go forward', 'forward', 0.0),
])
def test_simple_commands(text, action, dtheta):
    world, oracle = make()
    answer = oracle.answer(text)
    check_contract(answer)
    assert answer['action'] == action
    assert answer['waypoints'][-1]['dtheta'] == dtheta


def test_unknown_landmark_stops_with_low_confidence():
    world, oracle = make()
    answer = oracle.answer('go to the kitchen')
    check_contract(answer)
    assert answer['action'] == 'stop'
    assert answer['waypoints'][0]['confidence'] <= 0.3
    assert 'kitchen' in answer['environment']
    answer = oracle.answer('去厨房')                    # non-ASCII phrase, still ASCII output
    check_contract(answer)
    assert answer['action'] == 'stop'


def test_gibberish_is_not_understood():
    world, oracle = make()
    answer = oracle.answer('')
    check_contract(answer)
    assert answer['action'] == 'stop' and answer['waypoints'][0]['confidence'] < 0.5


def test_chinese_goal_finds_the_landmark():
    world, oracle = make()
    assert oracle.answer('走到红色的门')['action'] == 'forward'


@settings(max_examples=int(os.environ.get('VLN_FUZZ_EXAMPLES', '300')), deadline=None,
          derandomize=True)
@given(name=st.sampled_from(['corridor_door', 'turn_to_landmark', 'switch_mid_way']),
       fx=st.floats(0.0, 1.0), fy=st.floats(0.0, 1.0), yaw=st.floats(-4.0, 4.0),
       text=st.one_of(st.sampled_from(['go to the red door', 'find the green box', 'stop',
                                       'walk to the blue pillar', 'turn right', '左转']),
                      st.text(max_size=40)))
def test_every_answer_follows_the_contract(name, fx, fy, yaw, text):
    world, oracle = make(name)
    w, h = world.scenario.size
    answer = oracle.answer(text, Pose(fx * w, fy * h, yaw))
    check_contract(answer)


def test_target_phrase():
    assert target_phrase('Go to the red door and stop there.') == 'the red door'
    assert target_phrase('please walk towards the blue pillar') == 'the blue pillar'
    assert target_phrase('find the green box') == 'the green box'
    assert target_phrase('turn left') is None


def test_policy_reads_the_instruction_from_the_request():
    world, oracle = make()
    policy = make_oracle_policy(oracle)
    req = SimpleNamespace(instruction='go to the red door', images=[b'x'], text='', body={})
    assert policy(req)['action'] == 'forward'
    # Without an instruction attribute the 'Instruction:' line of the text is used.
    req = SimpleNamespace(text='You are a robot.\nInstruction: stop\nAnswer in JSON.')
    assert request_instruction(req) == 'stop'
    assert policy(req)['action'] == 'stop'
    assert request_instruction({'instruction': 'turn left'}) == 'turn left'


def test_policy_answers_from_the_provider_pose():
    world, oracle = make()
    policy = make_oracle_policy(oracle)
    req = SimpleNamespace(instruction='go to the red door')
    world.robot = Pose(1.2, 1.0, math.pi)               # now facing away from the door
    assert policy(req)['action'] in ('turn_left', 'turn_right')


class WaypointFollower:
    """A trivial controller: place waypoints at the capture pose, drive to them in turn."""

    def __init__(self, max_v=0.5, max_w=0.8):
        self.max_v, self.max_w = max_v, max_w
        self.targets = []               # poses to reach in turn
        self.turn_to = None             # a heading to turn to in place

    def accept(self, answer, capture):
        self.targets, self.turn_to = [], None
        if answer['action'] in ('turn_left', 'turn_right'):
            self.turn_to = capture.yaw + answer['waypoints'][-1]['dtheta']
        elif answer['action'] == 'forward':
            self.targets = [capture.moved(w['dx'], w['dy'], w['dtheta'])
                            for w in answer['waypoints']]

    def command(self, pose):
        # Waypoints the robot passed while the answer was on its way are dropped.
        while self.targets and pose.to_local(self.targets[0].x, self.targets[0].y)[0] < 0.1:
            self.targets.pop(0)
        if self.targets:
            goal = self.targets[0]
            dist = pose.distance_to(goal.x, goal.y)
            heading = wrap_angle(math.atan2(goal.y - pose.y, goal.x - pose.x) - pose.yaw)
            v = 0.0 if abs(heading) > 0.6 else min(self.max_v, 1.5 * dist)
            return v, max(-self.max_w, min(self.max_w, 2.0 * heading))
        if self.turn_to is not None:
            err = wrap_angle(self.turn_to - pose.yaw)
            if abs(err) > 0.05:
                return 0.0, max(-self.max_w, min(self.max_w, 2.0 * err))
            self.turn_to = None
        return 0.0, 0.0


def run_closed_loop(name, latency, dt=0.05, time_limit=None):
    """Ask the oracle every `latency` s, apply its answer `latency` s later; return the score."""
    scenario = Scenario.load(name)
    world = World(scenario)
    oracle = Oracle(lambda: (world, world.ground_truth()))
    policy = make_oracle_policy(oracle)
    follower = WaypointFollower()
    trajectory, commands = [], []
    pending = None                      # (arrival time, answer, capture pose)
    time_limit = time_limit or scenario.success.time_limit
    while world.time < time_limit:
        if pending is None:
            request = SimpleNamespace(instruction=world.instruction, images=[], text='', body={})
            pending = (world.time + latency, policy(request), world.ground_truth())
        elif world.time >= pending[0] - 1e-9:
            follower.accept(pending[1], pending[2])
            pending = None
            continue
        v, w = follower.command(world.ground_truth())
        commands.append((world.time, v, w))
        trajectory.append((world.time, *vars(world.ground_truth()).values()))
        world.step(v, 0.0, w, dt)
    trajectory.append((world.time, *vars(world.ground_truth()).values()))
    events = [(0.0, 'collision')] * world.collisions
    return evaluate(scenario, trajectory, commands, events), world


@pytest.mark.parametrize('latency', [1.0, 6.0])
def test_closed_loop_reaches_the_red_door(latency):
    summary, world = run_closed_loop('corridor_door', latency)
    assert summary.success, summary.to_json()
    assert summary.collisions == 0
    assert summary.final_distance <= 0.6
    assert summary.time_to_goal < 60.0
    # Straight corridor: the path is about the distance to the door, no detours.
    assert summary.path_length < 4.25
    assert world.ground_truth().x > 4.6


def test_closed_loop_turns_to_the_green_box():
    summary, _ = run_closed_loop('turn_to_landmark', 3.0)
    assert summary.success, summary.to_json()
    assert summary.collisions == 0


def test_closed_loop_follows_the_switched_instruction():
    summary, world = run_closed_loop('switch_mid_way', 3.0)
    assert summary.success, summary.to_json()
    assert world.distance_to(world.scenario.landmark('blue pillar')) <= 0.6
