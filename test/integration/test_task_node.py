"""The task node over real services and the Navigate action, from another process."""
from rclpy.action import ActionClient
from vln_ros_interfaces.action import Navigate
from vln_ros_interfaces.msg import NavigationResult, TaskConfig, TaskState, Waypoint
from vln_ros_interfaces.srv import CreateTask, GetTask, ListTasks, StopTask

from vln_ros.nodes.ros_common import LATCHED_QOS


def _clients(ros):
    n = ros.node
    return (n.create_client(CreateTask, 'vln/create_task'),
            n.create_client(StopTask, 'vln/stop_task'),
            n.create_client(GetTask, 'vln/get_task'),
            n.create_client(ListTasks, 'vln/list_tasks'))


def _result(task_id, seq, action='forward', conf=0.9, status=NavigationResult.STATUS_OK):
    return NavigationResult(task_id=task_id, sequence=seq, action=action, environment='hall',
                            status=status, waypoints=[Waypoint(dx=0.5, confidence=conf)],
                            frames=10 * seq, keyframes=seq)


def test_create_switch_get_list_stop_and_bad_input(procs, ros, tmp_path):
    procs.start_node('task_node', params={'db_path': str(tmp_path / 'tasks.db')})
    create, stop, get, lst = _clients(ros)
    states = ros.collect(TaskState, 'vln/task_state', LATCHED_QOS)

    first = ros.call(create, CreateTask.Request(instruction='go to the red door'), 30)
    assert first.accepted and first.task_id.startswith('vln_')
    ros.wait_until(lambda: any(s.task_id == first.task_id and s.status == 'active'
                               for s in states), 10)

    second = ros.call(create, CreateTask.Request(
        instruction='turn left', config=TaskConfig(output_fps=4.0, keyframe_threshold=0.5)))
    assert second.accepted and second.task_id != first.task_id
    old = ros.call(get, GetTask.Request(task_id=first.task_id))
    assert old.found and old.state.status == 'stopped'
    assert second.task_id in old.state.message
    new = ros.call(get, GetTask.Request(task_id=''))  # empty id = the active task
    assert new.state.task_id == second.task_id and new.state.config.output_fps == 4.0
    assert abs(new.state.config.keyframe_threshold - 0.5) < 1e-6

    listed = ros.call(lst, ListTasks.Request())
    assert [t.task_id for t in listed.tasks] == [second.task_id, first.task_id]
    assert [t.task_id for t in ros.call(lst, ListTasks.Request(active_only=True)).tasks] == \
        [second.task_id]

    # Bad input: a clear refusal, and nothing changes.
    for bad in (CreateTask.Request(instruction='   '),
                CreateTask.Request(instruction='go', config=TaskConfig(output_fps=99.0)),
                CreateTask.Request(instruction='go',
                                   config=TaskConfig(keyframe_threshold=1.5))):
        resp = ros.call(create, bad)
        assert not resp.accepted and resp.task_id == '' and resp.message
    unknown = ros.call(stop, StopTask.Request(task_id='vln_0_000000'))
    assert not unknown.success and 'unknown' in unknown.message
    missing = ros.call(get, GetTask.Request(task_id='nope'))
    assert not missing.found and 'unknown' in missing.message
    assert [t.task_id for t in ros.call(lst, ListTasks.Request(active_only=True)).tasks] == \
        [second.task_id]

    assert ros.call(stop, StopTask.Request(task_id=second.task_id)).success
    again = ros.call(stop, StopTask.Request(task_id=second.task_id))
    assert not again.success and 'already' in again.message
    ros.wait_until(lambda: states and states[-1].task_id == second.task_id
                   and states[-1].status == 'stopped', 10)


def test_results_are_recorded_and_survive_a_restart(procs, ros, tmp_path):
    db = str(tmp_path / 'tasks.db')
    node = procs.start_node('task_node', params={'db_path': db})
    create, _, get, _ = _clients(ros)
    task_id = ros.call(create, CreateTask.Request(instruction='find the exit'), 30).task_id
    pub = ros.node.create_publisher(NavigationResult, 'vln/result', 10)
    ros.wait_until(lambda: pub.get_subscription_count() > 0, 10)
    for seq in (1, 2, 3):
        pub.publish(_result(task_id, seq))
    pub.publish(_result('vln_1_aaaaaa', 9))  # another task's result: ignored
    ros.wait_until(lambda: len(ros.call(get, GetTask.Request(task_id=task_id)).history) == 3, 10)
    state = ros.call(get, GetTask.Request(task_id=task_id)).state
    assert (state.inferences, state.frames, state.keyframes) == (3, 30, 3)

    node.stop()
    procs.start_node('task_node', name='task_node', params={'db_path': db})
    get = ros.node.create_client(GetTask, 'vln/get_task')  # a fresh client for the new server
    resp = ros.call(get, GetTask.Request(task_id=task_id), 30)
    assert resp.found and [r.sequence for r in resp.history] == [1, 2, 3]
    assert resp.state.status == 'stopped' and 'restart' in resp.state.message


