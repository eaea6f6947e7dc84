"""vln_bag against real DDS: record topics from another process, replay the committed bag."""
from __future__ import annotations

import pathlib
import sys
import time

import pytest

from test.harness import wait_until

BAG = pathlib.Path(__file__).resolve().parents[1] / 'data' / 'corridor_short'
CAMERA = '/camera/image_raw/compressed'


def _bag_cmd(*args: str) -> list[str]:
    return [sys.executable, '-m', 'vln_ros.tools.bag', *args]


def test_record_topics_of_another_process_into_an_mcap_bag(procs, tmp_path):
    from rosbags.rosbag2 import Reader

    from vln_ros.tools.bag_store import make_typestore

    out = tmp_path / 'recorded'
    count = 40
    # The recorder stops by itself once it has written every message (--max-messages).
    recorder = procs.start('recorder', _bag_cmd('record', '-o', str(out), '/odom', 'vln/result',
                                                '--max-messages', str(2 * count)))
    recorder.wait_for_output('recording to', timeout=20)
    publisher = procs.start('publisher', [sys.executable, '-m', 'test.integration.bag_publisher',
                                          str(count)])
    publisher.wait_for_output(f'published {count}', timeout=30)
    assert publisher.proc.wait(10) == 0
    assert recorder.proc.wait(20) == 0, recorder.output()
    out_text = recorder.output()
    assert 'recording /odom [nav_msgs/msg/Odometry]' in out_text
    assert f'recorded {2 * count} messages' in out_text, out_text

    typestore = make_typestore()
    with Reader(out) as reader:
        assert reader.message_count == 2 * count
        types = {c.topic: c.msgtype for c in reader.connections}
        assert types == {'/odom': 'nav_msgs/msg/Odometry',
                         '/vln/result': 'vln_ros_interfaces/msg/NavigationResult'}
        odoms, results, stamps = [], [], []
        for connection, timestamp, data in reader.messages():
            msg = typestore.deserialize_cdr(data, connection.msgtype)
            (odoms if connection.topic == '/odom' else results).append(msg)
            stamps.append(timestamp)
    assert stamps == sorted(stamps) and abs(stamps[0] * 1e-9 - time.time()) < 120
    assert [o.header.stamp.sec for o in odoms] == [1000 + i for i in range(count)]
    assert odoms[7].pose.pose.position.x == 0.07 and odoms[0].child_frame_id == 'base_link'
    assert [r.sequence for r in results] == list(range(1, count + 1))
    assert results[3].environment == 'corridor 3' and results[3].task_id == 'vln_bagtest'
    waypoint = results[3].waypoints[0]  # float32 fields
    assert (waypoint.dtheta, waypoint.confidence) == (pytest.approx(0.1), pytest.approx(0.9))
    # The custom type's definition is in the bag: `ros2 bag info/play` can decode it.
    assert 'vln_ros_interfaces/msg/NavigationResult' in (out / 'metadata.yaml').read_text()


def _play_and_receive(procs, ros, rate: float):
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import CompressedImage

    from vln_ros.nodes.ros_common import SENSOR_QOS

    arrivals = {'odom': [], 'camera': []}
    ros.node.create_subscription(
        Odometry, '/odom', lambda m: arrivals['odom'].append((time.monotonic(), m)), 200)
    ros.node.create_subscription(
        CompressedImage, CAMERA, lambda m: arrivals['camera'].append((time.monotonic(), m)),
        SENSOR_QOS)
    player = procs.start('player', _bag_cmd('play', str(BAG), '--rate', str(rate),
                                            '--wait-for-subscribers', '20'))
    ros.wait_until(lambda: 'played' in player.output() or not player.alive(), timeout=30)
    ros.spin_for(0.3)  # the last messages
    assert player.proc.wait(10) == 0, player.output()
    assert 'played 182 messages' in player.output()
    return arrivals


def test_play_committed_bag_with_original_timing(procs, ros):
    arrivals = _play_and_receive(procs, ros, rate=1.0)
    odom, camera = arrivals['odom'], arrivals['camera']
    # Odometry is reliable: all of it, in order. Camera frames are best effort: most of them.
    assert len(odom) == 151
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for _, m in odom]
    assert stamps == sorted(stamps) and stamps[0] == 1_767_225_600 * 10**9
    assert len(camera) >= 25
    assert all(m.format.endswith('jpeg compressed bgr8') and bytes(m.data[:2]) == b'\xff\xd8'
               for _, m in camera)
    # Spread over about the bag's 3 s, not dumped at once (tolerant: CPU is shared).
    span = odom[-1][0] - odom[0][0]
    assert 2.0 < span < 6.0, span


def test_play_rate_factor_speeds_up(procs, ros):
    arrivals = _play_and_receive(procs, ros, rate=3.0)
    odom = arrivals['odom']
    assert len(odom) == 151
    span = odom[-1][0] - odom[0][0]
    assert 0.5 < span < 2.5, span


def test_info_and_errors(procs):
    info = procs.start('info', _bag_cmd('info', str(BAG)))
    assert info.proc.wait(20) == 0
    text = info.output()
    assert f'{CAMERA} | sensor_msgs/msg/CompressedImage | 31 msgs' in text
    assert '/odom | nav_msgs/msg/Odometry | 151 msgs' in text and 'Duration:   3.000 s' in text
    missing = procs.start('missing', _bag_cmd('play', str(BAG.parent / 'no_such_bag')))
    assert missing.proc.wait(20) == 1
    assert 'cannot read' in missing.output()
    wait_until(lambda: not missing.alive(), 5)
