"""Tests for vln_ros.core.planner: the whole planner in closed loop with a simulated base."""

import math
import os
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st
import pytest

from test.unit.kinematics import unicycle
from vln_ros.core.geometry import Pose2D, interpolate_pose, normalize_angle
from vln_ros.core.planner import (
    REASONS,
    Command,
    Planner,
    PlannerConfig,
    PlannerResult,
    result_velocity,
)
from vln_ros.core.velocity_limits import Limits

FUZZ = settings(max_examples=int(os.environ.get('VLN_FUZZ_EXAMPLES', '300')),
                deadline=None, derandomize=True)
RATE = 50.0
DT = 1.0 / RATE


def wp(dx, dy=0.0, dtheta=0.0, confidence=0.9):
    return SimpleNamespace(dx=dx, dy=dy, dtheta=dtheta, confidence=confidence)


def result(stamp, waypoints, task='t', status='ok', inference_time=6.0, sequence=1):
    return PlannerResult(stamp=stamp, task_id=task, sequence=sequence, status=status,
                         waypoints=waypoints, inference_time=inference_time)


PATH = [wp(0.3), wp(0.6, 0.05, 0.1), wp(0.9, 0.1, 0.2), wp(1.0, 0.15, 0.3)]


class Sim:
    """A base that executes every command exactly and reports odometry at the step rate."""

    def __init__(self, planner, pose=Pose2D(0.0, 0.0, 0.0), t=0.0, odometry=True):
        self.planner = planner
        self.pose = pose
        self.t = t
        self.odometry = odometry
        self.commands: list[tuple[float, Command]] = []
        if odometry:
            planner.on_odometry(t, pose)

    def run(self, seconds, until=None, moving=True):
        """Step the planner for ``seconds`` (or until ``until(cmd)``); return the last command."""
        cmd = None
        for _ in range(int(round(seconds * RATE))):
            cmd = self.planner.step(self.t)
            self.commands.append((self.t, cmd))
            if moving:
                self.pose = unicycle(self.pose, cmd.vx, cmd.vy, cmd.wz, DT)
            self.t += DT
            if self.odometry:
                self.planner.on_odometry(self.t, self.pose)
            if until is not None and until(cmd):
                break
        return cmd


def active_planner(**kwargs):
    planner = Planner(PlannerConfig(**kwargs))
    planner.set_active_task('t')
    return planner


def speed(cmd):
    return max(abs(cmd.vx), abs(cmd.vy), abs(cmd.wz))


# ---------------------------------------------------------------------------- config


@pytest.mark.parametrize('kwargs, match', [
    (dict(rate_hz=5.0), 'rate_hz'),
    (dict(rate_hz=200.0), 'rate_hz'),
    (dict(result_timeout=0.0), 'result_timeout'),
    (dict(min_confidence=1.5), 'min_confidence'),
    (dict(min_confidence=-0.1), 'min_confidence'),
    (dict(error_streak_limit=0), 'error_streak_limit'),
    (dict(min_speed=0.0), 'min_speed'),
    (dict(lookahead=-1.0), 'lookahead'),
])
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PlannerConfig(**kwargs)


def test_config_defaults():
    cfg = PlannerConfig()
    assert (cfg.rate_hz, cfg.result_timeout, cfg.min_confidence) == (50.0, 12.0, 0.3)
    assert cfg.limits == Limits()
    assert cfg.use_odometry and cfg.schedule_speed and not cfg.holonomic


def test_result_velocity_reproduces_seed_fields():
    lim = Limits()
    assert result_velocity([wp(0.1, dtheta=0.02), wp(0.2, dtheta=0.04)], 2.0, lim) == \
        pytest.approx((0.3, 0.06))
    assert result_velocity([wp(1.0, dtheta=0.5)], 10.0, lim) == (0.5, 0.8)
    assert result_velocity([wp(0.0, dtheta=-0.5)], 10.0, lim) == (0.0, -0.8)
    assert result_velocity([], 10.0, lim) == (0.0, 0.0)


# ------------------------------------------------------------------- (1) latency


