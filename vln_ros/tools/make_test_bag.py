"""Render a short camera + odometry bag with the simulator core (no ROS needed).

    python -m vln_ros.tools.make_test_bag                     # -> test/data/corridor_short
    python -m vln_ros.tools.make_test_bag -o /tmp/bag --seconds 10 --fps 15

The robot of scenario 'corridor_door' walks down the corridor towards the red door, weaving
gently so the view changes; the bag holds `/camera/image_raw/compressed`
(sensor_msgs/CompressedImage, JPEG, best effort like a camera driver) and `/odom`
(nav_msgs/Odometry, odom -> base_link). Stamps start at a fixed time, so the output is the same
on every run. The committed copy (test/data/corridor_short) is what the replay tests use.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
import shutil
import sys

import cv2
import numpy as np

from vln_ros.sim.render import CameraRenderer
from vln_ros.sim.scenario import Scenario
from vln_ros.sim.world import World
from vln_ros.tools.bag_store import BagWriter, make_qos, make_typestore

DEFAULT_OUTPUT = Path(__file__).resolve().parents[2] / 'test' / 'data' / 'corridor_short'
START_NS = 1_767_225_600 * 1_000_000_000  # 2026-01-01 00:00:00 UTC: fixed, reproducible
CAMERA_TOPIC = '/camera/image_raw/compressed'
ODOM_TOPIC = '/odom'


def motion(t: float) -> tuple[float, float, float]:
    """Body-frame command at time t: forward at 0.3 m/s, weaving with a 4 s period."""
    return 0.3, 0.0, 0.25 * math.sin(2.0 * math.pi * t / 4.0)


def _stamp(ts, t_ns: int):
    sec, nanosec = divmod(t_ns, 1_000_000_000)
    return ts.types['builtin_interfaces/msg/Time'](sec=sec, nanosec=nanosec)


def _header(ts, t_ns: int, frame_id: str):
    return ts.types['std_msgs/msg/Header'](stamp=_stamp(ts, t_ns), frame_id=frame_id)


def odometry_message(ts, t_ns: int, pose, twist: tuple[float, float, float]):
    """Build a rosbags nav_msgs/Odometry of a planar pose and body twist."""
    t = ts.types
    vec = t['geometry_msgs/msg/Vector3']
    half = 0.5 * pose.yaw
    return t['nav_msgs/msg/Odometry'](
        header=_header(ts, t_ns, 'odom'), child_frame_id='base_link',
        pose=t['geometry_msgs/msg/PoseWithCovariance'](
            pose=t['geometry_msgs/msg/Pose'](
                position=t['geometry_msgs/msg/Point'](x=pose.x, y=pose.y, z=0.0),
                orientation=t['geometry_msgs/msg/Quaternion'](
                    x=0.0, y=0.0, z=math.sin(half), w=math.cos(half))),
            covariance=np.zeros(36)),
        twist=t['geometry_msgs/msg/TwistWithCovariance'](
            twist=t['geometry_msgs/msg/Twist'](linear=vec(x=twist[0], y=twist[1], z=0.0),
                                               angular=vec(x=0.0, y=0.0, z=twist[2])),
            covariance=np.zeros(36)))


def image_message(ts, t_ns: int, bgr: np.ndarray, quality: int):
    """Build a rosbags sensor_msgs/CompressedImage holding a JPEG of bgr."""
    ok, jpeg = cv2.imencode('.jpg', bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError('JPEG encoding failed')
    return ts.types['sensor_msgs/msg/CompressedImage'](
        header=_header(ts, t_ns, 'camera'), format='bgr8; jpeg compressed bgr8',
        data=np.asarray(jpeg, dtype=np.uint8).reshape(-1))


def make_bag(output: Path, seconds: float = 3.0, fps: float = 10.0, odom_rate: float = 50.0,
             width: int = 320, height: int = 240, quality: int = 80,
             scenario: str = 'corridor_door') -> dict[str, int]:
    """Write the bag; return the message count per topic."""
    if fps <= 0 or odom_rate <= 0 or seconds <= 0:
        raise ValueError('seconds, fps and odom_rate must be positive')
    ts = make_typestore()
    world = World(Scenario.load(scenario), seed=0)
    camera = CameraRenderer(width, height)
    dt = 1.0 / odom_rate
    steps = int(round(seconds * odom_rate))
    frame_every = max(1, int(round(odom_rate / fps)))
    with BagWriter(output, 'mcap', ts) as bag:
        # A camera driver publishes best effort; odometry is reliable.
        bag.add_topic(CAMERA_TOPIC, 'sensor_msgs/msg/CompressedImage', make_qos(reliable=False))
        bag.add_topic(ODOM_TOPIC, 'nav_msgs/msg/Odometry', make_qos(reliable=True))
        for step in range(steps + 1):
            t_ns = START_NS + int(round(step * dt * 1e9))
            if step % frame_every == 0:
                msg = image_message(ts, t_ns, camera.render(world), quality)
                bag.write(CAMERA_TOPIC, t_ns, ts.serialize_cdr(msg, msg.__msgtype__))
            msg = odometry_message(ts, t_ns, world.odometry(), world.last_command)
            bag.write(ODOM_TOPIC, t_ns, ts.serialize_cdr(msg, msg.__msgtype__))
            if step < steps:
                world.step(*motion(step * dt), dt)
        return dict(bag.counts)


def main(argv: list[str] | None = None) -> int:
    """Command line: write the test bag (replacing it with --force)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('-o', '--output', type=Path, default=DEFAULT_OUTPUT,
                        help='bag folder to write (default: test/data/corridor_short)')
    parser.add_argument('--seconds', type=float, default=3.0, help='length (s)')
    parser.add_argument('--fps', type=float, default=10.0, help='camera frame rate')
    parser.add_argument('--width', type=int, default=320, help='image width (px)')
    parser.add_argument('--height', type=int, default=240, help='image height (px)')
    parser.add_argument('--quality', type=int, default=80, help='JPEG quality')
    parser.add_argument('-f', '--force', action='store_true', help='replace an existing bag')
    args = parser.parse_args(argv)
    if args.output.exists():
        if not args.force:
            print(f'{args.output} exists; pass --force to replace it', file=sys.stderr)
            return 1
        shutil.rmtree(args.output)
    counts = make_bag(args.output, args.seconds, args.fps, width=args.width,
                      height=args.height, quality=args.quality)
    size = sum(p.stat().st_size for p in args.output.iterdir())
    print(f'wrote {args.output}: {counts}, {size / 1024:.0f} KiB')
    return 0


if __name__ == '__main__':
    sys.exit(main())
