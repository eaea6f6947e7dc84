"""The newest obstacle points of each configured source, their age, and where they are now.

A source is stale when its newest data is older than ``source_timeout``, or when it never
sent any: the guard then answers zero (blind is not safe). The age counts from the older of
the header stamp and the arrival time, so a delayed message is as old as its stamp says and
a sensor whose clock runs ahead cannot make its data look fresher than its arrival.

Points are kept in the base frame at their stamp, with the odometry pose of that time when
one is known, and moved into the base frame of the query time: at 0.5 m/s a 10 Hz scan is
up to 5 cm behind the robot.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vln_ros.core.geometry import Pose2D

__all__ = ['SOURCES', 'ObstacleMemory']

SOURCES = ('scan', 'points', 'depth')


@dataclass
class _Reading:
    points: np.ndarray  # N x 2, base frame at ``pose``
    age_from: float  # min(stamp, arrival) (s)
    pose: Pose2D | None  # odometry pose at the stamp, when known


class ObstacleMemory:
    """Hold the newest reading per source; answer staleness and points for a time and pose."""

    def __init__(self, sources: tuple[str, ...] | list[str], source_timeout: float) -> None:
        unknown = [s for s in sources if s not in SOURCES]
        if unknown:
            raise ValueError(f'collision.sources: unknown source(s) {unknown}; choose from '
                             f'{list(SOURCES)}')
        if len(set(sources)) != len(sources):
            raise ValueError(f'collision.sources lists a source twice: {list(sources)}')
        if not source_timeout > 0.0:
            raise ValueError(f'collision.source_timeout must be > 0 s, got {source_timeout!r}')
        self.sources = tuple(sources)
        self.source_timeout = float(source_timeout)
        self._readings: dict[str, _Reading] = {}

    def update(self, source: str, points: np.ndarray, stamp: float, arrival: float,
               pose: Pose2D | None) -> None:
        """Replace ``source``'s reading with ``points`` (N x 2, base frame at ``stamp``)."""
        if source not in self.sources:
            return  # a source that is not configured guards nothing
        self._readings[source] = _Reading(np.asarray(points, dtype=float).reshape(-1, 2),
                                          min(stamp, arrival), pose)

    def stale(self, now: float) -> list[str]:
        """Return the configured sources whose newest data is too old, or missing."""
        out = []
        for source in self.sources:
            reading = self._readings.get(source)
            if reading is None or now - reading.age_from > self.source_timeout:
                out.append(source)
        return out

    def age(self, source: str, now: float) -> float | None:
        """Return the age (s) of a source's newest data, None before the first."""
        reading = self._readings.get(source)
        return None if reading is None else now - reading.age_from

    def points(self, current: Pose2D | None) -> np.ndarray:
        """Return every source's points in the base frame at ``current`` (N x 2)."""
        parts = []
        for reading in self._readings.values():
            pts = reading.points
            if current is not None and reading.pose is not None and len(pts):
                moved = reading.pose.relative_to(current)  # old base frame in the new one
                c, s = np.cos(moved.yaw), np.sin(moved.yaw)
                pts = np.stack((moved.x + c * pts[:, 0] - s * pts[:, 1],
                                moved.y + s * pts[:, 0] + c * pts[:, 1]), axis=1)
            parts.append(pts)
        return np.concatenate(parts) if parts else np.zeros((0, 2))