def test_latency_compensation_ends_where_the_model_meant():
    planner = active_planner()
    capture, arrival = 10.0, 16.0
    anchor = Pose2D(2.0, -1.0, 0.7)
    moved = anchor.compose(Pose2D(0.5, 0.0, 0.3))  # odometry during inference
    for i in range(int(9.0 * RATE), int(arrival * RATE) + 1):
        t = i * DT
        frac = min(1.0, max(0.0, (t - capture) / (arrival - capture - 1.0)))
        planner.on_odometry(t, interpolate_pose(anchor, moved, frac))
    path = planner.on_result(result(capture, PATH, inference_time=6.0), arrival)
    # The first waypoint (0.3 m ahead of the capture pose) is behind the robot, which moved
    # 0.5 m meanwhile: it is passed, and dropped rather than driven back to.
    assert path is not None and len(path) == len(PATH) - 1
    target = anchor.compose(Pose2D(1.0, 0.15, 0.3))
    assert path[-1].distance_to(target) < 1e-9
    assert path[0].distance_to(anchor.compose(Pose2D(0.6, 0.05, 0.1))) < 1e-9

    sim = Sim(planner, moved, arrival + DT)
    last = sim.run(20.0, until=lambda c: c.reason == 'path_finished' and speed(c) == 0.0)
    assert last.reason == 'path_finished'
    assert any(c.reason == 'tracking' for _, c in sim.commands)
    assert sim.pose.distance_to(target) < 0.02
    assert abs(normalize_angle(sim.pose.yaw - target.yaw)) < 0.05 + 0.01
    # Placing the waypoints at the arrival pose instead would miss by far more.
    assert moved.compose(Pose2D(1.0, 0.15, 0.3)).distance_to(target) > 0.3


def _moved_on(planner, capture: float, arrival: float, start: Pose2D, end: Pose2D) -> None:
    """Odometry from ``start`` (until the capture) to ``end`` (at the arrival)."""
    for i in range(int((capture - 1.0) * RATE), int(arrival * RATE) + 1):
        t = i * DT
        frac = min(1.0, max(0.0, (t - capture) / (arrival - capture)))
        planner.on_odometry(t, interpolate_pose(start, end, frac))


def test_an_answer_whose_waypoints_are_all_passed_never_drives_back():
    planner = active_planner()
    start = Pose2D(1.0, 1.0, 0.0)
    moved = Pose2D(2.3, 1.0, 0.0)  # 1.3 m on since the capture, past the answer's 1 m
    _moved_on(planner, 10.0, 16.0, start, moved)
    path = planner.on_result(result(10.0, PATH), 16.0)
    # Only a turn to the answer's final heading, where the robot stands.
    assert path is not None and len(path) == 1
    assert path[0].distance_to(moved) < 0.02
    assert abs(path[0].yaw - 0.3) < 1e-9
    sim = Sim(planner, moved, 16.0 + DT)
    sim.run(10.0, until=lambda c: c.reason == 'path_finished' and speed(c) == 0.0)
    assert sim.pose.distance_to(moved) < 0.05  # it turned; it did not go back 0.3-1.3 m
    assert abs(normalize_angle(sim.pose.yaw - 0.3)) < 0.07


def test_a_turn_answer_turns_where_the_robot_stands_now():
    planner = active_planner()
    start = Pose2D(0.0, 0.0, 0.0)
    moved = Pose2D(0.6, 0.0, 0.0)
    _moved_on(planner, 10.0, 16.0, start, moved)
    turn = [SimpleNamespace(dx=0.05, dy=0.0, dtheta=0.5, confidence=0.8)]
    path = planner.on_result(result(10.0, turn), 16.0)
    assert path is not None and len(path) == 1
    assert path[0].distance_to(moved) < 0.02 and abs(path[0].yaw - 0.5) < 1e-9
    sim = Sim(planner, moved, 16.0 + DT)
    sim.run(10.0, until=lambda c: c.reason == 'path_finished' and speed(c) == 0.0)
    assert sim.pose.distance_to(moved) < 0.05
    assert abs(normalize_angle(sim.pose.yaw - 0.5)) < 0.07


