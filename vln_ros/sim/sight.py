"""What the simulated camera can see, and which way the free space leads to a landmark.

A model can only answer about what its image shows: a landmark outside the field of view or
behind a wall is not seen. When the target is not seen, a good model still reads the scene
("the corridor turns left ahead"); ``RouteField`` gives that cue from the geometry: the
direction in which the shortest free path to the landmark leaves the robot.
"""
from __future__ import annotations

import heapq
import math

import numpy as np

from vln_ros.sim.sim_pose import Pose
from vln_ros.sim.world import Landmark, World

_CELL = 0.1  # m, route grid resolution


def _blocked(segments: np.ndarray, ax: float, ay: float, bx: float, by: float) -> bool:
    """Return True when the segment a-b properly crosses one of ``segments`` (N, 4)."""
    if not len(segments):
        return False
    px, py, qx, qy = segments[:, 0], segments[:, 1], segments[:, 2], segments[:, 3]
    rx, ry = bx - ax, by - ay
    sx, sy = qx - px, qy - py
    denom = rx * sy - ry * sx
    with np.errstate(divide='ignore', invalid='ignore'):
        t = ((px - ax) * sy - (py - ay) * sx) / denom
        u = ((px - ax) * ry - (py - ay) * rx) / denom
    hit = (np.abs(denom) > 1e-12) & (t > 1e-6) & (t < 1.0 - 1e-6) & (u >= 0.0) & (u <= 1.0)
    return bool(hit.any())


