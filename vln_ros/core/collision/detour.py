"""Local avoidance: when the straight way is blocked, pick an arc that gets round.

A small dynamic-window search: arcs (v, w) within the speed limits, each followed for a
short length of way; an arc on which the footprint would enter the stop zone of a point it
approaches (the guard's own rule) is out. The clear ones are scored by the progress they
make along the free way to the goal (way_field.py) and the clearance they keep. The best
arc with real progress is driven for one tick and the search runs again at the next, so the
detour bends round the obstacle as the scan reveals it. Where no arc fits but a way round
exists, the robot turns on the spot to face it. No way round from here: the caller stops
and reports ``blocked``.
"""
from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np

from vln_ros.core.collision.guard import CollisionGuard
from vln_ros.core.collision.way_field import WayField

__all__ = ['Detour', 'arc_is_clear', 'choose_detour', 'thin_points']

# Fractions of the speed limits the search tries.
_SPEEDS = (0.3, 0.6, 1.0)
_TURNS = np.linspace(-1.0, 1.0, 9)
# Progress (m) an arc must make over the horizon to count as a way round.
_MIN_PROGRESS = 0.05
# Clearance (m) beyond this earns nothing more: progress decides among safe arcs.
_CLEARANCE_CAP = 0.3
_CLEARANCE_WEIGHT = 0.5
# Among equally good arcs, the faster one.
_SPEED_WEIGHT = 0.1
# Where no arc fits, the way round is looked for this far off (m), in this many directions;
# a way within this bearing (rad) counts as faced (close: a few degrees towards a wall
# alongside are enough to rule out every arc), and the turn to it goes at this fraction of
# the angular limit.
_FACE_RADIUS = 0.4
_FACE_DIRECTIONS = 32
_FACED = 0.05
_FACE_TURN = 0.5
_FACE_HYSTERESIS = 0.2  # m of way
# A way round this much longer (m) than the straight line is not worth turning to: the next
# answer, told the way was blocked, chooses again (a wall is not followed into the unknown).
_FACE_MAX_EXTRA = 2.5


@dataclass(frozen=True)
class Detour:
    """The chosen arc and why it won."""

    vx: float
    wz: float
    progress: float  # m closer to the goal at the end of the judged length
    clearance: float  # m, the smallest distance to an obstacle along it


def choose_detour(guard: CollisionGuard, points: np.ndarray, goal: tuple[float, float],
                  max_linear: float, max_angular: float, length: float = 1.0,
                  samples: int = 10, side: float = 0.0,
                  heading: float | None = None) -> Detour | None:
    """Return the best arc towards ``goal`` (base frame, m) round the points, or None.

    ``side`` (the sign of the last turn on the spot, 0: none) keeps a turn to face the way
    round going the same way while the other side is hardly better. ``heading`` is the
    path's direction at the goal (rad, base frame): a goal inside an obstacle is taken past
    it that way (way_field.py).

    Each arc is judged over the same ``length`` of way (m), slow or fast, so that creeping
    straight at the obstacle never looks clear; that length is also more than the braking
    distance at any speed tried, so an arc clear to its end can still be stopped on.
    """
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    length = min(length, max(math.hypot(*goal), 0.3))
    near, now_clear = _near(guard, points, length)
    near_now = guard.footprint.distance(near)
    # Progress is measured along the free way round (way_field.py), not in a straight line.
    inscribed = max(-float(guard.footprint.distance(np.zeros((1, 2)))[0]), 0.05)
    field = WayField(points, goal, inscribed + guard.config.stop_margin, heading=heading)
    start = field.start_cost()
    if not math.isfinite(start):
        return None  # no free way to the goal within the field: nothing to go round
    best: Detour | None = None
    best_score = -math.inf
    for fraction in _SPEEDS:
        v = fraction * max_linear
        times = (length / v) * np.arange(1, samples + 1) / samples
        for turn in _TURNS:
            w = float(turn) * max_angular
            clearance = _CLEARANCE_CAP
            if len(near):
                after = guard.distances_after(near, v, 0.0, w, times)
                closest = after.min(axis=1)
                if np.any(guard.contact(after, near_now, now_clear)):
                    continue  # it would run into something: not a way round
                clearance = min(_CLEARANCE_CAP, float(closest.min()))
            x, y = _arc_end(v, w, times[-1])
            progress = start - field.cost(x, y)
            if progress < _MIN_PROGRESS:
                continue
            score = progress + _CLEARANCE_WEIGHT * clearance + _SPEED_WEIGHT * fraction
            if score > best_score:
                best_score, best = score, Detour(v, w, progress, clearance)
    if best is None and start <= math.hypot(*goal) + _FACE_MAX_EXTRA:
        best = _face_the_way(field, max_angular, side)
    return best


