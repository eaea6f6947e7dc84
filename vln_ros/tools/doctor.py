r"""vln_doctor: check the model server, camera, odometry, clocks, nodes and GPU of the stack.

    vln_doctor                              # the running stack, settings read from its nodes
    vln_doctor --json > doctor.json         # machine-readable; exit 1 on any FAIL
    vln_doctor --vlm-url http://gpu-host:23333/v1 --model Qwen3-VL-32B-Instruct
    vln_doctor --no-ros --gpu               # on the model server host: driver and GPU memory

Each check prints a verdict (OK, WARN, FAIL, SKIP) and, when something is wrong, a hint.
Settings not given as flags are read from the running nodes (perception's vlm.* parameters
and camera subscription, the planner's odometry subscription and frames), so the doctor
checks what the stack actually uses; a flag that disagrees with a node is reported.
The verdict logic lives in vln_ros.tools.doctor_checks (ROS-free); this module gathers facts.
docs/troubleshooting.md lists every verdict with its fix.
"""
from __future__ import annotations

import argparse
import asyncio
from collections import Counter
import json
import os
import subprocess
import sys
import threading
import time

import httpx
import numpy as np

from vln_ros.tools import doctor_checks as dc
from vln_ros.tools.doctor_checks import FAIL, SKIP, CheckResult, Thresholds
from vln_ros.tools.stop_signals import interrupt_once

DEFAULT_VLM_URL = 'http://127.0.0.1:23333/v1'
DEFAULT_NODES = ('perception_node', 'planner_node', 'task_node')
PROBE_INSTRUCTION = 'Describe what you see, then stop.'
# Parameters read from the stack's nodes (cheap: one GetParameters call each).
NODE_PARAMS = {
    'perception_node': ('use_sim_time', 'vlm.base_url', 'vlm.model', 'vlm.api_key',
                        'vlm.guided', 'image_transport'),
    'planner_node': ('use_sim_time', 'odom_frame', 'base_frame', 'result_timeout'),
    'task_node': ('use_sim_time',),
}
_SECRET_PARAMS = ('vlm.api_key',)
IMAGE_TYPE = 'sensor_msgs/msg/Image'
COMPRESSED_TYPE = 'sensor_msgs/msg/CompressedImage'
ODOM_TYPE = 'nav_msgs/msg/Odometry'


