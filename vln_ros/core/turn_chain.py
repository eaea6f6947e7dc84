"""Chain turn-in-place answers that the model gave before it could see the previous turn.

A turn answer ("turn left": a few cm and 0.5 rad) is a heading relative to the keyframe's
capture pose. With one request in flight, the next keyframe leaves the moment an answer
arrives, before the robot has driven that answer's turn. Its answer is about the same view,
so placed at its own capture pose it asks for the heading the robot is already turning to,
and a search for a target behind the robot gains 0.5 rad every second answer. Such an
answer means "still not in view, turn further": when the robot's heading at the capture
fell short of the goal of the turn it was already doing, in the same direction, the new
turn is counted from that goal instead. A capture taken after the turn was driven saw it,
and its answer is placed at its capture pose as any other.

A turn answer after a turn the same way is a search sweep: the model still does not see
the target. Each answer costs 5-8 s, and a model's "turn left" step (0.5 rad) is much
smaller than the camera's field of view, so a sweep to a target behind the robot takes 7-9
answers. A sweep step is therefore at least ``sweep_step``: captures then lie a sweep step
apart, and while that is less than the camera's horizontal field of view, no part of the
sweep goes unseen.
"""

from __future__ import annotations

import math

from vln_ros.core.geometry import normalize_angle

__all__ = ['TURN_STEP', 'TurnChain', 'is_turn_in_place', 'turn_direction']

# A previous turn goal less than this (rad) ahead of the capture heading was seen.
_SEEN = 0.05
# Waypoints no further than this (m) from the capture spot are a turn in place.
TURN_STEP = 0.1


def is_turn_in_place(waypoints) -> bool:
    """Return True for a turn answer: every waypoint within TURN_STEP of the capture spot.

    One rule for the planner (which turns such an answer where the robot stands) and for
    perception (which holds the next keyframe while that turn is driven).
    """
    return bool(waypoints) and all(math.hypot(w.dx, w.dy) <= TURN_STEP for w in waypoints) \
        and any(w.dtheta != 0.0 for w in waypoints)


def turn_direction(waypoints) -> int:
    """+1 for a turn answer to the left, -1 to the right, 0 for any other answer."""
    if not is_turn_in_place(waypoints):
        return 0
    return 1 if max(waypoints, key=lambda w: abs(w.dtheta)).dtheta > 0.0 else -1


class TurnChain:
    """The goal heading of the turn in place being driven, to chain the next one onto."""

    def __init__(self, sweep_step: float = 0.0) -> None:
        self._goal: float | None = None
        self._direction = 0.0  # +1 left, -1 right: the way the last turn went
        self.sweep_step = sweep_step  # rad, the least step of a sweep (0: the answer's)

    def clear(self) -> None:
        """Forget the turn: a path, a stop or a new task came in between."""
        self._goal = None
        self._direction = 0.0

    def goal_heading(self, capture_yaw: float, answer_yaw: float) -> float:
        """Return the heading to turn to for a turn answer, and remember it.

        ``capture_yaw`` is the odometry heading at the keyframe's capture stamp and
        ``answer_yaw`` the answer's heading placed at that pose.
        """
        step = normalize_angle(answer_yaw - capture_yaw)
        goal = answer_yaw
        if self._goal is not None and step != 0.0:
            if self._direction == math.copysign(1.0, step):  # a sweep
                step = math.copysign(max(abs(step), self.sweep_step), step)
                goal = normalize_angle(capture_yaw + step)
            unseen = normalize_angle(self._goal - capture_yaw)
            if abs(unseen) > _SEEN and math.copysign(1.0, unseen) == math.copysign(1.0, step):
                goal = normalize_angle(self._goal + step)
        self._goal = goal
        if step != 0.0:
            self._direction = math.copysign(1.0, step)
        return goal
