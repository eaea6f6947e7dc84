"""Perception node end to end: camera frames from this process, the test model server, results."""
import json
import time
import urllib.request

from sensor_msgs.msg import CompressedImage, Image
from vln_ros_interfaces.msg import NavigationResult, TaskConfig, TaskState

from test.integration.camera import image_msg, textured_frame
from vln_ros.nodes.ros_common import LATCHED_QOS, SENSOR_QOS, stamp_to_sec


def _server_stats(url):
    with urllib.request.urlopen(url.replace('/v1', '/_test/stats'), timeout=5) as resp:
        return json.load(resp)


def _task(task_id, instruction, status=TaskState.STATUS_ACTIVE):
    return TaskState(task_id=task_id, instruction=instruction, status=status,
                     config=TaskConfig(output_fps=2.0, keyframe_threshold=0.05))


class Camera:
    """Publishes moving frames with known stamps; remembers them."""

    def __init__(self, ros, topic='camera/image_raw'):
        self.ros = ros
        self.pub = ros.node.create_publisher(Image, topic, SENSOR_QOS)
        self.stamps = []
        self.i = 0

    def run(self, seconds, fps=15.0, until=None):
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (until and until()):
            stamp = 1000.0 + self.i / fps
            self.pub.publish(image_msg(textured_frame(self.i), stamp))
            self.stamps.append(stamp)
            self.i += 1
            self.ros.spin_for(1.0 / fps)


def _start(procs, ros, url, **params):
    procs.start_node('perception_node', params={
        'vlm.base_url': url, 'vlm.timeout': 10.0, 'keyframe_min_interval': 0.1,
        'enable_visualization': True, **params})
    results = ros.collect(NavigationResult, 'vln/result')
    state_pub = ros.node.create_publisher(TaskState, 'vln/task_state', LATCHED_QOS)
    return results, state_pub


def test_results_carry_the_keyframe_stamp_and_follow_the_instruction(procs, ros):
    url = procs.start_vlm_server('--latency', '0.3', '0.5')
    results, state_pub = _start(procs, ros, url)
    debug = ros.collect(Image, 'vln/debug_image')
    camera = Camera(ros)
    ros.wait_until(lambda: camera.pub.get_subscription_count() > 0, 30)
    state_pub.publish(_task('vln_1_aaaaaa', 'turn left at the corridor'))
    camera.run(20, until=lambda: len(results) >= 3)
    assert len(results) >= 3, 'no results within 20 s'
    for r in results:
        assert r.task_id == 'vln_1_aaaaaa'
        assert r.status == NavigationResult.STATUS_OK, r.error
        assert r.action == 'turn_left'
        stamp = stamp_to_sec(r.header.stamp)  # the keyframe's capture time, to the ns
        assert min(abs(stamp - s) for s in camera.stamps) < 1e-6
        assert 0.25 <= r.inference_time < 5.0
        assert r.waypoints and all(-0.5 <= w.dtheta <= 0.5 for w in r.waypoints)
    assert [r.sequence for r in results] == sorted(r.sequence for r in results)
    assert results[-1].frames >= results[-1].keyframes >= len(results)
    assert _server_stats(url)['last_instruction'] == 'turn left at the corridor'
    ros.wait_until(lambda: debug, 5)
    assert (debug[0].width, debug[0].height, debug[0].encoding) == (640, 480, 'bgr8')


def test_switch_mid_request_publishes_nothing_of_the_old_task(procs, ros):
    url = procs.start_vlm_server('--latency', '2.0', '2.0')
    results, state_pub = _start(procs, ros, url)
    camera = Camera(ros)
    ros.wait_until(lambda: camera.pub.get_subscription_count() > 0, 30)
    state_pub.publish(_task('vln_1_old000', 'go forward'))
    camera.run(10, until=lambda: _server_stats(url)['in_flight'] >= 1)
    assert _server_stats(url)['in_flight'] >= 1, 'no request in flight'
    state_pub.publish(_task('vln_2_new000', 'stop now'))
    switched_at = len(results)
    camera.run(12, until=lambda: any(r.task_id == 'vln_2_new000' for r in results))
    ros.spin_for(2.5)  # longer than the old request would have taken
    after = results[switched_at:]
    assert after and all(r.task_id == 'vln_2_new000' for r in after), \
        [r.task_id for r in after]
    assert after[0].action == 'stop' and after[0].status == NavigationResult.STATUS_STOP
    stats = _server_stats(url)
    assert stats['cancelled'] >= 1  # the old request was aborted on the server too


def test_dead_server_gives_error_results_then_recovers(procs, ros):
    # Nothing listens on this port at first: connection refused, retried, reported as errors.
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    results, state_pub = _start(procs, ros, f'http://127.0.0.1:{port}/v1',
                                **{'vlm.max_retries': 1})
    camera = Camera(ros)
    ros.wait_until(lambda: camera.pub.get_subscription_count() > 0, 30)
    state_pub.publish(_task('vln_3_dead00', 'go forward'))
    camera.run(20, until=lambda: results)
    assert results and results[0].status == NavigationResult.STATUS_VLM_ERROR
    assert 'connect' in results[0].error.lower() and not results[0].waypoints
    server = procs.start('late_server', [
        __import__('sys').executable, '-m', 'vln_ros.sim.vlm_server', '--port', str(port)])
    server.wait_for_output('listening on', 30)
    camera.run(25, until=lambda: any(r.status == NavigationResult.STATUS_OK for r in results))
    assert any(r.status == NavigationResult.STATUS_OK and r.action == 'forward'
               for r in results)


def test_compressed_input_and_bad_frames_are_survived(procs, ros):
    import cv2
    url = procs.start_vlm_server('--latency', '0.1', '0.2')
    results, state_pub = _start(procs, ros, url, image_transport='compressed')
    pub = ros.node.create_publisher(CompressedImage, 'camera/image_raw/compressed', SENSOR_QOS)
    ros.wait_until(lambda: pub.get_subscription_count() > 0, 30)
    state_pub.publish(_task('vln_4_jpeg00', 'turn right'))
    deadline = time.monotonic() + 20
    i = 0
    while time.monotonic() < deadline and len(results) < 2:
        msg = CompressedImage(format='jpeg')
        msg.header.stamp.sec = 2000 + i
        if i % 3 == 0:
            msg.data = b'\xff\xd8\xff garbage, not a jpeg'
        else:
            ok, jpg = cv2.imencode('.jpg', textured_frame(i))
            msg.data = jpg.tobytes()
        pub.publish(msg)
        i += 1
        ros.spin_for(0.1)
    assert len(results) >= 2 and all(r.action == 'turn_right' for r in results)