def _search_turn(planner, sim, capture, arrival, sequence):
    """Deliver a 'turn left' answer captured at ``capture``; drive it; return its goal yaw."""
    turn = [wp(0.05, 0.0, 0.5, 0.6)]
    path = planner.on_result(result(capture, turn, sequence=sequence), arrival)
    assert path is not None and len(path) == 1
    return path[0].yaw


def test_a_search_turn_that_did_not_see_the_last_turn_turns_further():
    # One request in flight: the next keyframe leaves when an answer arrives, before its
    # turn is driven. Each such answer must add its 0.5 rad, not repeat the last goal.
    planner = active_planner(sweep_step=0.0)
    sim = Sim(planner, Pose2D(0.0, 0.0, 0.0), 0.0)
    sim.run(1.0)
    assert _search_turn(planner, sim, 0.5, sim.t, 1) == pytest.approx(0.5)
    capture = sim.t  # this keyframe still faces 0 rad
    sim.run(6.0)
    assert abs(sim.pose.yaw - 0.5) < 0.05
    assert _search_turn(planner, sim, capture, sim.t, 2) == pytest.approx(1.0, abs=0.01)
    capture = sim.t  # faces 0.5 rad, short of the goal of 1.0 rad
    sim.run(6.0)
    assert _search_turn(planner, sim, capture, sim.t, 3) == pytest.approx(1.5, abs=0.02)
    sim.run(6.0)
    assert abs(sim.pose.yaw - 1.5) < 0.05


def test_a_turn_answer_that_saw_the_last_turn_is_placed_at_its_capture():
    planner = active_planner(sweep_step=0.0)
    sim = Sim(planner, Pose2D(0.0, 0.0, 0.0), 0.0)
    sim.run(1.0)
    _search_turn(planner, sim, 0.5, sim.t, 1)
    sim.run(6.0)
    capture = sim.t  # after the turn to 0.5 rad was driven
    sim.run(1.0)
    assert _search_turn(planner, sim, capture, sim.t, 2) == pytest.approx(1.0, abs=0.05)
    # A turn the other way is the model changing its mind: from its capture heading.
    capture = sim.t
    right = [wp(0.05, 0.0, -0.5, 0.6)]
    path = planner.on_result(result(capture, right, sequence=3), sim.t + 0.1)
    assert path[0].yaw == pytest.approx(sim.pose.yaw - 0.5, abs=0.02)
    # A path in between ends the chain: the next turn counts from its own capture.
    planner.on_result(result(sim.t, PATH, sequence=4), sim.t + 0.1)
    capture = sim.t
    assert _search_turn(planner, sim, capture, sim.t + 0.2, 5) == \
        pytest.approx(sim.pose.yaw + 0.5, abs=0.02)


def _turned(goal, yaw, step):
    """True when the turn goal ``goal`` lies ``step`` rad from ``yaw`` (within 0.02 rad)."""
    return abs(normalize_angle(goal - yaw - step)) < 0.02


def test_a_search_sweep_turns_at_least_sweep_step_per_answer():
    # The first turn is the answer's 0.5 rad; every turn after it the same way is a sweep
    # and turns 0.9 rad, chained or seen; a turn back, or one after a path, is the answer's.
    planner = active_planner(sweep_step=0.9)
    sim = Sim(planner, Pose2D(0.0, 0.0, 0.0), 0.0)
    sim.run(1.0)
    assert _search_turn(planner, sim, 0.5, sim.t, 1) == pytest.approx(0.5)
    capture = sim.t  # still faces 0 rad: the chain counts from the goal of 0.5 rad
    sim.run(6.0)
    assert _search_turn(planner, sim, capture, sim.t, 2) == pytest.approx(1.4, abs=0.01)
    sim.run(6.0)
    assert abs(sim.pose.yaw - 1.4) < 0.05
    capture = sim.t  # saw the turn: counted from the capture heading
    assert _turned(_search_turn(planner, sim, capture, sim.t + 0.1, 3), sim.pose.yaw, 0.9)
    sim.run(6.0)
    right = [wp(0.05, 0.0, -0.5, 0.6)]
    path = planner.on_result(result(sim.t, right, sequence=4), sim.t + 0.1)
    assert _turned(path[0].yaw, sim.pose.yaw, -0.5)  # a turn back
    planner.on_result(result(sim.t, PATH, sequence=5), sim.t + 0.1)
    assert _turned(_search_turn(planner, sim, sim.t, sim.t + 0.2, 6), sim.pose.yaw, 0.5)
    # Live: sweep_step 0 gives the answer's step again.
    planner.reconfigure(PlannerConfig(sweep_step=0.0))
    sim.run(6.0)
    assert _turned(_search_turn(planner, sim, sim.t, sim.t + 0.1, 7), sim.pose.yaw, 0.5)


