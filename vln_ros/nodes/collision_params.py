"""The obstacle guard's parameters (collision.*), shared by planner_node and collision_guard.

Zones, timing and heights are live: a change rebuilds the guard at the next tick, validated
as start-up validates it. ``collision.sources`` is read_only, because it decides which
topics the node subscribes to.
"""
from __future__ import annotations

from typing import Any

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.parameter import Parameter

from vln_ros.core.collision.footprint import parse_footprint
from vln_ros.core.collision.guard import CollisionGuard, GuardConfig
from vln_ros.core.collision.guarded_output import GuardedOutput
from vln_ros.core.collision.obstacle_memory import SOURCES, ObstacleMemory
from vln_ros.core.collision.sensor_points import SensorPose
from vln_ros.nodes.parameters import ParamSpec

SOURCES_PARAM = 'collision.sources'

SPECS = (
    # A quadruped-sized box: a Unitree Go2 is about 0.70 x 0.31 m, a Spot 1.1 x 0.5 m; this
    # errs on the wide side of a Go2. Real robots set their own.
    ParamSpec('collision.footprint', '[[0.35, 0.2], [0.35, -0.2], [-0.35, -0.2], [-0.35, 0.2]]',
              'Robot footprint polygon in the base frame, nav2 form "[[x, y], ...]" (m)'),
    ParamSpec('collision.stop_margin', 0.05, 'Stop zone: this far (m) around the footprint, '
              'a point the command approaches stops the robot at once', 0.0, 1.0),
    ParamSpec('collision.slowdown_margin', 0.25, 'Slowdown zone (m around the footprint, at '
              'least stop_margin)', 0.0, 3.0),
    ParamSpec('collision.slowdown_ratio', 0.5, 'Speed factor inside the slowdown zone', 0.0,
              1.0),
    ParamSpec('collision.time_before_collision', 1.5, 'Approach check horizon (s): the '
              'command is simulated this far ahead and slowed so that the deceleration '
              'limit stops short of the first point it would reach', 0.1, 10.0),
    ParamSpec('collision.simulation_time_step', 0.05, 'Time step of the approach check (s)',
              0.005, 1.0),
    ParamSpec('collision.min_points', 2, 'Points needed in a zone before it acts (noise '
              'robustness)', 1, 1000),
    ParamSpec('collision.source_timeout', 0.5, 'A configured source older than this (s) '
              'means zero velocity: no driving blind', 0.05, 10.0),
    ParamSpec('collision.min_height', 0.05, 'Points below this height above the ground (m) '
              'are the floor, not obstacles', -1.0, 5.0),
    ParamSpec('collision.max_height', 1.0, 'Points above this height above the ground (m) '
              'are not obstacles (keep it above the robot)', 0.0, 10.0),
    ParamSpec('collision.depth_stride', 4, 'Use every n-th depth pixel in both directions',
              1, 64),
    ParamSpec('collision.max_range', 8.0, 'Depth returns beyond this (m) are ignored', 0.1,
              100.0),
    ParamSpec('collision.scan.x', 0.0, 'Laser scanner position ahead of the base origin (m), '
              'used when TF does not know the scan frame', -5.0, 5.0),
    ParamSpec('collision.scan.y', 0.0, 'Laser scanner position left of the base origin (m)',
              -5.0, 5.0),
    ParamSpec('collision.scan.height', 0.3, 'Laser scanner height above the ground (m)', 0.0,
              5.0),
    ParamSpec('collision.scan.yaw', 0.0, 'Laser scanner yaw in the base frame (rad)', -3.1416,
              3.1416),
)


def declare_sources(node) -> list[str]:
    """Declare collision.sources (read_only string array; unset: no source) and return it."""
    desc = ParameterDescriptor(
        description=f'Obstacle sources of the guard, any of {list(SOURCES)}: topics scan '
        '(LaserScan), points (PointCloud2), camera/depth/image_raw (Image 32FC1 m or 16UC1 mm, '
        'with camera/camera_info). Unset or empty: no obstacle guard (warned at start-up)',
        read_only=True)
    value = node.declare_parameter(SOURCES_PARAM, Parameter.Type.STRING_ARRAY, desc).value
    return [s for s in (value or []) if s]


def guard_output(sources: list[str], values: dict[str, Any]) -> GuardedOutput | None:
    """Build (and so validate) the guard for ``sources``; None when there is no source."""
    config = GuardConfig(
        footprint=parse_footprint(values['collision.footprint']),
        stop_margin=values['collision.stop_margin'],
        slowdown_margin=values['collision.slowdown_margin'],
        slowdown_ratio=values['collision.slowdown_ratio'],
        time_before_collision=values['collision.time_before_collision'],
        simulation_time_step=values['collision.simulation_time_step'],
        min_points=values['collision.min_points'])
    if values['collision.max_height'] <= values['collision.min_height']:
        raise ValueError('collision.max_height must be above collision.min_height')
    memory = ObstacleMemory(sources, values['collision.source_timeout'])
    return GuardedOutput(CollisionGuard(config), memory) if sources else None


def scan_pose(values: dict[str, Any]) -> SensorPose:
    """The laser scanner's pose from the collision.scan.* parameters."""
    return SensorPose.planar(values['collision.scan.x'], values['collision.scan.y'],
                             values['collision.scan.height'], values['collision.scan.yaw'])
