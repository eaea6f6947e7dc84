"""An oracle answer policy: what a perfect vision-language model would answer in the simulator.

The oracle knows the world's ground truth. Given an instruction and the pose at which the
keyframe was captured, it answers in the contract JSON of the model::

    {"environment": "corridor, red door ahead 3.2 m", "action": "forward",
     "waypoints": [{"dx": 0.25, "dy": 0.0, "dtheta": 0.0, "confidence": 0.9}, ...]}

Waypoints are poses in the robot's base frame at capture time (not chained); what is seen is
decided from the camera's pose on that base. The simulator node finds the capture pose from
the frame number drawn into the image; without it, ``make_oracle_policy`` answers from the
latest ground-truth pose.

How the answers err is set by an :class:`~vln_ros.sim.oracle_profiles.OracleProfile`: the
``ideal`` oracle is never wrong and knows where an unseen target is; the others see only what
the camera shows (field of view, walls), search for an unseen target the way the free space
leads, and err in geometry, target and direction at the profile's rates, drawn from a seeded
RNG (``Oracle.counts`` tallies what was applied).
"""

from collections import Counter
import math
import random
import re
from typing import Any, Callable, Sequence

from vln_ros.sim.oracle_profiles import (
    NO_ERRORS,
    PROFILES,
    AnswerErrors,
    OracleProfile,
    draw_errors,
)
from vln_ros.sim.sight import RouteField, landmark_in_view, line_of_sight
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
# A history line of the prompt: '3. saw: <environment>; action: <action>'.
_HISTORY_LINE = re.compile(r'^\s*\d+\.\s*saw:\s*(?P<saw>.*);\s*action:\s*(?P<action>\S+)\s*$')
NOT_IN_VIEW = 'not in view'
SEARCH_AHEAD = 1.5  # m along the free path to an unseen target: the cue a scene gives
# An answer that says this names an obstacle it had missed; it is remembered this many answers.
BLOCKED_WORDS = 'the way ahead is blocked'
REMEMBER_BLOCKED = 3
# Answers back that the model still knows where it saw the target, standing next to it.
REMEMBER_SEEN = 3
SEARCH_REACH = 1.0  # m travelled per answer while searching (as far as a go-to answer)


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
                 reach: float = 1.0, standoff: float | None = None,
                 profile: OracleProfile | None = None, seed: int = 0):
        if not 0.0 < reach <= 1.0:
            raise ValueError(f'reach must be within (0, 1] m, got {reach}')
        self.world_provider = world_provider
        self.half_fov = math.radians(hfov_deg) / 2.0
        self.reach = reach
        self.standoff = standoff
        self.profile = profile if profile is not None else PROFILES['ideal']
        self._rng = random.Random(seed)
        self._routes: dict[tuple, RouteField] = {}
        # What the answers did: 'answers', 'seen', 'miss', 'false_target', 'wrong_direction',
        # 'search', 'arrived', 'blocked_replan' (for tests and reports).
        self.counts: Counter = Counter()

    def answer(self, instruction: str, pose: Any = None, world: World | None = None,
               history: Sequence[tuple[str, str]] = (), blocked: bool = False) -> dict:
        """Answer an instruction as seen from the base pose ``pose`` at capture.

        ``pose`` and ``world`` default to the provider's; ``history`` holds the prompt's
        previous (environment, action) pairs, oldest first; ``blocked``: the prompt says the
        last way was blocked (prompts.BLOCKED_NOTE). Returns the contract dictionary:
        environment, action and 1-4 waypoints.
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
        self.counts['answers'] += 1
        errors = draw_errors(self.profile, self._rng)  # all zero for the ideal profile

        phrase = target_phrase(text)
        if phrase is not None:
            return self._go_to(world, pose, phrase, prefix, errors, history, blocked)
        left, right = _TURN_LEFT.search(lowered), _TURN_RIGHT.search(lowered)
        if left or right:
            if errors.wrong_direction:
                self.counts['wrong_direction'] += 1
                left = not left
            return self._turn(prefix, 'left' if left else 'right', 'turning', 0.9)
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
            return self._go_to(world, pose, text, prefix, errors, history)
        return stop_answer(f'{prefix}instruction not understood', 0.2)

    @staticmethod
    def _turn(prefix: str, side: str, what: str, confidence: float) -> dict:
        """A turn in place by the largest step an answer may give."""
        sign = 1.0 if side == 'left' else -1.0
        return _answer(f'{prefix}{what} {side}', f'turn_{side}',
                       [_waypoint(0.05, 0.0, sign * DTHETA_LIMIT, confidence)])

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

    def _go_to(self, world: World, pose: Pose, phrase: str, prefix: str,
               errors: AnswerErrors = NO_ERRORS, history: Sequence[tuple[str, str]] = (),
               blocked: bool = False) -> dict:
        """Answer 'go to <phrase>': stop, turn towards it, search, or waypoints along the way."""
        mark = world.find_landmark(phrase)
        if mark is None:
            return stop_answer(f'{prefix}no {_ascii(phrase, 40, "such landmark")} in sight',
                               0.2)
        camera = world.camera_pose(pose)
        if not self.profile.sight_only:
            return self._go_to_known(world, pose, camera, mark, prefix)
        if not landmark_in_view(world, camera, mark, self.half_fov):
            return self._search(world, pose, camera, mark, prefix, errors, history)
        if errors.miss:
            self.counts['miss'] += 1
            return self._search(world, pose, camera, mark, prefix, errors, history)
        self.counts['seen'] += 1
        goal = mark
        if errors.false_target:
            other = self._look_alike(world, camera, mark)
            if other is not None:
                self.counts['false_target'] += 1
                goal = other
        surface = world.distance_to(goal, pose) * errors.distance_factor
        if surface <= self._tolerance(world):
            self.counts['arrived'] += 1
            return stop_answer(f'{prefix}arrived at the {mark.name}, {surface:.1f} m', 0.9)
        fx, fy = pose.to_local(*goal.position)
        bearing = math.atan2(fy, fx) * errors.bearing_factor + errors.bearing_offset
        if errors.wrong_direction:
            self.counts['wrong_direction'] += 1
            bearing = -bearing
        points = self._path(world, goal, pose, bearing, surface)
        end = pose.moved(points[-1]['dx'], points[-1]['dy'], 0.0)
        # Once it has looked again, the model keeps the obstacle in mind for a few answers
        # (they are in its prompt's history), instead of leading the robot back into it.
        noticed = blocked or any(BLOCKED_WORDS in env for env, _ in history[-REMEMBER_BLOCKED:])
        if noticed and not errors.wrong_direction:
            # Told its last way was blocked, the model looks again and sees what is in the
            # way (even an obstacle it misjudged): it answers the way round.
            self.counts['blocked_replan'] += 1
            route = self._route(world, goal, real=True).path(pose.x, pose.y, self.reach + 0.4)
            # Standing against the obstacle, the free way starts a step back or to the side:
            # the model names where it goes, not the cell beside the robot.
            route = [p for p in route if math.hypot(p[0] - pose.x, p[1] - pose.y) > 0.3]
            way = self._way_ahead(pose, route)
            note = f'{prefix}{mark.name} {self._where(bearing)} {surface:.1f} m, ' \
                f'{BLOCKED_WORDS}, going round'
            if way:
                return _answer(note, 'forward', way)
            if route:  # the way round starts behind or beside the robot: turn to it first
                fx, fy = pose.to_local(*route[0])
                return self._turn(prefix, 'left' if fy > 0 else 'right',
                                  f'{mark.name} {self._where(bearing)} {surface:.1f} m, '
                                  f'{BLOCKED_WORDS}, turning', 0.6)
        if not errors.wrong_direction and not _passable(world, pose, (end.x, end.y)):
            # A wall corner in the way: the model steers round it, along the free way (a
            # left/right mix-up stays the mistake it is).
            way = self._way_ahead(pose, self._route(world, goal).path(pose.x, pose.y,
                                                                      self.reach))
            points = way or points
        return _answer(f'{prefix}{mark.name} {self._where(bearing)} {surface:.1f} m',
                       'forward', points)

    def _go_to_known(self, world: World, pose: Pose, camera: Pose, mark: Landmark,
                     prefix: str) -> dict:
        """The ideal answer: it knows where the landmark is even when it cannot see it."""
        surface = world.distance_to(mark, pose)
        if surface <= self._tolerance(world):
            self.counts['arrived'] += 1
            return stop_answer(f'{prefix}arrived at the {mark.name}, {surface:.1f} m', 0.9)
        cx, cy = camera.to_local(*mark.position)
        if abs(math.atan2(cy, cx)) > self.half_fov:
            side = 'left' if cy > 0 else 'right'
            return self._turn(prefix, side, f'{mark.name} {NOT_IN_VIEW}, turning', 0.8)
        self.counts['seen'] += 1
        fx, fy = pose.to_local(*mark.position)
        bearing = math.atan2(fy, fx)
        return _answer(f'{prefix}{mark.name} {self._where(bearing)} {surface:.1f} m',
                       'forward', self._path(world, mark, pose, bearing, surface))

    def _look_alike(self, world: World, camera: Pose, mark: Landmark) -> Landmark | None:
        """Another landmark in view that could be taken for ``mark`` (same kind first)."""
        others = [m for m in world.scenario.landmarks if m is not mark
                  and landmark_in_view(world, camera, m, self.half_fov)]
        others.sort(key=lambda m: (m.kind != mark.kind, camera.distance_to(*m.position)))
        return others[0] if others else None

    def _route(self, world: World, mark: Landmark, real: bool = False) -> RouteField:
        # The free space as the oracle sees it: obstacles it misjudges are not in it (unless
        # ``real``: told it was blocked, it looks again), and an obstacle that moved makes a
        # new field.
        key = (id(world), mark.name, world.layout_version, real)
        if key not in self._routes:
            # Looking again at what blocked it, the model plans the way round from where the
            # robot stands, close to the obstacle: a narrower berth than its usual one.
            keep_off = world.scenario.robot.radius + 0.1 if real else None
            self._routes[key] = RouteField(world, mark, keep_off=keep_off,
                                           oracle_view=not real)
        return self._routes[key]

    def _search(self, world: World, pose: Pose, camera: Pose, mark: Landmark, prefix: str,
                errors: AnswerErrors, history: Sequence[tuple[str, str]]) -> dict:
        """The target is not seen: follow the way the scene leads, or turn to look for it.

        Where the free path to the target continues within view (a corridor going on, an
        opening at the side), walk that way. Where it leads out of view to one side, turn to
        that side. Where it leads behind the robot, nothing in the image says which way: keep
        turning the way the last answers did, or pick a side at random.
        """
        self.counts['search'] += 1
        route = self._route(world, mark)
        what = f'{mark.name} {NOT_IN_VIEW}'
        cue = route.waypoint(pose.x, pose.y, SEARCH_AHEAD)
        if cue is None:
            return self._turn(prefix, 'left', f'{what}, turning', 0.5)
        cx, cy = camera.to_local(*cue)
        bearing = math.atan2(cy, cx)
        if errors.wrong_direction:
            self.counts['wrong_direction'] += 1
            bearing = -bearing
        # Walk the way itself (it keeps off the walls), as far as it is in view and ahead.
        if abs(bearing) <= 0.8 * self.half_fov and line_of_sight(
                world, (camera.x, camera.y), cue):
            points = self._way_ahead(pose, route.path(pose.x, pose.y, SEARCH_REACH))
            if points:
                return _answer(f'{prefix}{what}, the way continues {self._where(bearing)}',
                               'forward', points)
        bx, by = pose.to_local(*cue)
        side_bearing = -math.atan2(by, bx) if errors.wrong_direction else math.atan2(by, bx)
        seen_side = _last_seen_side(history, mark.name)
        search_side = _last_search_side(history)
        beside = math.hypot(bx, by) < 0.2  # the way ends here: the target is next to the robot
        if beside and seen_side:
            side = seen_side  # turn to where it was last seen
        elif beside and _seen_lately(history, mark.name):
            # Next to it and it was in the last few images: the model knows it turned away
            # from it, and turns back, not to and fro (the cue beside the robot says nothing).
            tx, ty = pose.to_local(*mark.position)
            side = 'left' if (ty > 0) != errors.wrong_direction else 'right'
        elif beside and search_side:
            side = search_side  # a search under way goes on round, one way
        elif abs(side_bearing) <= math.pi / 2:  # to the robot's side: the image edge shows it
            side = 'left' if side_bearing > 0 else 'right'
        else:
            side = seen_side or search_side or ('left' if errors.coin else 'right')
        return self._turn(prefix, side, f'{what}, turning', 0.6)

    @staticmethod
    def _way_ahead(pose: Pose, way: list[tuple[float, float]], confidence: float = 0.55
                   ) -> list[dict]:
        """Up to four waypoints (base frame) along ``way``, every 0.25 m, all ahead."""
        picks = []
        travelled, last = 0.0, (pose.x, pose.y)
        for point in way:
            travelled += math.hypot(point[0] - last[0], point[1] - last[1])
            last = point
            if travelled >= 0.25 * (len(picks) + 1) - 1e-9 or point is way[-1]:
                picks.append(point)
        out = []
        for px, py in picks[:MAX_WAYPOINTS]:
            fx, fy = pose.to_local(px, py)
            if fx <= 0.0:
                break  # waypoints go forward only: a way behind is a turn, not a path
            heading = max(-DTHETA_LIMIT, min(DTHETA_LIMIT, math.atan2(fy, fx)))
            out.append(_waypoint(fx, fy, heading, confidence))
        return out

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


def _passable(world: World, pose: Pose, point: tuple[float, float]) -> bool:
    """True when the robot's body, moving straight to ``point``, misses what the oracle sees."""
    margin = world.scenario.robot.radius + 0.1
    steps = max(2, int(math.hypot(point[0] - pose.x, point[1] - pose.y) / 0.1))
    return all(world.clearance(pose.x + (point[0] - pose.x) * k / steps,
                               pose.y + (point[1] - pose.y) * k / steps, True) >= margin
               for k in range(1, steps + 1))


