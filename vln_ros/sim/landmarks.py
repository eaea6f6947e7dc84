"""Landmarks of a scenario: the named doors, boxes and pillars instructions refer to."""
from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Any

from vln_ros.sim.scenario_fields import (
    ScenarioError,
)
from vln_ros.sim.scenario_fields import (
    mapping as _mapping,
)
from vln_ros.sim.scenario_fields import (
    no_unknown_keys as _no_unknown_keys,
)
from vln_ros.sim.scenario_fields import (
    number as _number,
)
from vln_ros.sim.scenario_fields import (
    text as _text,
)
from vln_ros.sim.scenario_fields import (
    vector as _vector,
)

__all__ = ['LANDMARK_KINDS', 'Landmark']

LANDMARK_KINDS = ('door', 'box', 'pillar')


@dataclass
class Landmark:
    """A named object the instructions refer to: a door, a box or a pillar."""

    name: str
    kind: str
    color: tuple[int, int, int]
    position: tuple[float, float]
    size: float = 0.8
    height: float = 2.0
    yaw: float = 0.0
    depth: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in LANDMARK_KINDS:
            raise ScenarioError(f'kind: expected one of {LANDMARK_KINDS}, got {self.kind!r}')
        if self.depth is None:
            self.depth = 0.1 if self.kind == 'door' else self.size
        self.color = tuple(int(c) for c in self.color)
        self.position = (float(self.position[0]), float(self.position[1]))

    @property
    def bgr(self) -> tuple[int, int, int]:
        """Return the colour in OpenCV's channel order."""
        r, g, b = self.color
        return b, g, r

    @property
    def is_round(self) -> bool:
        """Return True for landmarks with a circular footprint (pillars)."""
        return self.kind == 'pillar'

    def corners(self) -> list[tuple[float, float]]:
        """Return the four corners of a rectangular footprint, counter-clockwise."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        hx, hy = 0.5 * self.depth, 0.5 * self.size
        cx, cy = self.position
        local = [(-hx, -hy), (hx, -hy), (hx, hy), (-hx, hy)]
        return [(cx + c * lx - s * ly, cy + s * lx + c * ly) for lx, ly in local]

    def segments(self) -> list[tuple[float, float, float, float]]:
        """Return the edges of a rectangular footprint as ``(x1, y1, x2, y2)``."""
        pts = self.corners()
        return [(*pts[i], *pts[(i + 1) % 4]) for i in range(4)]

    def distance(self, x: float, y: float) -> float:
        """Return the distance from a point to this footprint (0 inside it)."""
        cx, cy = self.position
        if self.is_round:
            return max(0.0, math.hypot(x - cx, y - cy) - 0.5 * self.size)
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        lx = c * (x - cx) + s * (y - cy)
        ly = -s * (x - cx) + c * (y - cy)
        ox = max(abs(lx) - 0.5 * self.depth, 0.0)
        oy = max(abs(ly) - 0.5 * self.size, 0.0)
        return math.hypot(ox, oy)

    @classmethod
    def from_dict(cls, d: Any, where: str = 'landmark') -> 'Landmark':
        """Build a landmark from its YAML mapping, naming the faulty field on error."""
        d = _mapping(d, where)
        _no_unknown_keys(d, {'name', 'kind', 'color', 'position', 'size', 'height', 'yaw',
                             'depth'}, where)
        for key in ('name', 'kind', 'color', 'position'):
            if key not in d:
                raise ScenarioError(f'{where}.{key}: required field is missing')
        kind = d['kind']
        if kind not in LANDMARK_KINDS:
            raise ScenarioError(f'{where}.kind: expected one of {", ".join(LANDMARK_KINDS)}, '
                                f'got {kind!r}')
        color = _vector(d['color'], f'{where}.color', 3)
        if any(c < 0 or c > 255 for c in color):
            raise ScenarioError(f'{where}.color: components must be 0-255, got {d["color"]!r}')
        depth = d.get('depth')
        return cls(
            name=_text(d['name'], f'{where}.name'),
            kind=kind,
            color=tuple(int(round(c)) for c in color),
            position=_vector(d['position'], f'{where}.position', 2),
            size=_number(d.get('size', 0.8), f'{where}.size', positive=True),
            height=_number(d.get('height', 2.0), f'{where}.height', positive=True),
            yaw=_number(d.get('yaw', 0.0), f'{where}.yaw'),
            depth=None if depth is None else _number(depth, f'{where}.depth', positive=True),
        )
