"""Tests for vln_ros.core.collision: footprint distances, the guard's zones and approach."""

import math

import numpy as np
import pytest

from vln_ros.core.collision.footprint import Footprint, parse_footprint
from vln_ros.core.collision.guard import CollisionGuard, GuardConfig, supported
from vln_ros.core.velocity_limits import Limits, VelocityLimiter

# The node's default: 0.70 x 0.40 m around the base origin.
BOX = parse_footprint('[[0.35, 0.2], [0.35, -0.2], [-0.35, -0.2], [-0.35, 0.2]]')
DECEL = 0.5


def wall_ahead(x: float, half_width: float = 1.0, step: float = 0.02) -> np.ndarray:
    """Points of a wall across the way, ``x`` m ahead of the base origin."""
    ys = np.arange(-half_width, half_width + 1e-9, step)
    return np.stack((np.full_like(ys, x), ys), axis=1)


def wall_beside(y: float, length: float = 3.0, step: float = 0.02) -> np.ndarray:
    xs = np.arange(-length / 2, length / 2 + 1e-9, step)
    return np.stack((xs, np.full_like(xs, y)), axis=1)


def guard(**overrides) -> CollisionGuard:
    return CollisionGuard(GuardConfig(footprint=BOX, **overrides))


def test_footprint_distance_inside_outside_and_corner():
    fp = Footprint(BOX)
    pts = np.array([[0.0, 0.0], [0.45, 0.0], [0.0, -0.5], [0.45, 0.3], [0.3, 0.0]])
    d = fp.distance(pts)
    assert d[0] == pytest.approx(-0.2)  # inside: minus the way out, through the nearer side
    assert d[4] == pytest.approx(-0.05)
    assert d[1] == pytest.approx(0.10)
    assert d[2] == pytest.approx(0.30)
    assert d[3] == pytest.approx(math.hypot(0.10, 0.10))  # the zones have rounded corners
    assert fp.radius == pytest.approx(math.hypot(0.35, 0.2))


@pytest.mark.parametrize('text', ['', '[[0, 0], [1, 0]]', '[[1, 1], [2, 1], [2, 2]]',
                                  '[[0.3, "a"], [0, 1], [1, 1]]', 'not json'])
def test_parse_footprint_rejects_what_is_not_a_polygon_round_the_base(text):
    with pytest.raises(ValueError, match='footprint'):
        parse_footprint(text)


def test_an_obstacle_in_the_stop_zone_ahead_stops_forward_motion():
    verdict = guard().check(0.4, 0.0, 0.0, wall_ahead(0.38), DECEL)
    assert verdict.state == 'stop' and verdict.command == (0.0, 0.0, 0.0)


def test_moving_away_from_a_point_in_the_stop_zone_is_allowed():
    behind = wall_ahead(-0.38)
    verdict = guard().check(0.3, 0.0, 0.0, behind, DECEL)
    assert verdict.state == 'clear' and verdict.command == (0.3, 0.0, 0.0)


@pytest.mark.parametrize('y', [0.24, 0.3, -0.35])
def test_driving_along_a_wall_is_neither_stopped_nor_slowed(y):
    verdict = guard().check(0.5, 0.0, 0.0, wall_beside(y), DECEL)
    assert verdict.state == 'clear' and verdict.command == (0.5, 0.0, 0.0)


def test_a_box_ahead_while_hugging_a_wall_still_stops():
    points = np.concatenate((wall_beside(0.24), wall_ahead(0.38, half_width=0.1)))
    assert guard().check(0.3, 0.0, 0.0, points, DECEL).state == 'stop'


def test_converging_on_a_wall_is_an_approach():
    verdict = guard().check(0.5, 0.0, 0.0, wall_beside(0.24), DECEL)
    turned = guard().check(0.5, 0.3, 0.0, wall_beside(0.3), DECEL)  # sidestepping into it
    assert verdict.state == 'clear' and turned.state in ('stop', 'slowdown', 'approach')


def test_one_noisy_point_stops_nothing():
    lone = np.array([[0.37, 0.0]])
    assert len(supported(lone, 2)) == 0
    assert guard().check(0.4, 0.0, 0.0, supported(lone, 2), DECEL).state == 'clear'
    # A surface keeps its points (each has neighbours), and a lone return far from it goes.
    wall = np.vstack((wall_ahead(0.37), [[2.0, 2.0]]))
    kept = supported(wall, 2)
    assert len(kept) == len(wall) - 1 and [2.0, 2.0] not in kept.tolist()
    assert guard().check(0.4, 0.0, 0.0, kept, DECEL).state == 'stop'


def test_a_point_in_the_contact_band_may_not_come_closer():
    # A box corner 2 cm off the front-right of the footprint, and a farther wall point that
    # is the same (noisy) distance. Driving on with a slight left turn brings the corner
    # closer but never below the nearest measured: the band rule still stops it.
    g = guard()
    corner = np.array([[0.37, -0.2], [0.372, -0.21]])
    verdict = g.check(0.1, 0.0, 0.05, corner, DECEL)
    assert verdict.state == 'stop'
    # Leaving it is allowed.
    assert g.check(-0.1, 0.0, 0.0, corner, DECEL).state != 'stop'


