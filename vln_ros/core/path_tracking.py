"""Place model waypoints in the odometry frame and track them with regulated pure pursuit.

The tracker is written for a legged base: it drives forward along the path with the
curvature that reaches a lookahead point, slows down for tight curves and towards
the goal, turns in place when the path lies behind or far to the side, walks
sideways only when told the base is holonomic, and finally turns in place to the
last waypoint's heading.
"""

from collections.abc import Sequence
from dataclasses import dataclass
import math

from vln_ros.core.geometry import Pose2D, interpolate_pose, normalize_angle

__all__ = ['PathTracker', 'TrackCommand', 'waypoints_to_odom']

# Two poses closer than this (m, rad) are the same pose.
_SAME_POSE_EPS = 1e-6
# Shorter segments (m) are points: projecting onto them would divide by ~zero.
_MIN_SEGMENT = 1e-9
# Inside the goal tolerance the base still closes in until this fraction of it ...
_GOAL_FINE_FRACTION = 0.2
# ... or, without lateral motion, until the goal is this close to abeam (m) or this
# far off the heading (rad): then only a turn could bring it closer.
_ABEAM_EPS = 1e-3
_ABEAM_BEARING = 0.25 * math.pi


def waypoints_to_odom(anchor: Pose2D, waypoints: Sequence) -> list[Pose2D]:
    """Place waypoints given in the ``anchor`` base frame into the anchor's parent frame.

    Each waypoint (any object with ``dx``, ``dy``, ``dtheta``) is a pose relative to the
    anchor itself, not to the previous waypoint: odom pose = anchor ∘ (dx, dy, dtheta).
    """
    return [anchor.compose(Pose2D(float(w.dx), float(w.dy), float(w.dtheta))) for w in waypoints]


@dataclass
class TrackCommand:
    """One output of the tracker.

    ``vx``, ``vy``, ``wz`` are body velocities bounded only by the requested speed (the
    velocity limiter applies the robot's limits); ``target`` is the point being steered
    to; ``remaining`` is the path length left (m).
    """

    vx: float
    vy: float
    wz: float
    target: Pose2D | None
    finished: bool
    remaining: float