def build_parser() -> argparse.ArgumentParser:
    """Command-line flags of vln_doctor."""
    doc = __doc__.split('\n\n')
    p = argparse.ArgumentParser(
        prog='vln_doctor', description=doc[0].split(': ', 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='\n\n'.join(doc[1:]).strip('\n') + '\n\nExit status: 0 when no check failed, '
               '1 on any FAIL (with --strict also on WARN), 2 on bad arguments.')
    p.add_argument('--json', action='store_true', help='print the report as JSON on stdout')
    p.add_argument('--vlm-url', help="model server base URL (default: perception's "
                   f'vlm.base_url, else {DEFAULT_VLM_URL})')
    p.add_argument('--model', help="model name to expect (default: perception's vlm.model; "
                   'empty: whatever the server lists first)')
    p.add_argument('--api-key', help="model server API key (default: perception's)")
    p.add_argument('--camera-topic', help='camera topic (default: what perception subscribes '
                   'to, else camera/image_raw[/compressed])')
    p.add_argument('--compressed', action='store_true', default=None,
                   help="the camera is sensor_msgs/CompressedImage (default: perception's "
                   'image_transport)')
    p.add_argument('--odom-topic', help='odometry topic (default: what the planner '
                   'subscribes to, else odom)')
    p.add_argument('--nodes', default=','.join(DEFAULT_NODES),
                   help='comma-separated node names the stack must have (default: %(default)s;'
                   ' empty: none)')
    p.add_argument('--timeout', type=float, default=3.0,
                   help='seconds to listen to each topic once its first message came, and to '
                   'wait for parameter services (default: %(default)s)')
    p.add_argument('--discovery-timeout', type=float, default=6.0,
                   help='seconds to wait for the stack nodes and for the first camera and '
                   'odometry messages; DDS may take a few seconds to discover a publisher '
                   '(default: %(default)s)')
    p.add_argument('--probe-timeout', type=float, default=60.0,
                   help='seconds the probe request may take (default: %(default)s)')
    p.add_argument('--skip-probe', action='store_true',
                   help='do not send the one-image probe request to the model')
    p.add_argument('--no-ros', action='store_true',
                   help='skip the ROS checks (nodes, topics, clock): model server and --gpu only')
    p.add_argument('--gpu', action='store_true',
                   help='also check nvidia-smi, the driver and free GPU memory (run it on the '
                   'model server host)')
    p.add_argument('--strict', action='store_true', help='exit 1 on warnings too')
    return p


# ---------------------------------------------------------------------------- model server

def probe_image(width: int = 640, height: int = 480) -> np.ndarray:
    """A synthetic corridor-like BGR frame: floor, walls and a door."""
    img = np.zeros((height, width, 3), np.uint8)
    rows = np.linspace(90, 200, height, dtype=np.uint8)[:, None]
    img[:] = np.repeat(rows, width, axis=1)[:, :, None]
    img[:, : width // 5] //= 2
    img[:, -width // 5:] //= 2
    img[height // 4: height * 3 // 4, width * 2 // 5: width * 3 // 5] = (40, 40, 160)
    return img


def _models_url(base_url: str) -> str:
    return base_url.rstrip('/') + '/models'


async def _model_checks(url: str, model: str, api_key: str, guided: str, timeout: float,
                        probe_timeout: float, skip_probe: bool,
                        thresholds: Thresholds) -> list[CheckResult]:
    from vln_ros.core.images import jpeg_data_url
    from vln_ros.core.prompts import build_messages
    from vln_ros.core.vlm_client import VlmClient, VlmConfig, VlmError

    config = VlmConfig(base_url=url, model=model, api_key=api_key or 'none',
                       timeout=probe_timeout, connect_timeout=min(timeout, 3.0),
                       max_retries=0, guided=guided)
    client = VlmClient(config)
    try:
        status = await client.health()
        results = [dc.check_health(status, url)]
        if status != 'healthy':
            why = 'the server is still loading' if status == 'initializing' \
                else 'the server is not healthy'
            results += [CheckResult('model server: models', SKIP, why),
                        CheckResult('model server: probe', SKIP, why)]
            return results
        listed, error = None, ''
        try:
            async with httpx.AsyncClient(timeout=max(timeout, 1.0)) as http:
                resp = await http.get(_models_url(url),
                                      headers={'Authorization': f'Bearer {config.api_key}'})
            if resp.status_code == 200:
                listed = [m.get('id', '') for m in resp.json().get('data', [])
                          if isinstance(m, dict)]
            else:
                error = f'HTTP {resp.status_code}: {resp.text[:200]}'
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            error = f'{type(exc).__name__}: {exc}'
        models = dc.check_models(listed, model, error)
        results.append(models)
        if skip_probe:
            results.append(CheckResult('model server: probe', SKIP, 'skipped (--skip-probe)'))
        elif models.verdict == FAIL:
            results.append(CheckResult('model server: probe', SKIP,
                                       'needs a model the server serves'))
        else:
            messages = build_messages(PROBE_INSTRUCTION, [jpeg_data_url(probe_image())])
            started = time.monotonic()
            try:
                reply = await client.complete(messages)
                results.append(dc.check_probe(reply.text, reply.latency, '', thresholds))
            except VlmError as exc:
                results.append(dc.check_probe(None, time.monotonic() - started, str(exc),
                                              thresholds))
        return results
    finally:
        await client.aclose()


def model_checks(url: str, model: str, api_key: str = '', guided: str = 'regex',
                 timeout: float = 3.0, probe_timeout: float = 60.0, skip_probe: bool = False,
                 thresholds: Thresholds = Thresholds()) -> list[CheckResult]:
    """Health, listed models and a one-image probe of the model server (blocking)."""
    try:
        return asyncio.run(_model_checks(url, model, api_key, guided, timeout, probe_timeout,
                                         skip_probe, thresholds))
    except ImportError as exc:  # e.g. --no-ros on a GPU host without the project's deps
        return [CheckResult('model server: health', FAIL, f'cannot check: {exc}',
                            'install the Python requirements of vln_ros (openai, httpx, numpy, '
                            'opencv-python-headless) where the doctor runs')]
    except Exception as exc:  # noqa: BLE001 - a doctor reports, it does not crash
        return [CheckResult('model server: health', FAIL, f'doctor error: {exc!r}')]


# ---------------------------------------------------------------------------- GPU

def gpu_checks(timeout: float = 10.0, thresholds: Thresholds = Thresholds()
               ) -> list[CheckResult]:
    """Query nvidia-smi for driver, GPUs and free memory."""
    cmd = ['nvidia-smi', f'--query-gpu={dc.NVIDIA_SMI_QUERY}', '--format=csv,noheader,nounits']
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        return [dc.check_gpu(None, missing=True, thresholds=thresholds)]
    except subprocess.TimeoutExpired:
        return [dc.check_gpu(None, f'no answer within {timeout:.0f} s (driver hung?)',
                             thresholds=thresholds)]
    if proc.returncode != 0:
        text = (proc.stderr or proc.stdout).strip().splitlines()
        return [dc.check_gpu(None, text[0] if text else f'exit status {proc.returncode}',
                             thresholds=thresholds)]
    return [dc.check_gpu(proc.stdout, thresholds=thresholds)]


# ---------------------------------------------------------------------------- ROS

class _TopicSample:
    """What arrived on one topic: receive times, stamp ages, per-kind counts."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.ages: list[float] = []
        self.zero_stamps = 0
        self.kinds: Counter[str] = Counter()  # image encodings / odom frame ids
        self.kinds2: Counter[str] = Counter()  # odom child frame ids
        self.errors: dict[str, str] = {}


class RosProbe:
    """An rclpy node that looks at the graph, reads parameters and samples topics."""

    def __init__(self, args: argparse.Namespace, thresholds: Thresholds) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.args = args
        self.thresholds = thresholds
        self._rclpy = rclpy
        self.context = rclpy.Context()
        # The ROS arguments (namespace, remaps) make the doctor look where the stack runs.
        rclpy.init(args=['vln_doctor', *getattr(args, 'ros_args', [])], context=self.context)
        self.node = rclpy.create_node(f'vln_doctor_{os.getpid()}', context=self.context,
                                      start_parameter_services=False)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.expected = [n.strip() for n in args.nodes.split(',') if n.strip()]
        self.found: dict[str, str | None] = {}
        self.params: dict[str, dict] = {}
        self.diagnostics: dict[str, tuple[int, str]] = {}
        self.clock_messages = 0
        self._last_clock: float | None = None
        self.camera = _TopicSample()
        self.odom = _TopicSample()
        self.sim_time = False

    # -- helpers

    def spin_for(self, seconds: float, until=None) -> None:
        """Spin the node's executor for seconds, or until until() is true."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not (until and until()):
            self.executor.spin_once(timeout_sec=min(0.05, max(0.0, deadline - time.monotonic())))

    def _now(self) -> float:
        if self.sim_time and self._last_clock is not None:
            return self._last_clock
        return time.time()

    def _own(self, info) -> bool:
        return info.node_name == self.node.get_name() and \
            info.node_namespace == self.node.get_namespace()

    # -- graph and parameters

    def discover(self) -> None:
        """Wait (up to --discovery-timeout) for the expected nodes, then read their parameters."""
        def all_found():
            names = self.node.get_node_names_and_namespaces()
            return all(dc.find_node(n, names, self.node.get_namespace()) for n in self.expected)
        # A loaded host may take a second or two to discover everyone; missing nodes cost
        # the whole wait.
        self.spin_for(self.args.discovery_timeout, until=all_found)
        self.rediscover()

    def rediscover(self) -> list[str]:
        """Look again for nodes not found yet, read their parameters; return the new ones."""
        names = self.node.get_node_names_and_namespaces()
        new = [n for n in self.expected
               if self.found.get(n) is None and dc.find_node(n, names, self.node.get_namespace())]
        for n in self.expected:
            self.found[n] = self.found.get(n) or dc.find_node(n, names, self.node.get_namespace())
        self._read_params(new)
        return new

    def _read_params(self, nodes: list[str]) -> None:
        from rclpy.parameter import parameter_value_to_python
        from rclpy.parameter_client import AsyncParameterClient

        pending = {}
        for name in nodes:
            fqn = self.found[name]
            wanted = list(NODE_PARAMS.get(name, ('use_sim_time',)))
            client = AsyncParameterClient(self.node, fqn)
            if not client.wait_for_services(timeout_sec=self.args.discovery_timeout):
                continue
            pending[name] = (wanted, client.get_parameters(wanted))
        self.spin_for(self.args.timeout, until=lambda: all(f.done() for _, f in
                                                           pending.values()))
        for name, (wanted, future) in pending.items():
            if not future.done() or future.result() is None:
                continue
            values = [parameter_value_to_python(v) for v in future.result().values]
            self.params[name] = dict(zip(wanted, values, strict=True))

    def node_param(self, node: str, name: str, default=None):
        """A parameter of a stack node, or default when unknown."""
        value = self.params.get(node, {}).get(name)
        return default if value is None else value

    def subscribed_topic(self, node: str, types: tuple[str, ...]) -> tuple[str, str] | None:
        """(topic, type) of the node's first subscription of one of these types."""
        fqn = self.found.get(node)
        if fqn is None:
            return None
        namespace, _, name = fqn.rpartition('/')
        try:
            subs = self.node.get_subscriber_names_and_types_by_node(name, namespace or '/')
        except Exception:  # noqa: BLE001 - the node may vanish meanwhile
            return None
        for topic, topic_types in subs:
            for t in types:
                if t in topic_types:
                    return topic, t
        return None

    # -- sampling

    def sample(self, camera_topic: str, compressed: bool, odom_topic: str) -> None:
        """Subscribe (best effort: accepts any publisher) and listen to camera and odometry.

        A fresh DDS participant may discover one publisher seconds after the others (a lost
        announcement is repeated every few seconds), so the --timeout window starts once both
        topics delivered a message, or at --discovery-timeout for a topic that never does:
        a silent topic is reported only after that wait.
        """
        from diagnostic_msgs.msg import DiagnosticArray
        from nav_msgs.msg import Odometry
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import CompressedImage, Image

        any_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.sim_time = any(p.get('use_sim_time') for p in self.params.values())
        self.node.create_subscription(Clock, '/clock', self._on_clock, any_qos)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics,
                                      any_qos)
        if compressed:
            self.node.create_subscription(CompressedImage, camera_topic, self._on_compressed,
                                          any_qos)
        else:
            self.node.create_subscription(Image, camera_topic, self._on_image, any_qos)
        self.node.create_subscription(Odometry, odom_topic, self._on_odom, any_qos)
        self.spin_for(self.args.discovery_timeout,
                      until=lambda: bool(self.camera.arrivals and self.odom.arrivals))
        self.spin_for(self.args.timeout)

    def _stamp(self, sample: _TopicSample, stamp) -> None:
        sample.arrivals.append(time.monotonic())
        t = stamp.sec + stamp.nanosec * 1e-9
        if t == 0.0:
            sample.zero_stamps += 1
        else:
            sample.ages.append(self._now() - t)

    def _on_clock(self, msg) -> None:
        self.clock_messages += 1
        self._last_clock = msg.clock.sec + msg.clock.nanosec * 1e-9

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            level = status.level
            level = level[0] if isinstance(level, bytes | bytearray) else int(level)
            for node in self.expected:
                key = node.removesuffix('_node')
                if key and key in status.name:
                    self.diagnostics[node] = (level, status.message)

    def _on_image(self, msg) -> None:
        self._stamp(self.camera, msg.header.stamp)
        enc = msg.encoding
        if enc not in self.camera.kinds:
            err = dc.image_error(enc, msg.width, msg.height, msg.step, bytes(msg.data))
            if err:
                self.camera.errors[enc or '(empty)'] = err
        self.camera.kinds[enc or '(empty)'] += 1

    def _on_compressed(self, msg) -> None:
        self._stamp(self.camera, msg.header.stamp)
        fmt = msg.format
        if fmt not in self.camera.kinds:
            err = dc.compressed_error(fmt, bytes(msg.data))
            if err:
                self.camera.errors[fmt or '(empty)'] = err
        self.camera.kinds[fmt or '(empty)'] += 1

    def _on_odom(self, msg) -> None:
        self._stamp(self.odom, msg.header.stamp)
        self.odom.kinds[msg.header.frame_id] += 1
        self.odom.kinds2[msg.child_frame_id] += 1

    def endpoints(self, topic: str, publishers: bool) -> list[dict]:
        """QoS of the topic's publishers or subscriptions, without the doctor's own."""
        from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

        infos = self.node.get_publishers_info_by_topic(topic) if publishers \
            else self.node.get_subscriptions_info_by_topic(topic)
        out = []
        for info in infos:
            if self._own(info):
                continue
            qos = info.qos_profile
            out.append({
                'node': info.node_namespace.rstrip('/') + '/' + info.node_name,
                'reliability': dc.RELIABLE if qos.reliability == ReliabilityPolicy.RELIABLE
                else dc.BEST_EFFORT,
                'durability': dc.TRANSIENT_LOCAL
                if qos.durability == DurabilityPolicy.TRANSIENT_LOCAL else dc.VOLATILE,
            })
        return out

    def close(self) -> None:
        """Destroy the node and shut the private context down."""
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self._rclpy.try_shutdown(context=self.context)


def _topic_checks(ros: RosProbe, label: str, topic: str, sample: _TopicSample,
                  minimum_rate: float, content: CheckResult, no_pub_hint: str,
                  reader_hint: str) -> list[CheckResult]:
    """Publishing, content (encoding / frames), rate, QoS and stamps of one topic."""
    pubs = ros.endpoints(topic, publishers=True)
    subs = ros.endpoints(topic, publishers=False)
    clock = 'simulated clock (/clock)' if ros.sim_time and ros.clock_messages else 'wall clock'
    return [
        dc.check_publishing(label, topic, len(pubs), len(sample.arrivals),
                            ros.args.discovery_timeout + ros.args.timeout,
                            no_pub_hint),
        content,
        dc.check_rate(label, dc.rate_hz(sample.arrivals), minimum_rate)
        if sample.arrivals else CheckResult(f'{label}: rate', SKIP, 'no messages'),
        dc.check_qos(label, topic, pubs, subs, reader_hint),
        dc.check_stamp_age(label, sample.ages, sample.zero_stamps, ros.thresholds, clock),
    ]


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def ros_checks(args: argparse.Namespace, thresholds: Thresholds,
               start_model_checks) -> list[CheckResult]:
    """Run the node, camera, odometry and clock checks.

    start_model_checks(perception's parameters) starts the model checks in a thread, so
    that they run while the topics are sampled.
    """
    ros = RosProbe(args, thresholds)
    try:
        ros.discover()
        found = ros.subscribed_topic('perception_node', (IMAGE_TYPE, COMPRESSED_TYPE))
        transport = ros.node_param('perception_node', 'image_transport')
        compressed = args.compressed if args.compressed is not None else (
            found[1] == COMPRESSED_TYPE if found else transport == 'compressed')
        default_camera = 'camera/image_raw/compressed' if compressed else 'camera/image_raw'
        camera_topic = args.camera_topic or (found[0] if found else default_camera)
        odom_found = ros.subscribed_topic('planner_node', (ODOM_TYPE,))
        odom_topic = args.odom_topic or (odom_found[0] if odom_found else 'odom')
        camera_topic = ros.node.resolve_topic_name(camera_topic)
        odom_topic = ros.node.resolve_topic_name(odom_topic)

        # The model checks use perception's settings: start them now if it was found (they
        # run while the topics are sampled), else after a second look at the graph.
        early = 'perception_node' not in ros.expected or ros.found.get('perception_node')
        if early:
            start_model_checks(ros.params.get('perception_node', {}))
        ros.sample(camera_topic, compressed, odom_topic)
        ros.rediscover()
        if not early:
            start_model_checks(ros.params.get('perception_node', {}))

        mismatches = _mismatches(args, ros, compressed, camera_topic, found, odom_topic,
                                 odom_found)
        results = []
        for name in ros.expected:
            params = {k: ('***' if k in _SECRET_PARAMS and v else v)
                      for k, v in ros.params.get(name, {}).items()}
            results.append(dc.check_node(name, ros.found.get(name), params,
                                         ros.diagnostics.get(name), mismatches.get(name, ())))
        results += _topic_checks(
            ros, 'camera', camera_topic, ros.camera, thresholds.min_camera_rate,
            dc.check_encoding(ros.camera.kinds, ros.camera.errors, compressed),
            f'start the camera driver (or sim_node) and check the topic name and remapping: '
            f'perception reads {camera_topic} (image_transport '
            f'{"compressed" if compressed else "raw"}); same ROS_DOMAIN_ID on every machine',
            'start perception_node, or remap its camera/image_raw to this topic')
        results += _topic_checks(
            ros, 'odometry', odom_topic, ros.odom, thresholds.min_odom_rate,
            dc.check_odom_frames(ros.odom.kinds, ros.odom.kinds2,
                                 ros.node_param('planner_node', 'odom_frame', 'odom'),
                                 ros.node_param('planner_node', 'base_frame', 'base_link')),
            f"start the robot's odometry (or sim_node) publishing nav_msgs/Odometry on "
            f"{odom_topic}, or remap the planner's odom",
            'start planner_node, or remap its odom to this topic')
        use_sim_time = {n: ros.params[n].get('use_sim_time') for n in ros.params}
        results.append(dc.check_use_sim_time(use_sim_time,
                                             len(ros.endpoints('/clock', publishers=True)),
                                             ros.clock_messages))
        results.append(dc.check_stamp_offset(_median(ros.camera.ages), _median(ros.odom.ages),
                                             thresholds))
        return results
    finally:
        ros.close()


def _mismatches(args, ros: RosProbe, compressed: bool, camera_topic: str, found,
                odom_topic: str, odom_found) -> dict[str, list[str]]:
    """Settings given as flags that differ from what the nodes use."""
    out: dict[str, list[str]] = {}
    perception = ros.params.get('perception_node', {})
    url = perception.get('vlm.base_url')
    if args.vlm_url and url and args.vlm_url.rstrip('/') != url.rstrip('/'):
        out.setdefault('perception_node', []).append(f'vlm.base_url is {url}, '
                                                     f'not {args.vlm_url}')
    model = perception.get('vlm.model')
    if args.model is not None and model is not None and args.model != model:
        out.setdefault('perception_node', []).append(f'vlm.model is {model!r}, '
                                                     f'not {args.model!r}')
    if found and args.camera_topic and ros.node.resolve_topic_name(found[0]) != camera_topic:
        out.setdefault('perception_node', []).append(f'subscribes to {found[0]}, '
                                                     f'not {camera_topic}')
    if found and args.compressed is not None and (found[1] == COMPRESSED_TYPE) != compressed:
        out.setdefault('perception_node', []).append(
            f'reads {"compressed" if found[1] == COMPRESSED_TYPE else "raw"} images')
    if odom_found and args.odom_topic and \
            ros.node.resolve_topic_name(odom_found[0]) != odom_topic:
        out.setdefault('planner_node', []).append(f'subscribes to {odom_found[0]}, '
                                                  f'not {odom_topic}')
    return out


# ---------------------------------------------------------------------------- main

def run_checks(args: argparse.Namespace, thresholds: Thresholds = Thresholds()
               ) -> list[CheckResult]:
    """Run every selected check; report order: nodes, model server, topics, clock, GPU."""
    model_results: list[CheckResult] = []
    threads: list[threading.Thread] = []

    def model_settings(perception: dict) -> dict:
        model = args.model if args.model is not None else perception.get('vlm.model') or ''
        return {
            'url': args.vlm_url or perception.get('vlm.base_url') or DEFAULT_VLM_URL,
            'model': model,
            'api_key': args.api_key or perception.get('vlm.api_key') or '',
            'guided': perception.get('vlm.guided') or 'regex',
            'timeout': args.timeout, 'probe_timeout': args.probe_timeout,
            'skip_probe': args.skip_probe, 'thresholds': thresholds,
        }

    def start_model_checks(perception: dict) -> threading.Thread:
        settings = model_settings(perception)
        thread = threading.Thread(target=lambda: model_results.extend(model_checks(**settings)),
                                  name='model-checks', daemon=True)
        thread.start()
        threads.append(thread)
        return thread

    ros_results: list[CheckResult] = []
    if not args.no_ros:
        try:
            ros_results = ros_checks(args, thresholds, start_model_checks)
        except Exception as exc:  # noqa: BLE001 - report, do not crash
            ros_results = [CheckResult('ros', FAIL, f'doctor error: {exc!r}',
                                       'is the ROS 2 environment sourced (scripts/env.sh)?')]
    for thread in threads:
        thread.join(args.probe_timeout + 10.0)
    if not threads:  # --no-ros, or ROS failed before the model checks started
        model_results.extend(model_checks(**model_settings({})))
    nodes = [r for r in ros_results if r.name.startswith('node: ')]
    results = nodes + model_results + [r for r in ros_results if r not in nodes]
    if args.gpu:
        results += gpu_checks(thresholds=thresholds)
    return results


def split_ros_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """(our arguments, the --ros-args sections) of a command line, as every ROS executable.

    A section runs from `--ros-args` to a lone `--` or the end; there may be several.
    """
    ours, ros, inside = [], [], False
    for arg in argv:
        if arg == '--ros-args':
            inside = True
            ros.append(arg)
        elif inside and arg == '--':
            inside = False
            ros.append(arg)
        else:
            (ros if inside else ours).append(arg)
    return ours, ros


def main(argv: list[str] | None = None) -> int:
    """Run vln_doctor; the exit status is 1 when a check failed, 130 when interrupted."""
    argv = sys.argv[1:] if argv is None else list(argv)
    ours, ros_args = split_ros_args(argv)
    args = build_parser().parse_args(ours)
    args.ros_args = ros_args  # a namespace or remaps: `vln_doctor --ros-args -r __ns:=/robot1`
    if args.timeout <= 0 or args.probe_timeout <= 0 or args.discovery_timeout <= 0:
        build_parser().error('--timeout, --discovery-timeout and --probe-timeout must be '
                             'positive')
    interrupt_once()
    try:
        results = run_checks(args)
    except KeyboardInterrupt:
        # Not 0: a script that gates a launch on the doctor must not read "all green".
        print('vln_doctor: interrupted before every check ran', file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(dc.report(results), indent=2))
    else:
        print(dc.format_text(results, color=sys.stdout.isatty()))
    return dc.exit_code(results, strict=args.strict)


if __name__ == '__main__':
    sys.exit(main())
