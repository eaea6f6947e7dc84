"""The bridge on a default stack: frames reach perception, sync frames are never lost, and the
e-stop shown is the planner's own.

One stack for the module: a slow test model server (3 s per answer, so perception's queue
fills), the task, perception and planner nodes with their defaults, and a bridge with its
defaults (no frame_topic_type given), started as processes as ``ros2 run`` would.
"""
from __future__ import annotations

import asyncio
import base64

import cv2
import httpx
import numpy as np
import pytest

from test.harness import ProcessGroup, RosTestNode, wait_until
from vln_ros.tools.processes import wait_for_health

MODEL_LATENCY = 3.0  # s: a frame sent meanwhile waits in perception's one-slot queue
SYNC_TIMEOUT = 20.0  # two model answers back to back, on a loaded 2-core machine
THRESHOLD = 0.001  # every frame that differs is a keyframe (0 would be the node default)
FRAME_GAP = 0.3  # s, above the perception node's default keyframe_min_interval (0.2 s)


def _jpeg(seed: int) -> str:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8), (0, 0), 3)
    ok, data = cv2.imencode('.jpg', img)
    assert ok
    return base64.b64encode(data.tobytes()).decode('ascii')


@pytest.fixture(scope='module')
def stack(tmp_path_factory):
    """Slow model server, the three nodes and a bridge, all with their default topics."""
    group = ProcessGroup(tmp_path_factory.mktemp('bridge_robot_ready'))
    try:
        url = group.start_vlm_server('--latency', str(MODEL_LATENCY), str(MODEL_LATENCY))
        # A generous ack wait: on a loaded 2-core machine a just-started perception node can
        # take over a second to follow the first task, and a frame sent before that is dropped.
        group.start_node('task_node', params={'db_path': ':memory:', 'expected_followers': 2,
                                              'switch_ack_timeout': 10.0})
        group.start_node('perception_node', params={'vlm.base_url': url,
                                                    'vlm.timeout': 30.0})
        group.start_node('planner_node', params={'use_odometry': False})
        bridge = group.start_bridge(**{'vlm.base_url': url, 'sync_timeout': SYNC_TIMEOUT})
        wait_for_health(bridge, lambda body: body['ros']['task_node']
                        and body['ros']['planner_node'])
        yield {'url': bridge, 'vlm': url, 'group': group}
    finally:
        group.stop_all()


@pytest.fixture
def procs(stack):
    """The module's processes: their logs are attached to a failing test's report."""
    return stack['group']


@pytest.fixture
def client(stack):
    with httpx.Client(base_url=stack['url'], timeout=SYNC_TIMEOUT + 10) as c:
        yield c


def _create(client, instruction: str) -> str:
    r = client.post('/vln/task/create', json={'instruction': instruction,
                                              'config': {'keyframe_threshold': THRESHOLD}})
    assert r.status_code == 200, r.text
    return r.json()['task_id']


def _warm_up(client, task_id: str) -> None:
    """Send plain frames until the task has a result.

    The bridge can see perception's subscription before perception has matched the bridge's
    publisher (DDS discovery runs both ways, each at its own pace), and a frame sent in that
    gap is lost. A result proves the path is open both ways; with mismatched default topics
    none ever comes, and this fails.
    """
    seed = iter(range(1000, 2000))

    def answered() -> bool:
        r = client.post('/vln/frame', json={'task_id': task_id, 'frame': _jpeg(next(seed))})
        return r.status_code == 200 and r.json()['sequence'] >= 1

    wait_until(answered, 40, period=FRAME_GAP)


