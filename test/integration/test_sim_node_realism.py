"""sim_node as a process: CameraInfo with each image, and the camera clock against odometry.

corridor_door's camera runs 30 ms ahead of odometry (clock_offset 0.03 s) with 5 ms of stamp
jitter and a 20-60 ms delivery delay; `world_realism: false` gives one clock. A frame is
stamped like the odometry of the state it was rendered from, plus the camera clock's error.
"""
import bisect
import math
import statistics

from nav_msgs.msg import Odometry
import pytest
from sensor_msgs.msg import CameraInfo, Image

from vln_ros.nodes.ros_common import SENSOR_QOS
from vln_ros.sim.scenario import Scenario

WIDTH, HEIGHT = 320, 240
CAMERA = Scenario.load('corridor_door').robot.camera


def _ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def _run_sim(procs, ros, frames=25, **params):
    """Start sim_node (no oracle); return the images, infos and odometry of ~frames frames."""
    images = ros.collect(Image, 'camera/image_raw', SENSOR_QOS)
    infos = ros.collect(CameraInfo, 'camera/camera_info', SENSOR_QOS)
    odom = ros.collect(Odometry, 'odom', SENSOR_QOS)
    sim = procs.start_node('sim_node', module='vln_ros.sim.sim_node', params={
        'scenario': 'corridor_door', 'oracle_port': -1, 'width': WIDTH, 'height': HEIGHT,
        'camera_rate': 10.0, **params})
    sim.wait_for_output('sim ready', 60)
    ros.wait_until(lambda: len(images) >= frames and odom, 60)
    assert len(images) >= frames, f'{len(images)} images within 60 s'
    taken = list(images)
    ros.spin_for(0.5)  # the infos (and odometry) published with the last frames
    return taken, list(infos), list(odom)


def _check_camera_info(images, infos):
    f = 0.5 * WIDTH / math.tan(math.radians(CAMERA.hfov) / 2.0)
    assert infos, 'no camera_info'
    for info in infos:
        assert (info.width, info.height) == (WIDTH, HEIGHT)
        assert list(info.k) == pytest.approx([f, 0.0, WIDTH / 2, 0.0, f, HEIGHT / 2,
                                              0.0, 0.0, 1.0], abs=1e-9)
        assert info.distortion_model == 'plumb_bob' and list(info.d) == [0.0] * 5
        assert (info.p[0], info.p[2], info.p[5], info.p[6]) == \
            pytest.approx((f, WIDTH / 2, f, HEIGHT / 2))
    by_stamp = {_ns(i.header.stamp): i for i in infos}
    for image in images:
        assert (image.width, image.height, image.encoding) == (WIDTH, HEIGHT, 'bgr8')
        info = by_stamp.get(_ns(image.header.stamp))
        assert info is not None, f'no camera_info stamped {image.header.stamp}'
        assert info.header.frame_id == image.header.frame_id == 'camera'


def test_camera_info_and_clock_offset_in_the_realistic_world(procs, ros):
    # Odometry at 5 Hz: the state a frame was rendered from is then the latest odometry
    # before its stamp (at 50 Hz a 30 ms offset is ambiguous: the next state is 20 ms later).
    images, infos, odom = _run_sim(procs, ros, odom_rate=5.0)
    _check_camera_info(images, infos)
    odom_ns = sorted(_ns(o.header.stamp) for o in odom)
    residuals = []
    for image in images:
        stamp = _ns(image.header.stamp)
        k = bisect.bisect_right(odom_ns, stamp)
        if k == 0:
            continue  # rendered before the first odometry this test received
        residuals.append((stamp - odom_ns[k - 1]) * 1e-9 - CAMERA.clock_offset)
    assert len(residuals) >= 0.8 * len(images), (len(residuals), len(images))
    # What is left is the per-frame jitter (sd 5 ms) around zero.
    assert abs(statistics.median(residuals)) <= 0.01, residuals
    assert 0.001 <= statistics.pstdev(residuals) <= 0.015, residuals
    assert all(abs(r) < 0.03 for r in residuals), residuals
    # No frame is stamped exactly like an odometry message: the clocks differ.
    assert not {_ns(i.header.stamp) for i in images} & set(odom_ns)


def test_ideal_world_stamps_frames_like_their_odometry(procs, ros):
    images, infos, odom = _run_sim(procs, ros, world_realism=False)
    _check_camera_info(images, infos)
    odom_ns = sorted(_ns(o.header.stamp) for o in odom)
    period = 1e9 / 50.0
    exact = 0
    for image in images:
        stamp = _ns(image.header.stamp)
        if stamp < odom_ns[0]:
            continue  # before the first odometry this test received
        k = bisect.bisect_left(odom_ns, stamp)
        if k < len(odom_ns) and odom_ns[k] == stamp:
            exact += 1
            continue
        # Not received: then an odometry message is missing around it (best effort).
        before, after = odom_ns[k - 1], odom_ns[min(k, len(odom_ns) - 1)]
        assert after - before > 1.5 * period, \
            f'image stamp {stamp} is no odometry stamp ({before}, {after})'
    assert exact >= 0.8 * len(images), (exact, len(images))
