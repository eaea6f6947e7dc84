"""Simulator node: a 2D world with a first-person camera, odometry and an oracle model server.

In the spirit of nav2's loopback simulator: cmd_vel in; camera/image_raw (30 fps) with
camera/camera_info (the true intrinsics), scan (a 270-degree laser scanner at the base
origin, 10 Hz, range_sensor.py), camera/depth/image_raw (32FC1, aligned with the colour
camera, at depth_rate; off by default), odom and sim/ground_truth out. With `oracle_port`
>= 0 it also serves the OpenAI-compatible model API in-process, answering from the world's
ground truth at the pose where the keyframe was captured (the frame number is drawn into each
image; see frame_tag.py), with a latency drawn from `oracle_latency` (default 5-8 s, the
latency the project brief gives for the 32B model on four RTX 3090, not measured here) and the
errors of `oracle_profile` (oracle_profiles.py).

The world is as real as the scenario says (`world_realism`, default true): odometry drifts, the
camera sits where `robot.camera` puts it, and its stamps carry a clock offset and jitter and
arrive after a delivery delay. `world_realism: false` gives the ideal world of the scenario:
exact odometry, the camera at the base centre, one clock.
"""
from __future__ import annotations

import collections
import contextlib
import threading

import cv2
from geometry_msgs.msg import Twist, TwistStamped
from nav_msgs.msg import Odometry
import numpy as np
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, LaserScan
from std_msgs.msg import UInt32

from vln_ros.core.geometry import quaternion_from_yaw
from vln_ros.nodes.ros_common import SENSOR_QOS, declare, run_node, sec_to_stamp
from vln_ros.sim.frame_tag import read_frame_tag, stamp_frame
from vln_ros.sim.oracle import (
    Oracle,
    make_oracle_policy,
    request_blocked,
    request_history,
    request_instruction,
)
from vln_ros.sim.oracle_profiles import PROFILE_NAMES, profile_named
from vln_ros.sim.range_sensor import ScanConfig, simulate_scan
from vln_ros.sim.render import CameraRenderer
from vln_ros.sim.scenario import Scenario
from vln_ros.sim.vlm_server import ServerConfig, serve_in_thread
from vln_ros.sim.world import World


