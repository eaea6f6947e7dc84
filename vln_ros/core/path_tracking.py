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
# Path points this much (m) farther than the nearest one still count as "as near".
_PASS_MARGIN = 0.05
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
    """Regulated pure pursuit along a polyline of poses, with monotonic progress."""

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
        search_window: float | None = None,
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
        ``search_window`` (m, default: the lookahead): how far ahead of the current
        progress the robot may be matched to the path in one step; small, so that a path
        that loops back past the robot is not short-cut.
        ``min_rotate_speed`` (rad/s): the slowest turn used to align with the goal heading.
        ``min_regulated_speed`` (m/s): tight curves slow the base down to this, no further
        (a crawl along a short tight arc would take forever).
        """
        for name, value in (('lookahead', lookahead), ('goal_tolerance', goal_tolerance),
                            ('yaw_tolerance', yaw_tolerance), ('k_heading', k_heading),
                            ('min_turn_radius', min_turn_radius), ('max_decel', max_decel),
                            ('search_window', lookahead if search_window is None
                             else search_window),
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
        self.search_window = float(lookahead if search_window is None else search_window)
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
        self._progress = 0.0
        self._initialized = False
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
        self._update_progress(pose)
        _, carrot_arc, carrot = self._carrot(pose)
        return pose.distance_to(carrot) + (self._arc[-1] - carrot_arc)

    def compute(self, pose: Pose2D, speed: float) -> TrackCommand:
        """Return the body velocity that follows the path from ``pose`` at about ``speed``."""
        if self._finished:
            return TrackCommand(0.0, 0.0, 0.0, self._goal(), True, 0.0)
        remaining = self.remaining_length(pose)
        goal = self._poses[-1]
        near_end, _, carrot = self._carrot(pose)

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

        # Come to rest at the goal: v^2 = 2 a d needs at most max_decel to stop in d. A
        # differential base can only close the distance along its heading.
        brake_distance = remaining
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

    def _build(self, pose: Pose2D) -> None:
        start = self._start if self._start is not None else pose
        self._points = [start, *self._poses]
        self._arc = [0.0]
        for a, b in zip(self._points, self._points[1:], strict=False):
            self._arc.append(self._arc[-1] + a.distance_to(b))

    def _update_progress(self, pose: Pose2D) -> None:
        """Advance the progress to the nearest path point at or after the current one."""
        if not self._initialized:
            self._build(pose)
            window = math.inf  # first match: anywhere on the path
            self._initialized = True
        else:
            window = self.search_window
        candidates = []  # (arc length, distance) of the nearest point of each segment
        for j in range(len(self._points) - 1):
            seg_start, seg_end = self._arc[j], self._arc[j + 1]
            if seg_end < self._progress:
                continue  # wholly behind the progress: never go back
            if seg_start > self._progress + window:
                break
            a, b = self._points[j], self._points[j + 1]
            length = seg_end - seg_start
            if length > _MIN_SEGMENT:
                t = ((pose.x - a.x) * (b.x - a.x) + (pose.y - a.y) * (b.y - a.y)) / length**2
                arc = seg_start + min(1.0, max(0.0, t)) * length
            else:
                arc = seg_start
            arc = min(max(arc, self._progress), self._progress + window)
            point = self._point_at(arc)
            candidates.append((arc, math.hypot(pose.x - point.x, pose.y - point.y)))
        if not candidates:
            return
        # Where the path passes the robot twice, take the earlier pass unless the later
        # one is clearly nearer: skipping a loop would cut the path short.
        nearest = min(d for _, d in candidates)
        best_arc = min(arc for arc, d in candidates if d <= nearest + _PASS_MARGIN)
        self._progress = max(self._progress, best_arc)

    def _carrot(self, pose: Pose2D) -> tuple[bool, float, Pose2D]:
        """Return (the carrot is the goal, its arc length, the carrot pose).

        The carrot is the first path point after the progress that lies ``lookahead``
        away from the robot (the goal when none does), measured in space rather than
        along the path, so that a path folding back near the robot is not aimed at a
        point right beside it.
        """
        total = self._arc[-1]
        lookahead = self.lookahead
        start = self._point_at(self._progress)
        if self._progress < total and pose.distance_to(start) >= lookahead:
            return False, self._progress, start  # off the path: head back to it first
        for j in range(len(self._points) - 1):
            seg_end = self._arc[j + 1]
            if seg_end <= self._progress:
                continue
            b = self._points[j + 1]
            if pose.distance_to(b) < lookahead:
                continue
            # The segment leaves the circle: solve |a + t (b - a) - pose| = lookahead.
            arc_a = max(self._arc[j], self._progress)
            a = self._point_at(arc_a)
            ex, ey = b.x - a.x, b.y - a.y
            fx, fy = a.x - pose.x, a.y - pose.y
            qa = ex * ex + ey * ey
            if qa <= _MIN_SEGMENT**2:
                return False, seg_end, b
            qb = 2.0 * (fx * ex + fy * ey)
            qc = fx * fx + fy * fy - lookahead * lookahead
            root = math.sqrt(max(0.0, qb * qb - 4.0 * qa * qc))
            t = min(1.0, max(0.0, (-qb + root) / (2.0 * qa)))
            arc = arc_a + t * (seg_end - arc_a)
            return False, arc, self._point_at(arc)
        return True, total, self._poses[-1]

    def _point_at(self, arc: float) -> Pose2D:
        """Return the path pose at arc length ``arc`` (clamped to the path)."""
        points, arcs = self._points, self._arc
        if arc <= 0.0:
            return points[0]
        for j in range(len(points) - 1):
            if arc <= arcs[j + 1]:
                length = arcs[j + 1] - arcs[j]
                t = (arc - arcs[j]) / length if length > _MIN_SEGMENT else 1.0
                return interpolate_pose(points[j], points[j + 1], t)
        return points[-1]


def _same_pose(a: Pose2D, b: Pose2D) -> bool:
    return (a.distance_to(b) <= _SAME_POSE_EPS
            and abs(normalize_angle(a.yaw - b.yaw)) <= _SAME_POSE_EPS)
