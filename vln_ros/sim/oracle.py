"""An oracle answer policy: what a perfect vision-language model would answer in the simulator.

The oracle knows the world's ground truth. Given an instruction and the pose at which the
keyframe was captured, it answers in the contract JSON of the model::

    {"environment": "corridor, red door ahead 3.2 m", "action": "forward",
     "waypoints": [{"dx": 0.25, "dy": 0.0, "dtheta": 0.0, "confidence": 0.9}, ...]}

Waypoints are poses in the robot frame at capture time (not chained). The image bytes carry
no stamp, so ``make_oracle_policy`` answers from the latest ground-truth pose when the
request arrives; the test server sleeps its latency after computing the answer, so that pose
is about the capture pose.
"""

import math
import re
from typing import Any, Callable

from vln_ros.sim.sim_pose import Pose
from vln_ros.sim.world import Landmark, World

ACTIONS = ('forward', 'turn_left', 'turn_right', 'back', 'stop')
MAX_WAYPOINTS = 4
MAX_ENV_CHARS = 80
DTHETA_LIMIT = 0.5

# Phrases that name a destination; the rest of the sentence is the landmark phrase.
_GOAL = re.compile(
    r'\b(?:go|walk|move|head|drive|navigate|run|get|come)\s+'
    r'(?:(?:over|straight|directly|forward|back)\s+)?(?:to|towards?|'
    r'up\s+to)\s+(?P<a>.+)|\b(?:find|approach|reach|locate|search\s+for|look\s+for)\s+(?P<b>.+)'
    r'|(?:去|走到|走向|前往|找到|找)(?P<c>.+)')
_TURN_LEFT = re.compile(r'\bturn\s+(?:to\s+the\s+)?left\b|左转|向左转|往左')
_TURN_RIGHT = re.compile(r'\bturn\s+(?:to\s+the\s+)?right\b|右转|向右转|往右')
_STOP = re.compile(r'\b(?:stop|halt|stay|wait|freeze)\b|停')
_FORWARD = re.compile(r'\b(?:go|move|walk)\s+(?:forward|ahead|straight)\b|前进|向前')
_BACK = re.compile(r'\b(?:go|move|walk)\s+back(?:wards?)?\b|\bback\s+up\b|后退')


def _ascii(text: str, limit: int = MAX_ENV_CHARS, fallback: str = 'unknown scene') -> str:
    """Return printable ASCII text of at most ``limit`` characters (``fallback`` if empty)."""
    text = re.sub(r'[^\x20-\x7e]', ' ', text)
    text = re.sub(r'\s+', ' ', text).strip() or fallback
    return text[:limit].rstrip()


def _waypoint(dx: float, dy: float, dtheta: float, confidence: float) -> dict:
    """Return one contract waypoint, clamped to the ranges and rounded to 2 decimals."""
    return {
        'dx': round(min(max(dx, 0.0), 1.0), 2),
        'dy': round(min(max(dy, -1.0), 1.0), 2),
        'dtheta': round(min(max(dtheta, -DTHETA_LIMIT), DTHETA_LIMIT), 2),
        'confidence': round(min(max(confidence, 0.0), 1.0), 2),
    }


def _answer(environment: str, action: str, waypoints: list[dict]) -> dict:
    """Assemble the contract answer in its key order."""
    return {'environment': _ascii(environment), 'action': action, 'waypoints': waypoints}


def stop_answer(environment: str, confidence: float = 0.9) -> dict:
    """Return the contract answer for 'stop': one zero waypoint."""
    return _answer(environment, 'stop', [_waypoint(0.0, 0.0, 0.0, confidence)])


def target_phrase(instruction: str) -> str | None:
    """Return the landmark phrase of a 'go to the X' style instruction, or None."""
    match = _GOAL.search(instruction.strip().lower())
    if not match:
        return None
    phrase = next(g for g in match.groups() if g)
    # Cut trailing clauses such as 'and stop there' or 'please'.
    phrase = re.split(r'\s+(?:and|then|please)\b|[,.;!?，。]', phrase)[0]
    return phrase.strip() or None


