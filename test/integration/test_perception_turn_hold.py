"""A turn answer holds the next keyframe until the planner reports the turn over.

Real perception and task nodes and the test model server, whose answer to "search ..." is a
turn to the left in place; this test plays the planner's part on vln/command_state, so that
when a turn ends is in its hands.
"""
import time

from std_msgs.msg import String
from vln_ros_interfaces.msg import NavigationResult
from vln_ros_interfaces.srv import CreateTask

from test.integration.test_perception_robot_ready import _set, _stack, _still_camera
from vln_ros.nodes.ros_common import COMMAND_STATE_TOPIC, LATCHED_QOS


def test_a_turn_answer_holds_the_next_keyframe_until_the_turn_is_over(procs, ros):
    url = procs.start_vlm_server('--latency', '0.1', '0.2')
    # A long hold, so that "held" and "released by the planner" cannot be confused with
    # a slow machine; a still scene still gets a keyframe every 0.5 s.
    diag, camera = _stack(procs, ros, url, turn_hold=20.0, keyframe_max_interval=0.5)
    results = ros.collect(NavigationResult, 'vln/result')
    state = ros.node.create_publisher(String, COMMAND_STATE_TOPIC, LATCHED_QOS)
    create = ros.node.create_client(CreateTask, 'vln/create_task')
    reply = ros.call(create, CreateTask.Request(instruction='search the room'), 30)
    assert reply.accepted

    def camera_until(predicate, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end and not predicate():
            _still_camera(ros, 0.1, pub=camera)
        return predicate()

    assert camera_until(lambda: results, 15)
    assert results[0].action == 'turn_left'
    # Held: eight keyframe intervals pass and no second request leaves.
    _still_camera(ros, 4.0, pub=camera)
    assert len(results) == 1, [r.sequence for r in results]
    # The planner starts the turn (still held), then finishes it: the next request leaves.
    state.publish(String(data=f'{reply.task_id}|tracking'))
    _still_camera(ros, 1.0, pub=camera)
    assert len(results) == 1
    state.publish(String(data=f'{reply.task_id}|path_finished'))
    assert camera_until(lambda: len(results) >= 2, 10), 'the end of the turn released nothing'
    # Further turns the same way are a sweep: no hold, a request per keyframe interval
    # (held, each would wait the whole 20 s).
    assert camera_until(lambda: len(results) >= 5, 10), 'a search sweep was held'
    # A new task's first turn holds again; the limit is live, and once it passes the
    # request leaves without word from the planner.
    assert _set(ros, 'turn_hold', 1.0).successful
    second = ros.call(create, CreateTask.Request(instruction='search the hall'), 30)
    assert second.accepted
    assert camera_until(lambda: sum(r.task_id == second.task_id for r in results) >= 2, 15), \
        'the hold never ran out'
    ros.spin_for(1.5)  # the next diagnostics
    assert int(diag.values['turn_holds']) == 2, diag.values