def test_capture_stamp_without_pose_is_rejected():
    planner = active_planner()
    for i in range(100):
        planner.on_odometry(100.0 + i * DT, Pose2D(0.0, 0.0, 0.0))
    # Before the oldest pose: no anchor, no path.
    assert planner.on_result(result(95.0, PATH), 102.0) is None
    assert planner.step(102.0).reason == 'no_pose'
    # Just after the newest pose (within max_extrapolation): the newest pose is used.
    path = planner.on_result(result(102.1, PATH), 102.1)
    assert path is not None
    assert path[0].distance_to(Pose2D(0.3, 0.0, 0.0)) < 1e-9


def test_results_out_of_order_or_too_old_are_ignored():
    planner = active_planner()
    for i in range(int(20 * RATE)):
        planner.on_odometry(i * DT, Pose2D(i * DT * 0.1, 0.0, 0.0))
    assert planner.on_result(result(10.0, PATH), 16.0) is not None
    first_path = planner.path
    assert planner.on_result(result(9.0, [wp(0.5, 0.5, 0.5)]), 17.0) is None  # older capture
    assert planner.path == first_path
    assert planner.on_result(result(4.0, PATH), 17.0) is None  # 13 s old > result_timeout


def test_each_ignored_result_says_why():
    planner = active_planner()
    for i in range(int(20 * RATE)):
        planner.on_odometry(i * DT, Pose2D(0.0, 0.0, 0.0))
    cases = [
        (result(10.0, PATH, task='other'), 10.5, 'not_active_task'),
        (result(10.0, PATH, status='vlm_error'), 10.5, 'status_vlm_error'),
        (result(10.0, [wp(math.nan)]), 10.5, 'invalid_waypoints'),
        (result(10.0, [wp(0.5, confidence=0.1)]), 10.5, 'low_confidence'),
        (result(11.0, PATH), 11.5, None),
        (result(10.5, PATH), 11.6, 'overtaken'),
        (result(12.0, PATH), 30.0, 'stale'),
        (result(25.0, PATH), 25.1, 'no_pose'),
    ]
    for res, now, why in cases:
        path = planner.on_result(res, now)
        assert planner.last_ignored == why, (res, why)
        assert (path is None) == (why is not None)


def test_stop_result_clears_the_path():
    planner = active_planner()
    sim = Sim(planner)
    assert planner.on_result(result(0.0, PATH), 0.0)
    sim.run(1.0)
    assert sim.commands[-1][1].reason == 'tracking'
    assert planner.on_result(result(sim.t, [wp(0.0, confidence=0.8)], status='stop'),
                             sim.t) == []
    cmd = sim.run(0.02)
    assert cmd.reason == 'path_finished' and cmd.path == []
    # A single zero waypoint from an 'ok' answer means the same.
    assert planner.on_result(result(sim.t, PATH), sim.t)
    assert planner.on_result(result(sim.t, [wp(0.0)]), sim.t) == []
    assert sim.run(0.02).reason == 'path_finished'


# ------------------------------------------------------------------ (2) property


