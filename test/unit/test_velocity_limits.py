"""Tests for vln_ros.core.velocity_limits: speed clamps and acceleration ramps."""

import math
import os

from hypothesis import given, settings
from hypothesis import strategies as st
import pytest

from vln_ros.core.velocity_limits import Limits, VelocityLimiter

FUZZ = settings(max_examples=int(os.environ.get('VLN_FUZZ_EXAMPLES', '300')),
                deadline=None, derandomize=True)

# Accelerations so high that only the speed limits act.
FAST = dict(max_linear_acc=1e6, max_lateral_acc=1e6, max_angular_acc=1e6)


def test_limits_defaults():
    lim = Limits()
    assert (lim.max_linear_vel, lim.max_lateral_vel, lim.max_angular_vel) == (0.5, 0.3, 0.8)
    assert (lim.max_linear_acc, lim.max_lateral_acc, lim.max_angular_acc) == (0.5, 0.5, 1.5)


@pytest.mark.parametrize('name', ['max_linear_vel', 'max_lateral_vel', 'max_angular_vel',
                                  'max_linear_acc', 'max_lateral_acc', 'max_angular_acc'])
@pytest.mark.parametrize('value', [0.0, -1.0, float('nan'), float('inf')])
def test_limits_reject_non_positive(name, value):
    with pytest.raises(ValueError, match=name):
        Limits(**{name: value})


def test_speed_clamp_keeps_curvature():
    limiter = VelocityLimiter(Limits(**FAST))
    # wz over its limit: vx must shrink by the same factor (curvature 3.2 1/m kept).
    vx, vy, wz = limiter.apply(0.5, 0.0, 1.6, 0.02)
    assert wz == pytest.approx(0.8)
    assert vx == pytest.approx(0.25)
    assert wz / vx == pytest.approx(1.6 / 0.5)
    # vx over its limit: wz shrinks too.
    vx, vy, wz = limiter.apply(1.0, 0.0, 0.4, 0.02)
    assert (vx, wz) == (pytest.approx(0.5), pytest.approx(0.2))


def test_speed_clamp_per_axis_and_sign():
    limiter = VelocityLimiter(Limits(**FAST))
    assert limiter.apply(-2.0, 0.0, 0.0, 0.02) == pytest.approx((-0.5, 0.0, 0.0))
    assert limiter.apply(0.0, -2.0, 0.0, 0.02) == pytest.approx((0.0, -0.3, 0.0))
    assert limiter.apply(0.0, 0.0, -2.0, 0.02) == pytest.approx((0.0, 0.0, -0.8))
    assert limiter.apply(0.1, 0.1, 0.1, 0.02) == (0.1, 0.1, 0.1)


def test_acceleration_ramp_up_and_down():
    limiter = VelocityLimiter(Limits())
    outputs = [limiter.apply(0.5, 0.0, 0.0, 0.02)[0] for _ in range(60)]
    assert outputs[0] == pytest.approx(0.01)
    assert outputs[9] == pytest.approx(0.1)
    assert outputs[49] == pytest.approx(0.5)
    assert outputs[-1] == 0.5
    # A ramp to zero respects the (de)celeration limit too.
    down = [limiter.apply(0.0, 0.0, 0.0, 0.02)[0] for _ in range(60)]
    assert down[0] == pytest.approx(0.49)
    assert all(b <= a for a, b in zip(down, down[1:], strict=False))
    assert down[49] == pytest.approx(0.0, abs=1e-12)
    assert down[-1] == 0.0


def test_ramp_keeps_curvature_of_the_target():
    limiter = VelocityLimiter(Limits())
    for _ in range(30):
        vx, _, wz = limiter.apply(0.4, 0.0, 0.6, 0.02)
        assert wz == pytest.approx(1.5 * vx)
    for _ in range(30):
        vx, _, wz = limiter.apply(0.0, 0.0, 0.0, 0.02)
        assert wz == pytest.approx(1.5 * vx)


def test_hard_stop_is_immediate():
    limiter = VelocityLimiter(Limits())
    for _ in range(40):
        limiter.apply(0.5, 0.2, 0.5, 0.02)
    assert limiter.last[0] > 0.3
    assert limiter.hard_stop() == (0.0, 0.0, 0.0)
    assert limiter.last == (0.0, 0.0, 0.0)
    # The next output ramps up from zero again.
    assert limiter.apply(0.5, 0.0, 0.0, 0.02)[0] == pytest.approx(0.01)


def test_non_finite_input_and_dt():
    limiter = VelocityLimiter(Limits())
    limiter.reset((0.3, 0.0, 0.0))
    vx, vy, wz = limiter.apply(float('nan'), 0.0, 0.0, 0.02)
    assert vx == pytest.approx(0.29)  # treated as a request to stop, ramped
    assert limiter.apply(0.0, 0.0, 0.0, float('nan')) == pytest.approx((0.29, 0.0, 0.0))
    assert limiter.apply(0.0, 0.0, 0.0, -1.0) == pytest.approx((0.29, 0.0, 0.0))


commands = st.tuples(st.floats(-3.0, 3.0), st.floats(-3.0, 3.0), st.floats(-3.0, 3.0))
limit_values = st.floats(0.05, 3.0)


@FUZZ
@given(st.builds(Limits, limit_values, limit_values, limit_values, limit_values, limit_values,
                 limit_values),
       st.lists(st.tuples(commands, st.floats(0.0, 0.2), st.booleans()), min_size=1,
                max_size=60))
def test_outputs_respect_speed_and_acceleration_limits(limits, sequence):
    limiter = VelocityLimiter(limits)
    speed = (limits.max_linear_vel, limits.max_lateral_vel, limits.max_angular_vel)
    acc = (limits.max_linear_acc, limits.max_lateral_acc, limits.max_angular_acc)
    prev = (0.0, 0.0, 0.0)
    for cmd, dt, stop in sequence:
        if stop:
            out = limiter.hard_stop()
            assert out == (0.0, 0.0, 0.0)
        else:
            out = limiter.apply(*cmd, dt)
            for i in range(3):
                assert abs(out[i]) <= speed[i] + 1e-12
                assert abs(out[i] - prev[i]) <= acc[i] * dt + 1e-9
                assert math.isfinite(out[i])
            # Never overshoots: each axis stays between the old value and the target (or
            # the target's clamped value, which has the same sign).
            for i in range(3):
                assert min(prev[i], 0.0, cmd[i]) - 1e-12 <= out[i] <= max(prev[i], 0.0,
                                                                           cmd[i]) + 1e-12
        assert limiter.last == out
        prev = out