class PathTracker:
    """Regulated pure pursuit along a polyline of poses, with monotonic progress.

    The polyline runs from the start (the anchor) through the poses. The tracker heads
    for one vertex at a time and moves on, never back, once the robot is within the
    lookahead of it or past it along its segment; the lookahead point is where the
    circle of radius ``lookahead`` around the robot leaves that segment (the goal
    itself once it is inside the circle), which rounds the corners. A cusp (a turn of
    more than 90 degrees: the path folds back) is not cut but driven to and braked
    for, like the goal: cutting it would bring the next stop suddenly close.
    """

    def __init__(
        self,
        lookahead: float = 0.35,
        goal_tolerance: float = 0.05,
        yaw_tolerance: float = 0.05,
        holonomic: bool = False,
        k_heading: float = 1.5,
        *,
        rotate_in_place_angle: float = 0.785,
        min_turn_radius: float = 0.9,
        max_decel: float = 0.4,
        min_rotate_speed: float = 0.1,
        min_regulated_speed: float = 0.05,
    ) -> None:
        """Create a tracker.

        ``rotate_in_place_angle`` (rad): bearing to the lookahead point beyond which the
        base turns on the spot first (holonomic bases only do so for points behind).
        ``min_turn_radius`` (m): tighter curves are driven proportionally slower.
        ``max_decel`` (m/s^2): the approach to the goal is shaped so that stopping at it
        needs no more than this; keep it at or below the limiter's linear acceleration
        so the robot comes to rest at the goal instead of overshooting it.
        ``min_rotate_speed`` (rad/s): the slowest turn used to align with the goal heading.
        ``min_regulated_speed`` (m/s): tight curves slow the base down to this, no further
        (a crawl along a short tight arc would take forever).
        """
        for name, value in (('lookahead', lookahead), ('goal_tolerance', goal_tolerance),
                            ('yaw_tolerance', yaw_tolerance), ('k_heading', k_heading),
                            ('min_turn_radius', min_turn_radius), ('max_decel', max_decel),
                            ('min_rotate_speed', min_rotate_speed),
                            ('min_regulated_speed', min_regulated_speed)):
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f'PathTracker {name} must be > 0, got {value!r}')
        if not 0.0 < rotate_in_place_angle <= math.pi:
            raise ValueError(f'rotate_in_place_angle must be in (0, pi], got '
                             f'{rotate_in_place_angle!r}')
        self.lookahead = float(lookahead)
        self.goal_tolerance = float(goal_tolerance)
        self.yaw_tolerance = float(yaw_tolerance)
        self.holonomic = bool(holonomic)
        self.k_heading = float(k_heading)
        self.min_turn_radius = float(min_turn_radius)
        self.max_decel = float(max_decel)
        self.min_rotate_speed = float(min_rotate_speed)
        self.min_regulated_speed = float(min_regulated_speed)
        # A holonomic base can walk sideways, so only a point behind it needs a turn.
        self._rotate_enter = (max(rotate_in_place_angle, 2.0) if self.holonomic
                              else rotate_in_place_angle)
        # Hysteresis: once turning, turn until well aligned, not just below the threshold.
        self._rotate_exit = 0.5 * rotate_in_place_angle
        self.clear()

    # ----------------------------------------------------------------- path management

    def set_path(self, poses: Sequence[Pose2D], start: Pose2D | None = None) -> None:
        """Track ``poses`` from now on, from their start again.

        ``start`` is where the path begins (the anchor the waypoints are relative to);
        without it the robot's pose at the next ``compute`` is used. A path that does
        not leave ``start`` (a single zero waypoint: "stop here") is finished at once.
        """
        self._poses = list(poses)
        self._start = start
        self._points: list[Pose2D] = []
        self._arc: list[float] = []
        self._index = 1  # the vertex of self._points being headed for
        self._cusp: list[bool] = []  # per vertex of self._points: the path folds back there
        self._carrot: tuple[bool, float, Pose2D] | None = None
        self._reached = False
        self._rotating = False
        self._finished = not self._poses
        if start is not None and self._poses and all(
            _same_pose(p, start) for p in self._poses
        ):
            self._finished = True

    def clear(self) -> None:
        """Drop the path; ``compute`` then returns a finished zero command."""
        self.set_path([])

    @property
    def path(self) -> list[Pose2D]:
        """Return the poses being tracked (a copy)."""
        return list(self._poses)

    @property
    def finished(self) -> bool:
        """Return True when there is no path or its goal pose has been reached."""
        return self._finished

    # ---------------------------------------------------------------------- control law

    def remaining_length(self, pose: Pose2D) -> float:
        """Update the progress along the path for ``pose`` and return the length left (m)."""
        if self._finished:
            return 0.0
        self._update(pose)
        _, carrot_arc, carrot = self._carrot
        return pose.distance_to(carrot) + (self._arc[-1] - carrot_arc)

    def compute(self, pose: Pose2D, speed: float) -> TrackCommand:
        """Return the body velocity that follows the path from ``pose`` at about ``speed``."""
        if self._finished:
            return TrackCommand(0.0, 0.0, 0.0, self._goal(), True, 0.0)
        remaining = self.remaining_length(pose)
        goal = self._poses[-1]
        near_end, _, carrot = self._carrot

        if not self._reached and near_end and self._goal_reached(pose, goal):
            self._reached = True  # latched: from here on only the heading is corrected
        if self._reached:
            yaw_error = normalize_angle(goal.yaw - pose.yaw)
            if abs(yaw_error) <= self.yaw_tolerance:
                self._finished = True
                return TrackCommand(0.0, 0.0, 0.0, goal, True, 0.0)
            # A floor on the turn rate: a pure P law would creep through the last degrees.
            wz = math.copysign(max(self.k_heading * abs(yaw_error), self.min_rotate_speed),
                               yaw_error)
            return TrackCommand(0.0, 0.0, wz, goal, False, 0.0)

        local = carrot.relative_to(pose)
        dist = math.hypot(local.x, local.y)
        bearing = math.atan2(local.y, local.x) if dist > 1e-9 else 0.0

        if near_end and pose.distance_to(goal) <= self.goal_tolerance:
            self._rotating = False  # close enough: creep in rather than turn on the spot
        elif abs(bearing) > self._rotate_enter:
            self._rotating = True
        elif abs(bearing) < self._rotate_exit:
            self._rotating = False
        if self._rotating:
            return TrackCommand(0.0, 0.0, self.k_heading * bearing, carrot, False, remaining)

        # Come to rest at the goal or cusp: v^2 = 2 a d needs at most max_decel to stop
        # in d. A differential base can only close the distance along its heading.
        brake_distance = remaining
        stop = next(i for i in range(self._index, len(self._points))
                    if self._cusp[i] or i == len(self._points) - 1)
        if stop < len(self._points) - 1:
            brake_distance = dist + self._arc[stop] - self._carrot[1]
        if near_end and not self.holonomic:
            brake_distance = min(brake_distance, max(local.x, 0.0))
        speed = max(0.0, speed)
        speed = min(speed, math.sqrt(2.0 * self.max_decel * brake_distance))

        if self.holonomic:
            if dist <= 1e-9:
                vx = vy = 0.0
            else:
                vx = speed * local.x / dist
                vy = speed * local.y / dist
            # Face the way the path faces at the lookahead point.
            wz = self.k_heading * normalize_angle(carrot.yaw - pose.yaw)
            return TrackCommand(vx, vy, wz, carrot, False, remaining)

        curvature = 2.0 * local.y / (dist * dist) if dist > 1e-9 else 0.0
        if abs(curvature) * self.min_turn_radius > 1.0:
            # Regulated: slow down in tight turns, but not below a floor (nor speed up).
            regulated = speed / (abs(curvature) * self.min_turn_radius)
            speed = max(regulated, min(speed, self.min_regulated_speed))
        return TrackCommand(speed, 0.0, speed * curvature, carrot, False, remaining)

    # ------------------------------------------------------------------------- helpers

    def _goal_reached(self, pose: Pose2D, goal: Pose2D) -> bool:
        """Return True once the goal position is as close as the base can get it.

        Within ``goal_tolerance`` the base keeps closing in, and stops when very close,
        or (without lateral motion) once the goal is abeam: driving on would only pass it.
        """
        local = goal.relative_to(pose)
        dist = math.hypot(local.x, local.y)
        if dist > self.goal_tolerance:
            return False
        if dist <= _GOAL_FINE_FRACTION * self.goal_tolerance:
            return True
        if self.holonomic:
            return False
        return local.x <= _ABEAM_EPS or abs(math.atan2(local.y, local.x)) >= _ABEAM_BEARING

    def _goal(self) -> Pose2D | None:
        return self._poses[-1] if self._poses else None

    def _update(self, pose: Pose2D) -> None:
        """Advance the vertex being headed for and place the lookahead point."""
        if not self._points:
            start = self._start if self._start is not None else pose
            self._points = [start, *self._poses]
            self._arc = [0.0]
            for a, b in zip(self._points, self._points[1:], strict=False):
                self._arc.append(self._arc[-1] + a.distance_to(b))
            self._cusp = [False] + [_is_cusp(*self._points[i - 1:i + 2])
                                    for i in range(1, len(self._points) - 1)] + [False]
        points, lookahead = self._points, self.lookahead
        last = len(points) - 1
        while self._index < last:
            a, b = points[self._index - 1], points[self._index]
            reach = self.goal_tolerance if self._cusp[self._index] else lookahead
            if pose.distance_to(b) < reach or _projection(pose, a, b) >= 1.0:
                self._index += 1
            else:
                break
        a, b = points[self._index - 1], points[self._index]
        if self._index == last and pose.distance_to(b) < lookahead:
            self._carrot = (True, self._arc[-1], b)
            return
        length = self._arc[self._index] - self._arc[self._index - 1]
        if length <= _MIN_SEGMENT:
            t = 1.0
        else:
            # From the foot of the perpendicular, go on to where the circle cuts the
            # segment's line (stay at the foot when the circle does not reach it).
            t_foot = _projection(pose, a, b)
            foot_x = a.x + t_foot * (b.x - a.x)
            foot_y = a.y + t_foot * (b.y - a.y)
            offset_sq = (pose.x - foot_x) ** 2 + (pose.y - foot_y) ** 2
            t = t_foot + math.sqrt(max(0.0, lookahead**2 - offset_sq)) / length
            t = min(1.0, max(0.0, t))
        self._carrot = (False, self._arc[self._index - 1] + t * length,
                        interpolate_pose(a, b, t))


def _is_cusp(a: Pose2D, b: Pose2D, c: Pose2D) -> bool:
    """Return True when the path a->b->c turns back at b (by more than 90 degrees)."""
    return (b.x - a.x) * (c.x - b.x) + (b.y - a.y) * (c.y - b.y) < 0.0


def _projection(p: Pose2D, a: Pose2D, b: Pose2D) -> float:
    """Return where ``p`` projects onto the line a->b (0 at a, 1 at b; inf for a point)."""
    ex, ey = b.x - a.x, b.y - a.y
    length_sq = ex * ex + ey * ey
    if length_sq <= _MIN_SEGMENT**2:
        return math.inf
    return ((p.x - a.x) * ex + (p.y - a.y) * ey) / length_sq


def _same_pose(a: Pose2D, b: Pose2D) -> bool:
    return (a.distance_to(b) <= _SAME_POSE_EPS
            and abs(normalize_angle(a.yaw - b.yaw)) <= _SAME_POSE_EPS)