@st.composite
def scenarios(draw):
    cfg = PlannerConfig(
        holonomic=draw(st.booleans()),
        schedule_speed=draw(st.booleans()),
        use_odometry=draw(st.booleans()),
        result_timeout=draw(st.sampled_from([12.0, 12.0, 2.0, 0.5])),
        limits=Limits(*(draw(st.floats(0.05, 2.0)) for _ in range(6))),
    )
    waypoint = st.builds(wp, st.floats(-0.5, 1.5), st.floats(-1.5, 1.5), st.floats(-1.0, 1.0),
                         st.floats(0.0, 1.0))
    # Mostly answers about a recent frame of the active task, so that the robot does move.
    age = st.one_of(st.sampled_from([0.0, 0.1, 0.5]), st.floats(0.0, 8.0))
    result_event = st.tuples(st.just('result'),
                             st.sampled_from(['ok', 'ok', 'fallback', 'stop', 'vlm_error']),
                             st.lists(waypoint, min_size=1, max_size=4), age,
                             st.sampled_from(['t', 't', 't', 'other']))
    event = st.one_of(
        result_event,
        st.tuples(st.just('steps'), st.integers(1, 80), st.floats(0.005, 0.05)),
        st.tuples(st.just('step'), st.floats(0.0, 0.3)),
        st.tuples(st.just('odom_jump'), st.floats(-1.0, 1.0), st.floats(-1.0, 1.0),
                  st.floats(-3.0, 3.0)),
        st.tuples(st.just('estop'), st.booleans()),
        st.tuples(st.just('task'), st.sampled_from(['t', 'other', None])),
    )
    # Start by tracking a confident answer about a frame of the last half second.
    sure = st.builds(wp, st.floats(0.0, 1.0), st.floats(-1.0, 1.0), st.floats(-0.5, 0.5),
                     st.floats(0.5, 1.0))
    first = ('result', 'ok', draw(st.lists(sure, min_size=1, max_size=4)),
             draw(st.floats(0.0, 0.5)), 't')
    return cfg, [('steps', 30, DT), first, ('steps', 40, DT),
                 *draw(st.lists(event, min_size=1, max_size=25))]


@FUZZ
@given(scenarios())
def test_commands_never_exceed_speed_or_acceleration_limits(scenario):
    cfg, events = scenario
    lim = cfg.limits
    speed_max = (lim.max_linear_vel, lim.max_lateral_vel, lim.max_angular_vel)
    acc = (lim.max_linear_acc, lim.max_lateral_acc, lim.max_angular_acc)
    planner = Planner(cfg)
    planner.set_active_task('t')
    pose = Pose2D(0.0, 0.0, 0.0)
    t = 10.0
    for i in range(int(10.0 * RATE)):
        planner.on_odometry(i * DT, pose)
    prev = (0.0, 0.0, 0.0)
    prev_t = t - 1.0 / cfg.rate_hz

    def step(dt):
        nonlocal pose, t, prev, prev_t
        cmd = planner.step(t)
        out = (cmd.vx, cmd.vy, cmd.wz)
        assert cmd.reason in REASONS
        for i in range(3):
            assert math.isfinite(out[i])
            assert abs(out[i]) <= speed_max[i] + 1e-9
        if cmd.reason == 'estop':
            assert out == (0.0, 0.0, 0.0)
        else:
            for i in range(3):
                assert abs(out[i] - prev[i]) <= acc[i] * (t - prev_t) + 1e-9
        if cmd.reason != 'tracking':
            # Stopping never speeds any axis up.
            assert all(abs(o) <= abs(p) + 1e-12 for o, p in zip(out, prev, strict=True))
        if not cfg.holonomic:
            assert out[1] == 0.0
        prev, prev_t = out, t
        pose = unicycle(pose, *out, dt, substeps=1)
        t += dt
        planner.on_odometry(t, pose)

    for event in events:
        kind = event[0]
        if kind == 'step':
            step(event[1])
        elif kind == 'steps':
            for _ in range(event[1]):
                step(event[2])
        elif kind == 'result':
            _, status, waypoints, age, task = event
            planner.on_result(result(t - age, waypoints, task=task, status=status), t)
        elif kind == 'odom_jump':
            pose = pose.compose(Pose2D(*event[1:]))
            planner.on_odometry(t, pose)
        elif kind == 'estop':
            planner.set_estop(event[1])
        elif kind == 'task':
            planner.set_active_task(event[1])
    step(DT)


# ------------------------------------------------------------------ (3) watchdog


