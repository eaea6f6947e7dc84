"""Tests of the hold that keeps the next keyframe back while a turn answer is driven."""

from types import SimpleNamespace as W

from vln_ros.core.turn_chain import is_turn_in_place, turn_direction
from vln_ros.core.turn_hold import TurnHold

LEFT, RIGHT, OTHER = 1, -1, 0


def test_a_turn_is_held_until_the_planner_reports_it_over():
    hold = TurnHold(3.0)
    assert hold.on_answer(10.0, LEFT) and hold.held
    assert not hold.on_command_state('tracking')  # the turn began
    assert hold.held and not hold.expired(12.9)
    assert hold.on_command_state('path_finished')  # the turn ended
    assert not hold.held
    assert not hold.on_command_state('path_finished')  # ends once


def test_a_sweep_holds_only_its_first_turn_and_a_reversal_holds_again():
    hold = TurnHold(3.0)
    assert not hold.on_answer(0.0, OTHER)  # a path: nothing to wait for
    assert hold.on_answer(1.0, LEFT)  # the first look of a search
    hold.on_command_state('path_finished')
    assert not hold.on_answer(9.0, LEFT) and not hold.held  # the sweep goes on: chained
    assert not hold.on_answer(16.0, LEFT)
    assert hold.on_answer(23.0, RIGHT)  # back the other way: a correction, hold
    hold.on_command_state('path_finished')
    assert not hold.on_answer(30.0, OTHER)
    assert hold.on_answer(37.0, RIGHT)  # a path in between starts a new sweep


def test_a_stop_of_any_kind_ends_the_hold():
    for reason in ('obstacle', 'estop', 'blocked', 'stale_result', 'no_pose'):
        hold = TurnHold(3.0)
        hold.on_answer(0.0, LEFT)
        assert hold.on_command_state(reason), reason


def test_the_hold_runs_out_after_its_limit():
    hold = TurnHold(3.0)
    hold.on_answer(10.0, RIGHT)
    assert not hold.expired(12.99)
    assert hold.expired(13.0)  # the planner never said: send what there is
    assert not hold.held and not hold.expired(14.0)


def test_a_new_limit_applies_to_the_hold_under_way():
    hold = TurnHold(20.0)
    hold.on_answer(10.0, LEFT)
    assert not hold.expired(12.0)
    hold.limit = 1.0  # ros2 param set turn_hold 1.0
    assert hold.expired(12.0)


def test_limit_zero_never_holds_and_clear_forgets():
    off = TurnHold(0.0)
    assert not off.on_answer(1.0, LEFT) and not off.held
    hold = TurnHold(2.0)
    hold.on_answer(0.0, LEFT)
    hold.clear()
    assert not hold.held and not hold.on_command_state('path_finished')
    assert hold.on_answer(5.0, LEFT)  # a new task: its first turn holds


def test_a_turn_answer_is_a_few_cm_and_a_heading():
    assert is_turn_in_place([W(dx=0.05, dy=0.0, dtheta=0.5)])
    assert not is_turn_in_place([W(dx=0.05, dy=0.0, dtheta=0.0)])  # no heading: a stop
    assert not is_turn_in_place([W(dx=0.05, dy=0.0, dtheta=0.5), W(dx=0.5, dy=0.0, dtheta=0.5)])
    assert not is_turn_in_place([])
    assert turn_direction([W(dx=0.05, dy=0.0, dtheta=0.5)]) == LEFT
    assert turn_direction([W(dx=0.0, dy=0.0, dtheta=-0.25)]) == RIGHT
    assert turn_direction([W(dx=0.5, dy=0.0, dtheta=0.5)]) == OTHER
