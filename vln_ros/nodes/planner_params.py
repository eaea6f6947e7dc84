"""The planner node's parameters: what each means, its range, and whether it is live.

Live ones take effect at the next control tick after `ros2 param set`; read_only ones shape
the node's structure (the timer, the publisher type, the pose source) and need a restart.
A change is validated by building the same PlannerConfig that start-up builds.
"""
from __future__ import annotations

import math
from typing import Any

from vln_ros.core.planner import PlannerConfig
from vln_ros.core.velocity_limits import Limits
from vln_ros.nodes.parameters import ParamSpec

LIMIT_SPECS = (
    ParamSpec('max_linear_vel', 0.5, 'Forward speed limit (m/s)', 0.01, 3.0),
    ParamSpec('max_lateral_vel', 0.3, 'Lateral speed limit when holonomic (m/s)', 0.01, 3.0),
    ParamSpec('max_angular_vel', 0.8, 'Yaw rate limit (rad/s)', 0.01, 5.0),
    ParamSpec('max_linear_acc', 0.5, 'Forward acceleration limit (m/s^2)', 0.01, 10.0),
    ParamSpec('max_lateral_acc', 0.5, 'Lateral acceleration limit (m/s^2)', 0.01, 10.0),
    ParamSpec('max_angular_acc', 1.5, 'Yaw acceleration limit (rad/s^2)', 0.01, 20.0),
)

CONFIG_SPECS = LIMIT_SPECS + (
    ParamSpec('rate_hz', 50.0, 'Control rate of cmd_vel (Hz)', 10.0, 100.0, read_only=True),
    ParamSpec('result_timeout', 12.0, 'Zero velocity when the newest result is older (s); keep '
              'it above the model latency', 0.1, 120.0),
    ParamSpec('min_confidence', 0.3, 'Zero velocity below this waypoint confidence', 0.0, 1.0),
    ParamSpec('error_streak_limit', 3, 'Zero velocity after this many error results in a row',
              1, 100),
    ParamSpec('holonomic', False, 'Allow lateral velocity (vy)', read_only=True),
    ParamSpec('schedule_speed', True,
              'Slow down so the path lasts until the next expected result'),
    ParamSpec('min_speed', 0.1, 'Lowest scheduled forward speed (m/s)', 0.01, 1.0),
    ParamSpec('expected_latency', 6.5, 'Model latency assumed before the first results (s)',
              0.1, 60.0),
    ParamSpec('lookahead', 0.35, 'Pure pursuit lookahead (m)', 0.05, 3.0),
    ParamSpec('goal_tolerance', 0.05, 'Position tolerance (m)', 0.005, 1.0),
    ParamSpec('yaw_tolerance', 0.05, 'Final heading tolerance (rad)', 0.005, 1.0),
    ParamSpec('use_odometry', True,
              'Use odom for the pose; false: dead-reckon from the commands', read_only=True),
    ParamSpec('predict_pose', True, 'Carry the newest odometry pose on to the control time '
              'with the commands sent since its stamp'),
    ParamSpec('odom_timeout', 1.0, 'Zero velocity when the newest odometry is older than this '
              '(s): never steer by a pose the robot has left', 0.05, 10.0),
    ParamSpec('max_extrapolation', 0.2, 'How far (s) a keyframe stamp may lie outside the '
              'odometry history and still be placed with its nearest pose', 0.0, 2.0),
    ParamSpec('stuck_timeout', 3.0, 'Asked to move this long (s) while odometry shows no '
              'progress: stop and report blocked (0: never)', 0.0, 60.0),
    ParamSpec('sweep_step', 0.9, 'A turn answer after a turn the same way (a search sweep) '
              'turns at least this far (rad; 0: as the answer says); keep it below the '
              "camera's horizontal field of view", 0.0, math.pi),
    ParamSpec('history_length', 30.0, 'Odometry kept for placing late results (s); keep it '
              'above result_timeout', 1.0, 600.0, read_only=True),
)

NODE_SPECS = (
    ParamSpec('use_stamped_cmd_vel', False,
              'Publish geometry_msgs/TwistStamped instead of Twist', read_only=True),
    ParamSpec('odom_frame', 'odom', 'Fixed frame of vln/path and vln/markers; odometry in '
              'another frame_id is warned about once'),
    ParamSpec('base_frame', 'base_link', 'Robot base frame (odometry child_frame_id, '
              'TwistStamped frame_id)'),
    ParamSpec('publish_idle_zero', False, 'Keep publishing zero cmd_vel while no task is '
              'active (false: a short burst of zeros, then silence, so teleop can drive)'),
    ParamSpec('estop_path', '', 'File that keeps the e-stop across restarts; empty: '
              '$ROS_HOME/vln_ros/<namespace>/estop.json', read_only=True),
    ParamSpec('input_warn_after', 5.0, 'Warn (throttled) when no odometry arrived for this '
              'long (s)', 0.5, 600.0),
)

SPECS = CONFIG_SPECS + NODE_SPECS


def planner_config(values: dict[str, Any]) -> PlannerConfig:
    """Build (and so validate) the core planner's config; raises ValueError with a reason."""
    limits = Limits(**{s.name: values[s.name] for s in LIMIT_SPECS})
    fields = {s.name: values[s.name] for s in CONFIG_SPECS if s not in LIMIT_SPECS}
    config = PlannerConfig(limits=limits, **fields)
    if config.history_length < config.result_timeout:
        raise ValueError(f'history_length ({config.history_length} s) must be at least '
                         f'result_timeout ({config.result_timeout} s): a result must find '
                         'the pose of its keyframe')
    return config
