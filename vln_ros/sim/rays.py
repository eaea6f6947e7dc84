"""Ray casting against the world's segments and round landmarks (the camera, scan and depth).

Shared by the renderer and the range sensors, so that what the scan sees is what the camera
shows.
"""
from __future__ import annotations

import numpy as np


def ray_segment(ox: float, oy: float, dx: np.ndarray, dy: np.ndarray,
                 segs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intersect rays with segments.

    Rays start at (ox, oy) with directions (dx, dy), shape (W,); segments are (S, 4).
    Returns, per ray, the nearest ray parameter (inf for a miss), the index of the segment hit
    and the distance in metres along that segment from its first end point.
    """
    ax, ay = segs[:, 0], segs[:, 1]
    ex, ey = segs[:, 2] - ax, segs[:, 3] - ay
    wx, wy = ax - ox, ay - oy
    denom = dx[:, None] * ey[None, :] - dy[:, None] * ex[None, :]
    with np.errstate(divide='ignore', invalid='ignore'):
        inv = 1.0 / denom
        t = (wx * ey - wy * ex)[None, :] * inv
        u = (wx[None, :] * dy[:, None] - wy[None, :] * dx[:, None]) * inv
    ok = (t > 1e-6) & (u >= 0.0) & (u <= 1.0)
    t = np.where(ok, t, np.inf)
    idx = np.argmin(t, axis=1)
    cols = np.arange(len(dx))
    best = t[cols, idx]
    along = u[cols, idx] * np.hypot(ex, ey)[idx]
    return best, idx, along


def ray_circle(ox: float, oy: float, dx: np.ndarray, dy: np.ndarray, cx: float, cy: float,
                r: float) -> tuple[np.ndarray, np.ndarray]:
    """Return the nearest ray parameter (inf for a miss) and the hit angle around a circle."""
    fx, fy = ox - cx, oy - cy
    a = dx * dx + dy * dy
    b = 2.0 * (dx * fx + dy * fy)
    c = fx * fx + fy * fy - r * r
    disc = b * b - 4.0 * a * c
    with np.errstate(invalid='ignore'):
        t = (-b - np.sqrt(disc)) / (2.0 * a)
    t = np.where((disc >= 0.0) & (t > 1e-6), t, np.inf)
    hx, hy = fx + np.where(np.isfinite(t), t, 0.0) * dx, fy + np.where(np.isfinite(t), t, 0.0) * dy
    return t, np.arctan2(hy, hx)
