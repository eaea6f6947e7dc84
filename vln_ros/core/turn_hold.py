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
"""
from __future__ import annotations

__all__ = ['TurnHold']


class TurnHold:
    """When the hold after a turn answer ends; ``limit`` 0 turns holding off."""

    def __init__(self, limit: float) -> None:
        self.limit = float(limit)  # live: a new limit applies to a hold under way too
        self._since: float | None = None

    @property
    def held(self) -> bool:
        """True from a turn answer until the turn is reported over or the limit passed."""
        return self._since is not None

    def start(self, now: float) -> bool:
        """A turn answer was published at ``now``; True when that starts a hold."""
        if self.limit <= 0.0:
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
        """Forget the hold (a task switch)."""
        self._since = None
