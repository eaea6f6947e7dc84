"""The obstacle guard: scale or stop a velocity command so that nothing sensed gets hit.

Semantics follow nav2's collision_monitor, adapted to a legged base that has to get past
walls and door frames on a 5-8 s model:
- stop zone (``stop_margin`` around the footprint): a point there that the command would
  bring closer stops the robot at once, as the e-stop does. A command that moves away from
  every such point is let through, so a robot that ended up close to a wall can leave it.
  A turn in place is allowed while nothing lies inside the circle it sweeps, or while the
  turn brings nothing there closer (the same rule, for what a corner can reach).
- slowdown zone (``slowdown_margin``): a point there that the command approaches scales the
  command by ``slowdown_ratio`` (driving along a corridor wall is not slowed).
- approach: the command is simulated forward for ``time_before_collision`` seconds; if the
  footprint would come within ``stop_margin`` of a point it is approaching, the command is
  scaled to the speed from which the deceleration limit still stops short of it
  (v = sqrt(2 a d)), so the velocity limiter's ramp-down ends before the obstacle.
Inside the stop zone, the closer half (the contact band, ``stop_margin / 2``) is held per
point: no command may bring any point there closer. Without it, noise lets the clearance
ratchet down: each tick allows what looks no worse than the nearest point measured now, and
a measurement that comes out a little long lets the robot creep a little closer.
Distances are signed (negative inside the footprint), so even a point that got inside
cannot be pushed deeper. A point counts once at least ``min_points`` points lie within
``SUPPORT_RADIUS`` of it (``supported``), so one noisy beam stops nothing.
Every point is in the base frame at the time of the check (m, REP-103).
"""
from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np

from vln_ros.core.collision.footprint import Footprint

__all__ = ['GUARD_STATES', 'SUPPORT_RADIUS', 'CollisionGuard', 'GuardConfig', 'GuardVerdict',
           'supported']

# 'clear': unchanged; 'slowdown' / 'approach': scaled; 'stop': obstacle in the stop zone;
# 'stale': a configured source is older than its timeout (blind: zero); 'detour': the
# planner's command was replaced by an arc round an obstacle in the way (guarded_output.py).
GUARD_STATES = ('clear', 'slowdown', 'approach', 'stop', 'stale', 'detour')

# Below these speeds (m/s, rad/s) a command component counts as zero.
_STILL_LINEAR = 1e-4
_STILL_ANGULAR = 1e-4
# A point "is approached" when the command brings it this much closer (m) than the nearest
# point is now: the clearance gets worse. Driving along a wall keeps the clearance (the wall
# ahead comes no closer than the wall beside), a box ahead or a converging wall do not.
_CLOSER = 1e-4
# How far ahead (s) the stop zone looks to tell an approached point from one left behind.
_PROBE_S = 0.1
# The contact band is this fraction of the stop zone (about 2.5 sigma of a 1 cm scanner at
# the default 5 cm).
_CONTACT_FRACTION = 0.5
# Points within this distance (m) of each other support each other (supported()).
SUPPORT_RADIUS = 0.1


@dataclass
class GuardConfig:
    """Zones and timing of the guard (m, s); see the module docstring."""

    footprint: list[tuple[float, float]]
    stop_margin: float = 0.05
    slowdown_margin: float = 0.25
    slowdown_ratio: float = 0.5
    time_before_collision: float = 1.5
    simulation_time_step: float = 0.05
    min_points: int = 2

    def __post_init__(self) -> None:
        checks = {
            'stop_margin': self.stop_margin >= 0.0,
            'slowdown_margin': self.slowdown_margin >= self.stop_margin,
            'slowdown_ratio': 0.0 <= self.slowdown_ratio <= 1.0,
            'time_before_collision': self.time_before_collision > 0.0,
            'simulation_time_step': 0.0 < self.simulation_time_step <= self.time_before_collision,
            'min_points': self.min_points >= 1,
        }
        for name, ok in checks.items():
            value = getattr(self, name)
            if not ok or not math.isfinite(value):
                raise ValueError(f'collision.{name} is out of range: {value!r} (the slowdown '
                                 'margin must be at least the stop margin)')