class SimNode(Node):
    """Steps the world at odom_rate from cmd_vel and renders the camera at camera_rate."""

    def __init__(self) -> None:
        super().__init__('sim_node')
        scenario = declare(self, 'scenario', 'corridor_door',
                           'Scenario YAML path or packaged name (vln_ros/sim/scenarios)')
        seed = declare(self, 'seed', 0, 'Seed of motion noise and oracle faults', 0, 2**31 - 1)
        camera_rate = declare(self, 'camera_rate', 30.0, 'Camera frame rate (Hz)', 1.0, 60.0)
        odom_rate = declare(self, 'odom_rate', 50.0, 'Physics and odometry rate (Hz)', 5.0,
                            200.0)
        width = declare(self, 'width', 640, 'Camera image width (px)', 64, 1920)
        height = declare(self, 'height', 480, 'Camera image height (px)', 48, 1080)
        self._cmd_timeout = declare(self, 'cmd_timeout', 0.5,
                                    'Stop the base when cmd_vel is older than this (s)',
                                    0.05, 10.0)
        stamped = declare(self, 'use_stamped_cmd_vel', False, 'cmd_vel is TwistStamped')
        self._publish_clock = declare(self, 'publish_clock', False,
                                      'Publish /clock from simulated time (use_sim_time)')
        self._odom_frame = declare(self, 'odom_frame', 'odom', 'Odometry frame')
        self._base_frame = declare(self, 'base_frame', 'base_link', 'Robot base frame')
        oracle_port = declare(self, 'oracle_port', -1,
                              'Serve the oracle model API on 127.0.0.1:PORT (0: any free '
                              'port, -1: off)', -1, 65535)
        latency = declare(self, 'oracle_latency', [5.0, 8.0],
                          'Oracle answer latency range [min, max] (s)')
        error_rate = declare(self, 'oracle_error_rate', 0.0, 'Fraction of 503/500 answers',
                             0.0, 1.0)
        timeout_rate = declare(self, 'oracle_timeout_rate', 0.0, 'Fraction of hung requests',
                               0.0, 1.0)
        garbage_rate = declare(self, 'oracle_garbage_rate', 0.0, 'Fraction of garbage answers',
                               0.0, 1.0)
        profile_name = declare(self, 'oracle_profile', '',
                               f'How the oracle errs: {", ".join(PROFILE_NAMES)} (empty: the '
                               "scenario's oracle_profile)")
        scan_rate = declare(self, 'scan_rate', 10.0, 'Laser scan rate on scan (Hz; 0: off)',
                            0.0, 50.0)
        depth_rate = declare(self, 'depth_rate', 0.0, 'Depth image rate on '
                             'camera/depth/image_raw (Hz; 0: off)', 0.0, 30.0)
        realism = declare(self, 'world_realism', True,
                          'Odometry drift, camera mount and camera clock as the scenario '
                          'gives them (false: exact odometry, centred camera, one clock)')

        loaded = Scenario.load(scenario)
        self._world = World(loaded if realism else loaded.ideal_world(), seed=seed)
        self._camera = self._world.scenario.robot.camera
        profile = profile_named(profile_name or loaded.oracle_profile)
        self._renderer = CameraRenderer(width, height, self._camera.hfov)
        r = self._renderer  # D, K, R, P of camera_info: fixed, built once, not per frame
        self._intrinsics = ([0.0] * 5, [r.focal, 0.0, r.cx, 0.0, r.focal, r.cy, 0.0, 0.0, 1.0],
                            [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                            [r.focal, 0.0, r.cx, 0.0, 0.0, r.focal, r.cy, 0.0, 0.0, 0.0, 1.0,
                             0.0])
        self._camera_rng = np.random.default_rng(seed + 7919)  # jitter and delay draws
        self._pending: collections.deque = collections.deque()  # (publish at, image, info)
        self._lock = threading.Lock()
        self._cmd = (0.0, 0.0, 0.0)
        self._cmd_time = -1e9
        self._frame = 0
        # Frame number -> true pose at render time, for the oracle (about 30 s at 30 fps).
        self._frame_poses: collections.OrderedDict[int, object] = collections.OrderedDict()
        self._dt = 1.0 / odom_rate

        self._image_pub = self.create_publisher(Image, 'camera/image_raw', SENSOR_QOS)
        self._info_pub = self.create_publisher(CameraInfo, 'camera/camera_info', SENSOR_QOS)
        self._odom_pub = self.create_publisher(Odometry, 'odom', 10)
        self._truth_pub = self.create_publisher(Odometry, 'sim/ground_truth', 10)
        self._collision_pub = self.create_publisher(UInt32, 'sim/collisions', 10)
        self._collisions = 0
        self._state_stamp = None  # stamp of the current world state (its odometry)
        self._clock_pub = self.create_publisher(Clock, '/clock', 10) \
            if self._publish_clock else None
        self.create_subscription(TwistStamped if stamped else Twist, 'cmd_vel', self._on_cmd,
                                 10)
        self.create_timer(self._dt, self._on_physics)
        self.create_timer(1.0 / camera_rate, self._on_camera)
        self._scan = ScanConfig(rate=scan_rate) if scan_rate > 0.0 else None
        self._scan_rng = np.random.default_rng(seed + 104729)  # range noise
        if self._scan is not None:
            self._scan_pub = self.create_publisher(LaserScan, 'scan', SENSOR_QOS)
            self.create_timer(1.0 / scan_rate, self._on_scan)
        if depth_rate > 0.0:
            self._depth_pub = self.create_publisher(Image, 'camera/depth/image_raw', SENSOR_QOS)
            self.create_timer(1.0 / depth_rate, self._on_depth)

        self._oracle = Oracle(self._world_and_pose, hfov_deg=self._renderer.hfov_deg,
                              profile=profile, seed=seed)
        self._server_stack = contextlib.ExitStack()
        self.oracle_url = ''
        if oracle_port >= 0:
            faults = profile.server_faults()
            # An explicit oracle_error_rate / oracle_garbage_rate adds to the profile's.
            faults['error_rate'] = min(1.0, faults['error_rate'] + error_rate)
            config = ServerConfig(latency_min=float(latency[0]), latency_max=float(latency[1]),
                                  timeout_rate=timeout_rate, garbage_rate=garbage_rate,
                                  seed=seed, **faults)
            server = self._server_stack.enter_context(serve_in_thread(
                config, self._answer, port=oracle_port))
            self.oracle_url = server.base_url
        cam = self._camera
        self.get_logger().info(
            f'sim ready: scenario {self._world.scenario.name}, camera {width}x{height} @ '
            f'{camera_rate:.0f} Hz at x={cam.x:.2f} y={cam.y:.2f} m, {cam.height:.2f} m high '
            f'(clock offset {cam.clock_offset * 1e3:.0f} ms, jitter {cam.stamp_jitter * 1e3:.0f} '
            f'ms, delay {cam.delay[0] * 1e3:.0f}-{cam.delay[1] * 1e3:.0f} ms), odom @ '
            f'{odom_rate:.0f} Hz (scale error {self._world.odom_scale_error * 100:+.1f} %, yaw '
            f'drift {self._world.odom_yaw_drift:+.4f} rad/s), oracle profile {profile.name}'
            + (f', oracle model server on {self.oracle_url}' if self.oracle_url else ''))
        if self.oracle_url:
            # One parseable line for scripts and tests.
            print(f'oracle listening on {self.oracle_url}', flush=True)

    def _world_and_pose(self):
        with self._lock:
            return self._world, self._world.ground_truth()

    def _answer(self, request) -> dict:
        """Oracle policy: answer from the pose at which the keyframe was rendered."""
        pose = None
        if request.images:
            img = cv2.imdecode(np.frombuffer(request.images[-1], np.uint8), cv2.IMREAD_COLOR)
            frame = read_frame_tag(img) if img is not None else None
            with self._lock:
                pose = self._frame_poses.get(frame) if frame is not None else None
        if pose is None:
            return make_oracle_policy(self._oracle)(request)
        with self._lock:
            return self._oracle.answer(request_instruction(request), pose, self._world,
                                       request_history(request), request_blocked(request))

    def _on_cmd(self, msg) -> None:
        twist = msg.twist if isinstance(msg, TwistStamped) else msg
        with self._lock:
            self._cmd = (twist.linear.x, twist.linear.y, twist.angular.z)
            self._cmd_time = self._world.time

    def _on_physics(self) -> None:
        with self._lock:
            world = self._world
            # A real base stops when its command stream stops.
            cmd = self._cmd if world.time - self._cmd_time <= self._cmd_timeout \
                else (0.0, 0.0, 0.0)
            world.step(*cmd, self._dt)
            odom, truth, t = world.odometry(), world.ground_truth(), world.time
            applied = world.last_command
            collisions = world.collisions
            stamp = self._stamp(t)
            # A frame rendered from this state is stamped like its odometry: the planner
            # then finds exactly the capture pose in its history.
            self._state_stamp = stamp
        self._odom_pub.publish(self._odometry(odom, applied, stamp))
        self._truth_pub.publish(self._odometry(truth, applied, stamp))
        if self._clock_pub is not None:
            self._clock_pub.publish(Clock(clock=stamp))
        if collisions != self._collisions:
            self._collisions = collisions
            self._collision_pub.publish(UInt32(data=collisions))
        self._publish_due_frames()

    def _stamp(self, sim_time: float):
        # Simulated time when /clock is published (use_sim_time), else the node's clock.
        return sec_to_stamp(sim_time) if self._publish_clock \
            else self.get_clock().now().to_msg()

    def _odometry(self, pose, twist, stamp) -> Odometry:
        msg = Odometry()
        msg.header.stamp = stamp
        msg.header.frame_id, msg.child_frame_id = self._odom_frame, self._base_frame
        msg.pose.pose.position.x, msg.pose.pose.position.y = pose.x, pose.y
        o = msg.pose.pose.orientation
        o.x, o.y, o.z, o.w = quaternion_from_yaw(pose.yaw)
        msg.twist.twist.linear.x, msg.twist.twist.linear.y = twist[0], twist[1]
        msg.twist.twist.angular.z = twist[2]
        return msg

    def _on_camera(self) -> None:
        cam = self._camera
        with self._lock:
            pose, t = self._world.ground_truth(), self._world.time
            stamp = self._state_stamp if self._state_stamp is not None else self._stamp(t)
            self._frame += 1
            frame = self._frame % 65536
            self._frame_poses[frame] = pose
            while len(self._frame_poses) > 1000:
                self._frame_poses.popitem(last=False)
        img = stamp_frame(self._renderer.render(self._world, pose), frame)
        msg = Image(height=img.shape[0], width=img.shape[1], encoding='bgr8',
                    step=img.shape[1] * 3, data=img.tobytes())
        # The capture time, not the time rendering ended, as the camera's clock has it: off by
        # the clock offset and this frame's jitter against the odometry's clock.
        error = cam.clock_offset + (self._camera_rng.normal(0.0, cam.stamp_jitter)
                                    if cam.stamp_jitter > 0.0 else 0.0)
        msg.header.stamp = _shifted(stamp, error)
        msg.header.frame_id = 'camera'
        info = self._camera_info(msg.header)
        delay = self._camera_rng.uniform(*cam.delay) if cam.delay[1] > 0.0 else 0.0
        if delay <= 0.0:
            self._image_pub.publish(msg)
            self._info_pub.publish(info)
            return
        # Delivered late, as a driver's frames are: published from the physics timer.
        self._pending.append((self.get_clock().now().nanoseconds + int(delay * 1e9), msg, info))

    def _on_scan(self) -> None:
        cfg = self._scan
        with self._lock:
            pose = self._world.ground_truth()
            stamp = self._state_stamp if self._state_stamp is not None \
                else self._stamp(self._world.time)
            ranges = simulate_scan(self._world, pose, cfg, self._scan_rng)
        msg = LaserScan(angle_min=cfg.angle_min, angle_max=-cfg.angle_min,
                        angle_increment=cfg.angle_increment, scan_time=1.0 / cfg.rate,
                        range_min=cfg.range_min, range_max=cfg.range_max,
                        ranges=ranges.astype(np.float32).tolist())
        msg.header.stamp = stamp
        msg.header.frame_id = self._base_frame  # the scanner sits at the base origin
        self._scan_pub.publish(msg)

    def _on_depth(self) -> None:
        with self._lock:
            pose = self._world.ground_truth()
            stamp = self._state_stamp if self._state_stamp is not None \
                else self._stamp(self._world.time)
        depth = self._renderer.depth(self._world, pose)
        msg = Image(height=depth.shape[0], width=depth.shape[1], encoding='32FC1',
                    step=depth.shape[1] * 4, data=depth.tobytes())
        msg.header.stamp = stamp
        msg.header.frame_id = 'camera'
        self._depth_pub.publish(msg)
        self._info_pub.publish(self._camera_info(msg.header))

    def _publish_due_frames(self) -> None:
        now = self.get_clock().now().nanoseconds
        while self._pending and self._pending[0][0] <= now:
            _, msg, info = self._pending.popleft()
            self._image_pub.publish(msg)
            self._info_pub.publish(info)

    def _camera_info(self, header) -> CameraInfo:
        """The renderer's true pinhole intrinsics (no distortion), stamped like the image."""
        r, (d, k, rect, p) = self._renderer, self._intrinsics
        return CameraInfo(header=header, height=r.height, width=r.width,
                          distortion_model='plumb_bob', d=d, k=k, r=rect, p=p)

    @property
    def world(self) -> World:
        """The simulated world (for in-process use)."""
        return self._world

    def close(self) -> None:
        """Stop the oracle server."""
        self._server_stack.close()


def _shifted(stamp, seconds: float):
    """A builtin_interfaces Time moved by ``seconds`` (never before zero)."""
    total = max(stamp.sec * 1_000_000_000 + stamp.nanosec + int(round(seconds * 1e9)), 0)
    out = type(stamp)()
    out.sec, out.nanosec = divmod(total, 1_000_000_000)
    return out


def main(args=None) -> None:
    """Run the simulator node."""
    run_node(SimNode, args, on_shutdown=lambda node: node.close())


if __name__ == '__main__':
    main()
