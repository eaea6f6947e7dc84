"""Scoring of a simulated run against its scenario's success criteria.

Inputs are plain lists so that the same code scores a live run, a recorded bag or a test:

- ``trajectory``: ``(t, x, y, yaw)`` true poses, t in seconds of sim time;
- ``commands``: ``(t, vx, wz)`` or ``(t, vx, vy, wz)`` velocity commands, each in force until
  the next one (none yet: standing still);
- ``events``: ``(t, kind)`` / ``(t, kind, detail)`` tuples or mappings with ``t`` and ``kind``
  (or ``type``); events of kind ``collision`` are counted.

A run succeeds when, no later than ``time_limit`` after its first sample, the robot is within
``tolerance`` of the success landmark's footprint and, with ``must_stop``, its command is a
stop (|v| <= 0.02 m/s and |w| <= 0.02 rad/s) and it stays within tolerance to the end. With
``stop_short`` there is no landmark: the run succeeds when the robot is at rest by the time
limit and to the end, without a collision.
"""

import bisect
from dataclasses import asdict, dataclass
from itertools import pairwise
import json
import math
from typing import Any, Iterable, Sequence

from vln_ros.sim.world import Scenario

MOVING_LINEAR = 0.02
MOVING_ANGULAR = 0.02


@dataclass
class RunSummary:
    """The outcome of one run; ``to_json()`` for reports."""

    scenario: str
    success: bool
    reason: str
    landmark: str | None
    time_to_goal: float | None
    final_distance: float | None
    min_distance: float | None
    collisions: int
    moving_fraction: float
    path_length: float
    duration: float

    def to_dict(self) -> dict:
        """Return the summary as a dictionary of plain values (floats rounded to mm / ms)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, float):
                out[key] = round(value, 3)
        return out

    def to_json(self, indent: int | None = None) -> str:
        """Return the summary as JSON text."""
        return json.dumps(self.to_dict(), indent=indent)


def _moving(v: float, w: float) -> bool:
    """Return True for a command or motion above the standstill thresholds."""
    return abs(v) > MOVING_LINEAR or abs(w) > MOVING_ANGULAR


def _commands(commands: Iterable[Sequence[float]]) -> tuple[list[float], list[bool]]:
    """Return command times and whether each command moves the robot, sorted by time."""
    rows = []
    for cmd in commands:
        if len(cmd) == 3:
            t, vx, wz = cmd
            vy = 0.0
        elif len(cmd) == 4:
            t, vx, vy, wz = cmd
        else:
            raise ValueError(f'a command is (t, vx, wz) or (t, vx, vy, wz), got {cmd!r}')
        rows.append((float(t), _moving(math.hypot(vx, vy), wz)))
    rows.sort(key=lambda r: r[0])
    return [r[0] for r in rows], [r[1] for r in rows]


def _motion_from_trajectory(traj: list[tuple[float, float, float, float]]
                            ) -> tuple[list[float], list[bool]]:
    """Derive 'moving' intervals from the trajectory when no commands were recorded."""
    times, moving = [], []
    for (t0, x0, y0, a0), (t1, x1, y1, a1) in pairwise(traj):
        dt = t1 - t0
        if dt <= 0.0:
            continue
        turn = math.remainder(a1 - a0, math.tau)
        times.append(t0)
        moving.append(_moving(math.hypot(x1 - x0, y1 - y0) / dt, turn / dt))
    return times, moving


def _count_collisions(events: Iterable[Any]) -> int:
    """Count the events whose kind is 'collision'."""
    count = 0
    for event in events or ():
        if isinstance(event, dict):
            kind = event.get('kind', event.get('type'))
        else:
            kind = event[1] if len(event) > 1 else None
        count += kind == 'collision'
    return count


def evaluate(scenario: Scenario, trajectory: Sequence[Sequence[float]],
             commands: Iterable[Sequence[float]] = (), events: Iterable[Any] = ()
             ) -> RunSummary:
    """Score a run (see the module docstring for the inputs and the success rule)."""
    traj = sorted((tuple(float(v) for v in p[:4]) for p in trajectory), key=lambda p: p[0])
    cmd_times, cmd_moving = _commands(commands)
    if not cmd_times:
        cmd_times, cmd_moving = _motion_from_trajectory(traj)
    collisions = _count_collisions(events)
    criteria = scenario.success
    mark = scenario.landmark(criteria.landmark) if criteria and criteria.landmark else None
    if not traj:
        return RunSummary(scenario.name, False, 'empty trajectory', mark and mark.name, None,
                          None, None, collisions, 0.0, 0.0, 0.0)
    start, end = traj[0][0], traj[-1][0]
    duration = end - start
    path = sum(math.hypot(b[1] - a[1], b[2] - a[2]) for a, b in pairwise(traj))

    def moving_at(t: float) -> bool:
        i = bisect.bisect_right(cmd_times, t) - 1
        return i >= 0 and cmd_moving[i]

    moving_time = 0.0
    for i, t in enumerate(cmd_times):
        stop = cmd_times[i + 1] if i + 1 < len(cmd_times) else end
        lo, hi = max(t, start), min(stop, end)
        if cmd_moving[i] and hi > lo:
            moving_time += hi - lo
    moving_fraction = moving_time / duration if duration > 0.0 else 0.0

    if criteria is not None and criteria.stop_short:
        return _stop_short(scenario, traj, cmd_times, cmd_moving, collisions,
                           moving_fraction, path, duration)
    if mark is None:
        return RunSummary(scenario.name, False, 'scenario has no success criteria', None, None,
                          None, None, collisions, moving_fraction, path, duration)
    distances = [mark.distance(x, y) for _, x, y, _ in traj]
    inside = [d <= criteria.tolerance for d in distances]
    # stays[i]: the robot is within tolerance from sample i to the end of the run.
    stays = [False] * len(traj)
    ok = True
    for i in range(len(traj) - 1, -1, -1):
        ok = ok and inside[i]
        stays[i] = ok
    goal_time, late, left = None, False, False
    for i, (t, *_) in enumerate(traj):
        if not inside[i] or (criteria.must_stop and moving_at(t)):
            continue
        if criteria.must_stop and not stays[i]:
            left = True
            continue
        if t - start > criteria.time_limit:
            late = True
            break
        goal_time = t - start
        break
    if goal_time is not None:
        how = 'reached and stopped at' if criteria.must_stop else 'reached'
        reason = f'{how} the {mark.name}'
    elif late:
        reason = f'reached the {mark.name} after the time limit of {criteria.time_limit:g} s'
    elif left:
        reason = f'stopped at the {mark.name} but left it again'
    elif any(inside):
        reason = f'came within tolerance of the {mark.name} but did not stop there'
    else:
        reason = f'never came within {criteria.tolerance:g} m of the {mark.name}'
    return RunSummary(scenario.name, goal_time is not None, reason, mark.name, goal_time,
                      distances[-1], min(distances), collisions, moving_fraction, path,
                      duration)


def _stop_short(scenario: Scenario, traj, cmd_times, cmd_moving, collisions: int,
                moving_fraction: float, path: float, duration: float) -> RunSummary:
    """Score a stop_short run: at rest by the time limit, never having touched anything.

    ``time_to_goal`` is when the robot came to rest for good; the distances are the free gap
    between the robot's body and the nearest solid thing (m).
    """
    from vln_ros.sim.world import World

    world = World(scenario)
    radius = scenario.robot.radius
    start = traj[0][0]
    gaps = [world.clearance(x, y) - radius for _, x, y, _ in traj]
    last_moving = max((t for t, m in zip(cmd_times, cmd_moving, strict=True) if m),
                      default=None)
    # The command after the last moving one is the stop (none: it never moved).
    rest = start if last_moving is None else \
        next((t for t in cmd_times if t > last_moving), traj[-1][0])
    at_rest = not cmd_moving[-1] if cmd_moving else True
    in_time = rest - start <= scenario.success.time_limit
    ok = collisions == 0 and at_rest and in_time
    if collisions:
        reason = f'touched an obstacle ({collisions} collision(s))'
    elif not at_rest:
        reason = 'still moving at the end'
    elif not in_time:
        reason = f'came to rest after the time limit of {scenario.success.time_limit:g} s'
    else:
        reason = f'stopped short, {gaps[-1]:.2f} m from the nearest obstacle'
    return RunSummary(scenario.name, ok, reason, None, rest - start if ok else None, gaps[-1],
                      min(gaps), collisions, moving_fraction, path, duration)