def test_a_point_inside_the_footprint_cannot_be_pushed_deeper():
    g = guard()
    inside = np.array([[0.33, 0.0], [0.33, 0.01]])  # 2 cm inside the front face
    assert g.check(0.1, 0.0, 0.0, inside, DECEL).state == 'stop'
    assert g.check(-0.1, 0.0, 0.0, inside, DECEL).command == (-0.1, 0.0, 0.0)


def test_slowdown_zone_scales_the_command_keeping_its_curvature():
    verdict = guard(time_before_collision=0.1, simulation_time_step=0.05).check(
        0.4, 0.0, 0.2, wall_ahead(0.5), DECEL)
    assert verdict.state == 'slowdown'
    assert verdict.command == pytest.approx((0.2, 0.0, 0.1))


def test_far_obstacle_leaves_the_command_alone():
    verdict = guard().check(0.5, 0.0, 0.0, wall_ahead(3.0), DECEL)
    assert verdict.state == 'clear' and verdict.command == (0.5, 0.0, 0.0)
    assert verdict.nearest_distance == pytest.approx(2.65)


def test_approach_scales_to_the_speed_the_deceleration_can_stop_from():
    # The front face is 0.35 m ahead; the stop zone starts 0.05 m before the wall.
    # No slowdown zone here, to see the approach rule alone.
    verdict = guard(slowdown_margin=0.05).check(0.5, 0.0, 0.0, wall_ahead(0.35 + 0.05 + 0.15),
                                                DECEL)
    assert verdict.state == 'approach'
    free = 0.5 * verdict.time_to_collision
    assert free == pytest.approx(0.15, abs=0.03)
    assert math.hypot(*verdict.command[:2]) == pytest.approx(math.sqrt(2 * DECEL * free))


def test_turn_in_place_needs_an_empty_circle():
    g = guard()
    assert g.check(0.0, 0.0, 0.5, wall_beside(0.3), DECEL).state == 'stop'
    assert g.check(0.0, 0.0, 0.5, wall_beside(0.6), DECEL).command == (0.0, 0.0, 0.5)
    # Only the swept circle counts, not the stop margin around it: a robot that stopped
    # next to a wall can still turn away from it.
    just_out = g.footprint.radius + 0.5 * g.config.stop_margin
    assert g.check(0.0, 0.0, 0.5, wall_beside(just_out), DECEL).state == 'clear'
    assert g.check(0.0, 0.0, 0.5, wall_beside(g.footprint.radius - 0.01), DECEL).state == 'stop'


def test_an_arc_into_a_side_obstacle_is_seen_by_the_simulation():
    # Straight on is clear, but the commanded left turn sweeps into a box on the left.
    box = np.array([[x, y] for x in np.arange(0.5, 0.9, 0.02) for y in (0.45, 0.5)])
    g = guard()
    straight = g.check(0.5, 0.0, 0.0, box, DECEL)
    turning = g.check(0.5, 0.0, 0.8, box, DECEL)
    assert straight.state == 'clear' and straight.time_to_collision is None
    assert turning.time_to_collision is not None and turning.time_to_collision < 1.0


def test_a_robot_under_guard_and_limiter_stops_short_of_a_wall():
    """Closed loop in the robot's frame: guard, then limiter, at 50 Hz; no contact ever."""
    g = guard()
    limiter = VelocityLimiter(Limits())
    x = 0.0  # robot position; the wall is at 2.0 m
    dt = 0.02
    for _ in range(int(20 / dt)):
        verdict = g.check(0.5, 0.0, 0.0, wall_ahead(2.0 - x), DECEL)
        vx, _, _ = limiter.hard_stop() if verdict.state == 'stop' else \
            limiter.apply(*verdict.command, dt)
        x += vx * dt
        assert 2.0 - x - 0.35 > 0.0  # the front face never touches the wall
    assert limiter.last == (0.0, 0.0, 0.0)
    gap = 2.0 - x - 0.35
    assert 0.0 < gap <= 0.05 + 0.02


def test_must_stop_checks_the_limiter_output_cheaply():
    g = guard()
    assert g.must_stop(0.2, 0.0, 0.0, wall_ahead(0.38))
    assert not g.must_stop(0.2, 0.0, 0.0, wall_ahead(1.0))
    assert not g.must_stop(0.0, 0.0, 0.0, wall_ahead(0.38))


@pytest.mark.parametrize('field,value', [('stop_margin', -0.1), ('slowdown_margin', 0.01),
                                         ('slowdown_ratio', 1.5), ('time_before_collision', 0),
                                         ('min_points', 0)])
def test_config_rejects_out_of_range_values(field, value):
    with pytest.raises(ValueError, match=field):
        GuardConfig(footprint=BOX, **{field: value})


def test_circle_footprint_encloses_the_round_robot():
    from vln_ros.core.collision.footprint import circle_footprint
    fp = Footprint(parse_footprint(circle_footprint(0.3)))
    angles = np.linspace(0, 2 * np.pi, 73)
    rim = np.stack((0.3 * np.cos(angles), 0.3 * np.sin(angles)), axis=1)
    assert np.all(fp.contains(rim * 0.999))
    # 16 sides: the corners reach only 6 mm past the rim, so that turning next to a wall
    # barely sweeps closer to it.
    assert fp.radius == pytest.approx(0.3 / math.cos(math.pi / 16), abs=1e-3)
