"""How far the goal is round the obstacles: a small navigation function for the detour.

Scoring a detour arc by how much closer its end is to the goal, in a straight line, is
short-sighted: the arc that hugs a box corner looks best until the robot stands in the
corner. This field holds, for each cell of a grid round the robot (base frame), the length
of the shortest free way to the goal, with every obstacle point grown by the robot's
inscribed radius and the stop margin. The grid is small (5 m square, 10 cm cells) and is
computed only while a detour is searched. A goal inside the grid is the only start of the
wavefront, so a wall that runs past the grid has no way round: the robot stops short of it
rather than following it into the unknown. For a goal outside the grid, the way is taken to
be straight beyond it: the border cells start at their straight-line distance.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ['WayField']

_SQRT2 = math.sqrt(2.0)


class WayField:
    """Path length (m) to ``goal`` from each cell; ``cost(x, y)`` looks it up."""

    def __init__(self, points: np.ndarray, goal: tuple[float, float], grow: float,
                 half_size: float = 2.5, cell: float = 0.1) -> None:
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
        self.cost_grid = self._relax(cost, blocked)

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