def test_watchdog_ramps_to_zero_after_result_timeout():
    timeout = 2.0
    lim = Limits()
    planner = active_planner(result_timeout=timeout, schedule_speed=False)
    # The base is stuck (odometry does not move), so the path never finishes by itself.
    sim = Sim(planner)
    assert planner.on_result(result(0.0, PATH), 0.0)
    sim.run(timeout + 2.0, moving=False)
    before = [c for t, c in sim.commands if t <= timeout - 0.05]
    assert before[-1].reason == 'tracking'
    v_at_timeout = max(speed(c) for t, c in sim.commands if t <= timeout)
    assert v_at_timeout == pytest.approx(lim.max_linear_vel)
    ramp = max(lim.max_linear_vel / lim.max_linear_acc, lim.max_angular_vel / lim.max_angular_acc)
    deadline = timeout + ramp + DT + 1e-9
    zero_from = next(t for t, c in sim.commands if t > timeout and speed(c) == 0.0)
    assert zero_from <= deadline
    after = [c for t, c in sim.commands if t >= zero_from]
    assert all(speed(c) == 0.0 and c.reason == 'stale_result' for c in after)
    # The stop is a ramp, not a jump.
    stopping = [c for t, c in sim.commands if timeout < t < zero_from]
    assert stopping and all(c.reason == 'stale_result' for c in stopping)


def test_no_result_and_no_odometry_give_zero():
    planner = active_planner()
    assert planner.step(0.0).reason == 'no_result'
    assert planner.on_result(result(0.0, PATH), 0.0) is None  # no pose at all
    assert planner.step(0.02).reason == 'no_pose'
    # Odometry that stopped arriving is no pose to steer by.
    planner = active_planner()
    planner.on_odometry(0.0, Pose2D(0.0, 0.0, 0.0))
    assert planner.on_result(result(0.0, PATH), 0.0)
    assert planner.step(0.02).reason == 'tracking'
    assert planner.step(2.0).reason == 'no_pose'


# -------------------------------------------------------------------- (4) e-stop


def test_estop_is_immediate_latched_and_ignores_new_results():
    planner = active_planner(schedule_speed=False)
    sim = Sim(planner)
    assert planner.on_result(result(0.0, PATH), 0.0)
    sim.run(0.6)
    assert speed(sim.commands[-1][1]) > 0.2
    planner.set_estop(True)
    cmd = sim.run(DT)
    assert (cmd.vx, cmd.vy, cmd.wz, cmd.reason) == (0.0, 0.0, 0.0, 'estop')
    sim.run(0.5)
    assert planner.on_result(result(sim.t, PATH), sim.t) is not None  # taken in ...
    sim.run(0.5)
    estopped = [c for t, c in sim.commands if t >= 0.6 - 1e-9]
    assert all(speed(c) == 0.0 and c.reason == 'estop' for c in estopped)  # ... not acted on
    assert planner.reason == 'estop'
    # Released with a fresh result: resumes, ramping up from zero.
    planner.set_estop(False)
    cmd = sim.run(DT)
    assert cmd.reason == 'tracking'
    assert 0.0 < cmd.vx <= Limits().max_linear_acc * DT + 1e-9


def test_estop_release_with_stale_result_stays_stopped():
    planner = active_planner(result_timeout=1.0)
    sim = Sim(planner)
    assert planner.on_result(result(0.0, PATH), 0.0)
    planner.set_estop(True)
    sim.run(1.5)
    planner.set_estop(False)
    assert sim.run(DT).reason == 'stale_result'


# --------------------------------------------------------------- (5) task switch


