"""vln_doctor against the running stack: all green, then one fault at a time.

The stack: the test model server, sim_node as camera and odometry source (no oracle),
perception, planner and task node. The doctor runs as a process (`--json`) while this
process spins, so that the sources it plays (after the simulator is stopped) keep publishing.
"""
import json
import subprocess
import sys
import time
import urllib.request

from nav_msgs.msg import Odometry
import numpy as np
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from test.harness import ROOT
from vln_ros.nodes.ros_common import SENSOR_QOS, sec_to_stamp

DOCTOR_TIMEOUT = '2.0'  # listening window of each doctor run (s)


def _doctor(ros, *flags: str) -> dict:
    """Run vln_doctor --json as a process, spinning this node meanwhile; return its report."""
    proc = subprocess.Popen(
        [sys.executable, '-m', 'vln_ros.tools.doctor', '--json', '--timeout', DOCTOR_TIMEOUT,
         '--probe-timeout', '10', *flags],
        cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ros.wait_until(lambda: proc.poll() is not None, 40)
        out, err = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    try:
        report = json.loads(out)
    except ValueError as exc:
        raise AssertionError(f'no JSON from the doctor (rc {proc.returncode}):\n{out}\n{err}') \
            from exc
    report['rc'] = proc.returncode
    report['by_name'] = {c['name']: c for c in report['checks']}
    return report


def _failures(report) -> set[str]:
    return {c['name'] for c in report['checks'] if c['verdict'] == 'FAIL'}


def _explain(report) -> str:
    return '\n'.join(f"{c['verdict']:4} {c['name']}: {c['message']}" for c in report['checks'])


def _post(url: str, body: dict) -> None:
    req = urllib.request.Request(url, json.dumps(body).encode(),
                                 {'Content-Type': 'application/json'})
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200


class Sources:
    """Camera and odometry played by this process once the simulator is gone."""

    def __init__(self, ros) -> None:
        self.node = ros.node
        self.camera_pub = None
        self.camera = None  # 'mono16', 'stale', 'good' or None (no camera)
        self.odom_pub = None
        self.node.create_timer(0.1, self._camera_tick)
        self.node.create_timer(0.05, self._odom_tick)

    def set_camera(self, kind: str) -> None:
        """Publish camera frames of this kind: 'mono16', 'stale' or 'good'."""
        if self.camera_pub is None:
            self.camera_pub = self.node.create_publisher(Image, 'camera/image_raw', SENSOR_QOS)
        self.camera = kind

    def odometry(self, reliability: ReliabilityPolicy | None) -> None:
        """Publish odometry with this reliability (None: stop publishing)."""
        if self.odom_pub is not None:
            self.node.destroy_publisher(self.odom_pub)
            self.odom_pub = None
        if reliability is not None:
            self.odom_pub = self.node.create_publisher(
                Odometry, 'odom', QoSProfile(depth=10, reliability=reliability))

    def _camera_tick(self) -> None:
        if self.camera is None:
            return
        now = time.time()
        if self.camera == 'mono16':  # a depth-like 16-bit frame perception cannot take
            msg = Image(height=120, width=160, encoding='mono16', step=320,
                        data=np.full((120, 160), 1000, np.uint16).tobytes())
        else:
            frame = np.full((120, 160, 3), 90, np.uint8)
            msg = Image(height=120, width=160, encoding='bgr8', step=480, data=frame.tobytes())
        msg.header.stamp = sec_to_stamp(now - 30.0 if self.camera == 'stale' else now)
        msg.header.frame_id = 'camera'
        self.camera_pub.publish(msg)

    def _odom_tick(self) -> None:
        if self.odom_pub is None:
            return
        msg = Odometry()
        msg.header.stamp = sec_to_stamp(time.time())
        msg.header.frame_id, msg.child_frame_id = 'odom', 'base_link'
        msg.pose.pose.orientation.w = 1.0
        self.odom_pub.publish(msg)


def _start_stack(procs, tmp_path):
    url = procs.start_vlm_server()
    sim = procs.start_node('sim_node', module='vln_ros.sim.sim_node', params={
        'camera_rate': 10.0, 'width': 320, 'height': 240, 'oracle_port': -1})
    nodes = [(sim, 'sim ready'),
             (procs.start_node('perception_node', params={'vlm.base_url': url}),
              'perception ready'),
             (procs.start_node('planner_node'), 'planner ready'),
             (procs.start_node('task_node', params={'db_path': str(tmp_path / 'tasks.db')}),
              'task node ready')]
    for proc, line in nodes:
        proc.wait_for_output(line, 60)
    return url, sim


def test_doctor_all_green_then_one_fault_at_a_time(procs, ros, tmp_path):
    url, sim = _start_stack(procs, tmp_path)
    root = url.removesuffix('/v1')

    # 1. The whole stack: every check green, exit status 0. Rates and stamp ages may WARN on
    # a starved machine (the thresholds are for a robot), but never fail.
    report = _doctor(ros)
    timing = {'camera: rate', 'camera: stamps', 'odometry: rate', 'odometry: stamps',
              'clock: camera vs odometry'}
    assert report['rc'] == 0 and not _failures(report), _explain(report)
    assert all(c['verdict'] == 'OK' for c in report['checks'] if c['name'] not in timing), \
        _explain(report)
    checks = report['by_name']
    assert checks['camera: encoding']['message'] == 'bgr8'
    assert checks['node: perception_node']['details']['params']['vlm.base_url'] == url
    assert checks['model server: probe']['details']['method'] == 'json'

    # 2. The model server is still loading its weights: a warning, not a failure.
    _post(root + '/_test/config', {'startup_delay': 120.0})
    report = _doctor(ros, '--skip-probe')
    assert report['by_name']['model server: health']['verdict'] == 'WARN', _explain(report)
    assert 'still loading' in report['by_name']['model server: health']['message']
    assert report['rc'] == 0 and not _failures(report), _explain(report)
    _post(root + '/_test/config', {'startup_delay': 0.0})

    # 3. A model name the server does not serve.
    report = _doctor(ros, '--model', 'Qwen3-VL-8B-Instruct')
    assert _failures(report) == {'model server: models'}, _explain(report)
    assert "'Qwen3-VL-8B-Instruct' not found" in report['by_name']['model server: models'][
        'message']
    assert report['rc'] == 1

    # From here this process is the odometry source; the simulator (camera + odom) is gone.
    sim.stop()
    sources = Sources(ros)
    sources.odometry(ReliabilityPolicy.RELIABLE)

    # 4. Camera silent: a stack without a camera source.
    report = _doctor(ros)
    assert _failures(report) == {'camera: publishing'}, _explain(report)
    assert report['by_name']['odometry: publishing']['verdict'] == 'OK'
    assert report['rc'] == 1

    # 5. Wrong encoding: 16-bit mono frames.
    sources.set_camera('mono16')
    report = _doctor(ros)
    assert _failures(report) == {'camera: encoding'}, _explain(report)
    assert 'mono16' in report['by_name']['camera: encoding']['message']

    # 6. Stale stamps: frames stamped 30 s in the past (the camera/odometry offset shows it
    # too, since the odometry is current).
    sources.set_camera('stale')
    report = _doctor(ros)
    assert _failures(report) == {'camera: stamps', 'clock: camera vs odometry'}, \
        _explain(report)
    assert '30.0' in report['by_name']['camera: stamps']['message']

    # 7. Best-effort odometry, as many robot drivers publish it, reaches the planner.
    sources.set_camera('good')
    sources.odometry(ReliabilityPolicy.BEST_EFFORT)
    report = _doctor(ros)
    assert not _failures(report), _explain(report)
    assert report['by_name']['odometry: qos']['verdict'] == 'OK', _explain(report)

    # 8. Odometry missing.
    sources.odometry(None)
    report = _doctor(ros)
    assert _failures(report) == {'odometry: publishing'}, _explain(report)

    # 9. Model server down (everything else healthy again).
    sources.odometry(ReliabilityPolicy.RELIABLE)
    next(p for p in procs.procs if p.name == 'vlm_server').stop()
    report = _doctor(ros)
    assert _failures(report) == {'model server: health'}, _explain(report)
    assert 'nothing answers' in report['by_name']['model server: health']['message']
    assert report['rc'] == 1


def test_doctor_takes_ros_args_and_looks_in_its_namespace(procs, ros):
    """`vln_doctor --ros-args -r __ns:=/robot1` checks robot1's stack, not another robot's."""
    procs.start_node('planner_node', namespace='/robot2').wait_for_output('planner ready', 60)
    report = _doctor(ros, '--nodes', 'planner_node', '--vlm-url', 'http://127.0.0.1:9/v1',
                     '--skip-probe', '--discovery-timeout', '3', '--ros-args', '-r',
                     '__ns:=/robot1')
    # Only robot2 runs a planner: from robot1's namespace the doctor must not take it.
    assert report['by_name']['node: planner_node']['verdict'] == 'FAIL', _explain(report)
    procs.start_node('planner_node', namespace='/robot1').wait_for_output('planner ready', 60)
    report = _doctor(ros, '--nodes', 'planner_node', '--vlm-url', 'http://127.0.0.1:9/v1',
                     '--skip-probe', '--ros-args', '-r', '__ns:=/robot1')
    node = report['by_name']['node: planner_node']
    assert node['verdict'] == 'OK' and node['details']['fqn'] == '/robot1/planner_node', \
        _explain(report)
    # Relative topics resolve in the namespace too.
    assert '/robot1/odom' in report['by_name']['odometry: publishing']['message'], \
        _explain(report)


def test_doctor_waits_for_sources_discovered_late(procs, ros):
    """A camera and odometry that appear 2.5 s after the doctor started are still seen.

    DDS may discover one participant seconds after the others; the doctor's listening window
    (here 1 s) starts once both topics delivered, so a slow discovery is not reported as a
    missing publisher. CI once failed on exactly that with a fixed window.
    """
    sources = Sources(ros)

    def appear() -> None:
        timer.cancel()
        sources.set_camera('good')
        sources.odometry(ReliabilityPolicy.RELIABLE)
    timer = ros.node.create_timer(2.5, appear)
    report = _doctor(ros, '--nodes', '', '--vlm-url', 'http://127.0.0.1:9/v1', '--skip-probe',
                     '--timeout', '1.0', '--discovery-timeout', '8')
    for topic in ('camera', 'odometry'):
        check = report['by_name'][f'{topic}: publishing']
        assert check['verdict'] == 'OK', _explain(report)
        assert check['details']['messages'] >= 5, _explain(report)  # a whole 1 s window
    assert report['by_name']['camera: encoding']['verdict'] == 'OK', _explain(report)
