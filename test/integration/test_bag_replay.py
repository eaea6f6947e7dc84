"""Replay the committed bag through the full stack, on bag time (use_sim_time + /clock).

The bag (test/data/corridor_short: compressed camera + odometry of a robot driving a corridor)
feeds perception and the planner as a robot would; the planner must place each result's
waypoints with the odometry pose at the keyframe's capture stamp from the bag.
"""
import math
import sys

from nav_msgs.msg import Odometry, Path
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CompressedImage
from vln_ros_interfaces.msg import NavigationResult
from vln_ros_interfaces.srv import CreateTask

from test.harness import ROOT
from vln_ros.core.geometry import Pose2D, yaw_from_quaternion
from vln_ros.core.pose_history import PoseHistory
from vln_ros.nodes.ros_common import SENSOR_QOS, stamp_to_sec
from vln_ros.tools.bag_store import read_bag

BAG = ROOT / 'test' / 'data' / 'corridor_short'


def _pose(msg):
    q = msg.pose.pose.orientation
    return Pose2D(msg.pose.pose.position.x, msg.pose.pose.position.y,
                  yaw_from_quaternion(q.x, q.y, q.z, q.w))


def _bag_messages(topic, msg_type):
    return [deserialize_message(m.data, msg_type) for m in read_bag(BAG, [topic])]


def test_bag_replay_through_perception_and_planner(procs, ros):
    url = procs.start_vlm_server('--latency', '0.1', '0.2')
    sim_time = {'use_sim_time': True}
    procs.start_node('task_node', params={'db_path': ':memory:', 'expected_followers': 2,
                                          **sim_time})
    procs.start_node('perception_node', params={
        'vlm.base_url': url, 'image_transport': 'compressed', 'keyframe_min_interval': 0.3,
        **sim_time})
    procs.start_node('planner_node', params={**sim_time})
    # What the graph saw; the test listens too, so the player waits for 2 subscribers a topic.
    odoms = ros.collect(Odometry, 'odom')
    frames = ros.collect(CompressedImage, 'camera/image_raw/compressed', SENSOR_QOS)
    results = ros.collect(NavigationResult, 'vln/result')
    paths = ros.collect(Path, 'vln/path')
    acks = ros.task_acks()
    create = ros.node.create_client(CreateTask, 'vln/create_task')
    answer = ros.call(create, CreateTask.Request(instruction='go forward'), 30)
    assert answer.accepted
    # The bag is short: play it only once both followers follow the task and listen (a node
    # that starts after the task was created learns of it from the latched state, later).
    assert ros.wait_until(lambda: all(acks.get(f'/{n}') == answer.task_id
                                      for n in ('perception_node', 'planner_node')), 30), acks

    player = procs.start('vln_bag', [sys.executable, '-m', 'vln_ros.tools.bag', 'play',
                                     str(BAG), '--clock', '--rate', '0.5',
                                     '--wait-for-subscribers', '20', '--min-subscribers', '2'])
    ros.wait_until(lambda: player.proc.poll() is not None, 60)
    ros.spin_for(1.0)
    assert player.proc.returncode == 0, player.output()
    assert 'playing anyway' not in player.output()
    assert odoms and frames and results and paths

    # Ground truth from the bag file itself: camera stamps and the odometry history.
    frame_stamps = [stamp_to_sec(m.header.stamp)
                    for m in _bag_messages('/camera/image_raw/compressed', CompressedImage)]
    history = PoseHistory(max_age=60.0)
    bag_odom = _bag_messages('/odom', Odometry)
    for msg in bag_odom:
        history.add(stamp_to_sec(msg.header.stamp), _pose(msg))
    start, end = stamp_to_sec(bag_odom[0].header.stamp), stamp_to_sec(bag_odom[-1].header.stamp)
    for r in results:
        assert r.status == NavigationResult.STATUS_OK and r.action == 'forward', r
        # Each result carries the capture stamp of one of the bag's frames (bag time).
        assert min(abs(stamp_to_sec(r.header.stamp) - t) for t in frame_stamps) < 1e-6
    # The first path: waypoints placed at the odometry pose of the capture stamp (bag time).
    # It belongs to one of the results (the planner may have matched perception's writer
    # after the first one).
    def placed(result):
        anchor = history.at(stamp_to_sec(result.header.stamp))
        return [anchor.compose(Pose2D(w.dx, w.dy, w.dtheta)) for w in result.waypoints]

    def close(got, expected):
        return len(got) == len(expected) and all(
            math.hypot(x - e.x, y - e.y) < 0.02 for (x, y), e in zip(got, expected, strict=True))
    got = [(p.pose.position.x, p.pose.position.y) for p in paths[0].poses]
    assert any(close(got, placed(r)) for r in results), (got, [placed(r) for r in results])
    # The robot had moved in the bag by the time of later keyframes: anchors differ.
    assert history.at(start).distance_to(history.at(end)) > 0.3