def test_task_switch_ignores_results_of_the_old_task():
    planner = active_planner(schedule_speed=False)
    sim = Sim(planner)
    assert planner.on_result(result(0.0, PATH, task='other'), 0.0) is None
    assert sim.run(0.2).reason == 'no_result'
    assert planner.on_result(result(sim.t, PATH, task='t'), sim.t)
    sim.run(1.0)
    assert sim.commands[-1][1].reason == 'tracking'
    moving = speed(sim.commands[-1][1])
    planner.set_active_task('new')
    cmd = sim.run(DT)
    assert cmd.reason == 'no_result' and cmd.path == []
    assert 0.0 < speed(cmd) < moving  # ramped, not cut
    # A late answer of the old task must not move the robot.
    assert planner.on_result(result(sim.t, PATH, task='t'), sim.t) is None
    sim.run(2.0)
    assert speed(sim.commands[-1][1]) == 0.0
    assert all(c.reason == 'no_result' for _, c in sim.commands[-100:])
    assert planner.on_result(result(sim.t, PATH, task='new'), sim.t)
    assert sim.run(0.1).reason == 'tracking'
    planner.set_active_task(None)
    assert sim.run(DT).reason == 'task_inactive'
    assert planner.on_result(result(sim.t, PATH, task='new'), sim.t) is None


# -------------------------------------------------------------- (6) error streak


def test_error_streak_stops_and_a_good_result_resets_it():
    planner = active_planner(error_streak_limit=3)
    sim = Sim(planner)
    assert planner.on_result(result(0.0, PATH), 0.0)
    sim.run(0.5)
    for _ in range(2):
        assert planner.on_result(result(sim.t, [], status='vlm_error'), sim.t) is None
    assert sim.run(0.1).reason == 'tracking'
    # Invalid data counts as an error too.
    assert planner.on_result(result(sim.t, [wp(float('nan'))]), sim.t) is None
    assert planner.error_streak == 3
    cmd = sim.run(3.0, until=lambda c: speed(c) == 0.0)
    assert cmd.reason == 'error_streak' and speed(cmd) == 0.0
    assert planner.on_result(result(sim.t, PATH), sim.t)
    assert planner.error_streak == 0
    assert sim.run(0.1).reason == 'tracking'


# ------------------------------------------------------------ (7) low confidence


def test_low_confidence_stops():
    planner = active_planner()
    sim = Sim(planner)
    assert planner.on_result(result(0.0, PATH), 0.0)
    sim.run(0.5)
    unsure = [wp(0.5, confidence=0.2), wp(0.8, confidence=0.25)]
    assert planner.on_result(result(sim.t, unsure), sim.t) is None
    cmd = sim.run(3.0, until=lambda c: speed(c) == 0.0)
    assert cmd.reason == 'low_confidence' and speed(cmd) == 0.0 and cmd.path == []
    # The mean decides: one unsure far waypoint does not stop the robot.
    mixed = [wp(0.5, confidence=0.9), wp(0.8, confidence=0.1)]
    assert planner.on_result(result(sim.t, mixed), sim.t)
    assert sim.run(0.1).reason == 'tracking'


# ----------------------------------------------------------- (8) speed schedule


def cruise_speed(planner, seconds=1.5):
    sim = Sim(planner)
    assert planner.on_result(result(0.0, PATH, inference_time=planner.config.expected_latency),
                             0.0)
    sim.run(seconds)
    return max(c.vx for _, c in sim.commands)


def test_speed_scheduling_slows_down_when_the_next_result_is_far():
    soon = cruise_speed(active_planner(expected_latency=1.0))
    late = cruise_speed(active_planner(expected_latency=8.0))
    fixed = cruise_speed(active_planner(expected_latency=8.0, schedule_speed=False))
    # About 1 m of path over 8 s: 0.125 m/s; over 1 s: as fast as allowed.
    assert late == pytest.approx(1.0 / 8.0, rel=0.15)
    assert soon == pytest.approx(Limits().max_linear_vel)
    assert fixed == pytest.approx(Limits().max_linear_vel)


def test_speed_schedule_uses_measured_latency_and_min_speed():
    planner = active_planner(expected_latency=1.0, min_speed=0.2)
    for i in range(3):
        planner.on_odometry(i * 10.0, Pose2D(0.0, 0.0, 0.0))
        planner.on_result(result(i * 10.0, [wp(0.0)], inference_time=10.0), i * 10.0)
    assert planner.latency_estimate == pytest.approx(10.0)
    assert planner.interval_estimate == pytest.approx(10.0)
    assert planner.time_to_next_result(24.0) == pytest.approx(6.0)
    sim = Sim(planner, t=20.0)
    assert planner.on_result(result(20.0, PATH, inference_time=10.0), 20.0)
    sim.run(1.5)
    # 1 m over 10 s would be 0.1 m/s, but never below min_speed.
    assert max(c.vx for _, c in sim.commands) == pytest.approx(0.2, rel=0.05)


