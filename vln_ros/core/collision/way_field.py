"""How far the goal is round the obstacles: a small navigation function for the detour.

Scoring a detour arc by how much closer its end is to the goal, in a straight line, is
short-sighted: the arc that hugs a box corner looks best until the robot stands in the
corner. This field holds, for each cell of a grid round the robot (base frame), the length
of the shortest free way to the goal, with every obstacle point grown by the robot's
inscribed radius and the stop margin. The grid is small (5 m square, 10 cm cells) and is
computed only while a detour is searched. A goal inside the grid is the only start of the
wavefront, so a wall that runs past the grid has no way round: the robot stops short of it
rather than following it into the unknown. For a goal outside the grid, the way is taken to
be straight beyond it: the border cells start at their straight-line distance; for a goal
inside an obstacle, the free cell past it along the path does (or the ones nearest it).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ['WayField']

_SQRT2 = math.sqrt(2.0)
# For a goal inside an obstacle: how far (m) past it along the path a free cell is looked
# for (a box, not a wall), and, failing that, how many cells farther than the nearest free
# cell still count as nearest (a cell's width of rounding either way).
_BEYOND = 1.5
_NEAREST = 1.5


class WayField:
    """Path length (m) to ``goal`` from each cell; ``cost(x, y)`` looks it up."""

    def __init__(self, points: np.ndarray, goal: tuple[float, float], grow: float,
                 half_size: float = 2.5, cell: float = 0.1,
                 heading: float | None = None) -> None:
        self.cell = float(cell)
        self.half = float(half_size)
        n = int(round(2.0 * half_size / cell))
        self.n = n
        blocked = np.zeros((n, n), dtype=bool)
        pts = np.asarray(points, dtype=float).reshape(-1, 2)
        idx = np.floor((pts + half_size) / cell).astype(np.int64)
        r = int(math.ceil(grow / cell))
        inside = np.all((idx >= -r) & (idx < n + r), axis=1)
        hit = np.zeros((n + 2 * r, n + 2 * r), dtype=bool)
        hit[idx[inside, 0] + r, idx[inside, 1] + r] = True
        # Grow the occupied cells by a disc (a cell-centre test, so slightly generous).
        for di in range(-r, r + 1):
            for dj in range(-r, r + 1):
                if math.hypot(di, dj) * cell <= grow + 0.5 * cell:
                    blocked |= hit[r + di:r + di + n, r + dj:r + dj + n]
        self.blocked = blocked
        centres = (np.arange(n) + 0.5) * cell - half_size
        gx, gy = goal
        cost = np.full((n, n), np.inf)
        border = np.zeros((n, n), dtype=bool)
        border[0, :] = border[-1, :] = border[:, 0] = border[:, -1] = True
        xs, ys = np.meshgrid(centres, centres, indexing='ij')
        straight = np.hypot(xs - gx, ys - gy)
        gi, gj = self._index(gx, gy)
        if gi is None:
            seed = border & ~blocked
            cost[seed] = straight[seed]
        elif not blocked[gi, gj]:
            cost[gi, gj] = 0.0
        elif np.any(~blocked):
            # The goal lies in a grown obstacle: a 1 m waypoint of a model that does not see
            # the box ends in it or just behind its near face. Where the path goes on
            # (``heading``, the path's direction at its end) past the obstacle within
            # _BEYOND, the way leads there, round the box; behind a wall across the room
            # that cell is not reachable, and the robot stops short. Otherwise the way
            # leads to the free cells nearest the goal, each seeded with its distance to
            # it: in front of a target the goal lies just short of.
            past = self._past(gi, gj, blocked, heading)
            if past is not None:
                cost[past] = straight[past]
            else:
                near = ~blocked & (straight <= straight[~blocked].min() + _NEAREST * cell)
                cost[near] = straight[near]
        self.cost_grid = self._relax(cost, blocked)

    def _past(self, gi: int, gj: int, blocked: np.ndarray,
              heading: float | None) -> tuple[int, int] | None:
        """The first free cell from the goal's cell along ``heading``, within _BEYOND m."""
        if heading is None or not math.isfinite(heading):
            return None
        x0 = (gi + 0.5) * self.cell - self.half
        y0 = (gj + 0.5) * self.cell - self.half
        c, s = math.cos(heading), math.sin(heading)
        for k in range(1, int(_BEYOND / (0.5 * self.cell)) + 1):
            i, j = self._index(x0 + 0.5 * self.cell * k * c, y0 + 0.5 * self.cell * k * s)
            if i is None:
                return None  # past the field's edge: nothing known to go round
            if not blocked[i, j]:
                return i, j
        return None

    def _index(self, x: float, y: float) -> tuple[int | None, int | None]:
        i = int(math.floor((x + self.half) / self.cell))
        j = int(math.floor((y + self.half) / self.cell))
        if 0 <= i < self.n and 0 <= j < self.n:
            return i, j
        return None, None

    def _relax(self, cost: np.ndarray, blocked: np.ndarray) -> np.ndarray:
        """Wavefront: relax all cells against their 8 neighbours until nothing changes."""
        c = self.cell
        steps = [(1, 0, c), (-1, 0, c), (0, 1, c), (0, -1, c),
                 (1, 1, c * _SQRT2), (1, -1, c * _SQRT2), (-1, 1, c * _SQRT2),
                 (-1, -1, c * _SQRT2)]
        free = ~blocked
        for _ in range(4 * self.n):
            padded = np.pad(cost, 1, constant_values=np.inf)
            best = cost.copy()
            for di, dj, step in steps:
                neighbour = padded[1 + di:1 + di + self.n, 1 + dj:1 + dj + self.n]
                np.minimum(best, neighbour + step, out=best)
            best[~free] = np.inf
            if np.array_equal(best, cost):
                break
            cost = best
        return cost

    def cost(self, x: float, y: float) -> float:
        """The way's length (m) from (x, y) to the goal; inf in an obstacle or cut off."""
        i, j = self._index(x, y)
        if i is None:
            return math.inf
        return float(self.cost_grid[i, j])

    def start_cost(self) -> float:
        """Return the way's length from the robot.

        From the nearest free cell when the robot stands in a grown obstacle: the growth is
        generous, and a detour starts close to one.
        """
        i, j = self._index(0.0, 0.0)
        best = float(self.cost_grid[i, j])
        if math.isfinite(best):
            return best
        for r in (1, 2, 3):
            window = self.cost_grid[max(i - r, 0):i + r + 1, max(j - r, 0):j + r + 1]
            if np.isfinite(window).any():
                return float(window[np.isfinite(window)].min()) + r * self.cell
        return math.inf