def line_of_sight(world: World, a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Return True when no wall lies between points a and b."""
    return not _blocked(world.wall_segments, a[0], a[1], b[0], b[1])


def _sample_points(mark: Landmark) -> list[tuple[float, float]]:
    """The centre and the outline of a landmark: what a camera may catch of it.

    A door is its width; a box, seen from close by, shows a corner long after its centre
    has left the image, so its corners count too (pulled in a little, as a sliver at the
    image edge is not a sighting).
    """
    cx, cy = mark.position
    c, s = math.cos(mark.yaw), math.sin(mark.yaw)
    half = 0.45 * mark.size
    points = [(cx, cy), (cx - s * half, cy + c * half), (cx + s * half, cy - c * half)]
    if not mark.is_round and mark.kind != 'door':
        points += [(cx + 0.9 * (x - cx), cy + 0.9 * (y - cy)) for x, y in mark.corners()]
    return points


def landmark_in_view(world: World, camera: Pose, mark: Landmark, half_fov: float) -> bool:
    """Return True when part of the landmark is inside the field of view and not behind a wall.

    A footprint point counts when its bearing from the camera is within ``half_fov`` and
    the straight line to it (stopped just short, so its own wall does not hide a door)
    crosses no wall.
    """
    for px, py in _sample_points(mark):
        fx, fy = camera.to_local(px, py)
        if fx <= 0.0 or abs(math.atan2(fy, fx)) > half_fov:
            continue
        d = math.hypot(px - camera.x, py - camera.y)
        k = max(d - 0.05, 0.0) / d if d > 0 else 0.0
        end = (camera.x + (px - camera.x) * k, camera.y + (py - camera.y) * k)
        if line_of_sight(world, (camera.x, camera.y), end):
            return True
    return False


class RouteField:
    """Free-space path length from every grid cell to one landmark (walls inflated by the robot).

    ``waypoint(x, y, ahead)`` walks ``ahead`` metres down the field from (x, y) and returns
    that point: the direction in which the way to the landmark continues. Cells closer than
    ``keep_off`` (default: the robot's radius + 0.25 m) to a wall are not on the way. With
    ``oracle_view`` the obstacles the oracle does not see are not there (obstacles.py).
    """

    def __init__(self, world: World, mark: Landmark, keep_off: float | None = None,
                 oracle_view: bool = False):
        w, h = world.scenario.size
        self.nx, self.ny = int(math.ceil(w / _CELL)), int(math.ceil(h / _CELL))
        radius = world.scenario.robot.radius
        # A model keeps to the middle of the way, not a hair's breadth off the walls.
        keep_off = radius + 0.25 if keep_off is None else keep_off
        # Cells this close to the footprint are the goal (the path ends this far from it). At
        # least one cell beyond keep_off: a door in a wall is as near the wall as the door,
        # and a thinner goal band would leave it unreachable.
        self.goal_margin = max(radius + 0.15, keep_off + _CELL)
        free = np.zeros((self.nx, self.ny), bool)
        goal = []
        for i in range(self.nx):
            for j in range(self.ny):
                x, y = (i + 0.5) * _CELL, (j + 0.5) * _CELL
                near = mark.distance(x, y) <= self.goal_margin
                free[i, j] = near or world.clearance(x, y, oracle_view) >= keep_off
                if near:
                    goal.append((i, j))
        dist = np.full((self.nx, self.ny), np.inf)
        heap = []
        for cell in goal:
            dist[cell] = 0.0
            heap.append((0.0, *cell))
        heapq.heapify(heap)
        steps = [(di, dj, math.hypot(di, dj)) for di in (-1, 0, 1) for dj in (-1, 0, 1)
                 if di or dj]
        while heap:  # Dijkstra on 8-neighbours: path length in cells
            d, i, j = heapq.heappop(heap)
            if d > dist[i, j]:
                continue
            for di, dj, cost in steps:
                a, b = i + di, j + dj
                if 0 <= a < self.nx and 0 <= b < self.ny and free[a, b] and \
                        dist[a, b] > d + cost:
                    dist[a, b] = d + cost
                    heapq.heappush(heap, (d + cost, a, b))
        self.dist = dist

    def _cell(self, x: float, y: float) -> tuple[int, int]:
        return (min(max(int(x / _CELL), 0), self.nx - 1),
                min(max(int(y / _CELL), 0), self.ny - 1))

    def _nearest_reachable(self, i: int, j: int, reach: int = 4) -> tuple[int, int]:
        # A robot touching a wall stands in an inflated cell: start from the nearest free one.
        if math.isfinite(self.dist[i, j]):
            return i, j
        best = (math.inf, i, j)
        for a in range(max(i - reach, 0), min(i + reach + 1, self.nx)):
            for b in range(max(j - reach, 0), min(j + reach + 1, self.ny)):
                offset = (a - i) ** 2 + (b - j) ** 2
                if math.isfinite(self.dist[a, b]) and offset < best[0]:
                    best = (offset, a, b)
        return best[1], best[2]

    def path_length(self, x: float, y: float) -> float | None:
        """Length (m) of the shortest free path from (x, y) to the landmark, None if none."""
        i, j = self._nearest_reachable(*self._cell(x, y))
        d = self.dist[i, j]
        return float(d) * _CELL if math.isfinite(d) else None

    def path(self, x: float, y: float, length: float) -> list[tuple[float, float]]:
        """Points every cell along the shortest free path from (x, y), up to ``length`` m.

        Empty when the landmark cannot be reached from here.
        """
        i, j = self._nearest_reachable(*self._cell(x, y))
        if not math.isfinite(self.dist[i, j]):
            return []
        points, travelled = [], 0.0
        while travelled < length:
            best = (self.dist[i, j], i, j)
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    a, b = i + di, j + dj
                    if 0 <= a < self.nx and 0 <= b < self.ny and self.dist[a, b] < best[0]:
                        best = (self.dist[a, b], a, b)
            if best[1:] == (i, j):
                break
            travelled += math.hypot(best[1] - i, best[2] - j) * _CELL
            i, j = best[1], best[2]
            points.append(((i + 0.5) * _CELL, (j + 0.5) * _CELL))
        return points

    def waypoint(self, x: float, y: float, ahead: float) -> tuple[float, float] | None:
        """The point ``ahead`` metres along the shortest free path, or None when unreachable."""
        points = self.path(x, y, ahead)
        if points:
            return points[-1]
        i, j = self._nearest_reachable(*self._cell(x, y))
        return ((i + 0.5) * _CELL, (j + 0.5) * _CELL) if math.isfinite(self.dist[i, j]) else None