@dataclass
class GuardVerdict:
    """What the guard did to one command, and why."""

    command: tuple[float, float, float]
    state: str
    scale: float = 1.0
    nearest: tuple[float, float] | None = None  # nearest obstacle point, base frame (m)
    nearest_distance: float | None = None  # its distance from the footprint (m)
    time_to_collision: float | None = None  # along the command as given (s)


class CollisionGuard:
    """Apply the stop, slowdown and approach rules to body velocity commands."""

    def __init__(self, config: GuardConfig) -> None:
        self.config = config
        self.footprint = Footprint(config.footprint)
        steps = max(1, int(math.ceil(config.time_before_collision
                                     / config.simulation_time_step)))
        self._times = config.simulation_time_step * np.arange(1, steps + 1)

    def stale(self) -> GuardVerdict:
        """The verdict while a configured source is too old: zero, at once."""
        return GuardVerdict((0.0, 0.0, 0.0), 'stale', 0.0)

    def check(self, vx: float, vy: float, wz: float, points: np.ndarray,
              decel: float) -> GuardVerdict:
        """Return the guarded command for (vx, vy, wz) given obstacle points (N x 2).

        ``decel`` is the linear deceleration (m/s^2) the limiter ramps down with.
        """
        cfg = self.config
        points = np.asarray(points, dtype=float).reshape(-1, 2)
        distance = self.footprint.distance(points)
        nearest, nearest_d = None, None
        if len(points):
            i = int(np.argmin(distance))
            nearest, nearest_d = (float(points[i, 0]), float(points[i, 1])), float(distance[i])
        base = dict(nearest=nearest, nearest_distance=nearest_d)
        speed = math.hypot(vx, vy)
        if speed < _STILL_LINEAR and abs(wz) < _STILL_ANGULAR:
            return GuardVerdict((vx, vy, wz), 'clear', **base)
        if self._stops(points, distance, vx, vy, wz, speed):
            return GuardVerdict((0.0, 0.0, 0.0), 'stop', 0.0, **base)
        if speed < _STILL_LINEAR:
            return GuardVerdict((vx, vy, wz), 'clear', **base)  # a turn in a clear circle

        scale, state = 1.0, 'clear'
        zone = distance <= cfg.slowdown_margin
        if np.any(self._approached(points, distance, zone, vx, vy, wz)):
            scale, state = cfg.slowdown_ratio, 'slowdown'
        ttc = self._time_to_collision(points, distance, vx, vy, wz, speed)
        if ttc is not None:
            allowed = math.sqrt(2.0 * max(decel, 0.0) * speed * ttc)
            if allowed / speed < scale:
                scale, state = allowed / speed, 'approach'
        command = (vx * scale, vy * scale, wz * scale)
        return GuardVerdict(command, state, scale, time_to_collision=ttc, **base)

    def must_stop(self, vx: float, vy: float, wz: float, points: np.ndarray) -> bool:
        """Return True when the stop rule holds for a command.

        For the limiter's output while it ramps down: cheaper than ``check`` (no approach
        simulation).
        """
        speed = math.hypot(vx, vy)
        if speed < _STILL_LINEAR and abs(wz) < _STILL_ANGULAR:
            return False
        points = np.asarray(points, dtype=float).reshape(-1, 2)
        return self._stops(points, self.footprint.distance(points), vx, vy, wz, speed)

    def _stops(self, points: np.ndarray, distance: np.ndarray, vx: float, vy: float,
               wz: float, speed: float) -> bool:
        """The stop rule: a turn with its circle occupied, or a move into the stop zone."""
        cfg = self.config
        if speed < _STILL_LINEAR:
            # Only what the footprint can sweep blocks a turn, and only when the turn brings
            # it closer: a stop margin here would pin a robot that stopped next to a wall,
            # and with a polygon's corners reaching past its edges, a wall a few centimetres
            # off an edge lies inside the swept circle though turning one way leaves it.
            swept = np.hypot(points[:, 0], points[:, 1]) <= self.footprint.radius
            return bool(np.any(self._approached(points, distance, swept, vx, vy, wz)))
        near = distance <= cfg.stop_margin
        return bool(np.any(self._approached(points, distance, near, vx, vy, wz)))

    def _approached(self, points: np.ndarray, distance: np.ndarray, mask: np.ndarray,
                    vx: float, vy: float, wz: float) -> np.ndarray:
        """Return which masked points a short step brings too close (see ``worse``)."""
        out = np.zeros(len(points), dtype=bool)
        if not np.any(mask):
            return out
        probe = self.distances_after(points[mask], vx, vy, wz, np.array([_PROBE_S]))[0]
        out[mask] = self.worse(probe, distance[mask], float(np.min(distance)))
        return out

    def worse(self, after: np.ndarray, now: np.ndarray, nearest: float) -> np.ndarray:
        """Return which points a move makes worse (``after`` may be T x N over ``now``, N).

        Worse: closer than the nearest point is now, or, inside the contact band, closer
        than the point itself is now.
        """
        band = _CONTACT_FRACTION * self.config.stop_margin
        return (after < nearest - _CLOSER) | ((after < band) & (after < now - _CLOSER))

    def contact(self, after: np.ndarray, now: np.ndarray, nearest: float,
                margin: float | None = None) -> np.ndarray:
        """Return where a move reaches a point.

        Reaches: within ``margin`` (default: the stop zone) and worse than now (``worse``).
        """
        margin = self.config.stop_margin if margin is None else margin
        return (after <= margin) & self.worse(after, now, nearest)

    def _time_to_collision(self, points: np.ndarray, distance: np.ndarray, vx: float,
                           vy: float, wz: float, speed: float) -> float | None:
        """Return the last safe time (s) along the command, None when nothing is reached.

        Reached: the footprint comes within the stop zone of a point, closer than the nearest
        point is now, with the command held constant.
        """
        cfg = self.config
        reach = self.footprint.radius + cfg.stop_margin + speed * self._times[-1]
        keep = np.hypot(points[:, 0], points[:, 1]) <= reach
        if not np.any(keep):
            return None
        d = self.distances_after(points[keep], vx, vy, wz, self._times)
        hits = np.any(self.contact(d, distance[keep], float(np.min(distance))), axis=1)
        if not np.any(hits):
            return None
        k = int(np.argmax(hits))
        return float(self._times[k - 1]) if k > 0 else 0.0

    def distances_after(self, points: np.ndarray, vx: float, vy: float, wz: float,
                         times: np.ndarray) -> np.ndarray:
        """Distances (len(times) x N) of the points from the footprint moved by the twist."""
        theta = wz * times
        small = np.abs(theta) < 1e-9
        safe_wz = wz if abs(wz) > 1e-12 else 1.0
        sin_t, one_minus_cos = np.sin(theta), 1.0 - np.cos(theta)
        # Exact arc of a constant twist (geometry.integrate_twist, vectorised over time).
        x = np.where(small, vx * times, (vx * sin_t - vy * one_minus_cos) / safe_wz)
        y = np.where(small, vy * times, (vx * one_minus_cos + vy * sin_t) / safe_wz)
        c, s = np.cos(theta), np.sin(theta)
        # The points in the moved robot's frame: R(-theta) (p - t).
        dx = points[None, :, 0] - x[:, None]
        dy = points[None, :, 1] - y[:, None]
        local = np.stack((c[:, None] * dx + s[:, None] * dy,
                          -s[:, None] * dx + c[:, None] * dy), axis=2)
        flat = self.footprint.distance(local.reshape(-1, 2))
        return flat.reshape(len(times), len(points))


def supported(points: np.ndarray, min_points: int, radius: float = SUPPORT_RADIUS) -> np.ndarray:
    """Keep the points with at least ``min_points`` points (themselves included) nearby.

    Nearby: in the same or a neighbouring ``radius``-sized grid cell, so within about
    2 ``radius``. A real surface gives neighbours; a lone noisy return has none.
    """
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    if min_points <= 1 or len(points) == 0:
        return points
    keys = np.floor(points / radius).astype(np.int64)
    keys -= keys.min(axis=0)
    width = int(keys[:, 1].max()) + 3
    codes = (keys[:, 0] + 1) * width + keys[:, 1] + 1
    cells, counts = np.unique(codes, return_counts=True)
    total = np.zeros(len(points), dtype=np.int64)
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            neighbour = codes + dx * width + dy
            i = np.clip(np.searchsorted(cells, neighbour), 0, len(cells) - 1)
            total += np.where(cells[i] == neighbour, counts[i], 0)
    return points[total >= min_points]
