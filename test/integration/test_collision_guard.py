"""The obstacle guard over real topics: planner_node and collision_guard with scan, depth and
point-cloud sources, stale sources, and stuck detection on a base that does not move."""
import math
import time

from geometry_msgs.msg import Twist, Vector3
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image, LaserScan, PointCloud2, PointField
from std_msgs.msg import String

from test.integration.test_planner_node import _result, _setup
from vln_ros.nodes.ros_common import LATCHED_QOS, SENSOR_QOS, sec_to_stamp

FRONT = 0.35  # the default footprint's front face, ahead of the base origin (m)


def scan_msg(wall_x: float | None) -> LaserScan:
    """A 270-degree scan at the base origin seeing a wall across the way at ``wall_x`` m."""
    angles = np.linspace(-0.75 * math.pi, 0.75 * math.pi, 271)
    ranges = np.full(len(angles), np.inf)
    if wall_x is not None:
        ahead = np.abs(angles) < math.radians(75)
        ranges[ahead] = wall_x / np.cos(angles[ahead])
    msg = LaserScan(angle_min=float(angles[0]), angle_max=float(angles[-1]),
                    angle_increment=float(angles[1] - angles[0]), range_min=0.05,
                    range_max=8.0, ranges=ranges.astype(np.float32).tolist())
    msg.header.stamp = sec_to_stamp(time.time())
    msg.header.frame_id = 'base_link'
    return msg


class Obstacles:
    """Publishes one source at 10 Hz while the test robot runs: a wall ahead, in odom.

    The wall stays where it is while the robot moves, so each message puts it at
    ``wall_x - robot.x`` ahead of the base.
    """

    def __init__(self, ros, robot, kind: str, wall_x: float | None, encoding='32FC1'):
        self.ros, self.robot, self.kind, self.wall_x = ros, robot, kind, wall_x
        self.encoding = encoding
        self.on = True
        self.last_sent = None
        node = ros.node
        topic = {'scan': 'scan', 'points': 'points', 'depth': 'camera/depth/image_raw'}[kind]
        msg_type = {'scan': LaserScan, 'points': PointCloud2, 'depth': Image}[kind]
        self.pub = node.create_publisher(msg_type, topic, SENSOR_QOS)
        self.info_pub = node.create_publisher(CameraInfo, 'camera/camera_info', SENSOR_QOS)
        node.create_timer(0.1, self._tick)

    def _ahead(self):
        return None if self.wall_x is None else self.wall_x - self.robot.x

    def _tick(self):
        if not self.on:
            return
        ahead = self._ahead()
        if self.kind == 'scan':
            msg = scan_msg(ahead)
        elif self.kind == 'points':
            msg = cloud_msg(ahead)
        else:
            info, msg = depth_msgs(ahead, self.encoding)
            self.info_pub.publish(info)
        self.pub.publish(msg)
        self.last_sent = time.monotonic()


def cloud_msg(wall_x: float | None) -> PointCloud2:
    """A cloud in base_link: the wall from 0.1 to 0.8 m high, plus floor points to ignore."""
    pts = []
    if wall_x is not None:
        pts += [(wall_x, y, z) for y in np.arange(-1.0, 1.0, 0.05) for z in (0.1, 0.4, 0.8)]
    pts += [(x, y, 0.0) for x in np.arange(0.4, 1.5, 0.1) for y in (-0.1, 0.0, 0.1)]  # floor
    data = np.asarray(pts, dtype='<f4').reshape(-1, 3)
    msg = PointCloud2(height=1, width=len(data), is_bigendian=False, point_step=12,
                      row_step=12 * len(data), is_dense=True, data=data.tobytes())
    msg.fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                  for i, n in enumerate('xyz')]
    msg.header.stamp = sec_to_stamp(time.time())
    msg.header.frame_id = 'base_link'
    return msg


def depth_msgs(wall_x: float | None, encoding: str):
    """camera_info and a depth image of a level camera at the base origin, 0.5 m up."""
    w, h, f = 160, 120, 80.0
    info = CameraInfo(width=w, height=h, k=[f, 0.0, w / 2, 0.0, f, h / 2, 0.0, 0.0, 1.0])
    depth = np.full((h, w), np.nan if encoding == '32FC1' else 0.0)
    if wall_x is not None:
        depth[:, :] = wall_x  # a wall square to the optical axis: one depth everywhere
    if encoding == '32FC1':
        data, step = depth.astype('<f4').tobytes(), 4 * w
    else:
        data, step = (np.nan_to_num(depth) * 1000).astype('<u2').tobytes(), 2 * w
    img = Image(height=h, width=w, encoding=encoding, step=step, data=data)
    stamp = sec_to_stamp(time.time())
    img.header.stamp = info.header.stamp = stamp
    img.header.frame_id = info.header.frame_id = 'camera_optical'
    return info, img