def test_default_frame_topics_reach_perception(client, procs):
    # Both sides with their defaults: the bridge publishes what perception subscribes to.
    wait_until(lambda: client.get('/health').json()['ros']['perception_node'], 30, period=0.2)
    task_id = _create(client, 'go forward')
    _warm_up(client, task_id)
    r = client.post('/vln/frame/sync', json={'task_id': task_id, 'frame': _jpeg(1)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body['frame_accepted'] and body['sequence'] >= 1 and body['action'] == 'forward'
    assert body['result_stamp'] == pytest.approx(body['frame_stamp'], abs=1e-9)
    client.post(f'/vln/task/{task_id}/stop')


def test_sync_frames_replaced_in_the_queue_all_get_an_answer(client, stack):
    """Frame 1 keeps the model busy; sync frames 2 and 3 follow it back to back.

    Perception queues one keyframe and replaces it with the newer one, so frame 2 is never
    sent to the model on its own: the answer to frame 3 covers it (a scene at least as new).
    """
    wait_until(lambda: client.get('/health').json()['ros']['perception_node'], 30, period=0.2)
    task_id = _create(client, 'turn left at the door')

    async def send():
        async with httpx.AsyncClient(base_url=stack['url'], timeout=SYNC_TIMEOUT + 10) as c:
            busy = await c.post('/vln/frame', json={'task_id': task_id, 'frame': _jpeg(10)})
            assert busy.status_code == 200, busy.text
            await asyncio.sleep(FRAME_GAP)
            first = asyncio.create_task(c.post('/vln/frame/sync', json={
                'task_id': task_id, 'frame': _jpeg(11), 'timestamp': 1.0}))
            await asyncio.sleep(FRAME_GAP)
            second = asyncio.create_task(c.post('/vln/frame/sync', json={
                'task_id': task_id, 'frame': _jpeg(12), 'timestamp': 2.0}))
            return await first, await second

    first, second = asyncio.run(send())
    for r, timestamp in ((first, 1.0), (second, 2.0)):
        assert r.status_code == 200, r.text
        body = r.json()
        assert body['task_id'] == task_id and body['timestamp'] == timestamp
        assert body['action'] == 'turn_left' and body['sequence'] >= 1
        # The answer is about this frame or a newer one, never an older scene.
        assert body['result_stamp'] >= body['frame_stamp'] - 1e-9
    a, b = first.json(), second.json()
    assert a['frame_stamp'] < b['frame_stamp']
    assert b['result_stamp'] == pytest.approx(b['frame_stamp'], abs=1e-9)
    assert a['result_stamp'] in (pytest.approx(a['frame_stamp'], abs=1e-9),
                                 pytest.approx(b['frame_stamp'], abs=1e-9))
    client.post(f'/vln/task/{task_id}/stop')


def _estop(url: str) -> dict:
    return httpx.get(f'{url}/vln/estop', timeout=10).json()


def test_estop_shown_is_the_planners_across_bridge_restarts_and_direct_calls(stack):
    from std_srvs.srv import SetBool

    group = stack['group']
    url = stack['url']
    ros = RosTestNode('estop_test')
    cli = ros.node.create_client(SetBool, 'vln/estop')
    try:
        # The planner latches its state at start-up: known before anyone set it.
        state = wait_until(lambda: (s := _estop(url))['engaged'] is not None and s, 20,
                           period=0.1)
        assert state['engaged'] is False and state['success'] is True
        r = httpx.post(f'{url}/vln/estop', json={'engaged': True}, timeout=10)
        assert r.status_code == 200 and r.json()['engaged'] is True and r.json()['success']
        assert httpx.get(f'{url}/health', timeout=10).json()['ros']['estop'] is True

        # A new bridge knows nothing of what the old one did: it reports the planner.
        bridge = next(p for p in group.procs if p.name == 'vln_bridge')
        assert bridge.stop() == 0
        fresh = group.start_bridge('vln_bridge_fresh', **{'vlm.base_url': stack['vlm']})
        state = wait_until(lambda: (s := _estop(fresh))['engaged'] is not None and s, 20,
                           period=0.1)
        assert state['engaged'] is True, state
        assert httpx.get(f'{fresh}/health', timeout=10).json()['ros']['estop'] is True

        # Set directly on the planner's service, not through the bridge: the bridge follows.
        reply = ros.call(cli, SetBool.Request(data=False))
        assert reply.success
        wait_until(lambda: _estop(fresh)['engaged'] is False, 10, period=0.1)
        reply = ros.call(cli, SetBool.Request(data=True))
        assert reply.success
        wait_until(lambda: _estop(fresh)['engaged'] is True, 10, period=0.1)
        r = httpx.post(f'{fresh}/vln/estop', json={'engaged': False}, timeout=10)
        assert r.status_code == 200 and r.json()['engaged'] is False
        assert _estop(fresh)['engaged'] is False
    finally:
        # Later tests (and the persisted e-stop) start released.
        ros.call(cli, SetBool.Request(data=False))
        ros.close()


def test_estop_without_a_planner_state_is_null_with_a_reason(procs):
    """A bridge that hears no planner state says so instead of guessing."""
    import re

    # Remapped away from the planner's topic: for this bridge no planner state exists.
    proc = procs.start_node('vln_bridge', name='vln_bridge_deaf', module='vln_ros.bridge.main',
                            params={'port': 0}, remap={'vln/estop_state': 'vln/no_state'})
    out = proc.wait_for_output('vln bridge listening on', timeout=60)
    url = re.search(r'vln bridge listening on (http://\S+)', out).group(1)
    state = _estop(url)
    assert state['engaged'] is None and state['success'] is False
    assert 'no e-stop state' in state['message'] and 'planner' in state['message']
    assert httpx.get(f'{url}/health', timeout=10).json()['ros']['estop'] is None
    assert proc.stop() == 0