class Oracle:
    """Answers instructions from the world's ground truth, as a perfect model would.

    ``world_provider`` returns ``(world, pose)``: the world and the latest true pose of the
    robot. ``hfov_deg`` is the camera's field of view (a landmark outside it is not seen, so
    the oracle turns towards it); ``reach`` is how far ahead (m) the waypoints of one answer
    go; ``standoff`` (default: from the robot's radius and the success tolerance) is the
    distance from a landmark's footprint the waypoints aim for.
    """

    def __init__(self, world_provider: Callable[[], tuple[World, Any]], hfov_deg: float = 90.0,
                 reach: float = 1.0, standoff: float | None = None):
        if not 0.0 < reach <= 1.0:
            raise ValueError(f'reach must be within (0, 1] m, got {reach}')
        self.world_provider = world_provider
        self.half_fov = math.radians(hfov_deg) / 2.0
        self.reach = reach
        self.standoff = standoff

    def answer(self, instruction: str, pose: Any = None, world: World | None = None) -> dict:
        """Answer an instruction as seen from ``pose`` (default: the provider's latest pose).

        Returns the contract dictionary: environment, action and 1-4 waypoints.
        """
        if world is None or pose is None:
            provided_world, provided_pose = self.world_provider()
            world = world if world is not None else provided_world
            pose = pose if pose is not None else provided_pose
        pose = Pose.of(pose)
        text = (instruction or '').strip()
        scene = world.scenario.scene
        prefix = f'{scene}, ' if scene else ''
        lowered = text.lower()

        phrase = target_phrase(text)
        if phrase is not None:
            return self._go_to(world, pose, phrase, prefix)
        if _TURN_LEFT.search(lowered):
            return _answer(f'{prefix}turning left', 'turn_left',
                           [_waypoint(0.05, 0.0, DTHETA_LIMIT, 0.9)])
        if _TURN_RIGHT.search(lowered):
            return _answer(f'{prefix}turning right', 'turn_right',
                           [_waypoint(0.05, 0.0, -DTHETA_LIMIT, 0.9)])
        if _FORWARD.search(lowered):
            count = MAX_WAYPOINTS
            return _answer(f'{prefix}moving forward', 'forward',
                           [_waypoint(self.reach * i / count, 0.0, 0.0, 0.9)
                            for i in range(1, count + 1)])
        if _BACK.search(lowered):
            # Waypoints cannot go backwards (dx >= 0); the action word tells the planner.
            return _answer(f'{prefix}backing up', 'back', [_waypoint(0.0, 0.0, 0.0, 0.8)])
        if _STOP.search(lowered):
            return stop_answer(f'{prefix}stopping as instructed', 0.95)
        # A bare landmark phrase ('the red door') is read as 'go to'.
        if text and world.find_landmark(text) is not None:
            return self._go_to(world, pose, text, prefix)
        return stop_answer(f'{prefix}instruction not understood', 0.2)

    def _standoff(self, world: World) -> float:
        """Return the distance from a footprint at which the waypoints end."""
        if self.standoff is not None:
            return self.standoff
        radius = world.scenario.robot.radius
        tol = world.scenario.success.tolerance if world.scenario.success else 0.6
        # Keep clear of the landmark (a few cm of overshoot on a loaded machine must not touch
        # it) but well inside the success tolerance: halfway between the two.
        return min(max(radius + 0.1, 0.5 * (radius + tol)), 0.9 * tol)

    def _tolerance(self, world: World) -> float:
        """Return the distance within which the oracle reports arrival."""
        return world.scenario.success.tolerance if world.scenario.success else 0.6

    def _go_to(self, world: World, pose: Pose, phrase: str, prefix: str) -> dict:
        """Answer 'go to <phrase>': stop, turn towards it, or waypoints along the way."""
        mark = world.find_landmark(phrase)
        if mark is None:
            return stop_answer(f'{prefix}no {_ascii(phrase, 40, "such landmark")} in sight',
                               0.2)
        surface = world.distance_to(mark, pose)
        if surface <= self._tolerance(world):
            return stop_answer(f'{prefix}arrived at the {mark.name}, {surface:.1f} m', 0.9)
        fx, fy = pose.to_local(*mark.position)
        bearing = math.atan2(fy, fx)
        if abs(bearing) > self.half_fov:
            side = 'left' if bearing > 0 else 'right'
            return _answer(f'{prefix}{mark.name} not in view, turning {side}', f'turn_{side}',
                           [_waypoint(0.05, 0.0, math.copysign(DTHETA_LIMIT, bearing), 0.8)])
        return _answer(f'{prefix}{mark.name} {self._where(bearing)} {surface:.1f} m',
                       'forward', self._path(world, mark, pose, bearing, surface))

    @staticmethod
    def _where(bearing: float) -> str:
        """Describe a bearing in words."""
        degrees = math.degrees(bearing)
        if abs(degrees) < 8.0:
            return 'ahead'
        return f'{abs(degrees):.0f} deg {"left" if degrees > 0 else "right"}'

    def _path(self, world: World, mark: Landmark, pose: Pose, bearing: float,
              surface: float) -> list[dict]:
        """Return up to four waypoints along the straight line to the landmark."""
        # Travel to the stand-off distance from the footprint, at most `reach` this answer.
        travel = max(surface - self._standoff(world), 0.0)
        step = min(travel, self.reach)
        count = max(1, min(MAX_WAYPOINTS, math.ceil(step / 0.25 - 1e-9)))
        heading = max(-DTHETA_LIMIT, min(DTHETA_LIMIT, bearing))
        points = []
        for i in range(1, count + 1):
            r = step * i / count
            confidence = 0.9 - 0.05 * (i - 1)
            points.append(_waypoint(r * math.cos(bearing), r * math.sin(bearing), heading,
                                    confidence))
        return points


def request_instruction(request: Any) -> str:
    """Return the instruction of a chat request (duck typed).

    Reads ``request.instruction`` (or a mapping's 'instruction'); failing that, the line
    starting with 'Instruction:' in ``request.text``.
    """
    if isinstance(request, dict):
        instruction, text = request.get('instruction'), request.get('text')
    else:
        instruction, text = getattr(request, 'instruction', None), getattr(request, 'text', None)
    if isinstance(instruction, str) and instruction.strip():
        return instruction.strip()
    if isinstance(text, str):
        for line in text.splitlines():
            if line.strip().startswith('Instruction:'):
                return line.strip()[len('Instruction:'):].strip()
    return ''


def make_oracle_policy(oracle: Oracle) -> Callable[[Any], dict]:
    """Wrap an Oracle as an answer policy: request (with an instruction) -> contract dict."""

    def policy(request: Any) -> dict:
        world, pose = oracle.world_provider()
        return oracle.answer(request_instruction(request), pose, world)

    return policy
