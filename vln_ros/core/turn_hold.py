"""Hold the next keyframe while the robot turns to a turn answer's heading.

A turn answer ("turn left": a few cm and 0.5 rad) moves the view more than anything else
the robot does between two answers. With one request in flight, the next keyframe would
leave as the answer arrives, or be chosen halfway through the turn because the image
changes fast: a view the robot is leaving (and, on a real camera, blurred by the turn).
Its answer is about that view, so near the target it says "turn" again from a heading the
robot has already passed, and the robot swings to and fro beside the goal. Perception
therefore holds the next request until the planner reports that the turn is over (its
command state leaves 'tracking': the turn finished, or a stop came) or ``limit`` seconds
have passed, whichever comes first. The hold costs about the time of the turn, a second
for 0.5 rad at the default limits.

A search sweep is the exception: a turn answer that follows a turn the same way does not
hold. Each look of a sweep shows mostly new ground, and the planner chains a turn whose
frame was taken before the last turn was driven (core/turn_chain.py), so the sweep goes on
at one step per answer instead of one step per answer plus a turn. The first turn of a
sweep, and a turn that reverses the last one (a correction beside the goal), hold.
"""
from __future__ import annotations

__all__ = ['TurnHold']


class TurnHold:
    """When the hold after a turn answer ends; ``limit`` 0 turns holding off."""

    def __init__(self, limit: float) -> None:
        self.limit = float(limit)  # live: a new limit applies to a hold under way too
        self._since: float | None = None
        self._last_turn = 0  # direction of the last answer's turn in place (0: none)

    @property
    def held(self) -> bool:
        """True from a turn answer until the turn is reported over or the limit passed."""
        return self._since is not None

    def on_answer(self, now: float, turn: int) -> bool:
        """An answer was published at ``now``; True when that starts a hold.

        ``turn`` is its turn in place: +1 left, -1 right, 0 for any other answer.
        """
        sweep = turn != 0 and turn == self._last_turn
        self._last_turn = turn
        if turn == 0 or sweep or self.limit <= 0.0:
            return False
        self._since = now
        return True

    def on_command_state(self, reason: str) -> bool:
        """The planner's command reason changed; True when that ends the hold."""
        if self._since is None or reason == 'tracking':
            return False
        self._since = None
        return True

    def expired(self, now: float) -> bool:
        """True (once) when the hold ran out at ``now`` without the turn reported over."""
        if self._since is None or now < self._since + self.limit:
            return False
        self._since = None
        return True

    def clear(self) -> None:
        """Forget the hold and the last turn (a task switch)."""
        self._since, self._last_turn = None, 0
