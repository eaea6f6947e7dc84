"""The ROS-free planner: model results and odometry in, safe velocity commands out.

The model answers every few seconds about a keyframe that was captured before the
inference started; the planner places the answer's waypoints with the pose the
robot had at that capture time (latency compensation), tracks them from the
current pose at ``rate_hz`` and stops, smoothly unless it is an e-stop, whenever
it has nothing fresh and valid to act on.

Every time value is float seconds from the caller's clock (ROS message stamps and
node clock), passed in explicitly: the planner never reads a clock itself.

Freshness is judged by a result's *arrival* time (the ``now`` passed to
``on_result``), not by its capture stamp: the capture stamp is always older by the
model's latency (5-8 s), so comparing it with ``result_timeout`` would measure the
model instead of the link. The capture stamp is used for placing the waypoints.
"""

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
import math

from vln_ros.core.collision.guarded_output import GuardedOutput
from vln_ros.core.collision.stuck import StuckDetector
from vln_ros.core.geometry import Pose2D, integrate_twist
from vln_ros.core.path_tracking import PathTracker, waypoints_to_odom
from vln_ros.core.pose_history import DeadReckoner, PoseHistory
from vln_ros.core.turn_chain import TurnChain, is_turn_in_place
from vln_ros.core.velocity_limits import Limits, VelocityLimiter

__all__ = [
    'Command',
    'Planner',
    'PlannerConfig',
    'PlannerResult',
    'REASONS',
    'result_velocity',
]

# Why a command is what it is: 'tracking' moves, every other reason is a zero command.
REASONS = (
    'tracking',
    'no_result',
    'stale_result',
    'path_finished',
    'low_confidence',
    'task_inactive',
    'estop',
    'error_streak',
    'no_pose',
    'obstacle',  # the obstacle guard's stop zone: something the command would hit
    'stale_sensor',  # a configured obstacle source is too old: driving blind is not allowed
    'blocked',  # asked to move for stuck_timeout, the robot did not (or no way round)
)

# Approach the goal a little below the braking limit, so the limiter's ramp to zero ends at
# the goal rather than past it.
_TRACKER_DECEL = 0.8

# Running means of the model's timing use this many recent results.
_TIMING_WINDOW = 10

# Waypoint ranges from the shared answer contract; values outside are clamped.
_DX_RANGE = (0.0, 1.0)
_DY_RANGE = (-1.0, 1.0)
_DTHETA_RANGE = (-0.5, 0.5)
# A waypoint less than this (m) ahead of the robot's current pose is passed.
_PASSED = 0.05