# ------------------------------------------------------------ (9) dead reckoning


def test_dead_reckoning_without_odometry():
    planner = active_planner(use_odometry=False)
    sim = Sim(planner, Pose2D(0.0, 0.0, 0.0), odometry=False)
    sim.run(0.5)  # builds the dead-reckoned history while standing
    assert planner.pose == Pose2D(0.0, 0.0, 0.0)
    planner.on_odometry(sim.t, Pose2D(5.0, 5.0, 1.0))  # ignored in this mode
    assert planner.on_result(result(0.2, PATH), sim.t)
    last = sim.run(20.0, until=lambda c: c.reason == 'path_finished' and speed(c) == 0.0)
    assert last.reason == 'path_finished'
    target = Pose2D(1.0, 0.15, 0.3)
    assert sim.pose.distance_to(target) < 0.02
    assert abs(normalize_angle(sim.pose.yaw - target.yaw)) < 0.06
    # The planner's estimate follows the commands the base executed.
    assert planner.pose.distance_to(sim.pose) < 0.01


@pytest.mark.parametrize('predict', [True, False])
def test_late_odometry_is_carried_forward_so_the_robot_stops_at_the_goal(predict):
    # Odometry reaches the planner 0.2 s after its stamp (a busy host); the stamps are right.
    lag = int(0.2 * RATE)
    planner = active_planner(predict_pose=predict, schedule_speed=False)
    pose, t, measured = Pose2D(0.0, 0.0, 0.0), 0.0, []
    for _ in range(lag + 1):
        measured.append((t, pose))
        t += DT
    planner.on_odometry(*measured[0])
    assert planner.on_result(result(0.0, [wp(0.5), wp(1.0)]), t) is not None
    furthest = 0.0
    for _ in range(int(8.0 * RATE)):
        cmd = planner.step(t)
        pose = unicycle(pose, cmd.vx, cmd.vy, cmd.wz, DT)
        t += DT
        measured.append((t, pose))
        planner.on_odometry(*measured[-1 - lag])
        furthest = max(furthest, pose.x)
    overshoot = furthest - 1.0
    if predict:
        assert overshoot < 0.02 and abs(pose.x - 1.0) < 0.03, (overshoot, pose)
    else:  # the failure the prediction exists for: braking on a 0.2 s old pose
        assert overshoot > 0.05, overshoot


# ---------------------------------------------------------------------------- live changes

def test_reconfigure_applies_new_limits_at_the_next_step_and_keeps_the_path():
    from dataclasses import replace
    planner = active_planner(schedule_speed=False)
    sim = Sim(planner)
    assert planner.on_result(result(0.0, [wp(1.0)]), 0.0)
    sim.run(1.5)
    assert max(c.vx for _, c in sim.commands) == pytest.approx(0.5)
    slow = replace(planner.config, limits=Limits(max_linear_vel=0.2), lookahead=0.5)
    planner.reconfigure(slow)
    assert planner.path  # the path being tracked survives the change
    start = len(sim.commands)
    sim.run(1.0)
    later = [c.vx for _, c in sim.commands[start:]]
    # Slowed within the deceleration limit (0.5 m/s^2), then held at the new limit.
    assert max(later[30:]) <= 0.2 + 1e-9 and later[-1] == pytest.approx(0.2)
    assert planner._tracker.lookahead == 0.5


@pytest.mark.parametrize('field, value', [('rate_hz', 20.0), ('use_odometry', False),
                                          ('history_length', 60.0), ('holonomic', True)])
def test_reconfigure_refuses_fields_that_need_a_restart(field, value):
    from dataclasses import replace
    planner = active_planner()
    with pytest.raises(ValueError, match=field):
        planner.reconfigure(replace(planner.config, **{field: value}))
