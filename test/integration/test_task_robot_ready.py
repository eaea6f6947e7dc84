"""The task node on a real robot's terms: full history, one database per robot, sim time."""
import time

from rclpy.action import ActionClient
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image
from vln_ros_interfaces.action import Navigate
from vln_ros_interfaces.msg import NavigationResult
from vln_ros_interfaces.srv import CreateTask, GetTask, ListTasks

from test.integration.camera import image_msg, textured_frame
from vln_ros.nodes.ros_common import SENSOR_QOS


def test_get_task_history_carries_what_the_live_result_carried(procs, ros):
    url = procs.start_vlm_server('--latency', '0.1', '0.2')
    procs.start_node('task_node', params={'db_path': ':memory:', 'expected_followers': 1})
    procs.start_node('perception_node', params={'vlm.base_url': url, 'base_frame': 'body',
                                                 'keyframe_min_interval': 0.1})
    live = ros.collect(NavigationResult, 'vln/result')
    camera = ros.node.create_publisher(Image, 'camera/image_raw', SENSOR_QOS)
    create = ros.node.create_client(CreateTask, 'vln/create_task')
    get = ros.node.create_client(GetTask, 'vln/get_task')
    ros.wait_until(lambda: camera.get_subscription_count() > 0, 30)
    task_id = ros.call(create, CreateTask.Request(instruction='go forward'), 30).task_id
    i = 0
    while len(live) < 2 and i < 300:
        camera.publish(image_msg(textured_frame(i), time.time()))
        ros.spin_for(0.1)
        i += 1
    ros.wait_until(lambda: len(live) >= 2, 10)
    reply = ros.call(get, GetTask.Request(task_id=task_id, history_limit=1))
    ros.wait_until(lambda: True, 0.1)
    (stored,) = reply.history
    sent = next(r for r in live if r.sequence == stored.sequence)
    assert stored.header.frame_id == 'body' == sent.header.frame_id
    assert stored.raw_text and stored.raw_text == sent.raw_text
    assert (stored.frames, stored.keyframes) == (sent.frames, sent.keyframes) and stored.frames
    assert abs(stored.linear_vel - sent.linear_vel) < 1e-6 and sent.linear_vel > 0
    assert abs(stored.angular_vel - sent.angular_vel) < 1e-6
    assert (stored.header.stamp.sec, stored.header.stamp.nanosec) == \
        (sent.header.stamp.sec, sent.header.stamp.nanosec)


def test_two_robots_on_one_host_keep_their_own_task_history(procs, ros, tmp_path):
    # Both task nodes use the default db_path, under one ROS_HOME: a file per namespace.
    one = procs.start_node('task_node', namespace='/robot1')
    one.wait_for_output('task node ready', 30)
    create1 = ros.node.create_client(CreateTask, '/robot1/vln/create_task')
    first = ros.call(create1, CreateTask.Request(instruction='robot one: go to the door'), 30)
    assert first.accepted
    two = procs.start_node('task_node', namespace='/robot2')
    two.wait_for_output('task node ready', 30)
    get1 = ros.node.create_client(GetTask, '/robot1/vln/get_task')
    still = ros.call(get1, GetTask.Request(task_id=first.task_id))
    assert still.state.status == 'active', still.state.message  # not "interrupted by restart"
    list2 = ros.node.create_client(ListTasks, '/robot2/vln/list_tasks')
    assert ros.call(list2, ListTasks.Request()).tasks == []
    home = procs.log_dir / 'ros_home' / 'vln_ros'
    assert (home / 'robot1' / 'tasks.db').exists() and (home / 'robot2' / 'tasks.db').exists()
    assert 'robot1/tasks.db' in one.output() and 'robot2/tasks.db' in two.output()


def test_navigate_timeout_runs_on_the_node_clock(procs, ros):
    procs.start_node('task_node', params={'db_path': ':memory:', 'use_sim_time': True})
    clock = ros.node.create_publisher(Clock, '/clock', QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE))
    t = [1000.0]

    def tick(advance=0.0):
        t[0] += advance
        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = int(t[0]), int((t[0] % 1) * 1e9)
        clock.publish(msg)
    ros.wait_until(lambda: clock.get_subscription_count() > 0, 30)
    tick()
    navigate = ActionClient(ros.node, Navigate, 'vln/navigate')
    ros.wait_until(lambda: navigate.server_is_ready(), 30)
    ros.spin_for(0.5)
    sent = navigate.send_goal_async(Navigate.Goal(instruction='go', timeout=2.0))
    ros.wait_until(sent.done, 15)
    handle = sent.result()
    result = handle.get_result_async()
    # The simulation is paused: 4 s of wall time are not 2 s of the robot's time.
    for _ in range(40):
        tick()
        ros.spin_for(0.1)
    assert not result.done(), result.result().result.state
    for _ in range(30):  # now 3 s of simulated time pass
        tick(0.1)
        ros.spin_for(0.05)
    ros.wait_until(result.done, 15)
    state = result.result().result.state
    assert state.status == 'failed' and 'timed out' in state.message


def test_a_search_that_only_turns_fails_the_goal_with_a_reason_and_the_limit_is_live(procs, ros):
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters
    from vln_ros_interfaces.msg import Waypoint

    procs.start_node('task_node', params={'db_path': ':memory:'})
    client = ActionClient(ros.node, Navigate, 'vln/navigate')
    ros.wait_until(client.server_is_ready, 30)
    setter = ros.node.create_client(SetParameters, '/task_node/set_parameters')
    value = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=3)
    reply = ros.call(setter, SetParameters.Request(
        parameters=[Parameter(name='search_limit', value=value)]), 15)
    assert reply.results[0].successful
    pub = ros.node.create_publisher(NavigationResult, 'vln/result', 10)
    send = client.send_goal_async(Navigate.Goal(instruction='find the green box'))
    handle = ros.wait_until(lambda: send.done() and send.result(), 10)
    assert handle.accepted
    ros.wait_until(lambda: pub.get_subscription_count() > 0, 10)
    get = ros.node.create_client(GetTask, 'vln/get_task')
    task_id = ros.wait_until(lambda: ros.call(get, GetTask.Request()).state.task_id, 10)
    # Two turns, a step forward (the count starts again), then three turns: not found.
    for seq, action in enumerate(['turn_left', 'turn_left', 'forward', 'turn_left',
                                  'turn_right', 'turn_left'], start=1):
        pub.publish(NavigationResult(task_id=task_id, sequence=seq, action=action,
                                     environment='room, green box not in view',
                                     status=NavigationResult.STATUS_OK,
                                     waypoints=[Waypoint(dx=0.05, dtheta=0.5, confidence=0.6)]))
        ros.spin_for(0.1)
    result = handle.get_result_async()
    ros.wait_until(result.done, 10)
    state = result.result().result.state
    assert state.status == 'failed' and 'not found' in state.message, state
    assert state.inferences == 6
