"""Tests of run scoring against a scenario's success criteria."""

import json
import math

import pytest

from vln_ros.sim.evaluation import RunSummary, evaluate
from vln_ros.sim.world import Scenario

DOOR_FACE = 5.45                                    # corridor_door: the door's front face


@pytest.fixture(scope='module')
def corridor():
    return Scenario.load('corridor_door')


def straight_run(stop_x, speed=0.5, dt=0.1, hold=5.0):
    """Drive along y = 1 from x = 1.2 to stop_x, then stand still for `hold` seconds."""
    trajectory, commands, t, x = [], [], 0.0, 1.2
    while x < stop_x - 1e-9:
        trajectory.append((t, x, 1.0, 0.0))
        commands.append((t, speed, 0.0))
        x = min(stop_x, x + speed * dt)
        t += dt
    commands.append((t, 0.0, 0.0))
    end = t + hold
    while t <= end + 1e-9:
        trajectory.append((t, x, 1.0, 0.0))
        t += dt
    return trajectory, commands


def test_success_when_the_robot_stops_at_the_door(corridor):
    trajectory, commands = straight_run(5.0)
    summary = evaluate(corridor, trajectory, commands, [])
    assert isinstance(summary, RunSummary)
    assert summary.success, summary.reason
    assert summary.landmark == 'red door'
    assert summary.time_to_goal == pytest.approx(7.6, abs=0.11)    # 3.8 m at 0.5 m/s
    assert summary.final_distance == pytest.approx(DOOR_FACE - 5.0)
    assert summary.path_length == pytest.approx(3.8)
    assert summary.duration == pytest.approx(12.6, abs=0.11)
    assert summary.moving_fraction == pytest.approx(7.6 / 12.6, abs=0.02)
    assert summary.collisions == 0


def test_stopping_short_fails(corridor):
    trajectory, commands = straight_run(4.5)
    summary = evaluate(corridor, trajectory, commands)
    assert not summary.success
    assert summary.time_to_goal is None
    assert 'never came within' in summary.reason
    assert summary.final_distance == pytest.approx(DOOR_FACE - 4.5)


def test_must_stop_requires_a_stop_command(corridor):
    trajectory, commands = straight_run(5.0)
    # Keep commanding a slow creep while blocked by the door: never a stop.
    commands = [(t, 0.5 if t < 7.6 else 0.1, 0.0) for t, _, _ in commands]
    summary = evaluate(corridor, trajectory, commands)
    assert not summary.success and 'did not stop' in summary.reason
    lenient = Scenario.from_dict({
        'name': 'lenient', 'world': {'size': [5.6, 2.0], 'landmarks': [
            {'name': 'red door', 'kind': 'door', 'color': [220, 30, 30],
             'position': [5.5, 1.0], 'size': 0.9}]},
        'robot': {'start': [1.2, 1.0, 0.0]},
        'success': {'landmark': 'red door', 'must_stop': False}})
    assert evaluate(lenient, trajectory, commands).success


def test_too_late_fails(corridor):
    # Slow enough to reach the door only after the scenario's time limit (120 s).
    assert corridor.success.time_limit < 3.8 / 0.025
    trajectory, commands = straight_run(5.0, speed=0.025, dt=0.5)
    summary = evaluate(corridor, trajectory, commands)
    assert not summary.success and 'time limit' in summary.reason


def test_leaving_the_goal_fails(corridor):
    trajectory, commands = straight_run(5.0)
    t = trajectory[-1][0]
    trajectory += [(t + 1.0, 4.0, 1.0, math.pi), (t + 2.0, 3.0, 1.0, math.pi)]
    commands.append((t + 0.1, 0.5, 0.0))
    summary = evaluate(corridor, trajectory, commands)
    assert not summary.success and 'left' in summary.reason
    assert summary.min_distance == pytest.approx(DOOR_FACE - 5.0)


def test_collisions_counted_from_events(corridor):
    trajectory, commands = straight_run(5.0)
    events = [(1.0, 'collision'), (2.0, 'instruction', 'stop'), {'t': 3.0, 'kind': 'collision'},
              {'t': 4.0, 'type': 'collision'}]
    assert evaluate(corridor, trajectory, commands, events).collisions == 3


def test_without_commands_motion_comes_from_the_trajectory(corridor):
    trajectory, _ = straight_run(5.0)
    summary = evaluate(corridor, trajectory, [])
    assert summary.success
    assert summary.moving_fraction == pytest.approx(7.6 / 12.6, abs=0.03)


def test_holonomic_commands_and_unsorted_input(corridor):
    trajectory, commands = straight_run(5.0)
    commands = [(t, 0.0, v, w) for t, v, w in commands][::-1]    # sideways, reversed order
    summary = evaluate(corridor, trajectory[::-1], commands)
    assert summary.success and summary.path_length == pytest.approx(3.8)
    with pytest.raises(ValueError):
        evaluate(corridor, trajectory, [(0.0, 1.0)])


def test_empty_and_no_criteria():
    free = Scenario.from_dict({'name': 'free', 'world': {'size': [3, 3]},
                               'robot': {'start': [1, 1, 0]}})
    summary = evaluate(free, [(0.0, 1.0, 1.0, 0.0), (1.0, 2.0, 1.0, 0.0)], [(0.0, 1.0, 0.0)])
    assert not summary.success and summary.landmark is None
    assert summary.path_length == pytest.approx(1.0) and summary.moving_fraction == 1.0
    empty = evaluate(Scenario.load('corridor_door'), [], [])
    assert not empty.success and empty.reason == 'empty trajectory'


def test_to_json(corridor):
    trajectory, commands = straight_run(5.0)
    data = json.loads(evaluate(corridor, trajectory, commands).to_json())
    assert data['scenario'] == 'corridor_door' and data['success'] is True
    assert set(data) == {'scenario', 'success', 'reason', 'landmark', 'time_to_goal',
                         'final_distance', 'min_distance', 'collisions', 'moving_fraction',
                         'path_length', 'duration'}
    assert data['final_distance'] == round(DOOR_FACE - 5.0, 3)


def test_stop_short_succeeds_at_rest_without_a_collision_and_fails_otherwise():
    sc = Scenario.load('wall_ahead')
    assert sc.success.stop_short and sc.success.landmark is None
    traj = [(0.1 * i, 1.2 + min(0.1 * i, 2.0) * 0.5, 1.5, 0.0) for i in range(60)]
    cmds = [(0.0, 0.5, 0.0), (4.0, 0.0, 0.0)]
    ok = evaluate(sc, traj, cmds)
    assert ok.success and ok.time_to_goal == pytest.approx(4.0)
    # The side walls (1.5 m away) are nearer than the far wall (1.8 m).
    assert ok.final_distance == pytest.approx(1.5 - 0.3, abs=1e-6)
    hit = evaluate(sc, traj, cmds, events=[(3.0, 'collision')])
    assert not hit.success and 'collision' in hit.reason
    moving = evaluate(sc, traj, [(0.0, 0.5, 0.0)])
    assert not moving.success and moving.reason == 'still moving at the end'