def test_navigate_action_feedback_completion_and_cancel(procs, ros, tmp_path):
    procs.start_node('task_node', params={'db_path': ':memory:', 'completion_count': 2})
    client = ActionClient(ros.node, Navigate, 'vln/navigate')
    ros.wait_until(client.server_is_ready, 30)
    pub = ros.node.create_publisher(NavigationResult, 'vln/result', 10)
    states = ros.collect(TaskState, 'vln/task_state', LATCHED_QOS)

    feedback = []
    send = client.send_goal_async(Navigate.Goal(instruction='go to the door'),
                                  feedback_callback=lambda m: feedback.append(m.feedback))
    handle = ros.wait_until(lambda: send.done() and send.result(), 10)
    assert handle.accepted
    active = ros.wait_until(lambda: next((s for s in states if s.status == 'active'), None), 10)
    ros.wait_until(lambda: pub.get_subscription_count() > 0, 10)
    pub.publish(_result(active.task_id, 1))
    ros.wait_until(lambda: feedback, 10)
    assert feedback[0].result.task_id == active.task_id
    for seq in (2, 3):  # two confident stops in a row = arrived
        pub.publish(_result(active.task_id, seq, action='stop',
                            status=NavigationResult.STATUS_STOP))
    result_future = handle.get_result_async()
    ros.wait_until(result_future.done, 10)
    final = result_future.result()
    assert final.result.state.status == 'completed' and final.result.state.message == 'arrived'

    # A second goal, cancelled: the task is stopped.
    send = client.send_goal_async(Navigate.Goal(instruction='patrol'))
    handle = ros.wait_until(lambda: send.done() and send.result(), 10)
    ros.wait_until(lambda: states[-1].instruction == 'patrol' and states[-1].status == 'active',
                   10)
    cancel = handle.cancel_goal_async()
    ros.wait_until(cancel.done, 10)
    result_future = handle.get_result_async()
    ros.wait_until(result_future.done, 10)
    assert result_future.result().result.state.status == 'stopped'


def test_answers_a_switch_only_after_the_expected_followers_followed(procs, ros):
    """The service answer is the switch guarantee: it waits for each follower's ack."""
    import time

    from std_msgs.msg import String

    from vln_ros.nodes.ros_common import TASK_ACK_QOS, TASK_ACK_TOPIC

    node = procs.start_node('task_node', params={
        'db_path': ':memory:', 'expected_followers': 1, 'switch_ack_timeout': 8.0})
    create, stop, _, _ = _clients(ros)
    ack_pub = []  # made only when the follower acks: unknown to the task node before that
    seen, acked = {}, {}  # task id -> when the stand-in follower saw / acknowledged it
    ros.node.create_subscription(
        TaskState, 'vln/task_state',
        lambda s: seen.setdefault(s.task_id, time.monotonic()) if s.status == 'active' else None,
        LATCHED_QOS)
    ros.wait_until(create.service_is_ready, 30)

    future = create.call_async(CreateTask.Request(instruction='go forward'))
    while not future.done():
        ros.spin_for(0.02)
        # A follower that needs 1 s to switch (a request being cancelled, say).
        for task_id, t in seen.items():
            if task_id not in acked and time.monotonic() - t > 1.0:
                acked[task_id] = time.monotonic()
                ack_pub = ack_pub or [ros.node.create_publisher(String, TASK_ACK_TOPIC,
                                                                TASK_ACK_QOS)]
                ack_pub[0].publish(String(data=f'/stand_in|{task_id}'))
    answered = time.monotonic()
    task_id = future.result().task_id
    assert task_id in acked and acked[task_id] <= answered
    assert 'not acknowledged' not in node.output()

    # A follower that never answers: the service still answers after the timeout, and says so
    # in the log (no stop-the-world on a dead node).
    assert ros.call(stop, StopTask.Request(task_id=task_id), 30).success
    node.wait_for_output('not acknowledged by all 1 followers', 5)
