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

    def __init__(self) -> None:
        self._goal: float | None = None

    def clear(self) -> None:
        """Forget the turn: a path, a stop or a new task came in between."""
        self._goal = None

    def goal_heading(self, capture_yaw: float, answer_yaw: float) -> float:
        """Return the heading to turn to for a turn answer, and remember it.

        ``capture_yaw`` is the odometry heading at the keyframe's capture stamp and
        ``answer_yaw`` the answer's heading placed at that pose.
        """
        step = normalize_angle(answer_yaw - capture_yaw)
        goal = answer_yaw
        if self._goal is not None and step != 0.0:
            unseen = normalize_angle(self._goal - capture_yaw)
            if abs(unseen) > _SEEN and math.copysign(1.0, unseen) == math.copysign(1.0, step):
                goal = normalize_angle(self._goal + step)
        self._goal = goal
        return goal
