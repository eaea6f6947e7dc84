"""Speed and acceleration limits for body velocity commands (vx, vy, wz)."""

from dataclasses import dataclass, fields
import math

__all__ = ['Limits', 'VelocityLimiter']


@dataclass
class Limits:
    """Speed (m/s, rad/s) and acceleration (m/s^2, rad/s^2) bounds; all must be > 0."""

    max_linear_vel: float = 0.5
    max_lateral_vel: float = 0.3
    max_angular_vel: float = 0.8
    max_linear_acc: float = 0.5
    max_lateral_acc: float = 0.5
    max_angular_acc: float = 1.5

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f'Limits.{f.name} must be a finite number > 0, got {value!r}')
            setattr(self, f.name, float(value))


class VelocityLimiter:
    """Clamp commands to the speed limits, then their change to the acceleration limits.

    Both steps scale the command as a whole instead of clamping axes one by one: a
    pure-pursuit command (vx, wz) carries the path's curvature wz / vx, and clamping
    wz alone would drive a wider arc than planned. The acceleration step moves from
    the previous output straight towards the clamped target, so a ramp between two
    commands of the same curvature keeps that curvature all the way, and a ramp to
    zero respects the deceleration limits too.
    """

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits if limits is not None else Limits()
        self._last = (0.0, 0.0, 0.0)

    @property
    def last(self) -> tuple[float, float, float]:
        """Return the last output (vx, vy, wz)."""
        return self._last

    def apply(self, vx: float, vy: float, wz: float, dt: float) -> tuple[float, float, float]:
        """Return the limited command for a control period of ``dt`` seconds."""
        lim = self.limits
        target = (vx, vy, wz)
        if not all(math.isfinite(v) for v in target):
            target = (0.0, 0.0, 0.0)  # never pass NaN/inf on to a motor: slow down instead
        target = _scale_into(target, (lim.max_linear_vel, lim.max_lateral_vel,
                                      lim.max_angular_vel))
        dt = dt if math.isfinite(dt) and dt > 0.0 else 0.0
        delta = tuple(t - p for t, p in zip(target, self._last, strict=True))
        step = _scale_into(delta, (lim.max_linear_acc * dt, lim.max_lateral_acc * dt,
                                   lim.max_angular_acc * dt))
        out = tuple(p + d for p, d in zip(self._last, step, strict=True))
        # Reaching the target exactly avoids a tail of tiny residuals from rounding.
        if step == delta:
            out = target
        self._last = out
        return out

    def hard_stop(self) -> tuple[float, float, float]:
        """Zero the output at once (e-stop: no ramp) and return it."""
        self._last = (0.0, 0.0, 0.0)
        return self._last

    def reset(self, last: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> None:
        """Set the remembered previous output, e.g. to the robot's measured twist."""
        self._last = tuple(float(v) for v in last)


def _scale_into(vec: tuple[float, ...], bounds: tuple[float, ...]) -> tuple[float, ...]:
    """Scale ``vec`` uniformly so that |vec[i]| <= bounds[i] for every axis."""
    scale = 1.0
    for v, b in zip(vec, bounds, strict=True):
        if abs(v) > b:
            scale = min(scale, b / abs(v))
    if scale == 1.0:
        return vec
    # The product may exceed the bound by one ulp; clamp to keep the guarantee exact.
    return tuple(max(-b, min(b, v * scale)) for v, b in zip(vec, bounds, strict=True))
