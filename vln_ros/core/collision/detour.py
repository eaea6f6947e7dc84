"""Local avoidance: when the straight way is blocked, pick an arc that gets round.

A small dynamic-window search: arcs (v, w) within the speed limits, each followed for a
short length of way; an arc on which the footprint would enter the stop zone of a point it
approaches (the guard's own rule) is out. The clear ones are scored by the progress they
make along the free way to the goal (way_field.py) and the clearance they keep. The best
arc with real progress is driven for one tick and the search runs again at the next, so the
detour bends round the obstacle as the scan reveals it. No arc with
progress means there is no way round from here: the caller stops and reports ``blocked``.
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


@dataclass(frozen=True)
class Detour:
    """The chosen arc and why it won."""

    vx: float
    wz: float
    progress: float  # m closer to the goal at the end of the judged length
    clearance: float  # m, the smallest distance to an obstacle along it


def choose_detour(guard: CollisionGuard, points: np.ndarray, goal: tuple[float, float],
                  max_linear: float, max_angular: float, length: float = 1.0,
                  samples: int = 10) -> Detour | None:
    """Return the best arc towards ``goal`` (base frame, m) round the points, or None.

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
    field = WayField(points, goal, inscribed + guard.config.stop_margin)
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
    return best


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