def _guarded(procs, ros, source: str, wall_x, encoding='32FC1', **params):
    robot, _, _, result_pub = _setup(procs, ros, **{'collision.sources': [source], **params})
    obstacles = Obstacles(ros, robot, source, wall_x, encoding)
    robot.run(1.0)
    result_pub.publish(_result(1.0, 0.0, 0.0, time.time()))
    return robot, obstacles, result_pub


@pytest.mark.parametrize('source', ['scan', 'points', 'depth'])
def test_a_wall_just_ahead_is_never_reached_and_a_far_one_leaves_the_way_free(procs, ros,
                                                                             source):
    # A wall 0.3 m ahead of the footprint and a result 1 m forward, through it.
    wall = FRONT + 0.3
    robot, _, _ = _guarded(procs, ros, source, wall)
    gaps = []
    robot.run(8.0, until=lambda: gaps.append(wall - robot.x - FRONT) and False)
    assert min(gaps) > 0.0, 'the footprint reached the wall'
    assert robot.cmds[-1][1] == 0.0 and robot.x < 0.3


def test_a_far_wall_gives_full_motion(procs, ros):
    robot, _, _ = _guarded(procs, ros, 'scan', 3.0)
    robot.run(8.0, until=lambda: robot.x > 0.8)
    assert robot.x > 0.8


def test_a_depth_image_in_millimetres_works_too(procs, ros):
    wall = FRONT + 0.3
    robot, _, _ = _guarded(procs, ros, 'depth', wall, encoding='16UC1')
    gaps = []
    robot.run(8.0, until=lambda: gaps.append(wall - robot.x - FRONT) and False)
    assert min(gaps) > 0.0 and robot.cmds[-1][1] == 0.0


def test_a_scan_that_stops_arriving_stops_the_robot_within_the_source_timeout(procs, ros):
    robot, obstacles, _ = _guarded(procs, ros, 'scan', None, **{'collision.source_timeout':
                                                                0.5, 'result_timeout': 15.0})
    robot.run(6.0, until=lambda: robot.cmds and robot.cmds[-1][1] > 0.1)
    assert robot.cmds[-1][1] > 0.1, 'never moved with a clear scan'
    obstacles.on = False
    last = obstacles.last_sent
    robot.run(2.0)
    moving_after = [t for t, v, w in robot.cmds if t > last and (v or w)]
    # source_timeout plus a control period, and slack for a loaded 2-core machine.
    assert moving_after and max(moving_after) - last <= 0.5 + 0.02 + 0.25
    assert robot.cmds[-1][1:] == (0.0, 0.0)


def test_stuck_detection_fires_on_a_base_that_does_not_move(procs, ros):
    robot, _, _, result_pub = _setup(procs, ros, stuck_timeout=2.0, result_timeout=15.0)
    states = ros.collect(String, 'vln/command_state', LATCHED_QOS)
    result_pub.publish(_result(1.0, 0.0, 0.0, time.time()))
    robot.run(1.5, until=lambda: robot.cmds and robot.cmds[-1][1] > 0.05)
    assert robot.cmds[-1][1] > 0.05
    robot.freeze = True  # the legs slip: odometry stays where it is
    robot.run(4.0)
    assert robot.cmds[-1][1:] == (0.0, 0.0)
    planner = next(p for p in procs.procs if p.name == 'planner_node')
    planner.wait_for_output('-> blocked', 5)
    # The reason goes out for the task node (TaskState.command) and perception (the prompt).
    ros.wait_until(lambda: any(m.data == 'vln_1_000001|blocked' for m in states), 5)


def test_collision_guard_node_guards_a_teleop_stream(procs, ros):
    guard = procs.start_node('collision_guard', module='vln_ros.nodes.collision_guard_node',
                             params={'collision.sources': ['scan']})
    guard.wait_for_output('collision guard:', 60)
    out = ros.collect(Twist, 'cmd_vel_out')
    teleop = ros.node.create_publisher(Twist, 'cmd_vel_in', 10)
    scans = ros.node.create_publisher(LaserScan, 'scan', SENSOR_QOS)
    ros.wait_until(lambda: teleop.get_subscription_count() > 0, 30)

    def drive(seconds, wall_x):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            scans.publish(scan_msg(wall_x))
            teleop.publish(Twist(linear=Vector3(x=0.4)))
            ros.spin_for(0.05)

    drive(1.5, 5.0)  # far wall: the stream passes unchanged
    assert out and out[-1].linear.x == pytest.approx(0.4)
    n = len(out)
    drive(1.0, FRONT + 0.03)  # inside the stop zone: zero
    assert out[-1].linear.x == 0.0 and any(m.linear.x == 0.0 for m in out[n:])
    n = len(out)
    end = time.monotonic() + 1.0  # the scan stops: zero within the source timeout
    while time.monotonic() < end:
        teleop.publish(Twist(linear=Vector3(x=0.4)))
        ros.spin_for(0.05)
    assert out[-1].linear.x == 0.0
