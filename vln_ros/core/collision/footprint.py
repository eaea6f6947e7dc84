"""The robot's footprint and the zones around it, as distances from a polygon (ROS-free).

A zone is the footprint grown by a margin (its Minkowski sum with a disc), so "inside the
stop zone" is "within ``stop_margin`` of the footprint". Working with distances instead of
separately drawn polygons keeps the zones nested by construction, and one vectorised
distance computation answers every zone at once.
"""
from __future__ import annotations

import json
import math

import numpy as np

__all__ = ['Footprint', 'circle_footprint', 'parse_footprint']


def circle_footprint(radius: float, sides: int = 16) -> str:
    """The footprint text of a regular polygon that encloses a round robot of ``radius``."""
    outer = radius / math.cos(math.pi / sides)
    vertices = [[round(outer * math.cos(math.pi * (2 * k + 1) / sides), 4),
                 round(outer * math.sin(math.pi * (2 * k + 1) / sides), 4)]
                for k in range(sides)]
    return json.dumps(vertices)


def parse_footprint(text: str) -> list[tuple[float, float]]:
    """Parse nav2's footprint form, ``"[[x, y], [x, y], ...]"`` (m, base frame).

    Raises ValueError with the reason for anything that is not a polygon of at least
    three finite vertices around the base origin.
    """
    try:
        value = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f'footprint must look like "[[x, y], [x, y], [x, y], ...]": {exc}') from None
    if not isinstance(value, list) or len(value) < 3 or not all(
            isinstance(p, list) and len(p) == 2
            and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in p)
            for p in value):
        raise ValueError(f'footprint must be a list of at least 3 [x, y] points, got {text!r}')
    points = [(float(x), float(y)) for x, y in value]
    if not all(math.isfinite(c) for p in points for c in p):
        raise ValueError(f'footprint has a non-finite vertex: {text!r}')
    if not Footprint(points).contains(np.zeros((1, 2)))[0]:
        raise ValueError(f'footprint must enclose the base origin (0, 0): {text!r}')
    return points


class Footprint:
    """A polygon in the base frame, with distance and containment tests for many points."""

    def __init__(self, vertices: list[tuple[float, float]]) -> None:
        self.vertices = np.asarray(vertices, dtype=float)
        self._start = self.vertices
        self._end = np.roll(self.vertices, -1, axis=0)
        # The radius of the circle a turn in place sweeps.
        self.radius = float(np.max(np.hypot(self.vertices[:, 0], self.vertices[:, 1])))

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Return a bool per point (N x 2): inside the polygon (crossing-number test)."""
        x = points[:, 0:1]
        y = points[:, 1:2]
        x0, y0 = self._start[:, 0], self._start[:, 1]
        x1, y1 = self._end[:, 0], self._end[:, 1]
        straddles = (y0 > y) != (y1 > y)
        with np.errstate(divide='ignore', invalid='ignore'):
            x_cross = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        crossings = straddles & (x < x_cross)
        return (np.count_nonzero(crossings, axis=1) % 2) == 1

    def distance(self, points: np.ndarray) -> np.ndarray:
        """Return each point's signed distance (m) from the polygon's edge: < 0 inside.

        Signed, so that a point already inside the footprint still tells deeper from
        shallower: with 0 everywhere inside, a robot that got a corner into a box could
        push on into it without any command looking worse.
        """
        if len(points) == 0:
            return np.zeros(0)
        p = points[:, None, :]
        a = self._start[None, :, :]
        edge = (self._end - self._start)[None, :, :]
        length2 = np.maximum(np.sum(edge * edge, axis=2), 1e-12)
        t = np.clip(np.sum((p - a) * edge, axis=2) / length2, 0.0, 1.0)
        nearest = a + t[:, :, None] * edge
        d = np.min(np.hypot(p[:, :, 0] - nearest[:, :, 0], p[:, :, 1] - nearest[:, :, 1]),
                   axis=1)
        inside = self.contains(points)
        d[inside] = -d[inside]
        return d
