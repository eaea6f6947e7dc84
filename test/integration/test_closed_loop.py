"""Closed loop on the simulator (short latency): reach the goal, obey a switch, stop on outage.

Every run is in the scenarios' realistic world (odometry drift, camera mount and clock) with
the `realistic` oracle profile (docs/sim-realism.md), unless a test says otherwise.
"""
from vln_ros.sim.demo import run_scenario


def test_corridor_reaches_the_door_and_stops(tmp_path):
    summary = run_scenario('corridor_door', tmp_path, latency=(1.0, 2.0), quiet=True)
    assert (summary['profile'], summary['world']) == ('realistic', 'realistic')
    assert summary['success'], summary
    assert summary['final_task_status'] == 'completed'
    assert summary['limit_violations'] == 0 and summary['collisions'] == 0
    assert (tmp_path / 'trajectory.png').stat().st_size > 1000
    assert (tmp_path / 'summary.json').exists()


def test_instruction_switch_is_obeyed(tmp_path):
    summary = run_scenario('switch_mid_way', tmp_path, latency=(1.0, 2.0), quiet=True,
                           write_media=False)
    # Success means the robot ended at the blue pillar (the second instruction), not the door.
    assert summary['success'], summary
    assert summary['landmark'] == 'blue pillar'


def test_model_outage_stops_the_robot_within_the_watchdog(tmp_path):
    summary = run_scenario('corridor_door', tmp_path, latency=(1.0, 2.0), quiet=True,
                           write_media=False, time_limit=22.0, outage_at=9.0)
    stop = summary['stop_after_outage_s']
    # Error results arrive at once after the outage: the error streak stops the robot long
    # before result_timeout (12 s); ramp-down 0.5 m/s / 0.5 m/s^2 = 1 s.
    assert stop is not None and stop < 12.0 + 1.0 + 0.5, summary
    assert summary['error_results'] >= 3
    assert summary['limit_violations'] == 0


def test_walking_into_a_wall_stops_short_with_the_guard_and_hits_it_without(tmp_path):
    # The model answers 'forward' whatever it sees: only the obstacle guard, on sim_node's
    # scan, keeps the robot off the wall. The run without it shows the test can fail.
    guarded = run_scenario('wall_ahead', tmp_path / 'guarded', latency=(1.0, 2.0), quiet=True,
                           write_media=False, time_limit=25.0)
    assert guarded['success'], guarded
    assert guarded['collisions'] == 0 and guarded['limit_violations'] == 0
    blind = run_scenario('wall_ahead', tmp_path / 'blind', latency=(1.0, 2.0), quiet=True,
                         write_media=False, time_limit=25.0, guard=False)
    assert blind['collisions'] > 0, blind
