"""Every vln_ros_interfaces type crosses a process boundary intact (msgs, srvs, action)."""
import sys

from builtin_interfaces.msg import Time
from rclpy.action import ActionClient
from vln_ros_interfaces.action import Navigate
from vln_ros_interfaces.msg import NavigationResult, TaskConfig, TaskState, Waypoint
from vln_ros_interfaces.srv import CreateTask, GetTask, ListTasks, StopTask


def _samples():
    wp = Waypoint(dx=0.5, dy=-0.25, dtheta=0.125, confidence=0.75)
    result = NavigationResult(task_id='vln_1_abcdef', sequence=7, environment='hall, door ahead',
                              action='forward', waypoints=[wp, wp], linear_vel=0.25,
                              angular_vel=-0.5, inference_time=6.5,
                              status=NavigationResult.STATUS_FALLBACK, error='',
                              raw_text='{"a": 1}', frames=30, keyframes=3)
    result.header.stamp = Time(sec=12, nanosec=345)
    result.header.frame_id = 'base_link'
    # Values exact in float32, so equality holds after the round trip.
    config = TaskConfig(output_fps=2.0, keyframe_threshold=0.375, enable_visualization=True)
    state = TaskState(task_id='vln_1_abcdef', instruction='go to the red door',
                      status=TaskState.STATUS_ACTIVE, config=config, created=Time(sec=1),
                      updated=Time(sec=2), frames=10, keyframes=2, inferences=1, errors=0,
                      last_action='forward', last_environment='hall', message='created')
    return [wp, result, config, state]


def test_every_interface_roundtrips_between_processes(procs, ros):
    procs.start('echo', [sys.executable, '-m', 'test.integration.echo_interfaces_node'])
    node = ros.node
    for sample in _samples():
        name = type(sample).__name__
        box = ros.collect(type(sample), f'echo/out/{name}')
        pub = node.create_publisher(type(sample), f'echo/in/{name}', 10)
        ros.wait_until(lambda: pub.get_subscription_count() > 0, 30)
        # Publish until echoed: the echo's publisher may match us a little later.
        ros.wait_until(lambda: pub.publish(sample) or box, 15)
        assert box[0] == sample, name

    create = node.create_client(CreateTask, 'echo/create_task')
    resp = ros.call(create, CreateTask.Request(
        instruction='go', config=TaskConfig(output_fps=3.0, keyframe_threshold=0.25)))
    assert (resp.accepted, resp.task_id, resp.message) == (True, 'id:go:3.0', 'thr=0.25')

    stop = node.create_client(StopTask, 'echo/stop_task')
    assert ros.call(stop, StopTask.Request(task_id='known')).success
    assert not ros.call(stop, StopTask.Request(task_id='other')).success

    get = node.create_client(GetTask, 'echo/get_task')
    resp = ros.call(get, GetTask.Request(task_id='t9', history_limit=3))
    assert resp.found and resp.state.task_id == 't9'
    assert [r.sequence for r in resp.history] == [0, 1, 2]

    lst = node.create_client(ListTasks, 'echo/list_tasks')
    assert len(ros.call(lst, ListTasks.Request(active_only=False)).tasks) == 3
    assert len(ros.call(lst, ListTasks.Request(active_only=True)).tasks) == 1

    client = ActionClient(node, Navigate, 'echo/navigate')
    ros.wait_until(lambda: client.server_is_ready(), 15)
    feedback = []
    goal = Navigate.Goal(instruction='find the door', config=TaskConfig(output_fps=1.0))
    send = client.send_goal_async(goal, feedback_callback=lambda fb: feedback.append(fb.feedback))
    handle = ros.wait_until(lambda: send.done() and send.result(), 10)
    assert handle.accepted
    result_future = handle.get_result_async()
    ros.wait_until(result_future.done, 10)
    result = result_future.result().result
    assert result.state.status == TaskState.STATUS_COMPLETED
    assert result.state.instruction == 'find the door'
    # The feedback writer may match this client a moment after the goal was accepted, so the
    # first feedback can be lost; the ones that arrive are in order and end with the last.
    assert [f.result.sequence for f in feedback] in ([0, 1], [1]), feedback
    assert all(f.result.task_id == 'find the door' for f in feedback)
