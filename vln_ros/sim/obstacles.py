"""Obstacles of a scenario: boxes and pillars that are in the way but are not landmarks.

Instructions cannot name them and the oracle never takes one for a goal. Each may be unseen
by the oracle (``seen_by_oracle: false``), like a model that misjudges an obstacle: its
waypoints then lead straight through it, and only the obstacle guard keeps the robot off.
One may also move: from time ``at`` it slides to ``to`` at ``speed``, stopping short of the
robot rather than pushing it.

YAML, under ``world``::

    obstacles:
      - kind: box                 # box | pillar (default box)
        position: [3.0, 1.0]      # required: centre of the footprint
        size: 0.5                 # optional (0.5): width (pillar: diameter)
        depth: 0.5                # optional (= size): box extent along its local x
        height: 1.0               # optional (1.0)
        yaw: 0.0                  # optional (0)
        color: [120, 120, 120]    # optional (grey), RGB
        seen_by_oracle: true      # optional (true)
        moves: {at: 10.0, to: [3.0, 1.0], speed: 0.3}   # optional
"""
from __future__ import annotations

from dataclasses import dataclass, replace
import math
from typing import Any

from vln_ros.sim.landmarks import Landmark
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
    vector as _vector,
)

__all__ = ['Obstacle', 'parse_obstacles']

_KINDS = ('box', 'pillar')
_GREY = (120, 120, 120)


@dataclass
class Obstacle:
    """An obstacle's shape (as a landmark that no instruction can name) and its motion."""

    shape: Landmark
    seen_by_oracle: bool = True
    move_at: float | None = None
    move_to: tuple[float, float] | None = None
    move_speed: float = 0.3

    def position_at(self, t: float) -> tuple[float, float]:
        """Where the obstacle's centre is at time ``t`` (s), ignoring the robot."""
        start = self.shape.position
        if self.move_at is None or t <= self.move_at:
            return start
        gx, gy = self.move_to
        dist = math.hypot(gx - start[0], gy - start[1])
        if dist == 0.0:
            return start
        k = min(1.0, self.move_speed * (t - self.move_at) / dist)
        return (start[0] + k * (gx - start[0]), start[1] + k * (gy - start[1]))

    def moved(self, position: tuple[float, float]) -> Landmark:
        """The shape at another position."""
        return replace(self.shape, position=position)


def parse_obstacles(raw: Any) -> list[Obstacle]:
    """Build the obstacles from ``world.obstacles``, naming the faulty field on error."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ScenarioError('world.obstacles: expected a list of mappings')
    out = []
    for i, item in enumerate(raw):
        where = f'world.obstacles[{i}]'
        d = _mapping(item, where)
        _no_unknown_keys(d, {'kind', 'position', 'size', 'depth', 'height', 'yaw', 'color',
                             'seen_by_oracle', 'moves'}, where)
        if 'position' not in d:
            raise ScenarioError(f'{where}.position: required field is missing')
        kind = d.get('kind', 'box')
        if kind not in _KINDS:
            raise ScenarioError(f'{where}.kind: expected one of {", ".join(_KINDS)}, got '
                                f'{kind!r}')
        seen = d.get('seen_by_oracle', True)
        if not isinstance(seen, bool):
            raise ScenarioError(f'{where}.seen_by_oracle: expected true or false')
        color = _vector(d.get('color', _GREY), f'{where}.color', 3)
        size = _number(d.get('size', 0.5), f'{where}.size', positive=True)
        depth = d.get('depth')
        shape = Landmark(name=f'obstacle {i + 1}', kind=kind,
                         color=tuple(int(round(c)) for c in color),
                         position=_vector(d['position'], f'{where}.position', 2), size=size,
                         height=_number(d.get('height', 1.0), f'{where}.height', positive=True),
                         yaw=_number(d.get('yaw', 0.0), f'{where}.yaw'),
                         depth=None if depth is None else _number(depth, f'{where}.depth',
                                                                  positive=True))
        obstacle = Obstacle(shape, seen)
        if d.get('moves') is not None:
            m = _mapping(d['moves'], f'{where}.moves')
            _no_unknown_keys(m, {'at', 'to', 'speed'}, f'{where}.moves')
            for key in ('at', 'to'):
                if key not in m:
                    raise ScenarioError(f'{where}.moves.{key}: required field is missing')
            obstacle.move_at = _number(m['at'], f'{where}.moves.at', low=0.0)
            obstacle.move_to = _vector(m['to'], f'{where}.moves.to', 2)
            obstacle.move_speed = _number(m.get('speed', 0.3), f'{where}.moves.speed',
                                          positive=True)
        out.append(obstacle)
    return out