@dataclass
class PlannerConfig:
    """Planner parameters (SI units); see the planner_node parameters of the same names."""

    rate_hz: float = 50.0
    result_timeout: float = 12.0
    min_confidence: float = 0.3
    error_streak_limit: int = 3
    holonomic: bool = False
    schedule_speed: bool = True
    min_speed: float = 0.1
    expected_latency: float = 6.5
    limits: Limits = field(default_factory=Limits)
    lookahead: float = 0.35
    goal_tolerance: float = 0.05
    yaw_tolerance: float = 0.05
    use_odometry: bool = True
    # Carry the newest odometry pose forward to the control time with the commands sent
    # since its stamp: odometry arrives tens of ms (on a busy host, hundreds) late.
    predict_pose: bool = True
    # Odometry older than this (s) is not a pose to steer by.
    odom_timeout: float = 1.0
    # How far (s) a capture stamp may lie beyond the pose history and still use its ends.
    max_extrapolation: float = 0.2
    # How long (s) of poses are kept for placing late results.
    history_length: float = 30.0
    # Asked to move this long (s) with no progress in odometry: blocked (0: never).
    stuck_timeout: float = 3.0
    # A turn answer after a turn the same way (a search sweep) turns at least this far
    # (rad; 0: as far as the answer says). Keep it below the camera's horizontal FOV.
    sweep_step: float = 0.9

    def __post_init__(self) -> None:
        if not 10.0 <= self.rate_hz <= 100.0:
            raise ValueError(f'rate_hz must be within 10..100 Hz, got {self.rate_hz!r}')
        if not (math.isfinite(self.result_timeout) and self.result_timeout > 0.0):
            raise ValueError(f'result_timeout must be > 0 s, got {self.result_timeout!r}')
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f'min_confidence must be within 0..1, got {self.min_confidence!r}')
        if int(self.error_streak_limit) != self.error_streak_limit or self.error_streak_limit < 1:
            raise ValueError(
                f'error_streak_limit must be an integer >= 1, got {self.error_streak_limit!r}')
        if not (math.isfinite(self.min_speed) and self.min_speed > 0.0):
            raise ValueError(f'min_speed must be > 0 m/s, got {self.min_speed!r}')
        if not (math.isfinite(self.expected_latency) and self.expected_latency > 0.0):
            raise ValueError(f'expected_latency must be > 0 s, got {self.expected_latency!r}')
        for name in ('lookahead', 'goal_tolerance', 'yaw_tolerance', 'odom_timeout',
                     'history_length'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f'{name} must be > 0, got {value!r}')
        if not (math.isfinite(self.stuck_timeout) and self.stuck_timeout >= 0.0):
            raise ValueError(f'stuck_timeout must be >= 0 s, got {self.stuck_timeout!r}')
        if not (math.isfinite(self.sweep_step) and 0.0 <= self.sweep_step <= math.pi):
            raise ValueError(f'sweep_step must be within 0..pi rad, got {self.sweep_step!r}')
        if not (math.isfinite(self.max_extrapolation) and self.max_extrapolation >= 0.0):
            raise ValueError(f'max_extrapolation must be >= 0 s, got {self.max_extrapolation!r}')
        if not isinstance(self.limits, Limits):
            raise ValueError(f'limits must be a Limits, got {type(self.limits).__name__}')


@dataclass
class PlannerResult:
    """The part of a NavigationResult the planner uses.

    ``stamp`` is the capture time of the keyframe; ``status`` is one of 'ok',
    'fallback', 'vlm_error' or 'stop'; ``waypoints`` hold objects with ``dx``, ``dy``,
    ``dtheta`` and ``confidence``.
    """

    stamp: float
    task_id: str
    sequence: int
    status: str
    waypoints: Sequence
    inference_time: float


@dataclass
class Command:
    """A velocity command, why it is what it is, and what is being tracked."""

    vx: float
    vy: float
    wz: float
    reason: str
    target: Pose2D | None
    path: list[Pose2D]
    # The obstacle guard's verdict on this tick's command (None: no guard, or at rest).
    guard: object | None = None


def result_velocity(waypoints: Sequence, output_fps: float,
                    limits: Limits) -> tuple[float, float]:
    """Return (linear, angular) velocity summarising waypoints, as the REST API reports it.

    linear = mean(dx) * output_fps and angular = mean(dtheta) * output_fps, each
    clamped to its speed limit; (0, 0) for no waypoints or non-finite values.
    """
    if not waypoints:
        return 0.0, 0.0
    linear = sum(float(w.dx) for w in waypoints) / len(waypoints) * output_fps
    angular = sum(float(w.dtheta) for w in waypoints) / len(waypoints) * output_fps
    if not (math.isfinite(linear) and math.isfinite(angular)):
        return 0.0, 0.0
    return (_clamp(linear, -limits.max_linear_vel, limits.max_linear_vel),
            _clamp(angular, -limits.max_angular_vel, limits.max_angular_vel))