def request_blocked(request: Any) -> bool:
    """True when the request's text carries the note that the last way was blocked."""
    from vln_ros.core.prompts import BLOCKED_NOTE

    text = request.get('text') if isinstance(request, dict) else getattr(request, 'text', None)
    return isinstance(text, str) and BLOCKED_NOTE in ' '.join(text.split())


def request_history(request: Any) -> list[tuple[str, str]]:
    """Return the (environment, action) pairs of a request's 'Previous steps', oldest first."""
    text = request.get('text') if isinstance(request, dict) else getattr(request, 'text', None)
    out = []
    for line in (text or '').splitlines():
        match = _HISTORY_LINE.match(line)
        if match:
            out.append((match['saw'].strip(), match['action'].strip()))
    return out


def _last_seen_side(history: Sequence[tuple[str, str]], name: str) -> str | None:
    """The side the last answer saw ``name`` on ('12 deg left'), or None."""
    if not history:
        return None
    match = re.search(rf'{re.escape(name)} \d+ deg (left|right)', history[-1][0])
    return match[1] if match else None


def _seen_lately(history: Sequence[tuple[str, str]], name: str) -> bool:
    """True when one of the last REMEMBER_SEEN answers saw ``name`` (or arrived at it)."""
    return any(name in env and NOT_IN_VIEW not in env for env, _ in history[-REMEMBER_SEEN:])


def _last_search_side(history: Sequence[tuple[str, str]]) -> str | None:
    """The side of the last answer if it was a search turn ('left', 'right' or None)."""
    if not history:
        return None
    environment, action = history[-1]
    if NOT_IN_VIEW in environment and action in ('turn_left', 'turn_right'):
        return action[len('turn_'):]
    return None


def make_oracle_policy(oracle: Oracle) -> Callable[[Any], dict]:
    """Wrap an Oracle as an answer policy: request (with an instruction) -> contract dict."""

    def policy(request: Any) -> dict:
        world, pose = oracle.world_provider()
        return oracle.answer(request_instruction(request), pose, world,
                             request_history(request))

    return policy
