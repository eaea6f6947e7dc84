"""Perception on a real robot's terms: a plain `ros2 service call` gets the node's defaults,
parameters are live, and a plain launch says what it waits for."""
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.action import ActionClient
from sensor_msgs.msg import Image
from vln_ros_interfaces.action import Navigate
from vln_ros_interfaces.msg import NavigationResult
from vln_ros_interfaces.srv import CreateTask

from test.integration.camera import image_msg, textured_frame
from test.integration.test_perception_node import _server_stats
from vln_ros.nodes.ros_common import SENSOR_QOS

STILL = textured_frame(0)


def _set(ros, name, value):
    client = ros.node.create_client(SetParameters, '/perception_node/set_parameters')
    if isinstance(value, str):
        pv = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
    else:
        pv = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=float(value))
    return ros.call(client, SetParameters.Request(parameters=[Parameter(name=name, value=pv)]),
                    timeout=15).results[0]


class Diagnostics:
    """The perception node's latest /diagnostics values."""

    def __init__(self, ros):
        self.values, self.level, self.message = {}, None, ''
        ros.node.create_subscription(DiagnosticArray, '/diagnostics', self._on, 10)

    def _on(self, msg):
        for status in msg.status:
            if status.name == 'vln_ros: perception':
                self.values = {kv.key: kv.value for kv in status.values}
                self.level, self.message = status.level, status.message

    def keyframes(self):
        return int(self.values.get('keyframes', -1))


def _still_camera(ros, seconds, fps=10.0, frame=STILL, pub=None):
    """Publish the same picture (a robot standing still) with advancing stamps."""
    pub = pub or ros.node.create_publisher(Image, 'camera/image_raw', SENSOR_QOS)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pub.publish(image_msg(frame, time.time()))
        ros.spin_for(1.0 / fps)
    return pub


def _stack(procs, ros, url, **params):
    procs.start_node('task_node', params={'db_path': ':memory:', 'expected_followers': 1})
    procs.start_node('perception_node', params={
        'vlm.base_url': url, 'vlm.timeout': 10.0, 'keyframe_min_interval': 0.2, **params})
    diag = Diagnostics(ros)
    camera = ros.node.create_publisher(Image, 'camera/image_raw', SENSOR_QOS)
    ros.wait_until(lambda: camera.get_subscription_count() > 0, 30)
    ros.wait_until(lambda: diag.values, 15)
    return diag, camera


def test_plain_create_task_and_navigate_get_the_node_default_threshold(procs, ros):
    url = procs.start_vlm_server('--latency', '0.1', '0.2')
    diag, camera = _stack(procs, ros, url)
    create = ros.node.create_client(CreateTask, 'vln/create_task')
    # What `ros2 service call /vln/create_task ... "{instruction: 'go to the door'}"` sends:
    # keyframe_threshold 0.0 and output_fps 0.0.
    reply = ros.call(create, CreateTask.Request(instruction='go to the door'), 30)
    assert reply.accepted
    _still_camera(ros, 4.0, pub=camera)
    ros.spin_for(1.5)  # the next diagnostics
    # The node default (0.2) over a still scene: the first frame only. Taken literally, 0.0
    # would make every frame past keyframe_min_interval a keyframe (about 18 here).
    assert diag.keyframes() == 1, diag.values
    # The Navigate action has the same fields and the same rule.
    navigate = ActionClient(ros.node, Navigate, 'vln/navigate')
    ros.wait_until(lambda: navigate.server_is_ready(), 30)
    goal = navigate.send_goal_async(Navigate.Goal(instruction='find the exit'))
    ros.wait_until(goal.done, 30)
    assert goal.result().accepted
    before = diag.keyframes()
    _still_camera(ros, 4.0, pub=camera)
    ros.spin_for(1.5)
    assert diag.keyframes() - before == 1, diag.values


def test_keyframe_and_model_parameters_are_live(procs, ros):
    first = procs.start_vlm_server('--latency', '0.1', '0.2', name='server_a')
    second = procs.start_vlm_server('--latency', '0.1', '0.2', name='server_b')
    diag, camera = _stack(procs, ros, first)
    results = ros.collect(NavigationResult, 'vln/result')
    create = ros.node.create_client(CreateTask, 'vln/create_task')
    assert ros.call(create, CreateTask.Request(instruction='go'), 30).accepted
    _still_camera(ros, 2.0, pub=camera)
    ros.wait_until(lambda: results, 10)
    # A shorter keyframe_max_interval applies at once: a still scene now gets one every 0.5 s.
    assert _set(ros, 'keyframe_max_interval', 0.5).successful
    before = diag.keyframes()
    _still_camera(ros, 3.0, pub=camera)
    ros.spin_for(1.2)
    assert diag.keyframes() - before >= 4, diag.values
    # The model server moves: the next requests go to the new URL, none to the old one.
    assert _set(ros, 'vlm.base_url', second).successful
    ros.spin_for(1.0)  # a request already in flight may still finish on the old server
    served = _server_stats(first)['requests']
    _still_camera(ros, 3.0, pub=camera)
    assert _server_stats(second)['requests'] >= 3
    assert _server_stats(first)['requests'] == served
    # Refused with a reason, and nothing changes.
    bad = _set(ros, 'vlm.guided', 'grammar')
    assert not bad.successful and 'vlm.guided' in bad.reason
    bad = _set(ros, 'keyframe_min_interval', 5.0)  # above keyframe_max_interval (0.5)
    assert not bad.successful and 'keyframe_max_interval' in bad.reason


def test_diagnostics_warn_on_an_outage_after_a_success(procs, ros):
    url = procs.start_vlm_server('--latency', '0.1', '0.2')
    diag, camera = _stack(procs, ros, url, **{'vlm.max_retries': 0,
                                              'keyframe_max_interval': 0.5})
    results = ros.collect(NavigationResult, 'vln/result')
    create = ros.node.create_client(CreateTask, 'vln/create_task')
    assert ros.call(create, CreateTask.Request(instruction='go'), 30).accepted
    _still_camera(ros, 2.0, pub=camera)
    ros.wait_until(lambda: any(r.status == NavigationResult.STATUS_OK for r in results), 10)
    next(p for p in procs.procs if p.name == 'vlm_server').stop()
    errors = len([r for r in results if r.status == NavigationResult.STATUS_VLM_ERROR])
    _still_camera(ros, 3.0, pub=camera)
    assert len([r for r in results if r.status == NavigationResult.STATUS_VLM_ERROR]) > errors
    ros.spin_for(1.5)
    assert diag.level == DiagnosticStatus.WARN, (diag.level, diag.message)
    assert 'model errors' in diag.message, diag.message


def test_plain_launch_says_what_is_missing(procs, ros):
    perception = procs.start_node('perception_node', params={
        'vlm.base_url': 'http://127.0.0.1:9/v1', 'input_warn_after': 1.0},
        remap={'camera/image_raw': '/front_camera/image_raw'})
    perception.wait_for_output('no camera frames yet on /front_camera/image_raw', 30)
    out = perception.wait_for_output('model server http://127.0.0.1:9/v1 unreachable', 30)
    assert 'camera_topic' in out and 'vlm_base_url' in out