class Planner:
    """Turn model results and odometry into limited velocity commands at a fixed rate.

    Call ``on_odometry`` for every odometry message, ``on_result`` for every result,
    and ``step`` at ``rate_hz``; publish what ``step`` returns.
    """

    def __init__(self, config: PlannerConfig | None = None) -> None:
        self.config = config if config is not None else PlannerConfig()
        cfg = self.config
        self._history = PoseHistory(cfg.history_length, cfg.max_extrapolation)
        self._reckoner = None if cfg.use_odometry else DeadReckoner(history=self._history)
        self._tracker = PathTracker(
            cfg.lookahead, cfg.goal_tolerance, cfg.yaw_tolerance, cfg.holonomic,
            max_decel=_TRACKER_DECEL * cfg.limits.max_linear_acc,
        )
        self._limiter = VelocityLimiter(cfg.limits)
        self._active_task: str | None = None
        self._estop = False
        self._estop_unseen = False  # engaged since the last step (maybe released already)
        self._error_streak = 0
        self._hold_reason: str | None = 'no_result'  # a zero reason kept until a new path
        self._last_arrival: float | None = None  # arrival time of the last usable result
        self._last_stamp: float | None = None  # capture stamp of the last usable result
        self._last_step: float | None = None
        self._prev_arrival: float | None = None  # any result, for the interval mean
        self._inference_times: deque[float] = deque(maxlen=_TIMING_WINDOW)
        self._intervals: deque[float] = deque(maxlen=_TIMING_WINDOW)
        self._path: list[Pose2D] = []
        self._turns = TurnChain(cfg.sweep_step)  # chains turns that did not see the last one
        # (stamp, vx, vy, wz) of the commands sent lately, to predict the pose from odometry.
        self._sent: deque[tuple[float, float, float, float]] = deque(
            maxlen=_sent_length(cfg))
        # Why the last result was not turned into a path (None: it was); for the logs.
        self.last_ignored: str | None = None
        # The obstacle guard (None: the planner drives without one, and the node says so).
        self.guard: GuardedOutput | None = None
        self._stuck = StuckDetector(cfg.stuck_timeout or 1.0)

    # -------------------------------------------------------------------------- inputs

    def on_odometry(self, stamp: float, pose: Pose2D) -> None:
        """Record the odometry pose at ``stamp`` (ignored when dead reckoning)."""
        if self._reckoner is None:
            self._history.add(stamp, pose)

    def on_obstacles(self, source: str, points, stamp: float, now: float) -> None:
        """Take obstacle points (N x 2, base frame at ``stamp``) from a guard source."""
        if self.guard is not None:
            self.guard.on_points(source, points, stamp, now, self._pose_at(stamp))

    def on_result(self, result: PlannerResult, now: float) -> list[Pose2D] | None:
        """Take a model result that arrived at ``now``.

        Returns the new path in the odometry frame when the result was accepted (an
        empty list for a stop), None when it was ignored or rejected; ``reason`` then
        tells why the robot stands still, if it does.
        """
        path, self.last_ignored = self._accept(result, now)
        return path

    def _accept(self, result: PlannerResult, now: float) -> tuple[list[Pose2D] | None, str | None]:
        if self._active_task is None or result.task_id != self._active_task:
            return None, 'not_active_task'  # an old task's answer must never move the robot
        self._note_timing(result, now)
        if result.status not in ('ok', 'fallback', 'stop'):
            self._count_error()  # 'vlm_error', or a status this planner does not know
            return None, f'status_{result.status}'
        if self._last_stamp is not None and result.stamp < self._last_stamp:
            return None, 'overtaken'  # a newer keyframe's answer is already followed
        if not math.isfinite(result.stamp) or now - result.stamp > self.config.result_timeout:
            return None, 'stale'  # captured too long ago to act on
        waypoints = list(result.waypoints)
        values = [(w.dx, w.dy, w.dtheta, w.confidence) for w in waypoints]
        if not all(math.isfinite(v) for vals in values for v in vals):
            self._count_error()  # invalid data: as useless as an error
            return None, 'invalid_waypoints'

        self._error_streak = 0
        self._last_arrival = now
        self._last_stamp = result.stamp
        waypoints = [_ClampedWaypoint(w) for w in waypoints]
        if result.status == 'stop' or not waypoints or _is_stop(waypoints):
            self._drop_path('path_finished')
            return [], None
        # The mean, not the min: the model is rightly less sure of far waypoints.
        confidence = sum(w.confidence for w in waypoints) / len(waypoints)
        if confidence < self.config.min_confidence:
            self._drop_path('low_confidence')
            return None, 'low_confidence'
        anchor = self._pose_at(result.stamp)
        if anchor is None:
            self._drop_path('no_pose')
            return None, 'no_pose'

        self._path = waypoints_to_odom(anchor, waypoints)
        start = anchor
        turn = is_turn_in_place(waypoints)
        current = self._current_pose(now)
        if current is not None:
            # The answer is about a pose seconds old, and the robot has moved on since.
            # Waypoints go forward only, so one now behind the robot is one it has passed:
            # going back to it would undo the way made since. A turn answer ('turn left':
            # a few cm and a heading), or one whose every waypoint is passed, turns where
            # the robot stands, to the heading the answer gives.
            ahead = next((i for i, p in enumerate(self._path)
                          if p.relative_to(current).x > _PASSED), None)
            if turn:
                yaw = self._turns.goal_heading(anchor.yaw, self._path[-1].yaw)
                self._path = [Pose2D(current.x, current.y, yaw)]
                start = current
            elif ahead is None:
                self._path = [Pose2D(current.x, current.y, self._path[-1].yaw)]
                start = current
            elif ahead > 0:
                self._path = self._path[ahead:]
                start = current
        if not turn:
            self._turns.clear()
        self._tracker.set_path(self._path, start=start)
        self._stuck.reset()
        self._hold_reason = None
        return list(self._path), None

    # Fields that shape the planner's structure (buffers sized by the rate, the pose source,
    # the tracker's turn-in-place rule): the node declares them read_only.
    FIXED_FIELDS = ('rate_hz', 'use_odometry', 'history_length', 'holonomic')

    def reconfigure(self, config: PlannerConfig) -> None:
        """Take a new configuration at once, keeping the path, the pose history and the task.

        Raises ValueError when a field of FIXED_FIELDS differs: those need a restart.
        """
        fixed = [name for name in self.FIXED_FIELDS
                 if getattr(config, name) != getattr(self.config, name)]
        if fixed:
            raise ValueError(f'{", ".join(fixed)} cannot change at run time (restart the node)')
        self.config = config
        self._stuck.timeout = config.stuck_timeout or 1.0
        self._turns.sweep_step = config.sweep_step
        self._history.max_extrapolation = config.max_extrapolation
        self._limiter.limits = config.limits
        tracker = self._tracker
        tracker.lookahead = config.lookahead
        tracker.goal_tolerance = config.goal_tolerance
        tracker.yaw_tolerance = config.yaw_tolerance
        tracker.max_decel = _TRACKER_DECEL * config.limits.max_linear_acc
        self._sent = deque(self._sent, maxlen=_sent_length(config))

    def set_active_task(self, task_id: str | None) -> None:
        """Make ``task_id`` the task whose results are followed (None: no task).

        Switching drops the path and every bit of state of the old task; the robot
        ramps down to zero until the new task's first result.
        """
        if task_id == self._active_task:
            return
        self._active_task = task_id
        self._drop_path('no_result' if task_id is not None else 'task_inactive')
        self._error_streak = 0
        self._last_arrival = None
        self._last_stamp = None
        self._prev_arrival = None
        self._intervals.clear()
        self._inference_times.clear()

    def set_estop(self, engaged: bool) -> None:
        """Engage (latched) or release the emergency stop.

        While engaged, every step returns zero at once, without a ramp; results are
        still taken in. An engagement released before the next step still makes that
        step an e-stop, so every engagement reaches the robot. On release the current
        path resumes, ramping up from zero, only if its result is still fresh;
        otherwise the usual timeout holds it.
        """
        if engaged:
            self._estop_unseen = True
        self._estop = bool(engaged)

    # -------------------------------------------------------------------------- output

    def step(self, now: float) -> Command:
        """Return the command to send at ``now``; call at ``rate_hz``."""
        cfg = self.config
        nominal = 1.0 / cfg.rate_hz
        if self._last_step is None:
            dt = nominal
        else:
            # A late tick must not license a big jump, a clock jump back none at all.
            dt = min(max(now - self._last_step, 0.0), 5.0 * nominal)
        self._last_step = now
        if self._reckoner is not None:
            # The command sent at the last tick has been driving the robot since then.
            self._reckoner.step(now, *self._limiter.last)

        if self._estop or self._estop_unseen:
            self._estop_unseen = False
            return self._command(self._limiter.hard_stop(), 'estop', None)
        reason = self._stop_reason(now)
        pose = None
        if reason is None:
            pose = self._current_pose(now)
            if pose is None:
                reason = 'no_pose'
        if reason is not None:
            return self._ramp_down(dt, now, pose, reason, None)

        speed = cfg.limits.max_linear_vel
        if cfg.schedule_speed:
            remaining = self._tracker.remaining_length(pose)
            speed = _clamp(remaining / max(self.time_to_next_result(now), nominal),
                           cfg.min_speed, cfg.limits.max_linear_vel)
        track = self._tracker.compute(pose, speed)
        if track.finished:
            self._drop_path('path_finished', keep_turn=True)
            return self._ramp_down(dt, now, pose, 'path_finished', track.target)
        target = (track.vx, track.vy if cfg.holonomic else 0.0, track.wz)
        if self.guard is None:
            out, stopped = self._limiter.apply(*target, dt), None
        else:
            end = self._path[-1].relative_to(pose) if self._path else None
            out, stopped = self.guard.tracking(target, self._limiter, dt, now, pose,
                                               (end.x, end.y) if end is not None else None,
                                               end.yaw if end is not None else None)
        if cfg.stuck_timeout > 0.0 and stopped != 'stale_sensor' \
                and self._stuck.update(now, target, pose):
            # Asked to move, and not moving: stop, and let the next answer choose another way.
            self._stuck.reset()
            self._drop_path('blocked')
            return self._ramp_down(dt, now, pose, 'blocked', track.target)
        return self._command(out, stopped or 'tracking', track.target,
                             self.guard.verdict if self.guard is not None else None)

    def _ramp_down(self, dt: float, now: float, pose: Pose2D | None, reason: str,
                   target: Pose2D | None) -> Command:
        """Ramp to zero with the deceleration limits; at once where the guard says so."""
        out = self._limiter.apply(0.0, 0.0, 0.0, dt)
        if self.guard is None:
            return self._command(out, reason, target)
        if pose is None:
            pose = self._current_pose(now)
        out, stopped = self.guard.ramp(out, self._limiter, now, pose)
        return self._command(out, stopped or reason, target, self.guard.verdict)

    # ------------------------------------------------------------------------- queries

    @property
    def latency_estimate(self) -> float:
        """Return the running mean of the model's inference time (s)."""
        if self._inference_times:
            return sum(self._inference_times) / len(self._inference_times)
        return self.config.expected_latency

    @property
    def interval_estimate(self) -> float:
        """Return the running mean of the time between results (s)."""
        if self._intervals:
            return sum(self._intervals) / len(self._intervals)
        return self.latency_estimate

    def time_to_next_result(self, now: float) -> float:
        """Return how long (s) until the next result is expected (<= 0 when overdue)."""
        if self._last_arrival is None:
            return self.interval_estimate
        return self._last_arrival + self.interval_estimate - now

    @property
    def reason(self) -> str | None:
        """Return why the robot is held at zero (None while a path may be tracked)."""
        if self._estop:
            return 'estop'
        return self._hold_reason

    @property
    def active_task(self) -> str | None:
        """Return the id of the task being followed."""
        return self._active_task

    @property
    def estop_engaged(self) -> bool:
        """Return True while the e-stop is engaged."""
        return self._estop

    @property
    def error_streak(self) -> int:
        """Return the number of consecutive failed results."""
        return self._error_streak

    @property
    def path(self) -> list[Pose2D]:
        """Return the path being tracked, in the odometry frame."""
        return list(self._path)

    @property
    def pose(self) -> Pose2D | None:
        """Return the newest pose (odometry or dead reckoning)."""
        latest = self._history.latest()
        return latest[1] if latest is not None else None

    # ------------------------------------------------------------------------- helpers

    def _note_timing(self, result: PlannerResult, now: float) -> None:
        if math.isfinite(result.inference_time) and result.inference_time > 0.0:
            self._inference_times.append(float(result.inference_time))
        if self._prev_arrival is not None and now > self._prev_arrival:
            self._intervals.append(now - self._prev_arrival)
        self._prev_arrival = now

    def _count_error(self) -> None:
        self._error_streak += 1
        if self._error_streak >= self.config.error_streak_limit:
            self._drop_path('error_streak')

    def _drop_path(self, reason: str, keep_turn: bool = False) -> None:
        self._path = []
        if not keep_turn:  # a turn driven to its end may still be chained onto
            self._turns.clear()
        self._tracker.clear()
        self._hold_reason = reason

    def _stop_reason(self, now: float) -> str | None:
        if self._active_task is None:
            return 'task_inactive'
        if self._error_streak >= self.config.error_streak_limit:
            return 'error_streak'
        if self._hold_reason is not None:
            return self._hold_reason
        if self._last_arrival is None:
            return 'no_result'
        age = now - self._last_arrival
        if age > self.config.result_timeout or age < 0.0:
            return 'stale_result'  # a negative age is a clock that jumped back
        return None

    def _pose_at(self, stamp: float) -> Pose2D | None:
        """Return the pose at a capture stamp, or the newest one if the stamp is just past."""
        pose = self._history.at(stamp)
        if pose is not None:
            return pose
        latest = self._history.latest()
        if latest is not None and abs(stamp - latest[0]) <= self._history.max_extrapolation:
            return latest[1]
        return None

    def _current_pose(self, now: float) -> Pose2D | None:
        latest = self._history.latest()
        if latest is None:
            return None
        stamp, pose = latest
        if abs(now - stamp) > self.config.odom_timeout:
            return None  # odometry stopped (or the clock jumped): do not steer blind
        if self._reckoner is None and self.config.predict_pose:
            pose = self._predict(pose, stamp, now)
        return pose

    def _predict(self, pose: Pose2D, since: float, now: float) -> Pose2D:
        """Move ``pose`` (measured at ``since``) on to ``now`` with the commands sent.

        Each command holds from its tick to the next one. Braking for a goal on a pose
        that is 0.2 s old at 0.4 m/s would stop 8 cm past it.
        """
        held, t = None, since
        for ti, vx, vy, wz in self._sent:
            if ti <= since:
                held = (vx, vy, wz)  # the command the base was executing at ``since``
                continue
            if ti >= now:
                break
            if held is not None:
                pose = integrate_twist(pose, *held, ti - t)
            held, t = (vx, vy, wz), ti
        if held is not None and now > t:
            pose = integrate_twist(pose, *held, now - t)
        return pose

    def _command(self, out: tuple[float, float, float], reason: str,
                 target: Pose2D | None, guard: object | None = None) -> Command:
        self._sent.append((self._last_step, *out))
        return Command(out[0], out[1], out[2], reason, target, list(self._path), guard)


class _ClampedWaypoint:
    """A waypoint with each value clamped to its range of the answer contract."""

    __slots__ = ('dx', 'dy', 'dtheta', 'confidence')

    def __init__(self, w) -> None:
        self.dx = _clamp(float(w.dx), *_DX_RANGE)
        self.dy = _clamp(float(w.dy), *_DY_RANGE)
        self.dtheta = _clamp(float(w.dtheta), *_DTHETA_RANGE)
        self.confidence = _clamp(float(w.confidence), 0.0, 1.0)


def _sent_length(cfg: PlannerConfig) -> int:
    """Commands to remember: enough to predict from the oldest odometry still steered by."""
    return int(cfg.rate_hz * (cfg.odom_timeout + 0.5)) + 2


def _is_stop(waypoints: Sequence) -> bool:
    """Return True for the stop answer: a single waypoint that does not move."""
    return len(waypoints) == 1 and waypoints[0].dx == 0.0 and waypoints[0].dy == 0.0 \
        and waypoints[0].dtheta == 0.0


def _clamp(value: float, low: float, high: float) -> float:
    return min(high, max(low, value))
