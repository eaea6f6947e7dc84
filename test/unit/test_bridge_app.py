"""The bridge's web side without ROS: how the app is assembled, what its OpenAPI says, its rules.

The app is built on a stub RosPort (nothing is served); endpoints are exercised over real
HTTP in test/integration/test_bridge*.py and test_web_ui.py.
"""
from __future__ import annotations

import ast
import pathlib
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest

from vln_ros.bridge import exposure

BRIDGE = pathlib.Path(__file__).resolve().parents[2] / 'vln_ros' / 'bridge'
ROUTERS = ('routes_health', 'routes_tasks', 'routes_stream', 'routes_safety', 'routes_source',
           'routes_model')


def _app():
    from vln_ros.bridge.app import BridgeSettings, create_app

    return create_app(SimpleNamespace(publish_image=lambda bgr: True), BridgeSettings())


def _endpoints(router) -> dict[tuple[str, str], str]:
    """(method or WS, path) -> module of the endpoint function."""
    out = {}
    for route in router.routes:
        methods = sorted(getattr(route, 'methods', None) or ['WS'])
        for method in methods:
            out[(method, route.path)] = route.endpoint.__module__
    return out


def test_create_app_only_assembles_one_router_per_concern():
    import importlib

    from vln_ros.bridge.context import BridgeContext
    from vln_ros.bridge.settings import BridgeSettings

    ctx = BridgeContext.create(SimpleNamespace(publish_image=lambda bgr: True),
                               BridgeSettings())
    served: dict[tuple[str, str], str] = {}
    for name in ROUTERS:
        module = importlib.import_module(f'vln_ros.bridge.{name}')
        endpoints = _endpoints(module.build_router(ctx))
        assert endpoints and set(endpoints.values()) == {module.__name__}
        assert not set(endpoints) & set(served), f'{name} repeats an endpoint'
        served.update(endpoints)
    # Every documented operation comes from one of the routers.
    doc = _app().openapi()
    documented = {(m.upper(), p) for p, ops in doc['paths'].items() for m in ops}
    assert documented == {k for k in served if k[0] != 'WS'}
    assert ('WS', '/vln/stream/{task_id}') in served
    # app.py declares no endpoint itself and stays small.
    source = (BRIDGE / 'app.py').read_text()
    assert not re.search(r'@app\.(get|post|put|delete|websocket)\(', source)
    assert len(source.splitlines()) < 120


def test_openapi_keeps_every_endpoint_and_response_shape():
    doc = _app().openapi()
    operations = {(m, p) for p, ops in doc['paths'].items() for m in ops}
    assert operations == {
        ('get', '/health'), ('post', '/vln/task/create'), ('get', '/vln/task/{task_id}'),
        ('post', '/vln/task/{task_id}/stop'), ('post', '/vln/frame'), ('post', '/vln/frame/sync'),
        ('post', '/vln/estop'), ('get', '/vln/estop'), ('get', '/vln/cmd_vel'),
        ('post', '/vln/source'), ('get', '/vln/source'), ('post', '/vln/source/pause'),
        ('post', '/vln/source/resume'), ('post', '/vln/source/stop'), ('post', '/analyze/video'),
        ('get', '/v1/models'), ('post', '/v1/chat/completions')}
    schemas = doc['components']['schemas']
    assert set(schemas['FrameResponse']['properties']) == {
        'task_id', 'sequence', 'environment', 'action', 'waypoints', 'linear_vel',
        'angular_vel', 'inference_time', 'status', 'visualized_frame', 'frame_accepted',
        'frame_stamp', 'result_stamp', 'timestamp'}
    assert set(schemas['EstopResponse']['properties']) == {'engaged', 'success', 'message',
                                                           'stamp'}
    ids = [op['operationId'] for ops in doc['paths'].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    assert '403' in doc['paths']['/vln/source']['post']['responses']


def test_openapi_documents_the_timestamp_threshold_and_source_rules():
    props = _app().openapi()['components']['schemas']
    timestamp = props['FrameRequest']['properties']['timestamp']['description']
    assert 'ROS clock' in timestamp and 'unchanged' in timestamp and 'frame_stamp' in timestamp
    threshold = props['TaskConfigModel']['properties']['keyframe_threshold']['description']
    assert 'null or 0' in threshold and 'default' in threshold and '0.001' in threshold
    assert '0 makes every frame' not in threshold
    source = props['SourceRequest']['properties']
    assert 'media_dir' in source['path']['description']
    assert 'rtsp' in source['url']['description'] and '422' in source['url']['description']
    estop = props['EstopResponse']['properties']['engaged']['description']
    assert 'planner' in estop
    assert 'estop' in props['RosHealth']['properties']


def test_bridge_text_says_what_it_means():
    # "the seed" was the name of the project's starting point; nothing a user reads says it.
    for path in sorted(BRIDGE.rglob('*')):
        if path.suffix in ('.py', '.js', '.html', '.css'):
            assert not re.search(r'\bseed', path.read_text(), re.I), path


def test_bridge_takes_status_names_from_the_core_not_from_nodes():
    for path in sorted(BRIDGE.glob('*.py')):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not re.match(r'vln_ros\.nodes\.\w+_node$', node.module), (path, node.module)
                names = {a.name for a in node.names}
                assert 'STATUS_NAMES' not in names, path


def test_bridge_node_imports_no_node_module():
    pytest.importorskip('rclpy')
    pytest.importorskip('vln_ros_interfaces')
    code = ('import sys, vln_ros.bridge.main, vln_ros.bridge.ros_side; '
            "print(sorted(m for m in sys.modules if m.startswith('vln_ros.nodes.') "
            "and m.endswith('_node')))")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '[]'


@pytest.mark.parametrize('host', ['127.0.0.1', '127.8.9.10', '::1', '[::1]', 'localhost',
                                  'LOCALHOST'])
def test_loopback_hosts_need_no_key(host):
    assert exposure.is_loopback(host)
    assert exposure.exposure_check(host, '', False) == ('', '')


@pytest.mark.parametrize('host', ['0.0.0.0', '', '::', '192.168.1.5', 'robot.local',
                                  '128.0.0.1'])
def test_other_hosts_need_a_key_or_allow_insecure(host):
    assert not exposure.is_loopback(host)
    error, warning = exposure.exposure_check(host, '', False)
    assert 'api_key' in error and 'allow_insecure' in error and not warning
    assert exposure.exposure_check(host, 'k', False) == ('', '')
    error, warning = exposure.exposure_check(host, '', True)
    assert not error and 'allow_insecure' in warning