def _face_the_way(field: WayField, max_angular: float, side: float) -> Detour | None:
    """A turn on the spot towards the way round, when no arc fits (or None).

    A robot that stopped facing a box a few centimetres off has no arc that does not first
    drive at it; a legged base turns on the spot instead, towards where the way round
    starts, and the arcs fit once it faces that way. The guard still checks the turn.
    """
    angles = np.linspace(-math.pi, math.pi, _FACE_DIRECTIONS, endpoint=False)
    costs = np.array([field.cost(_FACE_RADIUS * math.cos(a), _FACE_RADIUS * math.sin(a))
                      for a in angles])
    k = int(np.argmin(costs))
    if not math.isfinite(costs[k]):
        return None
    if abs(angles[k]) < _FACED:
        # Facing the way round, and still no arc fits: hold still rather than hand the turn
        # back to the tracking command (which turns to the goal, then here again); the
        # planner's stuck watch then reports the way blocked.
        return Detour(0.0, 0.0, 0.0, 0.0)
    if side and angles[k] * side < 0.0:
        # A box straight ahead has a way round on either side: without this the choice
        # flips with the scan's noise, and the robot turns to and fro in front of it.
        same = np.where(angles * side > 0.0, costs, np.inf)
        j = int(np.argmin(same))
        if same[j] <= costs[k] + _FACE_HYSTERESIS:
            k = j
    return Detour(0.0, math.copysign(_FACE_TURN * max_angular, angles[k]), 0.0, 0.0)


def arc_is_clear(guard: CollisionGuard, points: np.ndarray, v: float, w: float,
                 length: float, margin: float | None = None, samples: int = 10) -> bool:
    """True when driving (v, w) for ``length`` m keeps every point out of ``margin``.

    ``margin`` is a distance from the footprint (m); the default is the stop zone.
    """
    if v <= 0.0 or len(points) == 0:
        return True
    near, now_clear = _near(guard, points, length)
    if not len(near):
        return True
    times = (length / v) * np.arange(1, samples + 1) / samples
    after = guard.distances_after(near, v, 0.0, w, times)
    return not np.any(guard.contact(after, guard.footprint.distance(near), now_clear, margin))


def thin_points(points: np.ndarray, cell: float = 0.05) -> np.ndarray:
    """One point per ``cell``-sized square (m): a 720-beam scan shrinks to what matters.

    The point kept is the cell's nearest to the robot, so thinning never moves an obstacle
    away from it.
    """
    if len(points) < 2:
        return points
    order = np.argsort(np.hypot(points[:, 0], points[:, 1]), kind='stable')
    keys = np.floor(points[order] / cell).astype(np.int64)
    _, first = np.unique(keys, axis=0, return_index=True)
    return points[order[np.sort(first)]]


def _near(guard: CollisionGuard, points: np.ndarray, length: float):
    """The points an arc of ``length`` could reach, and the clearance now."""
    reach = guard.footprint.radius + guard.config.slowdown_margin + length
    near = points[np.hypot(points[:, 0], points[:, 1]) <= reach]
    now_clear = float(np.min(guard.footprint.distance(near))) if len(near) else math.inf
    return near, now_clear


def _arc_end(v: float, w: float, t: float) -> tuple[float, float]:
    """Where a constant (v, w) from the origin ends after ``t`` seconds."""
    if abs(w) < 1e-9:
        return v * t, 0.0
    return v * math.sin(w * t) / w, v * (1.0 - math.cos(w * t)) / w
